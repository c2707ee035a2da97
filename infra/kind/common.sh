# shellcheck shell=bash disable=SC2034  # the variables are used by the scripts that source this file
# Settings and helpers of the kind scripts (up.sh, load.sh, down.sh); sourced, not run.

# The KFP release installed on the cluster. Keep it equal to the kfp SDK pinned in pyproject.toml:
# tests/pipelines/test_kfp_infra.py fails when they differ. This is the only place it is written.
KFP_VERSION="2.17.0"
KFP_MANIFESTS="github.com/kubeflow/pipelines/manifests/kustomize"
KFP_NAMESPACE="kubeflow"

# The image the experiments' `images.cpu` names by default (pipelines/config/schema.py, Images.cpu);
# load.sh builds and loads every image an experiment names, this one included.
CPU_IMAGE="image-classification-cpu:latest"

CLUSTER_NAME="${KIND_CLUSTER_NAME:-imgclf}"
KUBE_CONTEXT="kind-${CLUSTER_NAME}"
UI_PORT="${KFP_UI_PORT:-8080}"
WAIT_TIMEOUT="${KFP_WAIT_TIMEOUT:-20m}"

KIND_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${KIND_DIR}/../.." && pwd)"
STATE_DIR="${KIND_STATE_DIR:-${REPO_ROOT}/build/kind}"
PORT_FORWARD_PID="${STATE_DIR}/port-forward.pid"
PORT_FORWARD_LOG="${STATE_DIR}/port-forward.log"

die() {
  echo "error: $*" >&2
  exit 1
}

log() {
  echo "==> $*" >&2
}

# require TOOL WHAT-TO-DO: stop before doing anything when TOOL is not on PATH.
require() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is not installed (or not on PATH); $2"
}

require_docker() {
  require docker "install Docker Engine or Docker Desktop: https://docs.docker.com/get-docker/"
  docker info >/dev/null 2>&1 ||
    die "docker is installed but its daemon does not answer (docker info failed); start Docker and retry"
}

require_kind() {
  require kind "install kind: https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
}

require_kubectl() {
  require kubectl "install kubectl: https://kubernetes.io/docs/tasks/tools/"
}

# kubectl on our cluster only, whatever the current context is.
kctl() {
  kubectl --context "${KUBE_CONTEXT}" "$@"
}

cluster_exists() {
  kind get clusters 2>/dev/null | grep -qx "${CLUSTER_NAME}"
}

# retry N COMMAND...: the KFP manifests sometimes need a second apply while CRDs register.
retry() {
  local attempts="$1" attempt=1
  shift
  until "$@"; do
    if ((attempt >= attempts)); then
      return 1
    fi
    log "attempt ${attempt} of ${attempts} failed; retrying in 10 s"
    attempt=$((attempt + 1))
    sleep 10
  done
}

# Stop the port-forward that up.sh started (only that process: its pid file and command line).
stop_port_forward() {
  [[ -f "${PORT_FORWARD_PID}" ]] || return 0
  local pid
  pid="$(cat "${PORT_FORWARD_PID}")"
  if [[ "${pid}" =~ ^[0-9]+$ ]] && kill -0 "${pid}" 2>/dev/null &&
    ps -p "${pid}" -o args= | grep -q "port-forward"; then
    log "stopping the port-forward (pid ${pid})"
    kill "${pid}"
  fi
  rm -f "${PORT_FORWARD_PID}"
}
