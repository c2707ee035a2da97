# syntax=docker/dockerfile:1
# The CPU image: ingest, evaluate (keras and transformers models), compare, gate, register,
# training without an accelerator, and the Vertex AI launchers (GCPC) of those steps.
# Build from the repository root (containers/cloudbuild.yaml builds all four images):
#   docker build -f containers/cpu.Dockerfile -t image-classification-cpu .
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# Evaluating transformers models needs torch, but not its CUDA libraries: take the CPU build
# first (the hf extra's pin accepts it; keep TORCH_VERSION equal to that pin).
ARG TORCH_VERSION=2.13.0
RUN pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}"
COPY pyproject.toml README.md ./
# The dependencies in a layer of their own (an empty project): code changes keep it.
RUN mkdir components pipelines && pip install ".[tf,data,hf,export,vertex]"
COPY components ./components
COPY pipelines ./pipelines
RUN pip install --no-deps --force-reinstall . && pip check

FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --create-home --uid 1000 --user-group --shell /usr/sbin/nologin imgclf
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH HOME=/home/imgclf PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
USER 1000:1000
WORKDIR /home/imgclf
# No entrypoint: KFP and Vertex AI give every step its own command.
