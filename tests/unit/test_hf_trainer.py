"""Hugging Face fine-tuning on tiny ViT / ConvNeXt V2 checkpoints built from configs.

Nothing is downloaded: each checkpoint is a randomly initialised model saved with
save_pretrained, plus an image processor config, in a temp folder.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch  # noqa: E402

from components.common.model_card import ModelCard  # noqa: E402
from components.common.results import DatasetInfo  # noqa: E402
from components.common.tfrecord import parse_example, read_records, read_split  # noqa: E402
from components.models.loading import ModelLoadError, load_classifier  # noqa: E402
from components.models.transformers import (  # noqa: E402
    CheckpointError,
    Preprocessing,
    load_model,
    model_inputs,
    resolve_checkpoint,
)
from components.spec import Augment, ModelSpec  # noqa: E402
from components.train.transformers.input import (  # noqa: E402
    BatchOrder,
    SplitBatches,
    augment_batch,
)
from components.train.transformers.loop import Progress  # noqa: E402
from components.train.transformers.optim import (  # noqa: E402
    layer_ids,
    make_optimizer,
    parameter_groups,
    schedule,
)
from components.train.transformers.state import LAST, PROGRESS, STATE_DIR  # noqa: E402
from components.train.transformers.trainer import (  # noqa: E402
    WORKER_MODULE,
    Request,
    fine_tune,
    train_transformers,
)
from pipelines.config import load_experiment  # noqa: E402

CLASSES = ["bright", "dark", "mid"]  # ingest orders class names alphabetically
LEVELS = {"dark": 50, "mid": 128, "bright": 205}


def make_dataset(image_dataset: Callable[..., Path], root: Path, per_class: int = 24) -> Path:
    """Three classes of noisy flat images (20 x 28, so every model resizes them)."""
    return image_dataset(root, LEVELS, per_class, (20, 28), noise=25, image_size=(32, 32))


def hf_spec(name: str, checkpoint: Path, **overrides: Any) -> ModelSpec:
    fields: dict[str, Any] = {
        "name": name,
        "framework": "transformers",
        "checkpoint": str(checkpoint),
        "epochs": 2,
        "batch_size": 16,
        "optimizer": {
            "name": "adamw",
            "learning_rate": 1e-3,
            "weight_decay": 0.05,
            "schedule": "cosine",
            "warmup_epochs": 1,
        },
        **overrides,
    }
    return ModelSpec.model_validate(fields)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, image_dataset: Callable[..., Path]) -> Path:
    return make_dataset(image_dataset, tmp_path_factory.mktemp("hf-data"))


@pytest.fixture(scope="module")
def checkpoints(
    tmp_path_factory: pytest.TempPathFactory, tiny_hf_checkpoint: Callable[..., Path]
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf-checkpoints")
    return {kind: tiny_hf_checkpoint(root / kind, kind) for kind in ("vit", "convnextv2")}


@pytest.fixture(scope="module")
def fine_tuned(
    dataset: Path, checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Any, Path]]:
    """Each tiny model fine-tuned for 2 epochs with the whole recipe switched on."""
    results = {}
    for kind, checkpoint in checkpoints.items():
        root = tmp_path_factory.mktemp(f"hf-{kind}")
        spec = hf_spec(
            kind,
            checkpoint,
            augment={"flip": "horizontal", "rotation": 0.05, "zoom": 0.1, "contrast": 0.1},
            label_smoothing=0.1,
            layer_decay=0.8,
            gradient_accumulation_steps=2,
            early_stopping_patience=3,
        )
        result = fine_tune(
            str(dataset),
            spec,
            0,
            str(root / "model"),
            str(root / "checkpoints"),
            str(root / "tensorboard"),
        )
        results[kind] = (result, root / "model")
    return results


# --- preprocessing and config ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "input_size", "crop_size"),
    [
        ({"size": {"height": 224, "width": 224}}, (224, 224), None),
        ({"size": {"shortest_edge": 224}, "crop_pct": 0.875}, (256, 256), (224, 224)),
        ({"size": {"shortest_edge": 384}, "crop_pct": 0.875}, (384, 384), None),
        ({"size": 256, "do_center_crop": True, "crop_size": 224}, (256, 256), (224, 224)),
        (
            {
                "size": {"shortest_edge": 256},
                "do_center_crop": True,
                "crop_size": {"height": 224, "width": 224},
            },
            (256, 256),
            (224, 224),
        ),
    ],
)
def test_preprocessing_follows_the_processor_config(
    config: dict[str, Any], input_size: tuple[int, int], crop_size: tuple[int, int] | None
) -> None:
    prep = Preprocessing.from_processor_config(
        {**config, "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    )
    assert prep.input_size == input_size
    assert prep.crop_size == crop_size
    assert prep.mean == (0.485, 0.456, 0.406) and prep.rescale_factor == pytest.approx(1 / 255)
    unnormalised = Preprocessing.from_processor_config({**config, "do_normalize": False})
    assert (unnormalised.mean, unnormalised.std) == ((0.0,) * 3, (1.0,) * 3)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"do_resize": False, "size": 224}, "do_resize: false"),
        ({"size": {"longest_edge": 1333}}, "fixed size is needed"),
        ({"size": 224, "do_center_crop": True, "crop_size": 256}, "larger than the resized"),
    ],
)
def test_processor_configs_without_a_fixed_size_are_rejected(
    config: dict[str, Any], message: str
) -> None:
    with pytest.raises(CheckpointError, match=message):
        Preprocessing.from_processor_config(config, "some/checkpoint")


def test_new_spec_fields_validate_per_framework() -> None:
    spec = hf_spec("vit", Path("ckpt"), gradient_accumulation_steps=4, layer_decay=0.75)
    assert (spec.gradient_accumulation_steps, spec.layer_decay) == (4, 0.75)
    with pytest.raises(ValueError, match="are for framework: transformers"):
        ModelSpec(name="cnn", architecture="cnn3", layer_decay=0.8)
    with pytest.raises(ValueError, match=r"keras-only settings given \(fine_tune, jit_compile\)"):
        hf_spec("vit", Path("ckpt"), fine_tune={"epochs": 2}, jit_compile=True)
    with pytest.raises(ValueError, match="greater than 0"):
        hf_spec("vit", Path("ckpt"), layer_decay=0)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "pets", "cub200", "cats_vs_dogs"])
def test_reference_recipes_warm_up_and_decay(name: str) -> None:
    models = [m for m in load_experiment(name).models if m.framework == "transformers"]
    assert models
    for model in models:
        # ConvNeXt V2 fine-tunes with AdamW; the ViT paper fine-tunes with SGD and momentum
        expected = "sgd" if model.checkpoint and "vit" in model.checkpoint else "adamw"
        assert model.optimizer.name == expected
        assert model.optimizer.schedule == "cosine"
        # a warm-up epoch protects the pretrained weights from the new head's first gradients
        assert model.optimizer.warmup_epochs >= 1 or model.epochs < 10


# --- recipe pieces ---------------------------------------------------------------------------


def test_layer_ids_order_the_backbone_blocks(checkpoints: dict[str, Path]) -> None:
    vit = load_model(checkpoints["vit"])
    ids, top = layer_ids(name for name, _ in vit.named_parameters())
    assert top == 3  # embeddings 0, two blocks, then the final norm and head
    assert ids["vit.embeddings.cls_token"] == 0
    assert {ids[n] for n in ids if ".layers.0." in n} == {1}
    assert {ids[n] for n in ids if ".layers.1." in n} == {2}
    assert ids["classifier.weight"] == ids["vit.layernorm.weight"] == top

    convnext = load_model(checkpoints["convnextv2"])
    ids, top = layer_ids(name for name, _ in convnext.named_parameters())
    assert ids["convnextv2.embeddings.patch_embeddings.weight"] == 0
    assert ids["convnextv2.encoder.stages.0.layers.0.dwconv.weight"] == 1
    # a stage's downsampling layer goes with the stage's first block
    assert ids["convnextv2.encoder.stages.1.downsampling_layer.1.weight"] == 2
    assert ids["convnextv2.encoder.stages.1.layers.0.dwconv.weight"] == 2
    assert ids["classifier.bias"] == top == 3


def test_parameter_groups_decay_the_rate_and_skip_norms(checkpoints: dict[str, Path]) -> None:
    model = load_model(checkpoints["convnextv2"])
    spec = hf_spec("c", checkpoints["convnextv2"], layer_decay=0.5)
    groups = parameter_groups(model, spec)
    named = {id(p): n for n, p in model.named_parameters()}
    rate = spec.optimizer.learning_rate
    for group in groups:
        assert group["lr"] == pytest.approx(rate * 0.5 ** (3 - group["layer_id"]))
        # biases, norm scales and ConvNeXt V2's GRN (shaped 1x1x1xC) are not decayed
        exempt = [p.ndim <= 1 or ".grn." in named[id(p)] for p in group["params"]]
        if group["weight_decay"] == 0.0:
            assert all(exempt)
        else:
            assert group["weight_decay"] == 0.05 and not any(exempt)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    flat = parameter_groups(model, hf_spec("c", checkpoints["convnextv2"]))
    assert {g["lr"] for g in flat} == {rate}


@pytest.mark.parametrize("name", ["adamw", "adam", "sgd", "rmsprop"])
def test_weight_decay_zero_trains_without_decay(checkpoints: dict[str, Path], name: str) -> None:
    """With zero gradients only weight decay can move a weight: 0 leaves every one as it is."""

    def after_one_step(decay: float) -> dict[str, torch.Tensor]:
        model = load_model(checkpoints["vit"])
        optimizer = {"name": name, "learning_rate": 0.1, "weight_decay": decay}
        spec = hf_spec("wd", checkpoints["vit"], optimizer=optimizer)
        torch_optimizer = make_optimizer(spec, parameter_groups(model, spec))
        for parameter in model.parameters():
            parameter.grad = torch.zeros_like(parameter)
        torch_optimizer.step()
        return {n: p.detach().clone() for n, p in model.named_parameters()}

    before = {n: p.detach().clone() for n, p in load_model(checkpoints["vit"]).named_parameters()}
    without = after_one_step(0.0)
    assert all(torch.equal(without[n], before[n]) for n in before)
    decayed = after_one_step(0.05)  # control: the same step with decay moves the weights
    assert not torch.equal(decayed["classifier.weight"], before["classifier.weight"])


def test_schedule_matches_the_keras_trainer() -> None:
    from components.train.keras.trainer import learning_rate

    for overrides in ({}, {"warmup_epochs": 0}, {"schedule": "constant"}):
        optimizer = {
            "name": "adamw",
            "learning_rate": 0.01,
            "schedule": "cosine",
            "warmup_epochs": 2,
        }
        spec = hf_spec("s", Path("ckpt"), epochs=6, optimizer={**optimizer, **overrides})
        factor = schedule(spec, steps_per_epoch=5)
        keras_rate = learning_rate(spec, 0.01, 6, 5)
        for step in (0, 3, 10, 17, 29, 30):
            expected = float(keras_rate(step)) if callable(keras_rate) else keras_rate
            assert 0.01 * factor(step) == pytest.approx(expected, rel=1e-4, abs=1e-8), step


def test_augmentation_keeps_shape_and_range_and_is_seeded() -> None:
    images = torch.rand((6, 3, 16, 24), generator=torch.Generator().manual_seed(1)) * 255
    everything = Augment(
        flip="horizontal_and_vertical", rotation=0.2, zoom=0.2, translation=0.1, contrast=0.3
    )

    def run(augment: Augment, seed: int) -> torch.Tensor:
        return augment_batch(images.clone(), augment, torch.Generator().manual_seed(seed))

    out = run(everything, 0)
    assert out.shape == images.shape and out.dtype == images.dtype
    assert float(out.min()) >= 0 and float(out.max()) <= 255
    assert torch.equal(out, run(everything, 0)) and not torch.equal(out, run(everything, 1))
    flipped = run(Augment(flip="horizontal"), 0)
    for original, result in zip(images, flipped, strict=True):
        assert torch.equal(result, original) or torch.equal(result, original.flip(-1))
    assert not torch.equal(flipped, images)
    # a zero affine transform samples every pixel at its own place
    assert torch.allclose(run(Augment(zoom=1e-9), 0), images, atol=1e-3)


def test_augmentation_fill_decides_what_shows_past_the_edge() -> None:
    white = torch.full((4, 1, 12, 12), 255.0)

    def shifted(fill: str) -> torch.Tensor:
        augment = Augment(translation=0.3, fill=fill)
        return augment_batch(white.clone(), augment, torch.Generator().manual_seed(3))

    assert float(shifted("constant").min()) < 1  # black comes in from outside
    assert torch.allclose(shifted("reflect"), white) and torch.allclose(shifted("nearest"), white)


def test_batch_order_is_seeded_per_epoch_and_shared_across_processes() -> None:
    order = BatchOrder(10, 3, shuffle=True, seed=4)
    first = [i for batch in order for i in batch]
    assert sorted(first) == list(range(10)) and len(order) == 4
    order.epoch = 1
    assert [i for batch in order for i in batch] != first
    order.epoch = 0
    assert [i for batch in order for i in batch] == first
    shards = [BatchOrder(10, 3, shuffle=True, seed=4, rank=r, world=3).indices() for r in range(3)]
    assert {len(s) for s in shards} == {4}  # padded to the same number of steps
    assert set().union(*shards) == set(range(10))
    unpadded = [BatchOrder(10, 3, False, rank=r, world=3, pad=False).indices() for r in range(3)]
    assert sorted(i for s in unpadded for i in s) == list(range(10))


def test_early_stopping_progress() -> None:
    progress = Progress()
    scores = [0.5, 0.7, 0.6, 0.7, 0.65]
    improved = [progress.record({"val_accuracy": s}, "val_accuracy", 3) for s in scores]
    assert improved == [True, True, False, False, False]
    assert (progress.best, progress.best_epoch, progress.wait, progress.stopped) == (
        0.7,
        2,
        3,
        True,
    )
    assert progress.history["val_accuracy"] == scores


def test_our_tfrecord_reader_matches_tensorflow(dataset: Path) -> None:
    from components.common.dataset import iterate_examples

    for split in ("train", "validation", "test"):
        encoded, labels = read_split(dataset, split)
        expected = list(iterate_examples(dataset, split))
        assert encoded == [e["image"] for e in expected]
        assert labels.tolist() == [e["label"] for e in expected]
    record = next(read_records(next(iter(sorted(dataset.glob("test-*.tfrecord"))))))
    assert set(parse_example(record)) == {"image/encoded", "image/format", "key", "label"}


def test_input_pipeline_resizes_with_the_processor_filter(dataset: Path) -> None:
    prep = Preprocessing.from_processor_config({"size": {"height": 40, "width": 24}, "resample": 3})
    cached = SplitBatches(dataset, "validation", prep, 4, cache=True)
    streamed = SplitBatches(dataset, "validation", prep, 4, cache=False, workers=0)
    batches = list(cached.epoch(0))
    assert batches[0][0].shape == (4, 3, 40, 24) and batches[0][0].dtype == torch.uint8
    for (a, la), (b, lb) in zip(batches, streamed.epoch(0), strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)
    labels = torch.cat([labels for _, labels in batches])
    means = torch.cat([images.float().mean(dim=(1, 2, 3)) for images, _ in batches])
    for label, mean in zip(labels.tolist(), means.tolist(), strict=True):
        assert abs(mean - LEVELS[CLASSES[label]]) < 15  # pixels stay with their labels


# --- fine-tuning, the Model artifact and loading ---------------------------------------------


@pytest.mark.parametrize("kind", ["vit", "convnextv2"])
def test_fine_tuned_model_reloads_with_the_same_logits(
    fine_tuned: dict[str, tuple[Any, Path]], kind: str
) -> None:
    result, model_dir = fine_tuned[kind]
    card = ModelCard.load(model_dir)
    assert card == result.card
    assert card.framework == "transformers" and card.preprocessing == "hf_image_processor"
    assert card.channels == 3 and len(card.mean or []) == len(card.std or []) == 3
    assert card.training["epochs_run"] == 2 == len(card.history["val_accuracy"])
    assert card.training["optimizer_steps_per_epoch"] == 2  # 4 micro-batches, accumulated by 2
    assert json.loads((model_dir / "history.json").read_text()) == card.history
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert (model_dir / "hf" / name).is_file()
    if kind == "convnextv2":
        assert tuple(card.input_size) == (36, 36) and card.model_extra["crop_size"] == [32, 32]
    else:
        assert tuple(card.input_size) == (32, 32) and card.model_extra["crop_size"] is None

    images = np.random.default_rng(1).uniform(0, 255, (5, *card.input_size, 3)).astype("float32")
    batch = torch.from_numpy(images).permute(0, 3, 1, 2)
    with torch.inference_mode():
        inputs = model_inputs(batch, result.preprocessing)
        in_memory = result.model(pixel_values=inputs).logits.numpy()
        reloaded = load_model(model_dir / "hf")(pixel_values=inputs).logits.numpy()
    np.testing.assert_allclose(reloaded, in_memory, rtol=1e-5, atol=1e-5)
    classifier = load_classifier(model_dir)
    assert type(classifier).__name__ == "TransformersClassifier"
    np.testing.assert_allclose(classifier.logits(images), in_memory, rtol=1e-5, atol=1e-5)
    probabilities = classifier.predict(images)
    expected = torch.softmax(torch.from_numpy(in_memory), dim=1).numpy()
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-6)
    assert probabilities.dtype == np.float32 and probabilities.shape == (5, 3)


@pytest.mark.parametrize("kind", ["vit", "convnextv2"])
def test_label_mapping_round_trip(
    fine_tuned: dict[str, tuple[Any, Path]], dataset: Path, kind: str
) -> None:
    from transformers import AutoConfig, AutoImageProcessor

    _, model_dir = fine_tuned[kind]
    card = ModelCard.load(model_dir)
    info = json.loads((dataset / "dataset_info.json").read_text())
    assert card.class_names == info["class_names"] == CLASSES
    saved = json.loads((model_dir / "hf" / "config.json").read_text())
    assert saved["id2label"] == {str(i): name for i, name in enumerate(CLASSES)}
    assert saved["label2id"] == {name: i for i, name in enumerate(CLASSES)}
    config = AutoConfig.from_pretrained(model_dir / "hf")
    assert [config.id2label[i] for i in range(config.num_labels)] == card.class_names
    processor = AutoImageProcessor.from_pretrained(model_dir / "hf")
    assert list(processor.image_mean) == card.mean


def test_tensorboard_gets_the_epoch_scalars(
    fine_tuned: dict[str, tuple[Any, Path]], tensorboard_events: Any
) -> None:
    for _, model_dir in fine_tuned.values():
        board = model_dir.parent / "tensorboard"
        assert {
            "epoch_loss",
            "epoch_accuracy",
            "epoch_learning_rate",
        } <= tensorboard_events.scalar_tags(board / "train")
        assert {"epoch_loss", "epoch_accuracy"} <= tensorboard_events.scalar_tags(
            board / "validation"
        )


def test_early_stopping_keeps_the_best_epoch(fine_tuned: dict[str, tuple[Any, Path]]) -> None:
    for result, model_dir in fine_tuned.values():
        training, history = result.card.training, result.card.history
        assert training["restored_best"]
        assert training["best_epoch"] == int(np.argmax(history["val_accuracy"])) + 1
        best = torch.load(model_dir.parent / "checkpoints" / STATE_DIR / "best.pt")
        state = result.model.state_dict()
        assert best.keys() == state.keys()
        assert all(torch.equal(best[name], state[name]) for name in best)


def test_fine_tuning_learns_the_classes(fine_tuned: dict[str, tuple[Any, Path]]) -> None:
    for kind, (result, _) in fine_tuned.items():
        history = result.card.history
        assert history["loss"][-1] < history["loss"][0], kind
        assert max(history["val_accuracy"]) >= 0.6, (kind, history)


def test_the_evaluate_step_reads_the_model(
    fine_tuned: dict[str, tuple[Any, Path]], dataset: Path
) -> None:
    from components.evaluate.run import predict_split

    _, model_dir = fine_tuned["convnextv2"]
    predictions = predict_split(model_dir, dataset, "test")
    assert predictions.probabilities.shape == (len(predictions.keys), 3)
    np.testing.assert_allclose(predictions.probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_the_trainer_keeps_no_predictions_so_training_imports_no_tensorflow(
    dataset: Path, checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    from components.models.prediction import STORED_PREDICTIONS_FILE

    spec = hf_spec("kept", checkpoints["vit"], epochs=1)
    train_transformers(dataset, spec, 0, tmp_path / "model", tmp_path / "ckpt")
    assert (tmp_path / "model" / "model_card.json").is_file()
    # the evaluate step predicts a transformers model itself (tf.data decodes the test images)
    assert not (tmp_path / "model" / STORED_PREDICTIONS_FILE).exists()


def test_a_finished_run_only_writes_its_outputs_again(
    dataset: Path, checkpoints: dict[str, Path], tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    spec = hf_spec("twice", checkpoints["vit"], epochs=1)
    first = train_transformers(dataset, spec, 0, tmp_path / "a", tmp_path / "ckpt")
    capfd.readouterr()
    again = train_transformers(dataset, spec, 0, tmp_path / "b", tmp_path / "ckpt")
    out = capfd.readouterr().out
    assert "resuming twice seed 0: training had finished (1/1 epochs)" in out
    assert "Epoch 1/1" not in out
    assert again.history == first.history and again.training["resumed_after_epoch"] == 1
    a = load_classifier(tmp_path / "a").logits(np.full((1, 32, 32, 3), 99, "float32"))
    b = load_classifier(tmp_path / "b").logits(np.full((1, 32, 32, 3), 99, "float32"))
    np.testing.assert_array_equal(a, b)
    other = hf_spec("twice", checkpoints["vit"], epochs=1, label_smoothing=0.2)
    with pytest.raises(RuntimeError, match="another spec, seed or dataset"):
        train_transformers(dataset, other, 0, tmp_path / "c", tmp_path / "ckpt")


def test_checkpoint_problems_say_what_to_fix(
    dataset: Path, checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(CheckpointError, match="has no config.json"):
        resolve_checkpoint(str(tmp_path / "missing"))
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((checkpoints["vit"] / "config.json").read_text())
    with pytest.raises(CheckpointError, match="no usable image processor config"):
        train_transformers(dataset, hf_spec("bare", bare), 0, tmp_path / "m")
    with pytest.raises(CheckpointError, match="is not a folder"):
        resolve_checkpoint("ram://nowhere/vit")
    spec = hf_spec("typo", checkpoints["vit"], params={"drop_path_rat": 0.1})
    with pytest.raises(CheckpointError, match="drop_path_rat are not fields of ViTConfig"):
        train_transformers(dataset, spec, 0, tmp_path / "m")


def test_remote_checkpoints_are_copied_down(checkpoints: dict[str, Path]) -> None:
    import tensorflow as tf

    # ram:// stands in for gs://: both go through tf.io.gfile
    remote = "ram://bucket/models/vit"
    for file in checkpoints["vit"].iterdir():
        tf.io.gfile.makedirs(remote)
        tf.io.gfile.copy(str(file), f"{remote}/{file.name}", overwrite=True)
    local = Path(resolve_checkpoint(remote))
    assert sorted(p.name for p in local.iterdir()) == sorted(
        p.name for p in checkpoints["vit"].iterdir()
    )
    assert (local / "model.safetensors").read_bytes() == (
        checkpoints["vit"] / "model.safetensors"
    ).read_bytes()
    from components.common.files import local_path

    assert local_path("gs://bucket/run/checkpoints") == Path("/gcs/bucket/run/checkpoints")
    assert local_path("/tmp/checkpoints") == Path("/tmp/checkpoints")


def test_the_classifier_checks_its_input(fine_tuned: dict[str, tuple[Any, Path]]) -> None:
    _, model_dir = fine_tuned["vit"]
    classifier = load_classifier(model_dir)
    with pytest.raises(ValueError, match=r"takes \(N, 32, 32, 3\)"):
        classifier.predict(np.zeros((1, 28, 28, 3), "float32"))


def test_a_model_folder_without_hf_is_reported(
    fine_tuned: dict[str, tuple[Any, Path]], tmp_path: Path
) -> None:
    _, model_dir = fine_tuned["vit"]
    (tmp_path / "model_card.json").write_text((model_dir / "model_card.json").read_text())
    with pytest.raises(ModelLoadError, match="hf/"):
        load_classifier(tmp_path)


# What may differ between a training on one process and on several.
PER_PROCESS_FIELDS = {"processes", "batch_size_per_process", "seconds", "device", "outcome"}


def torchrun(request: Path, processes: int, timeout: float = 600) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node N` of the transformers worker (gloo on CPU)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += [f"--nproc_per_node={processes}", "-m", WORKER_MODULE, str(request)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.ddp
def test_two_processes_train_the_same_model_as_one(
    dataset: Path, checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    """torchrun with 2 gloo processes and 1 process: the same steps, data order, augmentation
    and metrics, so the same card and logits up to rounding; only process 0 writes."""
    train_examples = DatasetInfo.read(dataset).num_examples["train"]
    # a step batch whose last step has an odd number of examples: one process gets padding
    batch_size = next(b for b in range(9, 17) if train_examples % b % 2 == 1)
    spec = hf_spec(
        "ddp",
        checkpoints["convnextv2"],
        batch_size=batch_size,
        gradient_accumulation_steps=2,
        label_smoothing=0.1,
        calibration="temperature",  # process 0 alone fits it, on the whole validation split
        augment={"flip": "horizontal", "rotation": 0.05, "contrast": 0.1},
    )
    request = Request(
        str(dataset), spec, 3, str(tmp_path / "two"), str(tmp_path / "ckpt-two"), ""
    ).write(tmp_path / "request.json")
    finished = torchrun(request, 2)
    assert finished.returncode == 0, finished.stderr[-3000:]
    two = ModelCard.load(tmp_path / "two")

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = fine_tune(str(dataset), spec, 3, str(tmp_path / "one"), str(tmp_path / "ckpt-one"))
    finally:
        torch.set_num_threads(threads)
    assert one.card is not None
    assert (one.card.training["processes"], two.training["processes"]) == (1, 2)
    assert two.training["batch_size_per_process"] == math.ceil(batch_size / 2)
    assert two.training["effective_batch_size"] == 2 * batch_size
    for name, value in one.card.training.items():
        if name not in PER_PROCESS_FIELDS | {"calibration"}:
            assert two.training[name] == value, name
    calibrated = two.training["calibration"]
    assert calibrated.keys() == one.card.training["calibration"].keys()
    for name, value in one.card.training["calibration"].items():
        assert calibrated[name] == pytest.approx(value, rel=1e-3, abs=1e-6), name
    assert set(two.history) == set(one.card.history)
    for name, values in one.card.history.items():
        np.testing.assert_allclose(two.history[name], values, rtol=1e-4, atol=1e-6, err_msg=name)
    assert two.class_names == one.card.class_names and two.mean == one.card.mean
    height, width = two.input_size
    images = np.random.default_rng(5).uniform(0, 255, (4, height, width, 3)).astype("float32")
    np.testing.assert_allclose(
        load_classifier(tmp_path / "two").logits(images),
        load_classifier(tmp_path / "one").logits(images),
        rtol=1e-3,
        atol=1e-4,
    )
    # only process 0 wrote: one checkpoint, and its epochs are the card's
    assert sorted(p.name for p in (tmp_path / "ckpt-two" / STATE_DIR).iterdir()) == [LAST, PROGRESS]
    assert json.loads((tmp_path / "ckpt-two" / STATE_DIR / PROGRESS).read_text()) == {
        "epochs_done": spec.epochs,
        "finished": True,
    }


@pytest.mark.ddp
def test_every_process_resumes_from_the_chiefs_checkpoint(
    dataset: Path, checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    """A finished checkpoint read by process 0 alone: both processes skip training (a process
    that did not resume would train and hang in DDP's all-reduce), and the Model is written."""
    spec = hf_spec("resume2", checkpoints["vit"], epochs=1, batch_size=8)
    first = fine_tune(str(dataset), spec, 0, str(tmp_path / "a"), str(tmp_path / "ckpt"))
    request = Request(str(dataset), spec, 0, str(tmp_path / "b"), str(tmp_path / "ckpt"), "").write(
        tmp_path / "request.json"
    )
    finished = torchrun(request, 2, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "resuming resume2 seed 0: training had finished (1/1 epochs)" in finished.stdout
    assert "Epoch 1/1" not in finished.stdout
    assert first.card is not None
    assert ModelCard.load(tmp_path / "b").history == first.card.history


# --- preemption ------------------------------------------------------------------------------

EPOCHS = 6


def _epochs_done(progress: Path) -> int:
    try:
        return int(json.loads(progress.read_text())["epochs_done"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.restart
def test_sigkill_then_restart_resumes_and_matches_an_uninterrupted_run(
    checkpoints: dict[str, Path],
    tmp_path: Path,
    image_dataset: Callable[..., Path],
    train_process: Callable[..., Any],
) -> None:
    dataset = make_dataset(image_dataset, tmp_path / "data", per_class=40)
    spec = hf_spec("resume", checkpoints["vit"], epochs=EPOCHS, augment={"flip": "horizontal"})
    model_dir, checkpoint_dir = tmp_path / "model", tmp_path / "checkpoints"
    # One thread, so the uninterrupted run below does the same arithmetic in this process.
    process = train_process(dataset, spec, model_dir, checkpoint_dir, OMP_NUM_THREADS="1")
    progress = checkpoint_dir / STATE_DIR / PROGRESS
    process.kill_when(lambda: _epochs_done(progress) >= 1)
    killed_after = _epochs_done(progress)
    assert 1 <= killed_after < EPOCHS, (
        f"the first run finished {killed_after} epochs before the kill"
    )
    assert (progress.parent / LAST).is_file()
    assert not (model_dir / "model_card.json").exists()

    second = process.run()
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resuming resume seed 0 at epoch {killed_after + 1}/{EPOCHS}" in second.stdout
    assert f"Epoch 1/{EPOCHS}" not in second.stdout
    assert f"Epoch {killed_after + 1}/{EPOCHS}" in second.stdout
    # all epochs run, and training never imported TensorFlow
    assert f"DONE {EPOCHS} False" in second.stdout
    resumed = ModelCard.load(model_dir)
    assert resumed.training["epochs_run"] == len(resumed.history["loss"]) == EPOCHS
    assert resumed.training["resumed_after_epoch"] == killed_after
    assert (tmp_path / "model.html").is_file()
    assert math.isclose(resumed.history["learning_rate"][-1], 0.0, abs_tol=1e-12)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        uninterrupted = train_transformers(dataset, spec, 0, tmp_path / "whole")
    finally:
        torch.set_num_threads(threads)
    for name, values in uninterrupted.history.items():
        np.testing.assert_allclose(resumed.history[name], values, rtol=1e-5, err_msg=name)
    images = np.random.default_rng(2).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(
        load_classifier(model_dir).logits(images),
        load_classifier(tmp_path / "whole").logits(images),
        rtol=1e-4,
        atol=1e-5,
    )
