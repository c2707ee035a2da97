"""Every experiment compiles for every target; assert on the parts of the spec that matter."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.cli import main
from pipelines.config import EXPERIMENTS_DIR, GPU_TYPES, TPU_TYPES, Experiment, load_experiment
from pipelines.targets import TARGETS, get_target
from pipelines.targets.base import RunOptions

EXPERIMENTS = sorted(path.stem for path in EXPERIMENTS_DIR.glob("*.yaml"))
# The same safe loader as yaml.safe_load, in C where PyYAML has it: a compiled spec is large.
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
GPU_RESOURCE = "nvidia.com/gpu"  # the Kubernetes resource name of an NVIDIA GPU
CUSTOM_IMAGES = (
    "images.cpu=registry.example/imgclf/cpu:1",
    "images.gpu=registry.example/imgclf/gpu:1",
    "images.tpu=registry.example/imgclf/tpu:1",
    "images.transformers=registry.example/imgclf/transformers:1",
)


@dataclass
class Compiled:
    experiment: Experiment
    target: str
    runs_dir: Path
    text: str
    spec: dict[str, Any]

    @property
    def parameters(self) -> dict[str, Any]:
        return self.spec["root"]["inputDefinitions"]["parameters"]

    def tasks(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every task of the root DAG and of every sub-DAG (loops, conditions)."""
        dags = [self.spec["root"]["dag"]] + [
            c["dag"] for c in self.spec["components"].values() if "dag" in c
        ]
        for dag in dags:
            yield from dag["tasks"].items()

    def all_loops(self) -> list[dict[str, Any]]:
        return [task for _, task in self.tasks() if "parameterIterator" in task]

    def loops(self) -> list[dict[str, Any]]:
        """The candidate loops: over literal items (a search's loops run over a task's output)."""
        return [t for t in self.all_loops() if "raw" in t["parameterIterator"]["items"]]

    def search_loops(self) -> list[dict[str, Any]]:
        return [t for t in self.all_loops() if "raw" not in t["parameterIterator"]["items"]]

    def loop_framework(self, loop: dict[str, Any]) -> str:
        """The framework of a loop's candidates: from its items, or for a search's loop from
        the recipe its producer (suggest or tell) is given."""
        iterator = loop["parameterIterator"]["items"]
        if "raw" in iterator:
            frameworks = {item["model_spec"]["framework"] for item in self.loop_items(loop)}
            assert len(frameworks) == 1, f"a loop mixes frameworks: {frameworks}"
            return frameworks.pop()
        channel = loop["inputs"]["parameters"][iterator["inputParameter"]]
        producer = self.spec["root"]["dag"]["tasks"][channel["taskOutputParameter"]["producerTask"]]
        return producer["inputs"]["parameters"]["model_spec"]["runtimeValue"]["constant"][
            "framework"
        ]

    def loop_items(self, loop: dict[str, Any]) -> list[dict[str, Any]]:
        return json.loads(loop["parameterIterator"]["items"]["raw"])

    def loop_tasks(self, loop: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return self.spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]

    def executor(self, task: dict[str, Any]) -> dict[str, Any]:
        label = self.spec["components"][task["componentRef"]["name"]]["executorLabel"]
        return self.spec["deploymentSpec"]["executors"][label]

    def train_tasks(self) -> list[tuple[str, dict[str, Any]]]:
        """(framework, train task) of each loop, search trials and winners included."""
        found = []
        for loop in self.all_loops():
            trains = [
                t
                for t in self.loop_tasks(loop).values()
                if t["componentRef"]["name"].startswith("comp-train")
            ]
            assert len(trains) == 1
            found.append((self.loop_framework(loop), trains[0]))
        return found

    def containers(self) -> dict[str, dict[str, Any]]:
        executors = self.spec["deploymentSpec"]["executors"]
        return {name: e["container"] for name, e in executors.items() if "container" in e}


@functools.cache
def _raw_text(name: str) -> str:
    return (EXPERIMENTS_DIR / f"{name}.yaml").read_text()


def raw_experiment(name: str) -> dict[str, Any]:
    """The bundled experiment file as written (a fresh copy each call)."""
    return yaml.load(_raw_text(name), Loader=SafeLoader)


