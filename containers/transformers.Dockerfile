# syntax=docker/dockerfile:1
# The transformers image: Hugging Face fine-tuning on NVIDIA GPUs (torch with its CUDA
# libraries as wheels; the host brings the driver; TensorFlow, CPU build, reads the TFRecords),
# and the Vertex AI custom job launcher (GCPC) of that step.
# Build from the repository root:
#   docker build -f containers/transformers.Dockerfile -t image-classification-transformers .
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
# The dependencies in a layer of their own (an empty project): code changes keep it.
RUN mkdir components pipelines && pip install ".[tf,hf,vertex]"
COPY components ./components
COPY pipelines ./pipelines
RUN pip install --no-deps --force-reinstall . && pip check

FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --create-home --uid 1000 --user-group --shell /usr/sbin/nologin imgclf
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH HOME=/home/imgclf PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 \
    HF_HOME=/home/imgclf/.cache/huggingface
USER 1000:1000
WORKDIR /home/imgclf
# No entrypoint: KFP and Vertex AI give every step its own command.
