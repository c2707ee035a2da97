"""Hugging Face image classifiers: checkpoints, their preprocessing, saving and loading.

The checkpoint's image processor config (size, crop, mean, std, rescale, resample) is read
once into a `Preprocessing`, which the trainer's input pipeline and `TransformersClassifier`
share, so training and evaluation see the same pixels:

    encoded image -> resize the whole image to `input_size` -> centre crop to `crop_size`
    (if the processor crops) -> x * rescale_factor -> (x - mean) / std

`input_size` is what the Model card promises: evaluate and predict resize every image to it
(bilinear) and hand it to the classifier, which crops and normalises. Unlike the processors'
`shortest_edge` rule this does not keep the aspect ratio, just as evaluation does not.
No torchvision: transformers falls back to its Pillow processors, and we only read their config.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from components.common.files import write_json
from components.common.model_card import CARD_FILE, ModelCard
from components.models.artifact import ModelLoadError
from components.spec import ModelSpec

HF_DIR = "hf"
PREPROCESSING = "hf_image_processor"
# The processors' default when a config does not say (PIL.Image.BILINEAR).
BILINEAR = 2
# transformers' ConvNeXt processors crop below this size and warp to it from this size on.
CONVNEXT_CROP_BELOW = 384


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message says what to fix."""


@dataclass(frozen=True)
class Preprocessing:
    """A checkpoint's image processor config, reduced to what our pipelines apply."""

    input_size: tuple[int, int]  # (height, width) every image is resized to
    crop_size: tuple[int, int] | None  # centre crop after the resize; None: no crop
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    rescale_factor: float
    resample: int  # a PIL.Image resampling filter

    @classmethod
    def from_processor_config(cls, config: dict[str, Any], source: str = "") -> Preprocessing:
        where = f"{source}: " if source else ""
        if config.get("do_resize", True) is False:
            raise CheckpointError(
                f"{where}the image processor config has do_resize: false, so it names no input "
                "size; use a checkpoint whose preprocessor_config.json sets do_resize and size"
            )
        size = config.get("size")
        crop: tuple[int, int] | None = None
        if isinstance(size, dict) and "shortest_edge" in size and "crop_pct" in config:
            # ConvNeXt: resize to shortest_edge / crop_pct and crop shortest_edge (below 384).
            edge = int(size["shortest_edge"])
            crop_pct = float(config.get("crop_pct") or 1.0)
            if edge < CONVNEXT_CROP_BELOW and crop_pct < 1.0:
                resized = int(edge / crop_pct)
                input_size = (resized, resized)
                crop = (edge, edge)
            else:
                input_size = (edge, edge)
        else:
            input_size = _pair(size, "size", where)
            if config.get("do_center_crop") and config.get("crop_size") is not None:
                crop = _pair(config["crop_size"], "crop_size", where)
        if crop is not None and (crop[0] > input_size[0] or crop[1] > input_size[1]):
            raise CheckpointError(
                f"{where}crop_size {crop} is larger than the resized image {input_size}; fix "
                "size / crop_size in the checkpoint's preprocessor_config.json"
            )
        if crop == input_size:
            crop = None
        normalize = config.get("do_normalize", True)
        mean = _triple(config.get("image_mean", 0.5), "image_mean", where) if normalize else None
        std = _triple(config.get("image_std", 0.5), "image_std", where) if normalize else None
        rescale = (
            float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else 1.0
        )
        return cls(
            input_size=input_size,
            crop_size=crop,
            mean=mean or (0.0, 0.0, 0.0),
            std=std or (1.0, 1.0, 1.0),
            rescale_factor=rescale,
            resample=_resample(config.get("resample", BILINEAR)),
        )

    @classmethod
    def from_card(cls, card: ModelCard) -> Preprocessing:
        extra = card.model_extra or {}
        crop = extra.get("crop_size")
        return cls(
            input_size=(int(card.input_size[0]), int(card.input_size[1])),
            crop_size=(int(crop[0]), int(crop[1])) if crop else None,
            mean=tuple(card.mean or (0.0, 0.0, 0.0)),  # type: ignore[arg-type]
            std=tuple(card.std or (1.0, 1.0, 1.0)),  # type: ignore[arg-type]
            rescale_factor=float(extra.get("rescale_factor", 1 / 255)),
            resample=int(extra.get("resample", BILINEAR)),
        )

    def card_fields(self) -> dict[str, Any]:
        """What the Model card records (the card's own fields plus crop/rescale/resample)."""
        return {
            "input_size": self.input_size,
            "channels": 3,
            "preprocessing": PREPROCESSING,
            "mean": list(self.mean),
            "std": list(self.std),
            "crop_size": list(self.crop_size) if self.crop_size else None,
            "rescale_factor": self.rescale_factor,
            "resample": self.resample,
        }