@pytest.fixture(scope="module")
def compile_spec(tmp_path_factory) -> Callable[..., Compiled]:
    """Compile (experiment, target, overrides) once per module; later calls reuse the result."""
    folder = tmp_path_factory.mktemp("compiled")
    cache: dict[tuple[str, str, tuple[str, ...]], Compiled] = {}

    def compile_once(name: str, target: str, overrides: tuple[str, ...] = ()) -> Compiled:
        key = (name, target, overrides)
        if key not in cache:
            experiment = load_experiment(name, list(overrides))
            runs_dir = folder / "runs"
            path = folder / f"{name}.{target}.{len(cache)}.yaml"
            get_target(target, experiment, RunOptions(runs_dir=runs_dir)).compile(path)
            text = path.read_text()
            # kfp-kubernetes appends platform documents; the pipeline spec comes first.
            documents = [d for d in yaml.load_all(text, Loader=SafeLoader) if d is not None]
            cache[key] = Compiled(experiment, target, runs_dir, text, documents[0])
        return cache[key]

    return compile_once


EVERY = pytest.mark.parametrize(("name", "target"), [(e, t) for e in EXPERIMENTS for t in TARGETS])


def test_every_experiment_and_target_is_covered():
    assert len(EXPERIMENTS) >= 8
    assert TARGETS == ("local", "vertex", "kfp")


# --- the DAG -------------------------------------------------------------------------------


@EVERY
def test_dag_has_every_step(compile_spec, name, target):
    compiled = compile_spec(name, target)

    root_tasks = compiled.spec["root"]["dag"]["tasks"]
    assert {"ingest", "compare", "gate"} <= set(root_tasks)
    names = [task_name for task_name, _ in compiled.tasks()]
    assert "register-local" in names
    assert compiled.spec["pipelineInfo"]["name"] == f"imgclf-{compiled.experiment.name}"
    # register runs only when the gate passes
    conditions = [t for t in root_tasks.values() if "triggerPolicy" in t]
    assert len(conditions) == 1
    assert "'passed'" in conditions[0]["triggerPolicy"]["condition"]
    guarded = compiled.spec["components"][conditions[0]["componentRef"]["name"]]["dag"]["tasks"]
    assert "register-local" in guarded


@EVERY
def test_one_training_loop_per_framework(compile_spec, name, target):
    compiled = compile_spec(name, target)
    raw = raw_experiment(name)
    frameworks = {m.get("framework", "keras") for m in raw["models"] if "search" not in m}
    searched = [m for m in compiled.experiment.models if m.search is not None]

    loops = compiled.loops()

    assert len(loops) == len(frameworks)
    assert sorted(compiled.loop_framework(loop) for loop in loops) == sorted(frameworks)
    # a search: one loop of trials per round, then one loop over the winner's seeds
    assert len(compiled.search_loops()) == sum(len(m.search.rounds()) + 1 for m in searched)
    for loop in loops:
        loop_tasks = compiled.loop_tasks(loop)
        assert len(loop_tasks) == 2
        assert {t["componentRef"]["name"].rstrip("-0123456789") for t in loop_tasks.values()} == {
            "comp-train",
            "comp-evaluate",
        }
        assert "ingest" in loop["dependentTasks"]
    # compare waits for every loop
    compare_inputs = compiled.spec["root"]["dag"]["tasks"]["compare"]["inputs"]["parameters"]
    assert {f"{f}_results" for f in frameworks} <= set(compare_inputs)
    assert ("searched_results" in compare_inputs) == bool(searched)


@pytest.mark.parametrize("name", ["cifar10"])
def test_mixed_experiments_have_a_keras_and_a_transformers_loop(compile_spec, name):
    compiled = compile_spec(name, "vertex")

    assert len(compiled.loops()) == 2
    trains = dict(compiled.train_tasks())
    assert trains["keras"]["taskInfo"]["name"] == "train keras"
    assert trains["transformers"]["taskInfo"]["name"] == "train transformers"


