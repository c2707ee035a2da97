#!/usr/bin/env bash
# make images-local (and infra/kind/load.sh): build step images with the local Docker daemon,
# tagged image-classification-<image>:<git commit> and :latest.
#
#   containers/build.sh [IMAGE...]      # default: cpu gpu tpu transformers
#
# The legacy builder works as well as BuildKit (DOCKER_BUILDKIT=0 is the default here: nothing has
# to be pulled for the frontend), with --network host so that a build reaches what the machine
# reaches: its package index, its proxy, and the wheel folders served on 127.0.0.1 below.
#
# The machine's pip setup (`pip config list`, PIP_* variables) is what the build installs from:
#   index-url, extra-index-url   http(s) URLs as they are; file:// folders served (see below)
#   find-links                   URLs as they are; local folders served over HTTP on 127.0.0.1
#                                (the build cannot see the host's disk); these replace PyTorch's
#                                wheel page, so they must hold torch's CPU wheel for the cpu image
#   cert                         the CA bundle (a TLS proxy's)
# None of it is a build argument: the setup and the folders are served on 127.0.0.1 for the length
# of the build, and containers/install-locked.sh reads them there for one command at a time, so
# neither `docker history` nor any file of an image holds an index URL, a find-links or the CA.
# Settings (environment): PYTHON_IMAGE (the base; default: the Dockerfile's pinned image, or the
# one `make base-image` built when that cannot be pulled), IMAGE_PREFIX (image-classification-),
# DOCKER_BUILDKIT (0), PIP_SERVE_PORT (8876; fixed, so that the build cache keeps hitting).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ALL_IMAGES=(cpu gpu tpu transformers)
PREFIX="${IMAGE_PREFIX:-image-classification-}"
LOCAL_BASE="${BASE_IMAGE:-image-classification-python:3.11-bookworm}"
SERVE_PORT="${PIP_SERVE_PORT:-8876}"
export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}"

die() {
  echo "error: $*" >&2
  exit 1
}

log() {
  echo "==> $*" >&2
}