def _pair(value: Any, name: str, where: str) -> tuple[int, int]:
    if isinstance(value, int | float):
        return int(value), int(value)
    if isinstance(value, dict):
        if "height" in value and "width" in value:
            return int(value["height"]), int(value["width"])
        if "shortest_edge" in value and "longest_edge" not in value:
            # square, like evaluation (see the module docstring)
            return int(value["shortest_edge"]), int(value["shortest_edge"])
    raise CheckpointError(
        f"{where}{name} {value!r} in the image processor config is not supported; a fixed "
        "size is needed: {height, width}, {shortest_edge} or a number"
    )


def _triple(value: Any, name: str, where: str) -> tuple[float, float, float]:
    values = [float(v) for v in value] if isinstance(value, list | tuple) else [float(value)] * 3
    if len(values) != 3:
        raise CheckpointError(f"{where}{name} must have 3 values (RGB), got {value!r}")
    return values[0], values[1], values[2]


def _resample(value: Any) -> int:
    names = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}
    if isinstance(value, str):
        return names.get(value.lower().rsplit(".", 1)[-1], BILINEAR)
    return int(value) if value is not None else BILINEAR


# --- checkpoints -----------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' load reports, torchvision fallbacks and progress bars off, then back."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def resolve_checkpoint(checkpoint: str) -> str:
    """A Hub id or local folder as it is; a `gs://` folder (or any URI tf.io.gfile reads)
    copied to a local temp folder."""
    if "://" in checkpoint:
        import tensorflow as tf

        local = Path(tempfile.mkdtemp(prefix="hf-checkpoint-"))
        base = checkpoint.rstrip("/")
        if not tf.io.gfile.isdir(base):
            raise CheckpointError(
                f"checkpoint {checkpoint} is not a folder; point at the folder that holds "
                "config.json, the weights and preprocessor_config.json"
            )
        for folder, _, files in tf.io.gfile.walk(base):
            target = local / folder[len(base) :].lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            for name in files:
                tf.io.gfile.copy(f"{folder}/{name}", str(target / name), overwrite=True)
        return str(local)
    path = Path(checkpoint).expanduser()
    looks_local = checkpoint.startswith((".", "/", "~")) or path.exists()
    if looks_local:
        if not (path / "config.json").is_file():
            raise CheckpointError(
                f"checkpoint folder {checkpoint} has no config.json; point at a folder written "
                "by save_pretrained (config.json, weights, preprocessor_config.json)"
            )
        return str(path)
    return checkpoint


def load_processor_config(checkpoint: str) -> dict[str, Any]:
    """The checkpoint's image processor config (preprocessor_config.json) as a dict."""
    from transformers.image_processing_base import ImageProcessingMixin

    try:
        with quiet_transformers():
            config, _ = ImageProcessingMixin.get_image_processor_dict(checkpoint)
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {checkpoint} has no usable image processor config ({exc}); save one "
            "beside the model (e.g. ViTImageProcessor(...).save_pretrained(folder))"
        ) from None
    return dict(config)


