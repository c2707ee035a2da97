"""The digits experiment with `--runner docker`: every step in the cpu image as uid 1000. Then the
launcher contract: each step's exact command and arguments from the compiled kfp and vertex
specs, run in its image with `--network none` as uid 1000 and an executor input built from the
local run's, its outputs under a 0777 folder mounted where the backend puts them (KFP's emptyDir
at /minio/<bucket>, Vertex AI's Cloud Storage FUSE at /gcs/<bucket>). Also the keras training
step in the gpu and tpu images (TensorFlow's CUDA and TPU builds), on the CPU."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from pipelines.cli import main
from pipelines.config import load_experiment
from pipelines.targets import get_target
from pipelines.targets.local.capture import Capture

pytestmark = pytest.mark.docker

# Where each backend's launcher finds an artifact URI's files inside the step's container.
BACKENDS = {
    "kfp": ("minio://mlpipeline/v2/artifacts", "/minio/mlpipeline/v2/artifacts"),
    "vertex": ("gs://imgclf-contract/pipeline-root", "/gcs/imgclf-contract/pipeline-root"),
}
# Steps whose launcher talks to Vertex AI itself (GCPC's model upload, the registration lookup):
# out of reach with --network none, and not our code.
CLOUD_FUNCTIONS = {"vertex_registration"}
# digits as `make run` runs it, with two epochs and any accuracy through the gate: the contract
# runs its training three more times.
DIGITS = [
    "--experiment", "digits", "--set", "models.0.epochs=2", "--set", "gate.min=0.0",
    "--runner", "docker",
]  # fmt: skip


@pytest.fixture(scope="module")
def digits_run(
    built_image: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One digits run with --runner docker; its result, and each container's image, user and
    command (the executor input kfp.local built, per function)."""
    built_image("cpu")
    runs = tmp_path_factory.mktemp("docker-runs")
    started: dict[str, dict[str, Any]] = {}
    original = Capture.run_container

    def record(
        self: Capture, client: Any, image: str, command: list[str], volumes: Any, **args: Any
    ) -> int:
        function = command[command.index("--function_to_execute") + 1]
        started[function] = {"image": image, "command": command, "user": args.get("user")}
        return original(self, client, image, command, volumes, **args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Capture, "run_container", record)
        with _stdout_to(runs / "result.json"):
            code = main([*DIGITS, "--runs-dir", str(runs), "--json"])
    result = json.loads((runs / "result.json").read_text())
    return {"code": code, "result": result, "started": started, "runs": runs}


class _stdout_to:
    """Send the CLI's stdout (its --json result) to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        import contextlib

        self._file = self.path.open("w")
        self._redirect = contextlib.redirect_stdout(self._file)
        self._redirect.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._redirect.__exit__(*exc)
        self._file.close()


def test_digits_runs_every_step_in_the_cpu_image_as_uid_1000(digits_run: dict[str, Any]) -> None:
    result, started = digits_run["result"], digits_run["started"]

    assert digits_run["code"] == 0, result.get("error")
    assert result["status"] == "SUCCEEDED"
    assert set(started) == {"ingest", "train", "evaluate", "compare", "gate", "register_local"}
    for function, container in started.items():
        assert container["image"] == "image-classification-cpu:latest", function
        assert container["user"] == "1000:1000", function
    root = Path(result["pipeline_root"])
    # the registry and the checkpoints lie in the pipeline root, the one folder mounted
    assert Path(result["registration"]["path"]).is_relative_to(root)
    assert any((root / "checkpoints").iterdir())
    owners = {p.stat().st_uid for p in (root / "registry").rglob("*") if p.is_file()}
    assert owners == {1000}  # written by the step's user, inside its container
    logs = [Path(p) for p in result["logs"]]
    assert any(p.name.startswith("train") and "Epoch" in p.read_text() for p in logs)


SERVE_AND_CHECK = """
python -m components.serve --model "$1" --port 8080 > /tmp/serve.log 2>&1 &
url=http://127.0.0.1:8080/v1/models/digits-classifier
ready='import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)'
for _ in $(seq 1200); do python -c "$ready" "$url" 2>/dev/null && break; sleep 0.25; done
python -m components.serve.check --url "$url" --dataset "$2" --predictions "$3" --requests 20 \
  --json > /tmp/report.json
