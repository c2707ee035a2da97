"""The step images: one Dockerfile builds the four; each image installs the extras of the steps
that run in it (pipelines.targets.vertex.images.STEP_EXTRAS and IMAGE_STEPS say which) from
hash-checked locks (containers/image_locks) in a shared layer and its own, exactly, on a base image
pinned by digest, in stages, as a non-root user; and the steps' modules import nothing those
extras lack."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from containers.image_locks import cli, inputs, lockfile
from pipelines.config import Images
from pipelines.targets.vertex.images import EXTRA_BUILDS, IMAGE_STEPS, STEP_EXTRAS, image_extras

tomllib = pytest.importorskip("tomllib")

REPO = Path(__file__).resolve().parents[2]
CONTAINERS = REPO / "containers"
IMAGES = sorted(IMAGE_STEPS)
# Extras the Dockerfiles use that pyproject.toml does not declare yet (handed over with issue 7:
# tf-gpu and tf-tpu are TensorFlow's GPU and TPU builds, data holds tfds and datasets). Empty this
# once they are declared; the test below says when.
PENDING_EXTRAS: set[str] = set()
# Top-level modules of the project's own dependencies, and the extra of every other one.
# (google_crc32c comes with kfp, through google-cloud-storage.)
BASE_MODULES = {
    "numpy",
    "PIL",
    "sklearn",
    "matplotlib",
    "pydantic",
    "yaml",
    "kfp",
    "kubernetes",  # kfp's own dependency: the train step's TrainJob client (kfp target)
    "google_crc32c",
    "optuna",
}
MODULE_EXTRAS = {
    "tensorflow": "tf",
    "keras": "tf",
    "tensorflow_datasets": "data",
    "datasets": "data",
    "huggingface_hub": "data",
    "torch": "hf",
    "transformers": "hf",
    "safetensors": "hf",
    "tensorboardX": "hf",
    "google": "vertex",
    "google_cloud_pipeline_components": "vertex",
    "onnx": "export",
    "onnxruntime": "export",
    "tf2onnx": "export",
    "ai_edge_litert": "export",
    "fastapi": "serve",
    "starlette": "serve",
    "uvicorn": "serve",
    "mlflow": "tracking",
}
STEP_PACKAGES = {
    "ingest": "ingest",
    "train": "train",
    "evaluate": "evaluate",
    "compare": "compare",
    "export": "export",
    "search": "search",
    "serve": "serve",
    "track": "track",
}


DOCKERFILE = CONTAINERS / "Dockerfile"
INSTALL_SCRIPT = CONTAINERS / "install-locked.sh"


def dockerfile(image: str | None = None) -> str:
    """The Dockerfile, with its IMAGE argument set to `image` where given."""
    text = DOCKERFILE.read_text()
    return text.replace("${IMAGE}", image) if image else text


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def installed_extras(image: str) -> set[str]:
    """The extras an image gets: those its lock was resolved from (the lock's own inputs)."""
    copies = [r for k, r in instructions(dockerfile(image)) if k == "COPY" and "locks/" in r]
    assert copies[-1] == f"containers/locks/{image}.txt /opt/locks/", copies
    return set(inputs.IMAGE_EXTRAS[image])


def declared_extras() -> dict[str, list[str]]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    return pyproject["project"]["optional-dependencies"]


def test_one_dockerfile_and_a_lock_per_image_of_the_config():
    assert set(IMAGES) == set(Images.model_fields) == set(inputs.IMAGE_EXTRAS)
    assert [p.name for p in CONTAINERS.glob("*Dockerfile*")] == ["Dockerfile"]
    assert {p.stem for p in (CONTAINERS / "locks").glob("*.txt")} == set(inputs.LOCKS)


@pytest.mark.parametrize("image", IMAGES)
def test_each_image_installs_the_extras_its_steps_import(image):
    installed = installed_extras(image)

    assert installed, f"the {image} image installs the project with no extras"
    for extra in image_extras(image):
        builds = EXTRA_BUILDS.get(extra, (extra,))
        assert installed & set(builds), f"{image} runs steps that import the {extra} extra"
    assert "dev" not in installed
    # one TensorFlow build per image: two distributions would overwrite each other's files
    assert len(installed & set(EXTRA_BUILDS["tf"])) <= 1


def test_the_accelerator_builds_go_to_their_images():
    assert {e for e in installed_extras("gpu") if e.startswith("tf")} == {"tf-gpu"}
    assert {e for e in installed_extras("tpu") if e.startswith("tf")} == {"tf-tpu"}
    assert "hf" in installed_extras("transformers")


def test_every_extra_the_images_use_is_declared():
    declared = set(declared_extras())
    used = set().union(*(installed_extras(image) for image in IMAGES))

    assert used - declared <= PENDING_EXTRAS, f"undeclared extras: {sorted(used - declared)}"
    landed = PENDING_EXTRAS & declared
    assert not landed, f"{sorted(landed)} are declared now: remove them from PENDING_EXTRAS"


def locked(image: str) -> lockfile.Lock:
    return lockfile.read_lock(inputs.lock_path(image, REPO).read_text())


def test_the_cpu_image_takes_the_cpu_build_of_the_torch_the_hf_extra_pins():
    pins = [d for d in declared_extras()["hf"] if re.match(r"torch\s*==", d)]
    (pin,) = pins
    version = pin.split("==", 1)[1].strip()

    assert locked("cpu").pins["torch"] == f"{version}+cpu"
    assert not any(name.startswith("nvidia-") for name in locked("cpu").pins)
    # the transformers image trains on GPUs: PyPI's torch, with its CUDA libraries
    assert locked("transformers").pins["torch"] == version
    assert any(name.startswith("nvidia-") for name in locked("transformers").pins)
    assert "tensorflow" not in locked("cpu").pins and "tensorflow-cpu" in locked("cpu").pins


# --- locks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("image", IMAGES)
def test_each_lock_matches_pyproject(image):
    pyproject = inputs.load_pyproject(REPO)
    text = inputs.lock_path(image, REPO).read_text()

    assert lockfile.problems(pyproject, image, text) == []
    assert len(locked(image).pins) > 50  # the whole tree, not the direct requirements only


def test_the_locks_name_only_files_of_the_repository():
    """A lock compiled twice from the same inputs is the same text: its annotations name the
    repository's files (the shared layer's lock), never the scratch folder uv read them from."""
    for lock in inputs.LOCKS:
        text = inputs.lock_path(lock, REPO).read_text()
        for line in text.splitlines():
            if line.lstrip("# ").startswith(("-c ", "-r ")):
                named = line.lstrip("# ").split(maxsplit=1)[1]
                assert named in ("-", "pyproject.toml", inputs.COMMON_LOCK_LABEL), (lock, line)


def test_the_lock_check_runs_offline_from_the_command_line(capsys):
    assert cli.main(["--check"]) == 0
    assert capsys.readouterr().err == ""


def test_make_lock_runs_the_tool_as_a_module_of_the_repository(tmp_path):
    """`make lock` runs `python -m containers.image_locks` from the repository root, with nothing
    installed that names `containers` (the project's packages are components and pipelines)."""
    assert "$(BIN)/python -m containers.image_locks $(LOCK_ARGS)" in (REPO / "Makefile").read_text()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-m", "containers.image_locks", "--check"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    elsewhere = subprocess.run(
        [sys.executable, "-c", "import containers"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        check=False,
    )
    assert elsewhere.returncode != 0  # nothing outside the repository is shadowed by it


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda p: p["project"]["dependencies"].append("rich>=13"), "run `make lock`"),
        (lambda p: p["project"]["optional-dependencies"]["vertex"].pop(), "run `make lock`"),
        (lambda p: p["build-system"]["requires"].append("cython"), "run `make lock`"),
    ],
)
def test_a_changed_pyproject_makes_every_affected_lock_stale(change, expected):
    pyproject = inputs.load_pyproject(REPO)
    change(pyproject)

    for image in IMAGES:
        text = inputs.lock_path(image, REPO).read_text()
        assert any(expected in problem for problem in lockfile.problems(pyproject, image, text))


