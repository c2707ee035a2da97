"""The experiment schema: bundled experiments, error messages, --set overrides, candidates."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.spec import KERAS_APPLICATIONS
from pipelines.config import (
    EXPERIMENTS_DIR,
    ConfigError,
    Experiment,
    list_experiments,
    load_experiment,
    parse_override,
    resolve_experiment_path,
)

BUNDLED = sorted(path.stem for path in EXPERIMENTS_DIR.glob("*.yaml"))

# The smallest valid experiment; every bad case below breaks exactly one thing in it.
BASE: dict[str, Any] = {
    "description": "a valid experiment that each bad case breaks in one place",
    "data": {"source": "sklearn:digits", "image_size": [8, 8], "channels": 1},
    "models": [{"name": "cnn", "architecture": "small_cnn", "epochs": 1}],
    "seeds": [0],
}


def write(tmp_path: Path, content: dict[str, Any] | str, name: str = "experiment.yaml") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def variant(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    change(raw)
    return raw


def model(raw: dict[str, Any]) -> dict[str, Any]:
    return raw["models"][0]


# --- bundled experiments -------------------------------------------------------------------


def test_the_bundled_experiments_are_the_ones_the_design_names():
    assert set(BUNDLED) == {
        "digits",
        "mnist",
        "cifar10",
        "cifar100",
        "pets",
        "cub200",
        "cats_vs_dogs",
        "cifar10_vehicles_animals",
    }


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_experiment_loads_and_validates(name):
    experiment = load_experiment(name)

    assert isinstance(experiment, Experiment)
    assert experiment.description
    assert experiment.reference is not None, f"{name} states no reference result"
    assert 0.0 <= experiment.reference.value <= 1.0
    assert experiment.registration is not None
    assert experiment.candidates() or experiment.searched()
    # By name and by path it is the same experiment.
    assert load_experiment(str(EXPERIMENTS_DIR / f"{name}.yaml")) == experiment


def test_list_experiments_gives_each_bundled_file_its_description():
    listed = list_experiments()

    assert sorted(listed) == BUNDLED
    for name, description in listed.items():
        raw = yaml.safe_load((EXPERIMENTS_DIR / f"{name}.yaml").read_text())
        assert description == raw["description"].strip()


# --- bad experiment files ------------------------------------------------------------------

TPU = {
    "vertex": {
        "machine_type": "ct5lp-hightpu-4t",
        "accelerator": "TPU_V5_LITEPOD",
        "tpu_topology": "2x2",
    }
}
VIT = {"name": "vit", "framework": "transformers", "checkpoint": "google/vit-base-patch16-224"}

# (id, the broken experiment, substrings of the message: the field path first, then what is
# wrong or what is allowed)
BAD_FIELDS: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    (
        "unknown top-level key",
        variant(lambda r: r.update(epochs=3)),
        ("epochs:", "unknown field", "(got 3)"),
    ),
    (
        "typo in a nested key",
        variant(lambda r: model(r).update(epoch=3)),
        ("models.0.epoch:", "unknown field", "did you mean epochs?"),
    ),
    (
        "missing data.source",
        variant(lambda r: r["data"].pop("source")),
        ("data.source:", "required field is missing"),
    ),
    (
        "source scheme unknown",
        variant(lambda r: r["data"].update(source="s3://bucket/images")),
        ("data.source:", "'s3://bucket/images' is not a data source", "folder:...", "tfds:..."),
    ),
    (
        "source without a name",
        variant(lambda r: r["data"].update(source="tfds:")),
        ("data.source:", "'tfds:' is not a data source"),
    ),
    (
        "sklearn dataset not embedded",
        variant(lambda r: r["data"].update(source="sklearn:iris")),
        ("data.source:", "sklearn:iris is not embedded", "available: digits"),
    ),
    (
        "bad extra train source",
        variant(lambda r: r["data"].update(extra_train_sources=["ftp://x"])),
        ("data.extra_train_sources:", "'ftp://x' is not a data source"),
    ),
    (
        "image_size with three numbers",
        variant(lambda r: r["data"].update(image_size=[8, 8, 1])),
        ("data.image_size:", "at most 2 items", "(got [8, 8, 1])"),
    ),
    (
        "image_size too small",
        variant(lambda r: r["data"].update(image_size=[4, 8])),
        ("data.image_size.0:", "greater than or equal to 8", "(got 4)"),
    ),
    (
        "two channels",
        variant(lambda r: r["data"].update(channels=2)),
        ("data.channels:", "1 or 3", "(got 2)"),
    ),
    (
        "splits leave nothing to train on",
        variant(lambda r: r["data"].update(splits={"validation": 0.5, "test": 0.4})),
        ("data.splits:", "validation + test = 0.90", "keep their sum below 0.9"),
    ),
    (
        "negative validation fraction",
        variant(lambda r: r["data"].update(splits={"validation": -0.1})),
        ("data.splits.validation:", "greater than or equal to 0", "(got -0.1)"),
    ),
    (
        "one class",
        variant(lambda r: r["data"].update(classes=["cat"])),
        ("data.classes:", "at least 2 classes", "(got ['cat'])"),
    ),
    (
        "repeated class",
        variant(lambda r: r["data"].update(classes=["cat", "dog", "cat"])),
        ("data.classes:", "class names must be distinct"),
    ),
    (
        "keras model without architecture",
        variant(lambda r: model(r).pop("architecture")),
        ("models.0:", "model 'cnn': keras models need 'architecture'", "small_cnn", "resnet50v2"),
    ),
    (
        "unknown architecture",
        variant(lambda r: model(r).update(architecture="resnet9000")),
        ("models.0:", "architecture 'resnet9000' is unknown", "use one of", "efficientnetv2l"),
    ),
    (
        "keras model with a checkpoint",
        variant(lambda r: model(r).update(checkpoint="google/vit-base-patch16-224")),
        (
            "models.0:",
            "'checkpoint' is for framework: transformers",
            "'architecture' and 'weights'",
        ),
    ),
    (
        "transformers model without checkpoint",
        variant(lambda r: r["models"].__setitem__(0, {"name": "vit", "framework": "transformers"})),
        ("models.0:", "model 'vit': transformers models need 'checkpoint'", "Hub id"),
    ),
    (
        "transformers model with an architecture",
        variant(lambda r: r["models"].__setitem__(0, {**VIT, "architecture": "resnet50v2"})),
        ("models.0:", "'architecture' is for framework: keras", "take 'checkpoint'"),
    ),
    (
        "scratch architecture with imagenet weights",
        variant(lambda r: model(r).update(weights="imagenet")),
        ("models.0:", "small_cnn trains from scratch", "set weights: none"),
    ),
    (
        "unknown framework",
        variant(lambda r: model(r).update(framework="pytorch")),
        ("models.0.framework:", "'keras' or 'transformers'", "(got 'pytorch')"),
    ),
    (
        "duplicate model names",
        variant(lambda r: r["models"].append({"name": "cnn", "architecture": "lenet5"})),
        ("models:", "model names must be unique", "repeated: cnn"),
    ),
    (
        "model name with uppercase and a space",
        variant(lambda r: model(r).update(name="Small CNN")),
        ("models.0.name:", "lower-case letters, digits and '-'", "(e.g. small-cnn)"),
    ),
    (
        "zero epochs",
        variant(lambda r: model(r).update(epochs=0)),
        ("models.0.epochs:", "greater than or equal to 1", "(got 0)"),
    ),
    (
        "epochs not a number",
        variant(lambda r: model(r).update(epochs="ten")),
        ("models.0.epochs:", "valid integer", "(got 'ten')"),
    ),
    (
        "zero learning rate",
        variant(lambda r: model(r).update(optimizer={"learning_rate": 0})),
        ("models.0.optimizer.learning_rate:", "greater than 0", "(got 0)"),
    ),
    (
        "negative learning rate",
        variant(lambda r: model(r).update(optimizer={"learning_rate": -0.001})),
        ("models.0.optimizer.learning_rate:", "greater than 0", "(got -0.001)"),
    ),
    (
        "unknown optimizer",
        variant(lambda r: model(r).update(optimizer={"name": "adagrad"})),
        ("models.0.optimizer.name:", "'adam', 'adamw', 'sgd' or 'rmsprop'", "(got 'adagrad')"),
    ),
    (
        "unknown flip",
        variant(lambda r: model(r).update(augment={"flip": "diagonal"})),
        ("models.0.augment.flip:", "'horizontal'", "'horizontal_and_vertical'", "(got 'diagonal')"),
    ),
    (
        "duplicate seeds",
        variant(lambda r: r.update(seeds=[0, 1, 0])),
        ("seeds:", "seeds must be distinct", "(got [0, 1, 0])"),
    ),
    (
        "empty models list",
        variant(lambda r: r.update(models=[])),
        ("models:", "at least 1 item", "(got [])"),
    ),
    (
        "gate min above 1",
        variant(lambda r: r.update(gate={"min": 1.5})),
        ("gate.min:", "less than or equal to 1", "(got 1.5)"),
    ),
    (
        "unknown gate metric",
        variant(lambda r: r.update(gate={"metric": "auc"})),
        ("gate.metric:", "'accuracy'", "'macro_f1'", "(got 'auc')"),
    ),
    (
        "reference given in percent",
        variant(lambda r: r.update(reference={"metric": "accuracy", "value": 97.46})),
        ("reference.value:", "less than or equal to 1", "(got 97.46)"),
    ),
    (
        "unknown vertex accelerator",
        variant(lambda r: r.update(resources={"vertex": {"accelerator": "NVIDIA_GTX_1080"}})),
        (
            "resources.vertex:",
            "accelerator 'NVIDIA_GTX_1080' is unknown",
            "NVIDIA_L4",
            "TPU_V5_LITEPOD",
        ),
    ),
    (
        "TPU without tpu_topology",
        variant(lambda r: r.update(resources={"vertex": {"accelerator": "TPU_V5_LITEPOD"}})),
        ("resources.vertex:", "TPU_V5_LITEPOD needs tpu_topology", "2x2"),
    ),
    (
        "tpu_topology with a GPU",
        variant(
            lambda r: r.update(
                resources={"vertex": {"accelerator": "NVIDIA_L4", "tpu_topology": "2x2"}}
            )
        ),
        ("resources.vertex:", "tpu_topology needs a TPU accelerator"),
    ),
    (
        "malformed tpu_topology",
        variant(
            lambda r: r.update(
                resources={"vertex": {"accelerator": "TPU_V5_LITEPOD", "tpu_topology": "four"}}
            )
        ),
        ("resources.vertex.tpu_topology:", "(got 'four')"),
    ),
    (
        "transformers model on a TPU",
        variant(lambda r: (r.update(resources=TPU), r["models"].append(VIT))),
        (
            "(top level):",
            "TPU training is supported for keras models only",
            "vit use transformers",
            "resources.vertex.accelerator: NVIDIA_L4",
            "use a keras architecture",
        ),
    ),
    (
        "negative kfp gpus",
        variant(lambda r: r.update(resources={"kfp": {"gpus": -1}})),
        ("resources.kfp.gpus:", "greater than or equal to 0", "(got -1)"),
    ),
    (
        "bucket not gs://",
        variant(lambda r: r.update(gcp={"bucket": "s3://my-bucket"})),
        ("gcp.bucket:", "^gs://", "(got 's3://my-bucket')"),
    ),
    (
        "registered name not a slug",
        variant(lambda r: r.update(register={"name": "Digits_Classifier"})),
        ("register.name:", "not '_'", "(got 'Digits_Classifier')"),
    ),
]


@pytest.mark.parametrize(
    ("broken", "expected"),
    [pytest.param(raw, expected, id=case) for case, raw, expected in BAD_FIELDS],
)
def test_bad_field_is_named_with_what_is_allowed(tmp_path, broken, expected):
    path = write(tmp_path, broken)

    with pytest.raises(ConfigError) as caught:
        load_experiment(str(path))

    message = str(caught.value)
    assert message.startswith(f"{path}: 1 problem(s) in the experiment"), message
    field, *details = expected
    assert f"\n  {field} " in message, message
    for detail in details:
        assert detail in message, message


def test_bad_cases_are_distinct_and_break_a_valid_experiment(tmp_path):
    assert len({case for case, _, _ in BAD_FIELDS}) == len(BAD_FIELDS) >= 20
    assert len({yaml.safe_dump(raw) for _, raw, _ in BAD_FIELDS}) == len(BAD_FIELDS)
    assert load_experiment(str(write(tmp_path, BASE))).models[0].name == "cnn"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "- digits\n- mnist\n", "the experiment must be a YAML mapping, got list", id="a list"
        ),
        pytest.param(
            "just a string\n", "the experiment must be a YAML mapping, got str", id="a string"
        ),
        pytest.param("data: {source: [sklearn:digits\n", "not valid YAML", id="unclosed bracket"),
        pytest.param("data:\n  source: a\n source: b\n", "not valid YAML", id="bad indentation"),
    ],
)
def test_file_that_is_not_an_experiment_mapping(tmp_path, text, expected):
    path = write(tmp_path, text)

    with pytest.raises(ConfigError) as caught:
        load_experiment(str(path))

    assert str(caught.value).startswith(f"{path}: {expected}")


def test_empty_file_reports_the_required_sections(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_experiment(str(write(tmp_path, "")))

    message = str(caught.value)
    assert "2 problem(s)" in message
    assert "  data: required field is missing" in message
    assert "  models: required field is missing" in message


def test_every_problem_is_reported_at_once(tmp_path):
    broken = variant(lambda r: (r["data"].update(channels=2), model(r).update(epochs=0)))

    with pytest.raises(ConfigError) as caught:
        load_experiment(str(write(tmp_path, broken)))

    message = str(caught.value)
    assert "2 problem(s)" in message
    assert "  data.channels: " in message
    assert "  models.0.epochs: " in message


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# --- the experiment's name -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "name"),
    [
        ("digits.yaml", "digits"),
        ("My_Experiment v2.yaml", "my-experiment-v2"),
        ("__.yaml", "experiment"),
    ],
)
def test_name_defaults_to_a_slug_of_the_file_name(tmp_path, filename, name):
    experiment = load_experiment(str(write(tmp_path, BASE, filename)))

    assert experiment.name == name
    assert experiment.registration is not None
    assert experiment.registration.name == f"{name}-classifier"


def test_a_long_file_name_still_gives_a_valid_name(tmp_path):
    filename = "cifar10_scratch_cnn_with_heavy_augmentation_and_label_smoothing.yaml"

    experiment = load_experiment(str(write(tmp_path, BASE, filename)))

    assert experiment.name.startswith("cifar10-scratch-cnn-with")
    assert len(experiment.name) <= 40
    assert not experiment.name.endswith("-")


def test_name_in_the_file_wins_over_the_file_name(tmp_path):
    experiment = load_experiment(str(write(tmp_path, {**BASE, "name": "digits-small"})))

    assert experiment.name == "digits-small"


# --- overrides (--set) ---------------------------------------------------------------------


def test_override_scalars_are_parsed_as_yaml():
    experiment = load_experiment(
        "digits",
        [
            "models.0.epochs=3",
            "gate.min=0.5",
            "models.0.optimizer.learning_rate=2.5e-4",
            "resources.vertex.spot=true",
            "description=a quick run",
        ],
    )

    assert experiment.models[0].epochs == 3
    assert experiment.gate.min == 0.5
    assert experiment.models[0].optimizer.learning_rate == pytest.approx(2.5e-4)
    assert experiment.resources.vertex.spot is True
    assert experiment.description == "a quick run"


def test_override_with_a_list():
    assert load_experiment("digits", ["seeds=[0,1,2]"]).seeds == [0, 1, 2]
    assert load_experiment("pets", ["data.image_size=[64, 48]"]).data.image_size == (64, 48)


def test_override_list_index_changes_only_that_item():
    experiment = load_experiment("cats_vs_dogs", ["models.1.epochs=1"])
    bundled = load_experiment("cats_vs_dogs")

    assert experiment.models[1].epochs == 1
    assert bundled.models[1].epochs != 1
    assert [m.epochs for i, m in enumerate(experiment.models) if i != 1] == [
        m.epochs for i, m in enumerate(bundled.models) if i != 1
    ]


def test_override_one_past_the_end_appends():
    assert load_experiment("digits", ["seeds.1=7"]).seeds == [0, 7]


def test_override_creates_missing_sections():
    # digits.yaml has neither a gcp nor a resources section.
    experiment = load_experiment("digits", ["gcp.project=p", "resources.kfp.gpus=2"])

    assert experiment.gcp.project == "p"
    assert experiment.resources.kfp.gpus == 2


def test_numbers_are_accepted_for_text_fields():
    # YAML reads these as numbers; KFP wants cpu_limit as text ("8"), projects may be numeric.
    experiment = load_experiment(
        "digits",
        ["resources.vertex.cpu_limit=8", "gcp.project=123456789012", "data.classes=[0, 1]"],
    )

    assert experiment.resources.vertex.cpu_limit == "8"
    assert experiment.gcp.project == "123456789012"
    assert experiment.data.classes == ["0", "1"]


def test_override_data_source_with_a_colon_and_slashes():
    experiment = load_experiment("pets", ["data.source=folder:/data/pets"])

    assert experiment.data.source == "folder:/data/pets"
    assert experiment.data.scheme == "folder"


def test_quoted_override_stays_a_string():
    assert load_experiment("digits", ['description="yes"']).description == "yes"


def test_later_override_wins():
    assert load_experiment("digits", ["gate.min=0.1", "gate.min=0.7"]).gate.min == 0.7


def test_override_does_not_touch_the_bundled_file():
    before = (EXPERIMENTS_DIR / "digits.yaml").read_text()

    load_experiment("digits", ["models.0.epochs=1"])

    assert (EXPERIMENTS_DIR / "digits.yaml").read_text() == before
    assert load_experiment("digits").models[0].epochs != 1


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("models.3.epochs=1", "'models.3' is out of range (the list has 1 items)"),
        ("seeds.5=1", "index 5 is out of range"),
        ("models.epochs=1", "cannot set 'epochs' on a non-mapping"),
        ("seeds.first.value=1", "'seeds.first' is not a mapping"),
        ("models.0.epochs", "expected KEY=VALUE, e.g. --set models.0.epochs=1"),
        ("=1", "expected KEY=VALUE"),
        ("models..epochs=1", "empty component in key 'models..epochs'"),
        ("seeds=[0, 1", "not valid YAML"),
        ("description.text=x", "cannot set 'text' on a non-mapping"),
    ],
)
def test_bad_override_says_what_is_wrong(override, expected):
    with pytest.raises(ConfigError) as caught:
        load_experiment("digits", [override])

    message = str(caught.value)
    assert message.startswith(f"--set {override!r}: ")
    assert expected in message


@pytest.mark.parametrize(
    ("override", "field", "detail"),
    [
        ("models.0.epochs=0", "models.0.epochs", "greater than or equal to 1"),
        ("data.channels=2", "data.channels", "1 or 3"),
        ("gate.minimum=0.5", "gate.minimum", "unknown field"),
        ("data.source=s3://bucket", "data.source", "is not a data source"),
        ("resources.vertex.accelerator=TPU_V6E", "resources.vertex", "needs tpu_topology"),
    ],
)
def test_override_that_breaks_the_experiment_names_the_field(override, field, detail):
    with pytest.raises(ConfigError) as caught:
        load_experiment("digits", [override])

    message = str(caught.value)
    assert f"\n  {field}: " in message
    assert detail in message


def test_parse_override_splits_keys_and_indices():
    assert parse_override("models.0.optimizer.name=sgd") == (
        ["models", 0, "optimizer", "name"],
        "sgd",
    )
    assert parse_override("gate.min=") == (["gate", "min"], "")
    assert parse_override(" gcp.region =europe-west4") == (["gcp", "region"], "europe-west4")


# --- candidates ----------------------------------------------------------------------------


def test_candidates_are_every_model_times_every_seed(assert_contains):
    experiment = load_experiment("cifar10_vehicles_animals")
    raw = yaml.safe_load((EXPERIMENTS_DIR / "cifar10_vehicles_animals.yaml").read_text())

    candidates = experiment.candidates()

    assert len(candidates) == len(raw["models"]) * len(raw["seeds"]) == 12
    assert [(c["model_spec"]["name"], c["seed"]) for c in candidates] == [
        (m["name"], seed) for m in raw["models"] for seed in raw["seeds"]
    ]
    for candidate in candidates:
        assert set(candidate) == {"model_spec", "seed"}
        source = next(m for m in raw["models"] if m["name"] == candidate["model_spec"]["name"])
        assert_contains(candidate["model_spec"], source)
        # Loop items go into the compiled spec as JSON, without nulls.
        assert "checkpoint" not in candidate["model_spec"]
        assert json.loads(json.dumps(candidate)) == candidate


def test_candidates_carry_defaults_and_follow_seed_overrides():
    experiment = load_experiment("digits", ["seeds=[3,4,5,6]"])

    candidates = experiment.candidates()

    assert [c["seed"] for c in candidates] == [3, 4, 5, 6]
    spec = candidates[0]["model_spec"]
    assert spec["framework"] == "keras"
    assert spec["optimizer"]["name"] == "adam"
    assert spec["augment"]["flip"] == "none"


def test_frameworks_are_listed_once_each():
    assert load_experiment("cats_vs_dogs").frameworks() == ["keras", "transformers"]
    assert load_experiment("pets").frameworks() == ["transformers"]
    assert load_experiment("mnist").frameworks() == ["keras"]


def test_register_defaults_to_the_experiment_name(tmp_path):
    assert "register" not in BASE
    experiment = load_experiment(str(write(tmp_path, {**BASE, "name": "flowers"})))

    assert experiment.registration is not None
    assert experiment.registration.name == "flowers-classifier"
    assert experiment.registration.aliases == []


def test_default_register_name_of_a_long_experiment_name_is_a_valid_slug(tmp_path):
    experiment = load_experiment(str(write(tmp_path, {**BASE, "name": "x" * 39})))

    assert experiment.registration is not None
    assert experiment.registration.name == "x" * 39


def test_register_in_the_file_wins():
    experiment = load_experiment("pets")

    assert experiment.registration is not None
    assert experiment.registration.name == "pets-classifier"


def test_keras_applications_accept_imagenet_weights(tmp_path):
    def imagenet(raw: dict[str, Any]) -> None:
        model(raw).update(architecture=next(iter(KERAS_APPLICATIONS)), weights="imagenet")
        raw["data"].update(image_size=[32, 32], channels=3)  # what imagenet backbones take

    applications = variant(imagenet)

    experiment = load_experiment(str(write(tmp_path, applications)))

    assert experiment.models[0].weights == "imagenet"


# --- resolve_experiment_path ---------------------------------------------------------------


def test_resolve_a_bundled_name():
    assert resolve_experiment_path("digits") == EXPERIMENTS_DIR / "digits.yaml"


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_resolve_a_path(tmp_path, suffix):
    path = write(tmp_path, BASE, f"mine{suffix}")

    assert resolve_experiment_path(str(path)) == path
    assert load_experiment(str(path)).name == "mine"


def test_resolve_an_unknown_name_lists_the_bundled_ones():
    with pytest.raises(ConfigError) as caught:
        resolve_experiment_path("imagenet")

    message = str(caught.value)
    assert "unknown experiment 'imagenet'" in message
    assert "use a YAML path or one of" in message
    for name in BUNDLED:
        assert name in message


def test_resolve_a_missing_yaml_path(tmp_path):
    missing = tmp_path / "nope.yaml"

    with pytest.raises(ConfigError) as caught:
        resolve_experiment_path(str(missing))

    assert str(caught.value) == f"experiment file {missing} does not exist"