images=("$@")
((${#images[@]})) || images=("${ALL_IMAGES[@]}")
for image in "${images[@]}"; do
  [[ -f "${REPO_ROOT}/containers/locks/${image}.txt" && " ${ALL_IMAGES[*]} " == *" ${image} "* ]] ||
    die "unknown image ${image}; choose from ${ALL_IMAGES[*]}"
done
command -v docker >/dev/null 2>&1 || die "docker is not installed (Debian: apt-get install docker.io)"
docker info >/dev/null 2>&1 || die "the Docker daemon does not answer (docker info failed); start it (dockerd) and retry"

cd "${REPO_ROOT}"
# One build at a time on this machine: they share the setup server's port.
if command -v flock >/dev/null 2>&1; then
  exec 9>"${TMPDIR:-/tmp}/image-classification-build.lock"
  flock 9
fi
commit="$(git rev-parse HEAD)"
git diff --quiet HEAD -- components pipelines pyproject.toml containers ||
  log "note: uncommitted changes go into images tagged ${commit}"

# The base: the Dockerfile's pinned image when it is here or can be pulled, else make base-image's.
pinned="$(sed -n 's/^ARG PYTHON_IMAGE=//p' containers/Dockerfile)"
base="${PYTHON_IMAGE:-}"
if [[ -z "${base}" ]]; then
  if docker image inspect "${pinned}" >/dev/null 2>&1 || docker pull --quiet "${pinned}" >/dev/null 2>&1; then
    base="${pinned}"
  elif docker image inspect "${LOCAL_BASE}" >/dev/null 2>&1; then
    log "${pinned%@*} cannot be pulled; building on ${LOCAL_BASE} (make base-image)"
    base="${LOCAL_BASE}"
  else
    die "the base image ${pinned%@*} cannot be pulled; run make base-image (a Python 3.11 bookworm" \
      "base from Debian packages), or set PYTHON_IMAGE to one your registry has"
  fi
fi

# pip_setting KEY: the machine's pip value of KEY (environment over site, user, global files).
pip_config="$( (python3 -m pip config list 2>/dev/null || true) | tr -d "'")"
pip_setting() {
  local scope value
  for scope in ":env:" "site" "user" "global"; do
    value="$(grep -F "${scope}.$1=" <<<"${pip_config}" | head -n 1 | cut -d= -f2- || true)"
    [[ -n "${value}" ]] && { echo "${value}"; return; }
  done
}

serve_dir="$(mktemp -d "${TMPDIR:-/tmp}/imgclf-pip.XXXXXX")"
server_pid=""
cleanup() {
  [[ -n "${server_pid}" ]] && kill "${server_pid}" 2>/dev/null
  rm -rf "${serve_dir}"
}
trap cleanup EXIT
served=0
# reachable VAR KIND LOCATION...: sets VAR to the locations as the build sees them (local
# folders served over HTTP). KIND index serves a folder's parent too: a PEP 503 index's pages link
# to ../../files/. Not run in a subshell: it counts the served folders.
reachable() {
  local var="$1" kind="$2" location path top sub out=()
  shift 2
  for location in "$@"; do
    path="${location#file://}"
    if [[ "${location}" =~ ^https?:// ]]; then
      out+=("${location}")
    elif [[ -d "${path}" ]]; then
      top="$(cd "${path}" && pwd)" sub=""
      if [[ "${kind}" == index ]]; then
        sub="$(basename "${top}")/" top="$(dirname "${top}")"
      fi
      ln -s "${top}" "${serve_dir}/${served}"
      out+=("http://127.0.0.1:${SERVE_PORT}/${served}/${sub}")
      served=$((served + 1))
    else
      log "note: pip setting ${location} is neither a URL nor a folder; left out of the build"
    fi
  done
  printf -v "${var}" '%s' "${out[*]}"
}

build_args=(--build-arg "PYTHON_IMAGE=${base}")
index_url="" extra_index="" find_links=""
# (the settings are space-separated lists, split on purpose)
# shellcheck disable=SC2046
reachable index_url index $(pip_setting index-url)
# shellcheck disable=SC2046
reachable extra_index index $(pip_setting extra-index-url)
# shellcheck disable=SC2046
reachable find_links links $(pip_setting find-links)
mkdir "${serve_dir}/setup"
printf 'INDEX_URL=%s\nEXTRA_INDEX_URLS=%s\nFIND_LINKS=%s\n' "${index_url}" "${extra_index}" "${find_links}" \
  >"${serve_dir}/setup/setup.env"
cert="$(pip_setting cert)"
[[ -n "${cert}" && -f "${cert}" ]] && cp "${cert}" "${serve_dir}/setup/ca-bundle.crt"
python3 -m http.server --bind 127.0.0.1 --directory "${serve_dir}" "${SERVE_PORT}" >/dev/null 2>&1 &
server_pid=$!
for ((i = 0; i < 100; i++)); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', ${SERVE_PORT}), 1)" 2>/dev/null && break
  kill -0 "${server_pid}" 2>/dev/null || die "could not serve the build's pip setup on 127.0.0.1:${SERVE_PORT}; set PIP_SERVE_PORT"
  sleep 0.1
done
((SERVE_PORT == 8876)) || build_args+=(--build-arg "SETUP_PORT=${SERVE_PORT}")

for image in "${images[@]}"; do
  log "building ${PREFIX}${image}:${commit} (containers/Dockerfile, IMAGE=${image}, base ${base})"
  started=${SECONDS}
  docker build --network host --file containers/Dockerfile --build-arg "IMAGE=${image}" \
    --tag "${PREFIX}${image}:${commit}" --tag "${PREFIX}${image}:latest" \
    --label "org.opencontainers.image.revision=${commit}" "${build_args[@]}" .
  size="$(docker image inspect --format '{{.Size}}' "${PREFIX}${image}:latest")"
  log "built ${PREFIX}${image}:latest in $((SECONDS - started)) s, $((size / 1000000)) MB"
done