def test_an_extra_only_other_images_use_leaves_a_lock_fresh():
    pyproject = inputs.load_pyproject(REPO)
    pyproject["project"]["optional-dependencies"]["tf-tpu"].append("cloud-tpu-client")

    stale = {
        image
        for image in IMAGES
        if lockfile.problems(pyproject, image, inputs.lock_path(image, REPO).read_text())
    }
    assert stale == {"tpu"}


def strip_hashes(text: str, name: str) -> str:
    """The lock without the --hash lines of `name`'s pin."""
    lines, inside = [], False
    for line in text.splitlines():
        if line.lower().startswith(f"{name}=="):
            inside = True
            line = line.removesuffix(" \\")
        elif inside and line.startswith("    --hash="):
            continue
        else:
            inside = False
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_a_hand_edited_lock_is_caught_even_with_a_fresh_digest():
    pyproject = inputs.load_pyproject(REPO)
    text = inputs.lock_path("gpu", REPO).read_text()
    kfp_line = re.search(r"^kfp==\S+", text, re.MULTILINE)
    assert kfp_line
    edited = text.replace(kfp_line[0], "kfp==2.16.0", 1)
    unhashed = strip_hashes(text, "pyyaml")

    assert any(
        "kfp==2.16.0, outside kfp==2.17.0" in p for p in lockfile.problems(pyproject, "gpu", edited)
    )
    assert any("without a --hash" in p for p in lockfile.problems(pyproject, "gpu", unhashed))