code=$?
kill %1 && wait %1
cat /tmp/serve.log
echo REPORT
cat /tmp/report.json
exit $code
"""


def test_the_registered_champion_is_served_from_the_cpu_image_as_evaluated(
    digits_run: dict[str, Any], in_image: Callable[..., tuple[int, str]]
) -> None:
    """The serving container of Vertex AI and KServe (the cpu image) serves the registry's
    champion and answers the test split's first 64 images as the evaluate step did."""
    result = digits_run["result"]
    root = result["pipeline_root"]
    registry = Path(result["registration"]["path"]).parent
    model = Path(result["summary"]["best"]["model_uri"])
    dataset = Path(result["run_dir"]) / "ingest" / "dataset"
    predictions = model.parent.parent / "evaluate" / "predictions"
    code, out = in_image(
        "image-classification-cpu:latest",
        ["sh", "-c", SERVE_AND_CHECK, "serve", str(registry), str(dataset), str(predictions)],
        mounts={root: root},
    )
    assert code == 0, out[-3000:]
    served, _, report_text = out.partition("REPORT\n")
    report = json.loads(report_text)
    assert report["passed"] and report["images"] == report["agreed"] == 64
    assert "v1: the champion" in served  # the server said which version it chose


def test_a_second_docker_run_comes_from_the_cache(digits_run: dict[str, Any]) -> None:
    runs = digits_run["runs"]
    again = runs / "again.json"
    with _stdout_to(again):
        code = main([*DIGITS, "--runs-dir", str(runs), "--json"])
    result = json.loads(again.read_text())

    assert code == 0, result.get("error")
    statuses = {t["name"]: t["status"] for t in result["tasks"]}
    assert statuses["train"] == "CACHED" and statuses["ingest"] == "CACHED", statuses


# --- the launcher contract -----------------------------------------------------------------


def compiled_executors(target: str, tmp: Path) -> dict[str, dict[str, Any]]:
    """function -> the container spec (image, command, args) of the compiled `target` spec."""
    experiment = load_experiment("digits", ["models.0.epochs=2", "gate.min=0.0"])
    path = get_target(target, experiment).compile(tmp / f"digits.{target}.yaml")
    spec = next(yaml.safe_load_all(path.read_text()))
    found = {}
    for executor in spec["deploymentSpec"]["executors"].values():
        container = executor.get("container")
        if container and "--function_to_execute" in container.get("args", []):
            args = container["args"]
            found[args[args.index("--function_to_execute") + 1]] = container
    return found


def rewrite(
    executor_input: dict[str, Any], host_root: str, uri_root: str, mount: str
) -> dict[str, Any]:
    """The local run's executor input as the backend gives it: artifact URIs under its bucket,
    files (output parameters, executor_output.json) and path parameters under the mount."""

    def walk(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        if isinstance(value, str) and host_root in value:
            return value.replace(host_root, uri_root if key == "uri" else mount)
        return value

    return walk(executor_input)


def copy_inputs(executor_input: dict[str, Any], host_root: str, bucket_dir: Path) -> None:
    """Put the input artifacts' files where the mounted bucket holds them."""
    for entry in executor_input.get("inputs", {}).get("artifacts", {}).values():
        for artifact in entry.get("artifacts", []):
            source = Path(artifact["uri"])
            if not source.exists() or not str(source).startswith(host_root):
                continue
            target = bucket_dir / source.relative_to(host_root)
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True)
            else:
                shutil.copy2(source, target)


