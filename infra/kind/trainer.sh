#!/usr/bin/env bash
# Kubeflow Trainer v2 on the kind cluster, for experiments that train a candidate on several
# nodes (resources.kfp.replica_count > 1: the train step starts a TrainJob). make kind-up runs
# this; it installs only when asked: KIND_TRAINER=1 make kind-up. Safe to re-run.
#
# Installs the Trainer controller, its CRDs and JobSet (manifests/overlays/manager at the tag
# below), then trainer.yaml: our torch-distributed TrainingRuntime, the volume a train step
# shares with its TrainJob, and the pipeline runner's permission to manage TrainJobs.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if [[ "${KIND_TRAINER:-0}" != "1" ]]; then
  exit 0
fi

TRAINER_VERSION="v2.3.0"
TRAINER_MANIFESTS="github.com/kubeflow/trainer.git/manifests"
TRAINER_NAMESPACE="kubeflow-system"

require_kubectl
log "installing Kubeflow Trainer ${TRAINER_VERSION}: controller, CRDs, JobSet"
retry 3 kctl apply --server-side -k "${TRAINER_MANIFESTS}/overlays/manager?ref=${TRAINER_VERSION}"
kctl wait --for condition=established --timeout=120s \
  crd/trainjobs.trainer.kubeflow.org crd/trainingruntimes.trainer.kubeflow.org
if ! kctl -n "${TRAINER_NAMESPACE}" wait --for=condition=Available deployment --all \
  --timeout="${WAIT_TIMEOUT}"; then
  kctl -n "${TRAINER_NAMESPACE}" get pods >&2 || true
  die "Kubeflow Trainer did not become ready within ${WAIT_TIMEOUT}; look at the pods above," \
    "then run KIND_TRAINER=1 make kind-up again"
fi
# The runtime is checked by Trainer's webhook, which may answer only seconds after its pod is up.
log "creating the TrainingRuntime, the training volume and the runner's role (trainer.yaml)"
retry 3 kctl apply --server-side -f "${KIND_DIR}/trainer.yaml"