def test_the_locks_are_installed_exactly_by_hash_with_no_resolution():
    runs = [r for k, r in instructions(dockerfile()) if k == "RUN"]
    installs = [
        r.split("install-locked.sh", 1)[1].split("&&")[0].strip()
        for r in runs
        if "install-locked.sh" in r
    ]
    script = INSTALL_SCRIPT.read_text()
    commands = [
        line.strip()
        for line in script.splitlines()
        if re.search(r"\bpip (install|sync)\b", line) and not line.lstrip().startswith("#")
    ]

    assert installs == [
        "installer",
        "sync /opt/locks/common.txt",
        "sync /opt/locks/${IMAGE}.txt",
        "wheel /tmp/dist",
    ]
    assert not any("pip install" in r or "pip sync" in r for r in runs), (
        "installs go through the script"
    )
    (bootstrap,) = [c for c in commands if "installer.txt" in c]
    assert "--no-deps" in bootstrap and "--require-hashes" in bootstrap
    (sync,) = [c for c in commands if "pip sync" in c]
    assert "--require-hashes" in sync and "--no-build-isolation" in sync
    for command in commands:
        assert "--no-deps" in command or "pip sync" in command, f"{command} may resolve"
    # an incomplete lock fails the build, naming what is missing
    assert script.count('pip check --python "${VENV}/bin/python"') == 2
    for image in IMAGES:
        assert {"setuptools", "wheel"} <= set(locked(image).pins)
    # the project's wheel is built with the build backend of the lock, fetching nothing
    (wheel,) = [r for r in runs if "uv build" in r]
    assert "--no-build-isolation" in wheel


def test_the_shared_layer_is_the_same_for_every_image():
    """Every instruction up to the shared lock's install ignores IMAGE, so the legacy builder's
    cache (and BuildKit's) gives the four images one layer for it."""
    found = stages(None)
    common = [stage for stage in found if stage[1] == "common"]
    assert common and common[0] is found[0]
    assert not any("IMAGE" in rest.replace("PYTHON_IMAGE", "") for _, rest in common[0][2])
    assert any("common.txt" in rest for _, rest in common[0][2])
    for image in IMAGES:
        problems = lockfile.problems(
            inputs.load_pyproject(REPO),
            image,
            inputs.lock_path(image, REPO).read_text(),
            inputs.lock_path(inputs.COMMON, REPO).read_text(),
        )
        assert problems == [], problems


def test_an_image_lock_that_drifts_from_the_shared_layer_is_stale():
    pyproject = inputs.load_pyproject(REPO)
    common = inputs.lock_path(inputs.COMMON, REPO).read_text()
    text = inputs.lock_path("gpu", REPO).read_text()
    numpy = re.search(r"^numpy==(\S+)", text, re.MULTILINE)
    assert numpy
    drifted = text.replace(numpy[0], "numpy==1.26.4", 1)

    found = lockfile.problems(pyproject, "gpu", drifted, common)
    assert any(f"not common.txt's numpy=={numpy[1]}" in line for line in found), found


def stages(image: str | None) -> list[tuple[str, str | None, list[tuple[str, str]]]]:
    """(base, stage name, instructions) per FROM, in order."""
    found: list[tuple[str, str | None, list[tuple[str, str]]]] = []
    for keyword, rest in instructions(dockerfile(image)):
        if keyword == "FROM":
            words = rest.split()
            found.append((words[0], words[2] if len(words) > 2 else None, []))
        elif found:
            found[-1][2].append((keyword, rest))
    return found


