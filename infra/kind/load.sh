#!/usr/bin/env bash
# make kind-load: build the CPU step image from containers/cpu.Dockerfile and load it into the
# kind cluster's node, where the kfp target runs it with imagePullPolicy IfNotPresent.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

require_docker
require_kind

dockerfile="${REPO_ROOT}/containers/cpu.Dockerfile"
[[ -f "${dockerfile}" ]] ||
  die "containers/cpu.Dockerfile does not exist; the CPU step image is built from it"
cluster_exists || die "there is no kind cluster named ${CLUSTER_NAME}; run make kind-up first"

log "building ${CPU_IMAGE} from containers/cpu.Dockerfile"
docker build --file "${dockerfile}" --tag "${CPU_IMAGE}" "${REPO_ROOT}"
log "loading ${CPU_IMAGE} into kind cluster ${CLUSTER_NAME}"
kind load docker-image "${CPU_IMAGE}" --name "${CLUSTER_NAME}"
log "done: experiments that keep the default images.cpu run on the cluster"
