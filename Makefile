# One Makefile for people and CI. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS ?= tf,dev
EXPERIMENT ?= digits
TARGET ?= local
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run test test-fast lint format typecheck compile bench clean

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-$(EXTRAS): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	@touch $@

install: $(VENV)/.installed-$(EXTRAS) ## create .venv and install the project with its extras (EXTRAS=tf,dev)

run: install ## run an experiment locally with kfp.local (EXPERIMENT=digits)
	$(BIN)/python pipelines/submit.py --experiment $(EXPERIMENT)

test: install ## run the whole test suite (unit, components, pipelines, kfp.local end to end)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install ## run the tests that need no training run
	$(BIN)/python -m pytest -m "not e2e" $(PYTEST_ARGS)

lint: install ## ruff lint and format check, mypy
	$(BIN)/ruff check components pipelines tests benchmarks
	$(BIN)/ruff format --check components pipelines tests benchmarks
	$(BIN)/mypy

format: install ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix components pipelines tests benchmarks
	$(BIN)/ruff format components pipelines tests benchmarks

compile: install ## compile every experiment for every target into build/compiled/
	@for e in $$($(BIN)/python pipelines/submit.py --list | cut -d' ' -f1); do \
	  for t in local vertex kfp; do \
	    $(BIN)/python pipelines/submit.py --experiment $$e --target $$t --compile-only build/compiled/$$e.$$t.yaml || exit 1; \
	  done; \
	done

bench: install ## benchmarks: kfp.local overhead vs the same steps in one process
	$(BIN)/python benchmarks/pipeline_overhead.py

clean: ## remove build outputs and local runs (keeps .venv)
	rm -rf build runs .pytest_cache .ruff_cache .mypy_cache
