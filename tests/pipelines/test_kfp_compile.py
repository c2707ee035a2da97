"""The kfp compile: Kubernetes settings reach the platform spec, and only the kfp compile.

kfp-kubernetes writes image pull policy, node selectors, tolerations and PVC mounts into a second
YAML document (`platforms.kubernetes.deploymentSpec.executors.<executor>`); GPUs stay in the
pipeline spec under the Kubernetes resource name. Vertex rejects kfp-kubernetes settings, so the
vertex (and local) compile of the same experiment must carry none of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from pipelines.config import (
    KFP_DEFAULT_PIPELINE_ROOT,
    KIND_REGISTRY_PVC,
    ConfigError,
    load_experiment,
)
from pipelines.targets import get_target
from pipelines.targets.base import RunOptions
from pipelines.targets.kfp.cluster import DATA_MOUNT, GPU_RESOURCE, REGISTRY_MOUNT

# The settings are applied per step, whatever the experiment: one keras-only experiment, one
# transformers-only, one with a loop per framework. test_compile.py compiles every experiment.
EXPERIMENTS = ("digits", "pets", "cats_vs_dogs")
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
STEPS = ("ingest", "train", "evaluate", "compare", "gate", "register")
# Every Kubernetes setting at once: what the kfp compile must carry and the others must not.
KUBERNETES = (
    "resources.kfp.gpus=2",
    "resources.kfp.node_selector={cloud.google.com/gke-accelerator: nvidia-l4, pool: gpu}",
    "resources.kfp.tolerations=[{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule},"
    " {key: dedicated, value: training, effect: NoExecute}]",
    "kfp.data_pvc=imgclf-data",
    "kfp.image_pull_policy=Never",
)
KUBERNETES_WORDS = (
    "platforms",
    "kubernetes",
    "imagePullPolicy",
    "nodeSelector",
    "tolerations",
    "pvcMount",
    GPU_RESOURCE,
    KIND_REGISTRY_PVC,
    "imgclf-data",
    "gke-accelerator",
)


@dataclass
class Package:
    """A compiled package: the pipeline spec and, for the kfp target, its platform spec."""

    text: str
    documents: list[dict[str, Any]]

    @property
    def spec(self) -> dict[str, Any]:
        return self.documents[0]

    @property
    def executors(self) -> dict[str, dict[str, Any]]:
        """Executor label -> its Kubernetes settings (empty when it has none)."""
        if len(self.documents) < 2:
            return {}
        return self.documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]

    def tasks(self) -> dict[str, dict[str, Any]]:
        """Display name -> task, over the root DAG and every sub-DAG."""
        dags = [self.spec["root"]["dag"]] + [
            c["dag"] for c in self.spec["components"].values() if "dag" in c
        ]
        return {t["taskInfo"]["name"]: t for dag in dags for t in dag["tasks"].values()}

    def steps(self) -> dict[str, list[dict[str, Any]]]:
        """Step -> its tasks ('train keras', 'train transformers' are both 'train')."""
        found: dict[str, list[dict[str, Any]]] = {}
        for display, task in self.tasks().items():
            step = display.split()[0]
            if step in STEPS and "componentRef" in task:
                found.setdefault(step, []).append(task)
        return found

    def executor_label(self, task: dict[str, Any]) -> str:
        return self.spec["components"][task["componentRef"]["name"]]["executorLabel"]

    def kubernetes(self, task: dict[str, Any]) -> dict[str, Any]:
        return self.executors.get(self.executor_label(task), {})

    def container(self, task: dict[str, Any]) -> dict[str, Any]:
        executors = self.spec["deploymentSpec"]["executors"]
        return executors[self.executor_label(task)]["container"]


@pytest.fixture(scope="module")
def compile_package(tmp_path_factory) -> Callable[..., Package]:
    folder = tmp_path_factory.mktemp("kfp-compiled")
    cache: dict[tuple[Any, ...], Package] = {}

    def compile_once(
        name: str, target: str, overrides: tuple[str, ...] = (), cache_steps: bool = True
    ) -> Package:
        key = (name, target, overrides, cache_steps)
        if key not in cache:
            experiment = load_experiment(name, list(overrides))
            options = RunOptions(runs_dir=folder / "runs", cache=cache_steps)
            path = get_target(target, experiment, options).compile(folder / f"{len(cache)}.yaml")
            text = path.read_text()
            documents = [d for d in yaml.load_all(text, Loader=SafeLoader) if d is not None]
            cache[key] = Package(text, documents)
        return cache[key]

    return compile_once


# --- defaults: what every kfp compile carries ----------------------------------------------


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_step_pulls_kind_loaded_images_if_not_present(compile_package, name):
    package = compile_package(name, "kfp")

    assert len(package.documents) == 2
    steps = package.steps()
    assert set(steps) == set(STEPS)
    for tasks in steps.values():
        for task in tasks:
            assert package.kubernetes(task)["imagePullPolicy"] == "IfNotPresent"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_register_mounts_the_registry_volume_where_the_registry_root_points(compile_package, name):
    package = compile_package(name, "kfp")

    (register,) = package.steps()["register"]
    (mount,) = package.kubernetes(register)["pvcMount"]
    assert mount["mountPath"] == REGISTRY_MOUNT == "/mnt/registry"
    assert mount["pvcNameParameter"]["runtimeValue"]["constant"] == KIND_REGISTRY_PVC
    registry_root = package.spec["root"]["inputDefinitions"]["parameters"]["registry_root"]
    assert registry_root["defaultValue"] == REGISTRY_MOUNT
    # Only the register step mounts anything by default.
    mounted = [
        s for s, ts in package.steps().items() for t in ts if package.kubernetes(t).get("pvcMount")
    ]
    assert mounted == ["register"]


def test_by_default_no_step_is_pinned_to_nodes(compile_package, accelerator):
    package = compile_package("digits", "kfp")

    for settings in package.executors.values():
        assert "nodeSelector" not in settings
        assert "tolerations" not in settings
    for tasks in package.steps().values():
        for task in tasks:
            assert accelerator(package.container(task)) is None


# --- the experiment's Kubernetes settings --------------------------------------------------


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_training_gets_gpus_node_selector_and_tolerations(compile_package, name, accelerator):
    package = compile_package(name, "kfp", KUBERNETES)

    trains = package.steps()["train"]
    assert len(trains) == len(load_experiment(name).frameworks())
    for train in trains:
        assert accelerator(package.container(train)) == (GPU_RESOURCE, 2)
        settings = package.kubernetes(train)
        assert settings["nodeSelector"]["labels"] == {
            "cloud.google.com/gke-accelerator": "nvidia-l4",
            "pool": "gpu",
        }
        assert settings["tolerations"] == [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "dedicated", "operator": "Equal", "value": "training", "effect": "NoExecute"},
        ]
        assert settings["imagePullPolicy"] == "Never"


def test_only_training_is_pinned_to_gpu_nodes(compile_package, accelerator):
    package = compile_package("cats_vs_dogs", "kfp", KUBERNETES)

    for step, tasks in package.steps().items():
        if step == "train":
            continue
        for task in tasks:
            settings = package.kubernetes(task)
            assert "nodeSelector" not in settings, step
            assert "tolerations" not in settings, step
            assert settings["imagePullPolicy"] == "Never", step
            assert accelerator(package.container(task)) is None, step


def test_ingest_mounts_the_data_volume(compile_package):
    package = compile_package("digits", "kfp", KUBERNETES)

    (ingest,) = package.steps()["ingest"]
    (mount,) = package.kubernetes(ingest)["pvcMount"]
    assert mount["mountPath"] == DATA_MOUNT == "/mnt/data"
    assert mount["pvcNameParameter"]["runtimeValue"]["constant"] == "imgclf-data"
    for step in ("train", "evaluate", "compare", "gate"):
        for task in package.steps()[step]:
            assert "pvcMount" not in package.kubernetes(task), step


def test_registry_volume_can_be_switched_off(compile_package):
    package = compile_package("digits", "kfp", ("kfp.registry_pvc=null",))

    assert "pvcMount" not in package.text
    assert all(s["imagePullPolicy"] == "IfNotPresent" for s in package.executors.values())


def test_no_cache_turns_caching_off_in_the_package(compile_package):
    """A run of an uploaded pipeline version takes caching from the spec, not from the request."""
    cached = compile_package("digits", "kfp")
    fresh = compile_package("digits", "kfp", cache_steps=False)

    assert any(t.get("cachingOptions", {}).get("enableCache") for t in cached.tasks().values())
    for display, task in fresh.tasks().items():
        if "componentRef" in task and display.split()[0] in STEPS:
            assert not task.get("cachingOptions", {}).get("enableCache"), display


# --- nothing of it leaks into the other targets --------------------------------------------


@pytest.mark.parametrize("target", ["vertex", "local"])
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_kubernetes_settings_stay_out_of_the_other_compiles(compile_package, name, target):
    package = compile_package(name, target, KUBERNETES)

    assert len(package.documents) == 1
    for word in KUBERNETES_WORDS:
        assert word not in package.text, word


def test_the_leak_check_would_see_the_kfp_settings(compile_package):
    """The control for the test above: the same overrides do show in the kfp compile."""
    package = compile_package("digits", "kfp", KUBERNETES)

    for word in KUBERNETES_WORDS:
        assert word in package.text, word


# --- the settings themselves ---------------------------------------------------------------


def test_kfp_settings_default_to_the_kind_cluster():
    settings = load_experiment("digits").kfp

    assert settings.pipeline_root == KFP_DEFAULT_PIPELINE_ROOT == "minio://mlpipeline/v2/artifacts"
    assert settings.image_pull_policy == "IfNotPresent"
    assert settings.registry_pvc == KIND_REGISTRY_PVC
    assert settings.data_pvc is None


def test_pipeline_root_is_settable_and_loses_its_trailing_slash():
    experiment = load_experiment("digits", ["kfp.pipeline_root=s3://my-bucket/kfp/"])

    assert experiment.kfp.pipeline_root == "s3://my-bucket/kfp"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("kfp.pipeline_root=/tmp/artifacts", "kfp.pipeline_root: use an object store URI"),
        ("kfp.pipeline_root=minio://", "minio://BUCKET/PATH"),
        ("kfp.pipeline_root=http://minio:9000/b", "(got 'http://minio:9000/b')"),
        ("kfp.registry_pvc=My_Registry", "kfp.registry_pvc: not a PersistentVolumeClaim name"),
        ("kfp.data_pvc=-data", "kfp.data_pvc: not a PersistentVolumeClaim name"),
        ("kfp.image_pull_policy=Sometimes", "'IfNotPresent', 'Always' or 'Never'"),
        ("kfp.namespace=team-a", "kfp.namespace: unknown field"),
        (
            "resources.kfp.tolerations=[{key: gpu, operator: Exists, value: x}]",
            "resources.kfp.tolerations.0: toleration 'gpu': operator Exists matches any value",
        ),
        (
            "resources.kfp.tolerations=[{key: gpu, effect: Sometimes}]",
            "resources.kfp.tolerations.0.effect",
        ),
    ],
)
def test_bad_kfp_settings_name_the_field_and_the_fix(override, expected):
    with pytest.raises(ConfigError) as caught:
        load_experiment("digits", [override])

    assert expected in str(caught.value)


def test_compile_only_writes_the_platform_spec(tmp_path):
    from pipelines.cli import main

    output = tmp_path / "digits.kfp.yaml"

    assert (
        main(
            [
                "-e",
                "digits",
                "-t",
                "kfp",
                "--set",
                "kfp.data_pvc=imgclf-data",
                "--compile-only",
                str(output),
            ]
        )
        == 0
    )

    documents = [d for d in yaml.safe_load_all(output.read_text()) if d is not None]
    assert documents[0]["pipelineInfo"]["name"] == "imgclf-digits"
    mounts = [
        m["mountPath"]
        for e in documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values()
        for m in e.get("pvcMount", [])
    ]
    assert sorted(mounts) == ["/mnt/data", "/mnt/registry"]


@pytest.mark.parametrize("on_failure", ["continue", "stop"])
def test_compare_on_failure_continue_says_it_is_not_available_on_kfp(
    tmp_path, capsys: pytest.CaptureFixture[str], on_failure: str
) -> None:
    experiment = load_experiment("digits", [f"compare.on_failure={on_failure}"])
    target = get_target("kfp", experiment, RunOptions(runs_dir=tmp_path))
    text = target.compile(tmp_path / "digits.kfp.yaml").read_text()
    spec = next(d for d in yaml.safe_load_all(text) if d is not None)
    note = capsys.readouterr().err
    assert "triggerPolicy" not in spec["root"]["dag"]["tasks"]["compare"]
    if on_failure == "continue":
        assert "compare.on_failure: continue is not available on KFP's backend" in note
        assert "a failed candidate fails its task and the run there" in note
    else:
        assert note == ""
