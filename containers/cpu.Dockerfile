# syntax=docker/dockerfile:1
# The CPU image: ingest, evaluate (keras and transformers models), compare, gate, register,
# training without an accelerator, and the Vertex AI launchers (GCPC) of those steps.
# Build from the repository root (containers/cloudbuild.yaml builds all four images):
#   docker build -f containers/cpu.Dockerfile -t image-classification-cpu .
# The base image by digest (a tag can be pushed again); README, "Images", says how to refresh it.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm@sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# Every dependency at the version and sha256 of containers/locks/cpu.txt (make lock), in a
# layer of its own that code changes keep; pip refuses any file the lock does not list.
COPY containers/locks/cpu.txt ./requirements.lock
RUN pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY components ./components
COPY pipelines ./pipelines
# The project alone, built with the locked setuptools: nothing else is fetched.
RUN pip install --no-deps --no-build-isolation . && pip check

FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --create-home --uid 1000 --user-group --shell /usr/sbin/nologin imgclf
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH HOME=/home/imgclf PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
USER 1000:1000
WORKDIR /home/imgclf
# No entrypoint: KFP and Vertex AI give every step its own command.