def load_pretrained(checkpoint: str, spec: ModelSpec, class_names: list[str]) -> Any:
    """The checkpoint with a head for `class_names`; spec.params override config fields
    (e.g. drop_path_rate, hidden_dropout_prob)."""
    import torch
    from transformers import AutoConfig, AutoModelForImageClassification

    where = f"model '{spec.name}': checkpoint '{spec.checkpoint}'"
    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(checkpoint)
            unknown = sorted(k for k in spec.params if not hasattr(config, k))
            if unknown:
                raise CheckpointError(
                    f"model '{spec.name}': params {', '.join(unknown)} are not fields of "
                    f"{type(config).__name__}; transformers params override config fields "
                    "such as drop_path_rate or hidden_dropout_prob"
                )
            model = AutoModelForImageClassification.from_pretrained(
                checkpoint,
                num_labels=len(class_names),
                id2label=dict(enumerate(class_names)),
                label2id={name: index for index, name in enumerate(class_names)},
                ignore_mismatched_sizes=True,
                **spec.params,
            )
    except (OSError, ValueError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(
            f"{where} cannot be loaded as an image classifier ({exc}); use a Hub id of an "
            "AutoModelForImageClassification model (reachable from the training machine) or a "
            "folder written by save_pretrained"
        ) from None
    # A head of the right size trained for other classes is loaded as it is: start it afresh.
    old = [str(v) for _, v in sorted((int(k), v) for k, v in config.id2label.items())]
    if len(old) == len(class_names) and old != class_names:
        for name, module in model.named_modules():
            if name.split(".")[0] == "classifier" and isinstance(module, torch.nn.Linear):
                module.reset_parameters()
    return model


def classifier_head(model: Any) -> Any:
    """The nn.Linear that gives an AutoModelForImageClassification its logits: the last one
    under its `classifier` with one output per label (ViT, ConvNeXt V2, Swin, BEiT...)."""
    import torch

    heads = [
        module
        for name, module in model.named_modules()
        if name.split(".")[0] == "classifier"
        and isinstance(module, torch.nn.Linear)
        and module.out_features == model.config.num_labels
    ]
    if not heads:
        raise CheckpointError(
            f"{type(model).__name__} has no linear `classifier` head with "
            f"{model.config.num_labels} outputs to divide by a temperature; set calibration: none"
        )
    return heads[-1]


# --- the Model artifact ----------------------------------------------------------------------


def save_model(model: Any, processor_config: dict[str, Any], model_dir: Path) -> None:
    """hf/: the save_pretrained model and the checkpoint's image processor config."""
    hf_dir = Path(model_dir) / HF_DIR
    hf_dir.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(hf_dir)
    write_json(hf_dir / "preprocessor_config.json", processor_config)


def center_crop(images: Any, crop_size: tuple[int, int] | None) -> Any:
    """Centre crop an NCHW tensor batch to (height, width); None leaves it as it is."""
    if crop_size is None:
        return images
    height, width = images.shape[-2:]
    top = (height - crop_size[0]) // 2
    left = (width - crop_size[1]) // 2
    return images[..., top : top + crop_size[0], left : left + crop_size[1]]


def normalize(images: Any, preprocessing: Preprocessing) -> Any:
    """float NCHW [0, 255] -> what the model takes: rescaled, then (x - mean) / std."""
    import torch

    mean = torch.tensor(preprocessing.mean, dtype=images.dtype, device=images.device)
    std = torch.tensor(preprocessing.std, dtype=images.dtype, device=images.device)
    scaled = images * preprocessing.rescale_factor
    return (scaled - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def model_inputs(images: Any, preprocessing: Preprocessing) -> Any:
    """float NCHW [0, 255] of `input_size` -> cropped, normalised model input."""
    return normalize(center_crop(images, preprocessing.crop_size), preprocessing)


def load_model(folder: str | Path) -> Any:
    from transformers import AutoModelForImageClassification

    with quiet_transformers():
        return AutoModelForImageClassification.from_pretrained(str(folder))


class TransformersClassifier:
    """A transformers Model artifact behind the `Classifier` interface of evaluate/predict."""

    def __init__(self, model_dir: Path, card: ModelCard, device: str | None = None):
        import torch

        folder = Path(model_dir) / HF_DIR
        if not (folder / "config.json").is_file():
            raise ModelLoadError(
                f"{folder / 'config.json'} is missing: a transformers Model artifact holds "
                f"{HF_DIR}/ (save_pretrained model and image processor) beside {CARD_FILE}; "
                "point at the folder the train step wrote"
            )
        self.card = card
        self.preprocessing = Preprocessing.from_card(card)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = load_model(folder).to(self.device).eval()

    def logits(self, images: np.ndarray) -> np.ndarray:
        import torch

        expected = (*self.preprocessing.input_size, 3)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"images of shape {images.shape} given; this model takes (N, {expected[0]}, "
                f"{expected[1]}, 3) float32 pixels in [0, 255] (the card's input_size)"
            )
        batch = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        batch = batch.to(self.device).permute(0, 3, 1, 2)
        with torch.inference_mode():
            logits = self.model(pixel_values=model_inputs(batch, self.preprocessing)).logits
        return logits.float().cpu().numpy()

    def predict(self, images: np.ndarray) -> np.ndarray:
        logits = self.logits(images)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
