#!/usr/bin/env bash
# make kind-up: a kind cluster running KFP standalone (the version in common.sh), its UI and API
# port-forwarded to http://localhost:${KFP_UI_PORT:-8080}, and the volumes our pipelines mount.
# Safe to re-run: it reuses the cluster, re-applies the manifests and restarts the port-forward.
#
# Settings (environment): KIND_CLUSTER_NAME (imgclf), KFP_UI_PORT (8080), KFP_WAIT_TIMEOUT (20m).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

require_docker
require_kind
require_kubectl
require git "kubectl apply -k fetches the KFP manifests from GitHub with git"
require curl "it checks that the KFP API answers"

if cluster_exists; then
  log "kind cluster ${CLUSTER_NAME} exists; reusing it"
else
  log "creating kind cluster ${CLUSTER_NAME}"
  kind create cluster --name "${CLUSTER_NAME}" --config "${KIND_DIR}/cluster.yaml" --wait 180s
fi

log "installing KFP ${KFP_VERSION}: cluster-scoped resources"
retry 3 kctl apply -k "${KFP_MANIFESTS}/cluster-scoped-resources?ref=${KFP_VERSION}"
kctl wait --for condition=established --timeout=120s crd/applications.app.k8s.io
log "installing KFP ${KFP_VERSION}: API server, UI, Argo Workflows, MySQL, SeaweedFS"
retry 3 kctl apply -k "${KFP_MANIFESTS}/env/platform-agnostic?ref=${KFP_VERSION}"
log "letting Argo retry the failed pods of retried steps only (workflow-controller-retry-patch.yaml)"
kctl -n "${KFP_NAMESPACE}" patch configmap workflow-controller-configmap --type merge \
  --patch-file "${KIND_DIR}/workflow-controller-retry-patch.yaml"
log "creating the volumes our pipelines mount (storage.yaml)"
kctl apply -f "${KIND_DIR}/storage.yaml"

log "waiting up to ${WAIT_TIMEOUT} for every KFP deployment (the first start pulls its images)"
if ! kctl -n "${KFP_NAMESPACE}" wait --for=condition=Available deployment --all \
  --timeout="${WAIT_TIMEOUT}"; then
  kctl -n "${KFP_NAMESPACE}" get pods >&2 || true
  die "KFP did not become ready within ${WAIT_TIMEOUT}; look at the pods above" \
    "(kubectl --context ${KUBE_CONTEXT} -n ${KFP_NAMESPACE} describe pod NAME), then run make kind-up" \
    "again, or raise KFP_WAIT_TIMEOUT on a slow network"
fi
bash "${KIND_DIR}/trainer.sh" # Kubeflow Trainer, with KIND_TRAINER=1 (trainer.sh)

stop_port_forward
mkdir -p "${STATE_DIR}"
log "port-forwarding the KFP UI and API to localhost:${UI_PORT}"
nohup kubectl --context "${KUBE_CONTEXT}" -n "${KFP_NAMESPACE}" port-forward \
  svc/ml-pipeline-ui "${UI_PORT}:80" >"${PORT_FORWARD_LOG}" 2>&1 &
echo "$!" >"${PORT_FORWARD_PID}"

healthz="http://localhost:${UI_PORT}/apis/v2beta1/healthz"
for ((i = 0; i < 90; i++)); do
  if curl -fsS --max-time 5 "${healthz}" >/dev/null 2>&1; then
    cat >&2 <<DONE

KFP ${KFP_VERSION} is up: UI and API at http://localhost:${UI_PORT}
  make kind-load     # build the images of EXPERIMENT (digits: ${CPU_IMAGE}) and load them into the cluster
  .venv/bin/python pipelines/submit.py --experiment digits --target kfp --host http://localhost:${UI_PORT} --wait
  make kind-down     # stop the port-forward and delete the cluster
The port-forward runs in the background (pid $(cat "${PORT_FORWARD_PID}"), log ${PORT_FORWARD_LOG});
if the API stops answering, run make kind-up again: it only restarts what is missing.
DONE
    exit 0
  fi
  if ! kill -0 "$(cat "${PORT_FORWARD_PID}")" 2>/dev/null; then
    die "the port-forward to localhost:${UI_PORT} stopped: $(tail -n 3 "${PORT_FORWARD_LOG}");" \
      "if the port is taken, choose another with KFP_UI_PORT=8081 make kind-up"
  fi
  sleep 2
done
die "the KFP API does not answer at ${healthz} after 3 minutes; see ${PORT_FORWARD_LOG} and" \
  "kubectl --context ${KUBE_CONTEXT} -n ${KFP_NAMESPACE} get pods"
