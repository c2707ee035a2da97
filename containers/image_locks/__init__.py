"""Locked, hash-checked dependencies of the step images: `make lock` writes them, tests check them.

`containers/Dockerfile` builds every image in three locked layers, each installed exactly
(`uv pip sync --require-hashes`: no resolution against the index at build time, every file checked
against its sha256, anything not listed removed) and then checked (`uv pip check`), so an
incomplete lock fails the build with the missing name:

- `installer.txt`: the installer itself, uv, at the version the dev extra pins (the one `make lock`
  and the lock tests run), bootstrapped by the base image's pip with `--no-deps --require-hashes`;
- `common.txt`: what every image has (the project's dependencies, the vertex extra, the build
  requirements), one layer shared by the four images;
- `<image>.txt`: the image's whole environment, resolved with `common.txt`'s pins as constraints, so
  its layer on top of the shared one adds the framework stack only.

Each lock is resolved by `uv pip compile` from pyproject.toml for the base image's Python and
platform. Its header records a digest of those inputs; `python -m containers.image_locks --check`
(and the tests) compare it with pyproject.toml as it is now, without the network, and say to run
`make lock` when they differ.

Modules: `inputs` (what each lock is resolved from, and its header), `lockfile` (a lock read and
checked against pyproject.toml), `wheels` (which files of an index the base image's pip installs),
`resolve` (`uv pip compile`, repeated until every pin installs), `cli` (`make lock`, `--check`).
"""