@pytest.mark.parametrize("image", IMAGES)
def test_each_image_is_multi_stage_pinned_and_non_root(image):
    steps = instructions(dockerfile(image))
    args = dict(rest.split("=", 1) for keyword, rest in steps if keyword == "ARG" and "=" in rest)
    found = stages(image)
    names = {name for _, name, _ in found if name}

    assert len(found) >= 2, "build in one stage, copy the result into a clean one"
    assert any(k == "COPY" and r.startswith("--from=") for k, r in found[-1][2])
    # no sources in the final stage: it copies the built wheel only
    assert not any(
        k == "COPY" and r.split()[0] in ("components", "pipelines") for k, r in found[-1][2]
    )
    for base, _, _ in found:
        if base in names:
            continue  # an earlier stage of this file
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], base)
        assert re.search(r":\d+\.\d+\.\d+-[a-z]+-[a-z]+@sha256:[0-9a-f]{64}$", resolved), (
            f"{image}: base image {resolved} is not pinned to a full version and its digest"
        )
        version = re.search(r":(\d+\.\d+\.\d+)", resolved)
        assert version and version[1] == inputs.PYTHON_FULL_VERSION, "the locks' Python"
        assert not resolved.endswith(":latest")
    users = [rest for keyword, rest in found[-1][2] if keyword == "USER"]
    assert users and users[-1].split(":")[0] == "1000", f"{image} does not run as uid 1000"
    assert not any(keyword in ("ENTRYPOINT", "CMD") for keyword, _ in steps)


def test_the_legacy_builder_can_build_each_image():
    """No `# syntax=` frontend to pull, and no BuildKit-only instruction options."""
    text = dockerfile()

    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE | re.IGNORECASE)
    assert "--mount=" not in text and "<<" not in text
    for keyword, rest in instructions(text):
        assert not rest.startswith("--link"), f"{keyword} {rest}"


def test_the_build_context_holds_the_sources_and_locks_only():
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    rules = [line.strip() for line in ignored if line.strip() and not line.startswith("#")]

    assert rules[0] == "*"  # everything out, then what the Dockerfiles COPY back in
    kept = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = set()
    for image in IMAGES:
        for keyword, rest in instructions(dockerfile(image)):
            if keyword == "COPY" and not rest.startswith("--from="):
                copied.update(rest.split()[:-1])
    locks = {f"containers/locks/{lock}.txt" for lock in inputs.LOCKS}
    assert {c.rstrip("/") for c in copied} <= kept | locks
    assert not kept & {".venv", "runs", "build", ".git", "tests"}


def third_party_modules(package: str) -> set[str]:
    """Top-level modules that components/<package> imports, the project's own and stdlib aside."""
    modules = set()
    for path in (REPO / "components" / package).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            modules.update(name.split(".")[0] for name in names)
    own = {"components", "pipelines", "__future__"}
    return {m for m in modules if m not in own and m not in sys.stdlib_module_names}


@pytest.mark.parametrize("step", sorted(STEP_PACKAGES))
def test_step_extras_cover_what_the_step_modules_import(step):
    modules = third_party_modules(STEP_PACKAGES[step])
    unknown = modules - BASE_MODULES - set(MODULE_EXTRAS)
    needed = {MODULE_EXTRAS[m] for m in modules & set(MODULE_EXTRAS)}
    declared = set().union(
        *(extras for name, extras in STEP_EXTRAS.items() if name.split(":")[0] == step)
    )

    assert not unknown, (
        f"components/{step} imports {sorted(unknown)}: add them to an extra in pyproject.toml, "
        "to STEP_EXTRAS in pipelines/targets/vertex/images.py and to MODULE_EXTRAS here"
    )
    assert needed <= declared, f"STEP_EXTRAS lacks {sorted(needed - declared)} for {step}"


def test_cloud_build_builds_and_pushes_every_image_tagged_with_the_commit():
    build = yaml.safe_load((CONTAINERS / "cloudbuild.yaml").read_text())
    steps = {step["id"]: step for step in build["steps"]}

    for image in IMAGES:
        args = steps[image]["args"]
        assert "--file=containers/Dockerfile" in args and f"--build-arg=IMAGE={image}" in args
        tag = f"${{_REGION}}-docker.pkg.dev/${{PROJECT_ID}}/${{_REPOSITORY}}/{image}:${{_TAG}}"
        assert f"--tag={tag}" in args
        assert tag in build["images"]
        assert steps[image]["waitFor"] == ["check-tag"]
    assert "^[0-9a-f]{40}$$" in steps["check-tag"]["args"][-1]  # _TAG must be a commit


def test_cloud_build_runs_one_builder_pinned_by_digest():
    build = yaml.safe_load((CONTAINERS / "cloudbuild.yaml").read_text())

    (builder,) = {step["name"] for step in build["steps"]}
    assert re.fullmatch(r"gcr\.io/cloud-builders/docker@sha256:[0-9a-f]{64}", builder)
