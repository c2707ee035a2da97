#!/usr/bin/env bash
# make base-image: a Python 3.11 Debian bookworm base image built from Debian packages, for
# machines that cannot pull the pinned python:3.11-slim-bookworm (an air-gapped network, a
# registry mirror that lacks it). debootstrap fetches bookworm from the apt mirror this machine
# is configured with (or DEBIAN_MIRROR); `docker import` turns the tree into an image, which
# `make images-local PYTHON_IMAGE=...` then builds on. Needs root (debootstrap) and Docker.
#
# Settings (environment): BASE_IMAGE (image-classification-python:3.11-bookworm),
# DEBIAN_MIRROR (the first http(s) Debian mirror in /etc/apt), DEBIAN_SUITE (bookworm).
set -euo pipefail

image="${BASE_IMAGE:-image-classification-python:3.11-bookworm}"
suite="${DEBIAN_SUITE:-bookworm}"

die() {
  echo "error: $*" >&2
  exit 1
}

# The mirror apt already uses here: deb822 "URIs:" lines first, then one-line "deb" entries.
configured_mirror() {
  local files=() file
  for file in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f "${file}" ]] && files+=("${file}")
  done
  ((${#files[@]})) || return 0
  {
    awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' "${files[@]}"
    awk '/^deb / {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; break}}' "${files[@]}"
  } | grep -E '/debian/?$' | head -n 1 || true
}

mirror="${DEBIAN_MIRROR:-$(configured_mirror)}"
mirror="${mirror:-http://deb.debian.org/debian}"
command -v debootstrap >/dev/null 2>&1 || die "debootstrap is not installed (apt-get install debootstrap)"
command -v docker >/dev/null 2>&1 || die "docker is not installed"
docker info >/dev/null 2>&1 || die "the Docker daemon does not answer (docker info failed); start it and retry"
[[ "$(id -u)" == 0 ]] || die "debootstrap needs root: run as root (or with sudo)"

rootfs="$(mktemp -d "${TMPDIR:-/tmp}/imgclf-rootfs.XXXXXX")"
trap 'rm -rf "${rootfs}"' EXIT

echo "==> debootstrap ${suite} from ${mirror} (python3, python3-venv)" >&2
# minbase: apt, dpkg, coreutils and passwd (useradd), no init system; python-is-python3
# gives `python` like the official image; ca-certificates lets pip verify TLS.
debootstrap --variant=minbase \
  --include=python3,python3-venv,python-is-python3,ca-certificates \
  "${suite}" "${rootfs}" "${mirror}" >&2
chroot "${rootfs}" python3 -c 'import sys, venv; assert sys.version_info[:2] == (3, 11), sys.version'
# The same sources the image's apt would use, and no caches in the image.
echo "deb ${mirror} ${suite} main" >"${rootfs}/etc/apt/sources.list"
rm -rf "${rootfs}"/var/lib/apt/lists/* "${rootfs}"/var/cache/apt/*.bin "${rootfs}"/var/cache/apt/archives/*.deb \
  "${rootfs}"/var/log/* "${rootfs}"/tmp/*

echo "==> docker import as ${image}" >&2
tar --numeric-owner -C "${rootfs}" -c . |
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "Python 3.11, Debian ${suite}, debootstrap from ${mirror}" \
    - "${image}" >/dev/null
docker run --rm --network none "${image}" python -c 'import sys; print("python", sys.version.split()[0])' >&2
echo "${image}"