def open_to_all(folder: Path) -> None:
    """0777 as KFP's emptyDir and a FUSE mount present it to uid 1000."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)


def run_contract(
    container: dict[str, Any],
    recorded: dict[str, Any],
    backend: str,
    image: str,
    host_root: str,
    work: Path,
    in_image: Callable[..., tuple[int, str]],
) -> tuple[int, str, dict[str, Any], Path]:
    uri_root, mount = BACKENDS[backend]
    command = recorded["command"]
    local_input = json.loads(command[command.index("--executor_input") + 1])
    executor_input = rewrite(local_input, host_root, uri_root, mount)
    bucket = work / "bucket"
    copy_inputs(local_input, host_root, bucket)
    bucket.mkdir(parents=True, exist_ok=True)
    open_to_all(bucket)
    argv = [json.dumps(executor_input) if a == "{{$}}" else a for a in container["args"]]
    code, out = in_image(image, list(container["command"]) + argv, mounts={str(bucket): mount})
    return code, out, executor_input, bucket


def host_path(path: str, mount: str, bucket: Path) -> Path:
    return bucket / os.path.relpath(path, mount)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_each_step_runs_its_compiled_command_in_its_image(
    backend: str,
    digits_run: dict[str, Any],
    in_image: Callable[..., tuple[int, str]],
    tmp_path: Path,
) -> None:
    executors = compiled_executors(backend, tmp_path)
    host_root = digits_run["result"]["pipeline_root"]
    _, mount = BACKENDS[backend]
    ran = []
    for function, container in sorted(executors.items()):
        if function in CLOUD_FUNCTIONS:
            continue
        recorded = digits_run["started"][function]
        work = tmp_path / backend / function
        code, out, executor_input, bucket = run_contract(
            container, recorded, backend, container["image"], host_root, work, in_image
        )
        assert code == 0, f"{backend} {function} in {container['image']}:\n{out[-3000:]}"
        outputs = executor_input["outputs"]
        assert host_path(outputs["outputFile"], mount, bucket).is_file(), function
        for name, entry in outputs.get("artifacts", {}).items():
            for artifact in entry["artifacts"]:
                path = host_path(
                    artifact["uri"].replace(BACKENDS[backend][0], mount), mount, bucket
                )
                assert path.exists(), f"{function} wrote no {name} at {artifact['uri']}"
        ran.append(function)
    assert set(ran) >= {"ingest", "train", "evaluate", "compare", "gate", "register_local"}


@pytest.mark.parametrize("image", ["gpu", "tpu"])
def test_the_keras_training_step_runs_in_the_accelerator_images_on_the_cpu(
    image: str,
    digits_run: dict[str, Any],
    built_image: Callable[[str], str],
    in_image: Callable[..., tuple[int, str]],
    tmp_path: Path,
) -> None:
    container = compiled_executors("vertex", tmp_path)["train"]
    host_root = digits_run["result"]["pipeline_root"]

    code, out, executor_input, bucket = run_contract(
        container,
        digits_run["started"]["train"],
        "vertex",
        built_image(image),
        host_root,
        tmp_path,
        in_image,
    )

    assert code == 0, out[-3000:]
    _, mount = BACKENDS["vertex"]
    model = executor_input["outputs"]["artifacts"]["model"]["artifacts"][0]["uri"]
    model_dir = host_path(model.replace(BACKENDS["vertex"][0], mount), mount, bucket)
    card = json.loads((model_dir / "model_card.json").read_text())
    assert card["framework"] == "keras" and card["training"]["epochs_run"] >= 1


def test_a_folder_source_outside_the_runs_folder_is_seen_by_the_step_containers(
    built_image: Callable[[str], str], tmp_path: Path
) -> None:
    """The docker runner mounts a folder: source elsewhere on disk read-only into the steps."""
    from PIL import Image

    built_image("cpu")
    images = tmp_path / "elsewhere" / "shapes"
    rng = np.random.default_rng(0)
    for name, level in {"dark": 40, "light": 210}.items():
        (images / name).mkdir(parents=True)
        for index in range(30):
            pixels = np.clip(rng.normal(level, 20.0, (16, 16, 3)), 0, 255).astype("uint8")
            Image.fromarray(pixels).save(images / name / f"{index}.png")
    runs = tmp_path / "runs"
    result_file = tmp_path / "result.json"
    with _stdout_to(result_file):
        code = main(
            [
                *DIGITS,
                "--set", f"data.source=folder:{images}",
                "--set", "data.image_size=[16,16]",
                "--set", "data.channels=3",
                "--set", "data.min_images_per_class=5",
                "--runs-dir", str(runs), "--json",
            ]
        )  # fmt: skip
    result = json.loads(result_file.read_text())

    assert code == 0, result.get("error")
    assert result["status"] == "SUCCEEDED"
    assert not images.is_relative_to(runs)
    info = json.loads(next(runs.rglob("dataset_info.json")).read_text())
    assert sorted(info["class_names"]) == ["dark", "light"]