@EVERY
def test_loop_items_are_every_model_times_every_seed(compile_spec, name, target):
    compiled = compile_spec(name, target)
    raw = raw_experiment(name)

    items = [item for loop in compiled.loops() for item in compiled.loop_items(loop)]

    expected = sorted(
        (m["name"], seed)
        for m in raw["models"]
        if "search" not in m  # a searched model trains through its search
        for seed in raw.get("seeds", [0])
    )
    assert sorted((i["model_spec"]["name"], i["seed"]) for i in items) == expected
    for item in items:
        source = next(m for m in raw["models"] if m["name"] == item["model_spec"]["name"])
        assert item["model_spec"]["epochs"] == source["epochs"]
        assert item["model_spec"].get("architecture") == source.get("architecture")
        assert item["model_spec"].get("checkpoint") == source.get("checkpoint")


def test_vehicles_animals_loop_carries_twelve_candidates(compile_spec):
    compiled = compile_spec("cifar10_vehicles_animals", "kfp")

    (loop,) = compiled.loops()
    items = compiled.loop_items(loop)

    assert len(items) == 12
    assert {i["seed"] for i in items} == {0, 1, 2}
    assert len({i["model_spec"]["name"] for i in items}) == 4


# --- images --------------------------------------------------------------------------------


def expected_train_image(experiment: Experiment, target: str, framework: str) -> str:
    images = experiment.images
    if framework == "transformers":
        return images.transformers
    if target == "kfp":
        return images.gpu if experiment.resources.kfp.gpus else images.cpu
    accelerator = experiment.resources.vertex.accelerator
    if accelerator in TPU_TYPES:
        return images.tpu
    return images.gpu if accelerator else images.cpu


@pytest.mark.parametrize("target", ["vertex", "kfp"])
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_images_come_from_the_experiment(compile_spec, name, target):
    compiled = compile_spec(name, target, CUSTOM_IMAGES)
    images = compiled.experiment.images
    assert images.cpu == "registry.example/imgclf/cpu:1"

    containers = compiled.containers()
    assert {c["image"] for c in containers.values()} <= set(images.model_dump().values())
    train_executors = set()
    for framework, task in compiled.train_tasks():
        container = compiled.executor(task)["container"]
        assert container["image"] == expected_train_image(compiled.experiment, target, framework)
        train_executors.add(id(container))
    for container in containers.values():
        if id(container) not in train_executors:
            assert container["image"] == images.cpu


def train_images(compiled: Compiled) -> dict[str, str]:
    return {f: compiled.executor(t)["container"]["image"] for f, t in compiled.train_tasks()}


@pytest.mark.parametrize(
    ("name", "target", "expected"),
    [
        (
            "cats_vs_dogs",
            "vertex",
            {
                "keras": "image-classification-gpu:latest",
                "transformers": "image-classification-transformers:latest",
            },
        ),
        ("cifar10_vehicles_animals", "vertex", {"keras": "image-classification-tpu:latest"}),
        ("cifar10_vehicles_animals", "kfp", {"keras": "image-classification-gpu:latest"}),
        ("mnist", "vertex", {"keras": "image-classification-cpu:latest"}),
        ("digits", "kfp", {"keras": "image-classification-cpu:latest"}),
    ],
)
def test_train_image_per_framework_and_accelerator(compile_spec, name, target, expected):
    """The rule above, spelled out on the bundled experiments and the default images."""
    assert train_images(compile_spec(name, target)) == expected


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_local_compile_runs_every_step_in_this_environment(compile_spec, name, accelerator):
    compiled = compile_spec(name, "local")

    assert compiled.containers()
    for container in compiled.containers().values():
        assert accelerator(container) is None
    registry = compiled.parameters["registry_root"]["defaultValue"]
    assert registry == str((compiled.runs_dir / "registry").resolve())


# --- resources and retries -----------------------------------------------------------------


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_vertex_accelerators_follow_the_experiment(compile_spec, name, accelerator):
    compiled = compile_spec(name, "vertex")
    vertex = compiled.experiment.resources.vertex

    train_containers = [compiled.executor(task)["container"] for _, task in compiled.train_tasks()]
    custom_job = vertex.is_tpu or vertex.spot or vertex.flex_start or vertex.reservation
    for container in train_containers:
        if vertex.accelerator in GPU_TYPES and not custom_job:
            assert accelerator(container) == (vertex.accelerator, vertex.count)
        else:
            # TPUs, spot, flex-start and reservations train in a Vertex AI custom job, whose
            # worker pool spec holds the accelerator (test_vertex_compile.py): the task only
            # launches it.
            assert accelerator(container) is None
    for container in compiled.containers().values():
        if not any(container is c for c in train_containers):
            assert accelerator(container) is None
    assert GPU_RESOURCE not in compiled.text


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_kfp_asks_kubernetes_for_nvidia_gpus(compile_spec, name, accelerator):
    compiled = compile_spec(name, "kfp")
    gpus = compiled.experiment.resources.kfp.gpus

    for _, task in compiled.train_tasks():
        container = compiled.executor(task)["container"]
        assert accelerator(container) == ((GPU_RESOURCE, gpus) if gpus else None)
    for vertex_type in GPU_TYPES + TPU_TYPES:
        assert vertex_type not in compiled.text


