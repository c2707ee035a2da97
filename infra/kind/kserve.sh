#!/usr/bin/env bash
# make kind-kserve: KServe on the kind cluster, in RawDeployment mode (a Deployment and a Service
# per InferenceService: no Knative, no Istio), for make kind-serve. Safe to re-run.
#
# Installs cert-manager (KServe's webhook certificates), then KServe's controller and CRDs and its
# cluster resources (kserve.yaml, kserve-cluster-resources.yaml of the release below), and sets
# KServe's defaults: deployment mode RawDeployment, no Ingress objects (nothing serves them on
# kind; make kind-serve port-forwards the predictor's Service instead).
#
# Settings (environment): KSERVE_WAIT_TIMEOUT (10m).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

CERT_MANAGER_VERSION="v1.16.2"
KSERVE_VERSION="v0.15.2"
KSERVE_RELEASE="https://github.com/kserve/kserve/releases/download/${KSERVE_VERSION}"
KSERVE_NAMESPACE="kserve"
KSERVE_WAIT="${KSERVE_WAIT_TIMEOUT:-10m}"

require_kubectl
cluster_exists || die "there is no kind cluster named ${CLUSTER_NAME}; run make kind-up first"

log "installing cert-manager ${CERT_MANAGER_VERSION}"
retry 3 kctl apply -f \
  "https://github.com/cert-manager/cert-manager/releases/download/${CERT_MANAGER_VERSION}/cert-manager.yaml"
if ! kctl -n cert-manager wait --for=condition=Available deployment --all --timeout="${KSERVE_WAIT}"; then
  kctl -n cert-manager get pods >&2 || true
  die "cert-manager did not become ready within ${KSERVE_WAIT}; look at the pods above, then run" \
    "make kind-kserve again"
fi

# KServe's webhook needs cert-manager's to answer first: the first apply may fail, hence retry.
log "installing KServe ${KSERVE_VERSION}: controller and CRDs"
retry 5 kctl apply --server-side -f "${KSERVE_RELEASE}/kserve.yaml"
kctl wait --for condition=established --timeout=120s crd/inferenceservices.serving.kserve.io
if ! kctl -n "${KSERVE_NAMESPACE}" wait --for=condition=Available deployment --all \
  --timeout="${KSERVE_WAIT}"; then
  kctl -n "${KSERVE_NAMESPACE}" get pods >&2 || true
  die "KServe did not become ready within ${KSERVE_WAIT}; look at the pods above, then run" \
    "make kind-kserve again"
fi
log "installing KServe's cluster resources (serving runtimes)"
retry 5 kctl apply --server-side -f "${KSERVE_RELEASE}/kserve-cluster-resources.yaml"

log "setting KServe's defaults: RawDeployment, no Ingress"
ingress="$(kctl -n "${KSERVE_NAMESPACE}" get configmap inferenceservice-config -o jsonpath='{.data.ingress}')"
[[ -n "${ingress}" ]] || die "inferenceservice-config in ${KSERVE_NAMESPACE} has no ingress settings;" \
  "is KServe ${KSERVE_VERSION} installed? Run make kind-kserve again"
ingress="$(sed -E 's/"disableIngressCreation"[[:space:]]*:[[:space:]]*false/"disableIngressCreation": true/' <<<"${ingress}")"
patch="$(
  INGRESS="${ingress}" "${PYTHON:-python3}" -c 'import json, os; print(json.dumps({"data": {
    "deploy": json.dumps({"defaultDeploymentMode": "RawDeployment"}),
    "ingress": os.environ["INGRESS"]}}))'
)"
kctl -n "${KSERVE_NAMESPACE}" patch configmap inferenceservice-config --type merge -p "${patch}"
# the controller reads its configuration when it starts
kctl -n "${KSERVE_NAMESPACE}" rollout restart deployment kserve-controller-manager
kctl -n "${KSERVE_NAMESPACE}" rollout status deployment kserve-controller-manager --timeout="${KSERVE_WAIT}"

cat >&2 <<DONE

KServe ${KSERVE_VERSION} is up (RawDeployment). Serve an experiment's registered model:
  make kind-serve EXPERIMENT=digits     # its champion on the registry volume, in ${CPU_IMAGE}
DONE
