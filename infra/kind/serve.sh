#!/usr/bin/env bash
# make kind-serve: serve an experiment's registered model on the kind cluster with KServe (after
# make kind-kserve and a kfp run that registered it), then port-forward it to localhost.
#
#   bash infra/kind/serve.sh [EXPERIMENT] [VERSION]   # default: digits, its champion
#
# Writes the InferenceService (python -m pipelines.serving) to build/kind/<experiment>.isvc.yaml,
# applies it, waits until it is Ready and port-forwards its predictor to
# http://localhost:${SERVE_PORT:-8081}.
#
# Settings (environment): PYTHON (.venv/bin/python, else python3), SERVE_PORT (8081),
# KSERVE_WAIT_TIMEOUT (10m).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

experiment="${1:-digits}"
version="${2:-}"
port="${SERVE_PORT:-8081}"
wait="${KSERVE_WAIT_TIMEOUT:-10m}"
require_kubectl
cluster_exists || die "there is no kind cluster named ${CLUSTER_NAME}; run make kind-up first"
python="${PYTHON:-${REPO_ROOT}/.venv/bin/python}"
[[ -x "${python}" ]] || python="python3"

mkdir -p "${STATE_DIR}"
manifest="${STATE_DIR}/${experiment}.isvc.yaml"
args=(--experiment "${experiment}" --output "${manifest}")
[[ -z "${version}" ]] || args+=(--version "${version}")
(cd "${REPO_ROOT}" && "${python}" -m pipelines.serving "${args[@]}") ||
  die "could not write the InferenceService of experiment ${experiment} (see above)"
name="$(sed -n 's/^  name: //p' "${manifest}" | head -n 1)"

log "applying ${manifest} (InferenceService ${name})"
kctl apply -f "${manifest}"
if ! kctl -n "${KFP_NAMESPACE}" wait --for=condition=Ready "inferenceservice/${name}" --timeout="${wait}"; then
  kctl -n "${KFP_NAMESPACE}" get pods -l "serving.kserve.io/inferenceservice=${name}" >&2 || true
  die "InferenceService ${name} was not Ready within ${wait}; look at its pods above" \
    "(ErrImagePull: make kind-load; a crash: kubectl logs)"
fi
log "port-forwarding ${name}'s predictor to localhost:${port} (Ctrl-C stops it)"
cat >&2 <<DONE
  curl http://localhost:${port}/v1/models/${name}
  .venv/bin/python -m components.serve.check --url http://127.0.0.1:${port}/v1/models/${name} \\
    --dataset DATASET_DIR --predictions PREDICTIONS_DIR
DONE
kctl -n "${KFP_NAMESPACE}" port-forward "service/${name}-predictor" "${port}:80"