def test_pets_trains_on_one_l4_on_vertex_and_one_gpu_on_kfp(compile_spec, accelerator):
    vertex = compile_spec("pets", "vertex")
    kfp = compile_spec("pets", "kfp")

    ((_, vertex_train),) = vertex.train_tasks()
    ((_, kfp_train),) = kfp.train_tasks()

    # spot: a Vertex AI custom job on one L4, which the task launches
    job = vertex.spec["components"][vertex_train["componentRef"]["name"]]["inputDefinitions"]
    (pool,) = job["parameters"]["worker_pool_specs"]["defaultValue"]
    assert pool["machine_spec"]["accelerator_type"] == "NVIDIA_L4"
    assert pool["machine_spec"]["accelerator_count"] == 1
    assert job["parameters"]["strategy"]["defaultValue"] == "SPOT"
    assert accelerator(kfp.executor(kfp_train)["container"]) == (GPU_RESOURCE, 1)
    assert "NVIDIA_L4" not in kfp.text


def test_vertex_resource_overrides_reach_the_spec(compile_spec, accelerator):
    compiled = compile_spec(
        "mnist",
        "vertex",
        (
            "resources.vertex.accelerator=NVIDIA_TESLA_T4",
            "resources.vertex.count=2",
            "resources.vertex.cpu_limit=8",
            "resources.vertex.memory_limit=32G",
        ),
    )

    trains = compiled.train_tasks()
    assert len(trains) == 1  # mnist: one candidate, one seed, no search
    for _, train in trains:
        container = compiled.executor(train)["container"]
        assert accelerator(container) == ("NVIDIA_TESLA_T4", 2)
        assert container["image"] == compiled.experiment.images.gpu
        resources = container["resources"]
        # KFP 2.17 writes both the old float fields and the new string ones.
        assert resources.get("resourceCpuLimit", resources.get("cpuLimit")) in ("8", 8.0)
        assert resources.get("resourceMemoryLimit") == "32G" or resources.get("memoryLimit") == 32.0


def test_pets_train_retries_on_vertex(compile_spec):
    compiled = compile_spec("pets", "vertex")

    ((_, train),) = compiled.train_tasks()

    assert compiled.experiment.resources.vertex.retries == 2
    assert train["retryPolicy"]["maxRetryCount"] == 2
    others = [t for n, t in compiled.tasks() if t is not train and "retryPolicy" in t]
    assert others == []


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_vertex_retries_follow_the_experiment(compile_spec, name):
    compiled = compile_spec(name, "vertex")
    retries = compiled.experiment.resources.vertex.retries

    for _, train in compiled.train_tasks():
        if retries:
            assert train["retryPolicy"]["maxRetryCount"] == retries
        else:
            assert "retryPolicy" not in train


RETRIED = "resources.kfp.retries=2"


