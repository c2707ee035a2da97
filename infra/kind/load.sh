#!/usr/bin/env bash
# make kind-load: build every step image the experiment runs in on the kfp target (the same build
# as make images-local: containers/build.sh) and load it into the kind cluster's node, where the
# kfp target runs it with imagePullPolicy IfNotPresent.
#
#   bash infra/kind/load.sh [EXPERIMENT]     # default: digits (cpu); pets also needs transformers
#
# Settings (environment): PYTHON (the project's Python: .venv/bin/python, else python3),
# PYTHON_IMAGE (the images' base, as for make images-local).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

experiment="${1:-digits}"
require_docker
require_kind

build="${REPO_ROOT}/containers/build.sh"
[[ -f "${build}" ]] || die "containers/build.sh does not exist; the step images are built with it"
cluster_exists || die "there is no kind cluster named ${CLUSTER_NAME}; run make kind-up first"
python="${PYTHON:-${REPO_ROOT}/.venv/bin/python}"
[[ -x "${python}" ]] || python="python3"

# "images.cpu image-classification-cpu:latest" lines: each config field and the image it names.
listing="$(cd "${REPO_ROOT}" && "${python}" pipelines/submit.py --experiment "${experiment}" --target kfp --images)" ||
  die "could not list the images of experiment ${experiment} (see above); make install first?"
fields=() images=()
while read -r field image; do
  [[ "${field}" == images.* ]] || continue
  fields+=("${field#images.}") images+=("${image}")
done <<<"${listing}"
((${#fields[@]})) || die "experiment ${experiment} names no step image"

log "building ${fields[*]} for experiment ${experiment} (containers/build.sh)"
bash "${build}" "${fields[@]}"
for i in "${!fields[@]}"; do
  built="${IMAGE_PREFIX:-image-classification-}${fields[i]}:latest"
  # an experiment may name the image otherwise (images.cpu=my-cpu:dev): it gets the same build
  [[ "${images[i]}" == "${built}" ]] || docker tag "${built}" "${images[i]}"
  log "loading ${images[i]} into kind cluster ${CLUSTER_NAME}"
  kind load docker-image "${images[i]}" --name "${CLUSTER_NAME}"
done
log "done: the kfp target runs experiment ${experiment} with these images (${images[*]})"
