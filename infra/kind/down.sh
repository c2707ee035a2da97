#!/usr/bin/env bash
# make kind-down: stop the port-forward of up.sh and delete the kind cluster (KFP, its runs and
# the registry volume with it).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

stop_port_forward
require_kind
if cluster_exists; then
  log "deleting kind cluster ${CLUSTER_NAME}"
  kind delete cluster --name "${CLUSTER_NAME}"
else
  log "there is no kind cluster named ${CLUSTER_NAME}; nothing to delete"
fi