@pytest.mark.parametrize(
    ("name", "target", "overrides", "max_duration"),
    [
        ("pets", "vertex", (), "3600s"),  # spot: the retry re-launches the custom job
        ("cifar10_vehicles_animals", "vertex", (), "3600s"),  # TPU custom job
        ("cats_vs_dogs", "vertex", (), "3600s"),  # a loop per framework
        ("pets", "kfp", (RETRIED,), "604800s"),
        ("cats_vs_dogs", "kfp", (RETRIED,), "604800s"),
        ("digits", "kfp", (RETRIED, "resources.kfp.retry_max_duration=86400s"), "86400s"),
    ],
)
def test_the_retry_policy_sits_on_the_training_task_in_the_loop_body(
    compile_spec, name, target, overrides, max_duration
):
    """Where both backends honour it (README, "Design notes"): on the training task itself, a
    component task that is a direct child of the ParallelFor's body, never on a DAG task."""
    compiled = compile_spec(name, target, overrides)
    executors = compiled.spec["deploymentSpec"]["executors"]

    trains = compiled.train_tasks()  # one per loop, each a direct child of its loop's body
    assert trains
    for _, train in trains:
        assert train["retryPolicy"] == {
            "maxRetryCount": 2,
            "backoffDuration": "60s",
            "backoffFactor": 2.0,
            "backoffMaxDuration": max_duration,
        }
        # KFP's Argo compiler gives retry templates to tasks of executor components only
        component = compiled.spec["components"][train["componentRef"]["name"]]
        assert "dag" not in component
        assert "container" in executors[component["executorLabel"]]
    # nothing else carries one: not the loops, conditions or other steps
    retried = [task for _, task in compiled.tasks() if "retryPolicy" in task]
    assert len(retried) == len(trains)
    for loop in compiled.loops():
        assert "retryPolicy" not in loop


RETRY_PATCH = (
    Path(__file__).resolve().parents[2] / "infra/kind/workflow-controller-retry-patch.yaml"
)


def argo_retry_strategy(defaults: dict[str, Any], own: dict[str, Any] | None) -> dict[str, Any]:
    """The retryStrategy Argo runs a template with: the controller's templateDefaults merged with
    the template's own (Argo v4.0.5 `mergedTemplateDefaultsInto`: a strategic merge patch of the
    defaults with the template, for every template type; the template's fields win, nested
    objects merge field by field)."""
    merged = dict(defaults)
    for key, value in (own or {}).items():
        base = merged.get(key)
        merged[key] = (
            {**base, **value} if isinstance(base, dict) and isinstance(value, dict) else value
        )
    return merged


def kfp_executor_retry_strategy(policy: dict[str, Any]) -> dict[str, Any]:
    """What KFP 2.17's Argo compiler puts on the executor template of a task with the IR
    `retryPolicy` (argocompiler/container.go `getTaskRetryStrategyFromInput`): limit and
    backoff, no retryPolicy. No other template gets a retryStrategy from it."""
    return {
        "limit": str(policy["maxRetryCount"]),
        "backoff": {
            "duration": policy["backoffDuration"].removesuffix("s"),
            "factor": str(policy["backoffFactor"]),
            "maxDuration": policy["backoffMaxDuration"].removesuffix("s"),
        },
    }


def retries(strategy: dict[str, Any], phase: str) -> int:
    """How often Argo retries a node of that strategy that ended `phase` (Failed: a pod that
    exited non-zero or was evicted; Error: Argo's own), `processNodeRetries`'s switch."""
    policy = strategy.get("retryPolicy", "OnFailure")
    retried = {"Always": {"Failed", "Error"}, "OnError": {"Error"}, "OnFailure": {"Failed"}}
    return int(strategy.get("limit", 0)) if phase in retried[policy] else 0


def test_on_kind_the_failed_pod_of_a_retried_step_is_retried_and_never_a_dag(compile_spec):
    patch = yaml.safe_load(RETRY_PATCH.read_text())
    workflow_defaults = yaml.safe_load(patch["data"]["workflowDefaults"])["spec"]
    defaults = workflow_defaults["templateDefaults"]["retryStrategy"]
    compiled = compile_spec("cats_vs_dogs", "kfp", (RETRIED,))

    seen = {"dag": 0, "retried": 0, "plain": 0}
    for _, task in compiled.tasks():
        is_dag = "dag" in compiled.spec["components"][task["componentRef"]["name"]]
        own = None
        if "retryPolicy" in task and not is_dag:
            own = kfp_executor_retry_strategy(task["retryPolicy"])
        strategy = argo_retry_strategy(defaults, own)
        kind = "dag" if is_dag else "retried" if own else "plain"
        seen[kind] += 1
        if kind == "retried":  # the training pod: its own limit and backoff, any failure
            assert retries(strategy, "Failed") == retries(strategy, "Error") == 2
            assert strategy["backoff"] == own["backoff"]  # type: ignore[index]
        else:  # a loop iteration's DAG, a condition, a step without retries
            assert retries(strategy, "Failed") == retries(strategy, "Error") == 0
    assert seen["dag"] >= 2 and seen["retried"] >= 2 and seen["plain"] > 0  # a loop per framework
    # the rest of KFP's workflowDefaults is kept (a merge patch replaces the whole value)
    assert workflow_defaults["ttlStrategy"] == {
        "secondsAfterCompletion": 3600,
        "secondsAfterSuccess": 3600,
        "secondsAfterFailure": 3600,
    }


