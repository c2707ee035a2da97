# The TPU image: keras training on Cloud TPU slices (TensorFlow's TPU build with libtpu), and
# the Vertex AI custom job launcher (GCPC) of that step.
# Build from the repository root: `make images-local` builds all four (containers/build.sh, which
# passes the machine's pip setup and the base image), or by hand with the legacy builder too:
#   DOCKER_BUILDKIT=0 docker build --network host -f containers/tpu.Dockerfile -t image-classification-tpu .
# The base image by digest (a tag can be pushed again); README, "Images", says how to refresh it.
# Where it cannot be pulled, `make base-image` builds one from Debian packages (PYTHON_IMAGE=...).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm@sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5

# deps: the locked dependencies in the image's own venv. The final stage builds on this one, so
# its largest layer is written once and never copied between stages.
FROM ${PYTHON_IMAGE} AS deps
# uid 1000, as KFP and Vertex AI run a step when the pod sets no other user.
RUN useradd --create-home --uid 1000 --user-group --shell /usr/sbin/nologin imgclf
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
# The builder's pip setup, empty unless given (--build-arg; containers/build.sh passes the
# machine's): an index, extra indexes, wheel folders or pages, and a CA bundle for a TLS proxy,
# which build.sh copies into containers/pip/ (PIP_CERT=/opt/pip-setup/<file>). They only say
# where files come from: the lock's hashes decide which files are accepted.
ARG PIP_INDEX_URL=
ARG PIP_EXTRA_INDEX_URL=
ARG PIP_FIND_LINKS=
ARG PIP_CERT=
COPY containers/pip /opt/pip-setup
# Every dependency at the version and sha256 of containers/locks/tpu.txt (make lock), in a
# layer of its own that code changes keep; pip refuses any file the lock does not list.
COPY containers/locks/tpu.txt /opt/requirements.lock
RUN pip install --require-hashes -r /opt/requirements.lock

# build: the project's wheel, built with the locked setuptools (nothing else is fetched).
FROM deps AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY components ./components
COPY pipelines ./pipelines
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /dist .

# runtime: the deps stage and the project's wheel, no sources.
FROM deps AS runtime
COPY --from=build /dist /tmp/dist
RUN pip install --no-deps /tmp/dist/*.whl && pip check && rm -rf /tmp/dist
ENV HOME=/home/imgclf PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
USER 1000:1000
WORKDIR /home/imgclf
# No entrypoint: KFP and Vertex AI give every step its own command.
