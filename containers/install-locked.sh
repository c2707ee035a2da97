#!/bin/sh
# Installs a lock of containers/locks/ exactly, inside an image build (containers/Dockerfile):
#
#   install-locked.sh installer        # uv into /opt/installer, by hash, with the base's pip
#   install-locked.sh sync LOCK        # /opt/venv holds exactly LOCK's pins, checked
#   install-locked.sh wheel DIR        # the project's wheels of DIR, without dependencies
#
# Nothing is resolved against an index here: every file is one the lock names, checked against
# its sha256 (`--require-hashes`); `uv pip sync` removes anything the lock does not list, and
# `uv pip check` fails the build, naming it, when a pinned distribution needs one that is absent.
#
# The build machine's package setup (index URLs, find-links, a CA bundle for a TLS proxy) is read
# for the length of one command from containers/build.sh's server on 127.0.0.1 (the build runs on
# the host's network) and deleted with that command, so no layer, no history line and no
# environment variable of the image holds it. Without that server (a plain `docker build`),
# PyPI and the base image's CA certificates are used, and PyTorch's wheel page for the CPU torch.
set -eu

SETUP_PORT="${SETUP_PORT:-8876}"
TORCH_WHEELS="https://download.pytorch.org/whl/torch/"
VENV=/opt/venv
UV=/opt/installer/bin/uv

setup="$(mktemp -d)"
trap 'rm -rf "${setup}"' EXIT
python3 - "${setup}" "${SETUP_PORT}" <<'PY'
import pathlib, sys, urllib.request

folder, port = pathlib.Path(sys.argv[1]), sys.argv[2]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
for name in ("setup.env", "ca-bundle.crt"):
    try:
        with opener.open(f"http://127.0.0.1:{port}/setup/{name}", timeout=10) as answer:
            (folder / name).write_bytes(answer.read())
    except OSError:
        pass  # no build server: the defaults
PY
INDEX_URL="" EXTRA_INDEX_URLS="" FIND_LINKS=""
# setup.env: INDEX_URL=, EXTRA_INDEX_URLS=, FIND_LINKS= lines (space-separated URLs), no quoting
if [ -f "${setup}/setup.env" ]; then
  INDEX_URL="$(sed -n 's/^INDEX_URL=//p' "${setup}/setup.env")"
  EXTRA_INDEX_URLS="$(sed -n 's/^EXTRA_INDEX_URLS=//p' "${setup}/setup.env")"
  FIND_LINKS="$(sed -n 's/^FIND_LINKS=//p' "${setup}/setup.env")"
fi
FIND_LINKS="${FIND_LINKS:-${TORCH_WHEELS}}"
if [ -f "${setup}/ca-bundle.crt" ]; then
  export SSL_CERT_FILE="${setup}/ca-bundle.crt" PIP_CERT="${setup}/ca-bundle.crt"
fi
[ -n "${INDEX_URL}" ] && export PIP_INDEX_URL="${INDEX_URL}" UV_INDEX_URL="${INDEX_URL}"
[ -n "${EXTRA_INDEX_URLS}" ] && export PIP_EXTRA_INDEX_URL="${EXTRA_INDEX_URLS}" UV_EXTRA_INDEX_URL="${EXTRA_INDEX_URLS}"
export PIP_FIND_LINKS="${FIND_LINKS}" UV_FIND_LINKS="${FIND_LINKS}"
# Every index may be asked for every file (pip's rule): the hashes, not the index, decide.
export UV_INDEX_STRATEGY=unsafe-best-match UV_NO_CACHE=1 UV_PYTHON_DOWNLOADS=never
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

case "${1:-}" in
  installer)
    python3 -m venv /opt/installer
    /opt/installer/bin/pip install --quiet --no-deps --require-hashes -r /opt/locks/installer.txt
    # the base image's pip stays in the installer's venv only; the steps' venv has no pip
    "${UV}" venv --quiet --python "$(command -v python3)" "${VENV}"
    ;;
  sync)
    lock="$2"
    # An sdist in the lock (kfp-server-api) is built with the lock's own setuptools and wheel,
    # installed first: no build environment is resolved from the index.
    build_lock="${setup}/build.txt"
    python3 - "${lock}" "${build_lock}" <<'PY'
import re, sys

text = open(sys.argv[1]).read()
blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
wanted = [b for b in blocks if re.match(r"(setuptools|wheel)==", b, re.IGNORECASE)]
open(sys.argv[2], "w").write("\n".join(b.split("\n    #")[0] for b in wanted) + "\n")
PY
    "${UV}" pip install --quiet --python "${VENV}/bin/python" --no-deps --require-hashes -r "${build_lock}"
    # The find-links are there for the local-version builds a lock pins (torch==X+cpu, not on
    # PyPI). uv takes a find-links `torch==X+cpu` for a lock's `torch==X` (PEP 440 matches it) and
    # then refuses its hash, so a lock without such a pin installs from the indexes alone.
    grep -Eq '^[A-Za-z0-9._-]+==[^ ]+\+' "${lock}" || unset PIP_FIND_LINKS UV_FIND_LINKS
    "${UV}" pip sync --quiet --python "${VENV}/bin/python" --require-hashes --no-build-isolation "${lock}"
    "${UV}" pip check --python "${VENV}/bin/python"
    ;;
  wheel)
    "${UV}" pip install --quiet --python "${VENV}/bin/python" --no-deps --no-index "$2"/*.whl
    "${UV}" pip check --python "${VENV}/bin/python"
    ;;
  *)
    echo "usage: install-locked.sh installer | sync LOCK | wheel DIR" >&2
    exit 2
    ;;
esac