def test_with_kfps_own_template_defaults_a_failed_training_pod_is_not_retried(compile_spec):
    """The control: the defaults KFP 2.17's manifests set, as the patch file quotes them."""
    text = RETRY_PATCH.read_text()
    quoted = text[text.index("#     templateDefaults:") : text.index("# Argo (v4")]
    kfp_defaults = yaml.safe_load("\n".join(line[6:] for line in quoted.splitlines()))
    defaults = kfp_defaults["templateDefaults"]["retryStrategy"]
    assert defaults == {"limit": "2", "retryPolicy": "OnError"}
    compiled = compile_spec("cats_vs_dogs", "kfp", (RETRIED,))
    train = next(t for _, t in compiled.tasks() if "retryPolicy" in t)
    strategy = argo_retry_strategy(defaults, kfp_executor_retry_strategy(train["retryPolicy"]))
    assert retries(strategy, "Failed") == 0  # a non-zero exit is never retried
    loop = next(t for t in compiled.loops())
    assert loop  # and a failed loop iteration's DAG would be retried twice on an error
    assert retries(argo_retry_strategy(defaults, None), "Error") == 2


def test_the_kfp_compile_retries_nothing_unless_asked(compile_spec):
    """The control of the test above: no retries by default, and the kfp setting stays kfp's."""
    assert "retryPolicy" not in compile_spec("pets", "kfp").text
    assert "retryPolicy" not in compile_spec("mnist", "vertex", (RETRIED,)).text


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "resources.kfp.retries=11",
            "resources.kfp.retries: Input should be less than or equal to 10",
        ),
        ("resources.kfp.retry_max_duration=7d", "write the duration in seconds with an 's'"),
    ],
)
def test_bad_kfp_retry_settings_name_the_field(override, expected):
    from pipelines.config import ConfigError

    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_experiment("pets", [override])


# --- pipeline parameters -------------------------------------------------------------------


@EVERY
def test_pipeline_parameters_default_to_the_experiment(compile_spec, name, target, assert_contains):
    compiled = compile_spec(name, target)
    experiment = compiled.experiment
    raw = raw_experiment(name)
    defaults = {key: p.get("defaultValue") for key, p in compiled.parameters.items()}

    assert {
        "data_config",
        "gate_metric",
        "gate_min",
        "reference",
        "model_name",
        "registry_root",
    } <= set(defaults)
    assert defaults["gate_min"] == experiment.gate.min == raw["gate"]["min"]
    assert defaults["gate_metric"] == raw["gate"]["metric"]
    assert defaults["model_name"] == raw["register"]["name"]
    assert defaults["reference"] == raw["reference"]
    # data_config is the whole data section: what the file states, plus the defaults
    assert_contains(defaults["data_config"], raw["data"])
    assert defaults["data_config"]["splits"]["test"] == experiment.data.splits.test
    assert compiled.parameters["gate_min"]["parameterType"] == "NUMBER_DOUBLE"
    assert compiled.parameters["data_config"]["parameterType"] == "STRUCT"
    # Docstrings reach the UIs.
    assert all(p.get("description") for p in compiled.parameters.values())


@pytest.mark.parametrize(
    ("target", "overrides", "registry_root"),
    [
        ("vertex", (), "/gcs/bucket-not-configured/registry"),
        ("vertex", ("gcp.bucket=gs://my-bucket",), "/gcs/my-bucket/registry"),
        ("kfp", (), "/mnt/registry"),
    ],
)
def test_registry_root_per_target(compile_spec, target, overrides, registry_root):
    compiled = compile_spec("pets", target, overrides)

    assert compiled.parameters["registry_root"]["defaultValue"] == registry_root


def test_overrides_reach_the_compiled_spec(compile_spec):
    compiled = compile_spec(
        "pets",
        "vertex",
        ("gate.min=0.5", "models.0.epochs=1", "seeds=[0,1]", "data.source=folder:/data/pets"),
    )

    assert compiled.parameters["gate_min"]["defaultValue"] == 0.5
    assert compiled.parameters["data_config"]["defaultValue"]["source"] == "folder:/data/pets"
    (loop,) = compiled.loops()
    items = compiled.loop_items(loop)
    assert [(i["model_spec"]["epochs"], i["seed"]) for i in items] == [(1, 0), (1, 1)]


