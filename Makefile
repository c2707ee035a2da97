# One Makefile for people and CI. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= tf,hf,data,export,dev
EXPERIMENT ?= digits
TARGET ?= local
PYTEST_ARGS ?=
IMAGES ?=

.DEFAULT_GOAL := help
.PHONY: help install run test test-slow test-fast test-images lint format typecheck compile bench images images-local base-image clean kind-up kind-load kind-down test-kind lock serve kind-kserve kind-serve

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-$(EXTRAS): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $@

install: $(VENV)/.installed-$(EXTRAS) ## create .venv and install the project with its extras (EXTRAS=tf,hf,data,export,dev)

run: install ## run an experiment locally with kfp.local (EXPERIMENT=digits)
	$(BIN)/python pipelines/submit.py --experiment $(EXPERIMENT)

test: install ## the test suite CI runs: unit, compile, CLI, kfp.local end to end (not `slow`, not `docker`)
	$(BIN)/python -m pytest -m "not slow and not docker" $(PYTEST_ARGS)

test-images: install ## the docker tier: builds the images it needs, runs steps inside them (Docker daemon)
	$(BIN)/python -m pytest -m docker $(PYTEST_ARGS)

test-slow: install ## the slow tier: builds every keras.applications size (minutes, several GB)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test-fast: install ## the quick tier: no kfp.local pipeline runs, no large models
	$(BIN)/python -m pytest -m "not e2e and not slow" $(PYTEST_ARGS)

lint: install typecheck ## ruff lint and format check, mypy
	$(BIN)/ruff check components pipelines tests benchmarks containers
	$(BIN)/ruff format --check components pipelines tests benchmarks containers

typecheck: install ## mypy on components/, pipelines/ and containers/image_locks/ (the settings in pyproject.toml)
	$(BIN)/mypy

format: install ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix components pipelines tests benchmarks containers
	$(BIN)/ruff format components pipelines tests benchmarks containers

compile: install ## compile every experiment for every target into build/compiled/
	@for e in $$($(BIN)/python pipelines/submit.py --list | cut -d' ' -f1); do \
	  for t in local vertex kfp; do \
	    $(BIN)/python pipelines/submit.py --experiment $$e --target $$t --compile-only build/compiled/$$e.$$t.yaml || exit 1; \
	  done; \
	done

bench: install ## benchmarks, each printing ratios measured side by side in one run
	$(BIN)/python benchmarks/pipeline_overhead.py
	$(BIN)/python benchmarks/train_input.py
	$(BIN)/python benchmarks/train_hf.py
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/search.py
	$(BIN)/python benchmarks/recipes.py
	$(BIN)/python benchmarks/experiment_vs_script.py
	$(BIN)/python benchmarks/snapshot.py
	$(BIN)/python benchmarks/export.py
	$(BIN)/python benchmarks/scaling.py

LOCK_ARGS ?=

lock: install ## re-resolve containers/locks/*.txt from pyproject.toml, checking each file installs on CPython 3.11 manylinux (LOCK_ARGS="--wheels DIR" without PyTorch's page)
	$(BIN)/python -m containers.image_locks $(LOCK_ARGS)

PROJECT ?=
REGION ?= us-central1
REPOSITORY ?= imgclf

images: ## build and push the step images with Cloud Build, tagged with the git commit (PROJECT=my-project)
	@test -n "$(PROJECT)" || { echo "set PROJECT=<your Google Cloud project>"; exit 2; }
	@git diff --quiet HEAD -- components pipelines pyproject.toml || { echo "commit first: the images are tagged with the commit"; exit 2; }
	gcloud builds submit --project $(PROJECT) --config containers/cloudbuild.yaml \
	  --substitutions=_REGION=$(REGION),_REPOSITORY=$(REPOSITORY),_TAG=$$(git rev-parse HEAD) .

PYTHON_IMAGE ?=

base-image: ## build a Python 3.11 bookworm base image from Debian packages (debootstrap; root), where the pinned base cannot be pulled
	bash containers/base-image.sh

images-local: ## build the four step images with the local Docker daemon: image-classification-<name>:<commit> and :latest (IMAGES="cpu gpu")
	PYTHON_IMAGE=$(PYTHON_IMAGE) bash containers/build.sh $(IMAGES)

MODEL ?=
PORT ?= 8080

serve: install ## serve a registered model on localhost with the KServe v1 protocol (MODEL=<name>: runs/registry/<name>, its champion; PORT=8080)
	@test -n "$(MODEL)" || { echo "set MODEL=<registered name> (a folder of runs/registry), e.g. make serve MODEL=digits-classifier"; exit 2; }
	$(BIN)/python -m components.serve --model runs/registry/$(MODEL) --port $(PORT)

KFP_HOST ?= http://localhost:8080

kind-up: ## create the kind cluster with KFP standalone (the SDK's version); UI and API on localhost:8080
	bash infra/kind/up.sh

kind-load: ## build the images the experiment runs in (containers/build.sh) and load them into the kind cluster (EXPERIMENT=digits)
	PYTHON_IMAGE=$(PYTHON_IMAGE) bash infra/kind/load.sh $(EXPERIMENT)

kind-kserve: ## install KServe (RawDeployment, with cert-manager) on the kind cluster, for kind-serve
	bash infra/kind/kserve.sh

kind-serve: ## serve the champion of EXPERIMENT's registered model on kind (KServe InferenceService), port-forwarded to localhost:8081
	bash infra/kind/serve.sh $(EXPERIMENT)

kind-down: ## stop the port-forward and delete the kind cluster
	bash infra/kind/down.sh

test-kind: install ## integration test on the kind cluster (after kind-up and kind-load)
	KFP_HOST=$(KFP_HOST) $(BIN)/python -m pytest -m kind tests/integration $(PYTEST_ARGS)

clean: ## remove build outputs and local runs (keeps .venv and the model registry runs/registry)
	rm -rf build .pytest_cache .ruff_cache .mypy_cache
	@if [ -d runs ]; then find runs -mindepth 1 -maxdepth 1 ! -name registry -exec rm -rf {} +; fi
	@if [ -d runs/registry ]; then echo "kept runs/registry (the registered models); rm -rf runs/registry to delete them"; fi