def test_cli_compile_only_applies_overrides(tmp_path):
    output = tmp_path / "pets.yaml"

    code = main(
        ["-e", "pets", "-t", "vertex", "--set", "gate.min=0.5", "--compile-only", str(output)]
    )

    assert code == 0
    spec = next(d for d in yaml.safe_load_all(output.read_text()) if d is not None)
    assert spec["root"]["inputDefinitions"]["parameters"]["gate_min"]["defaultValue"] == 0.5


# --- no secrets ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "planted",
    [
        "AKIAIOSFODNN7EXAMPLE",
        '"private_key": "-----BEGIN PRIVATE KEY-----',
        "token ya29.a0AfH6SMBx",
        "HF_TOKEN hf_abcdefghijklmnopqrstuvwxyzABCDEF",
        "password: hunter2",
    ],
)
def test_the_credential_scan_finds_planted_secrets(planted, credentials):
    assert credentials.search(f"image: x\n{planted}\n")


@EVERY
def test_no_credentials_in_the_compiled_spec(compile_spec, name, target, credentials):
    compiled = compile_spec(name, target)

    assert not credentials.search(compiled.text), credentials.search(compiled.text)


# --- the real protos -----------------------------------------------------------------------


def parse_strictly(document: dict[str, Any], message: Any) -> Any:
    """`document` as the protobuf `message`; an unknown field or a bad value raises ParseError."""
    from google.protobuf import json_format

    return json_format.ParseDict(document, message, ignore_unknown_fields=False)


def worker_pool_specs(spec: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The worker pool specs of every Vertex AI custom job the spec launches."""
    found = []
    for component in spec["components"].values():
        parameters = component.get("inputDefinitions", {}).get("parameters", {})
        if "worker_pool_specs" in parameters:
            found.append(parameters["worker_pool_specs"]["defaultValue"])
    return found


def check_against_the_protos(text: str) -> dict[str, int]:
    """Parse every document of a compiled package as the message its reader parses it into:
    the pipeline spec as PipelineSpec, a platform document as PlatformSpec with each executor
    as kfp-kubernetes' KubernetesExecutorConfig, each custom job's worker pools as Vertex AI's
    CustomJobSpec. Returns how many of each it parsed."""
    from google.cloud.aiplatform_v1.types import CustomJobSpec
    from kfp.kubernetes import kubernetes_executor_config_pb2
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec, *platforms = [d for d in yaml.load_all(text, Loader=SafeLoader) if d is not None]
    parse_strictly(spec, pipeline_spec_pb2.PipelineSpec())
    counts = {"platforms": 0, "executors": 0, "worker_pools": 0}
    for platform in platforms:
        parse_strictly(platform, pipeline_spec_pb2.PlatformSpec())
        counts["platforms"] += 1
        for executor in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values():
            parse_strictly(executor, kubernetes_executor_config_pb2.KubernetesExecutorConfig())
            counts["executors"] += 1
    for pools in worker_pool_specs(spec):
        parse_strictly({"worker_pool_specs": pools}, CustomJobSpec.pb(CustomJobSpec()))
        counts["worker_pools"] += len(pools)
    return counts


@EVERY
def test_the_compiled_package_parses_strictly_as_the_real_protos(compile_spec, name, target):
    compiled = compile_spec(name, target)
    vertex = compiled.experiment.resources.vertex

    counts = check_against_the_protos(compiled.text)

    # Only the kfp compile has a platform document, and it configures every step.
    assert counts["platforms"] == (1 if target == "kfp" else 0)
    assert (counts["executors"] > 0) == (target == "kfp")
    custom_job = vertex.is_tpu or vertex.spot or vertex.flex_start or vertex.reservation
    expected_pools = len(compiled.train_tasks()) if target == "vertex" and custom_job else 0
    assert counts["worker_pools"] == expected_pools


@pytest.mark.parametrize(
    ("where", "target"),
    [("spec", "vertex"), ("platform", "kfp"), ("executor", "kfp"), ("worker_pool", "vertex")],
)
def test_the_strict_parse_rejects_an_unknown_field(compile_spec, where, target):
    """The control: the same check fails on a package with one field the protos lack."""
    from google.protobuf.json_format import ParseError

    compiled = compile_spec("pets", target)
    documents = [d for d in yaml.load_all(compiled.text, Loader=SafeLoader) if d is not None]
    if where == "spec":
        documents[0]["root"]["dag"]["tasks"]["ingest"]["retryPolicyy"] = {}
    elif where == "platform":
        documents[1]["platforms"]["kubernetes"]["pipelineConfigg"] = {}
    elif where == "executor":
        executors = documents[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
        next(iter(executors.values()))["nodeSelectorr"] = {}
    else:
        (pools,) = worker_pool_specs(documents[0])
        pools[0]["machine_spec"]["tpu_topologyy"] = "2x2"
    text = yaml.safe_dump_all(documents)

    with pytest.raises(ParseError):
        check_against_the_protos(text)


@pytest.mark.parametrize(
    ("target", "overrides", "root"),
    [
        ("local", (), "runs/pets/checkpoints"),
        ("vertex", ("gcp.bucket=gs://my-bucket",), "/gcs/my-bucket/pipeline-root/pets/checkpoints"),
        ("kfp", (), ""),  # minio:// is no file path in the pod: the step's own folder
    ],
)
def test_training_checkpoints_live_outside_the_run(compile_spec, target, overrides, root):
    compiled = compile_spec("pets", target, overrides)
    tasks = compiled.train_tasks()
    assert tasks
    for _, task in tasks:
        constant = task["inputs"]["parameters"]["checkpoint_root"]["runtimeValue"]["constant"]
        expected = (
            str((compiled.runs_dir / "pets" / "checkpoints").resolve())
            if target == "local"
            else root
        )
        assert constant == expected
        assert task["inputs"]["parameters"]["fresh"]["runtimeValue"]["constant"] is False


@pytest.mark.parametrize("target", TARGETS)
def test_the_data_snapshot_is_an_input_of_ingest(compile_spec, target):
    compiled = compile_spec("digits", target)
    assert compiled.parameters["data_snapshot"]["parameterType"] == "STRING"
    ingest = compiled.spec["root"]["dag"]["tasks"]["ingest"]
    wired = ingest["inputs"]["parameters"]["data_snapshot"]
    assert wired["componentInputParameter"] == "data_snapshot"


@pytest.mark.parametrize("target", TARGETS)
def test_a_failed_candidate_fails_its_task_and_compare_runs_past_it_only_with_continue(
    compile_spec, target
):
    """compare.on_failure: continue is KFP's own trigger policy on the compare task, locally
    and on Vertex AI (not on KFP's backend, which cannot run it in the DAG): train and evaluate carry no failure switch (a failed one fails its task), and
    compare is told which runs to expect, so those without a result are its failed runs."""
    goes_on = compile_spec("digits", target, ("compare.on_failure=continue", "seeds=[0,1]"))
    stops = compile_spec("digits", target, ("seeds=[0,1]",))
    for compiled in (goes_on, stops):
        for loop in compiled.loops():
            for task in compiled.loop_tasks(loop).values():
                assert "on_failure" not in task["inputs"].get("parameters", {})
    compare = goes_on.spec["root"]["dag"]["tasks"]["compare"]
    if target == "kfp":
        # KFP 2.17's backend runs such a task as an exit hook outside the DAG (KfpTarget)
        assert "triggerPolicy" not in compare
    else:
        assert compare["triggerPolicy"] == {"strategy": "ALL_UPSTREAM_TASKS_COMPLETED"}
    assert "triggerPolicy" not in stops.spec["root"]["dag"]["tasks"]["compare"]
    assert any(d.startswith("for-loop") for d in compare["dependentTasks"])
    planned = compare["inputs"]["parameters"]["planned"]["runtimeValue"]["constant"]
    assert planned == [{"name": "small-cnn", "seed": 0}, {"name": "small-cnn", "seed": 1}]
    # nothing after compare ignores failures: gate and registration need its summary
    others = [
        name
        for name, task in goes_on.tasks()
        if name != "compare" and task.get("triggerPolicy", {}).get("strategy")
    ]
    assert others == []
