"""The step vocabulary: typed step configs, architecture names and the metric catalogue.

Ground floor: imports nothing of ours and no KFP, so every step module, the model registry and
the orchestration layer (`pipelines/config/`, which wraps these in the `Experiment`) share one
definition of each. A step validates its config once, at its `component.py` boundary, with
these models; the modules below take the typed objects. The search vocabulary (a candidate's
`search:` section) is in `components/spec/search.py`, the keras architectures and their knobs
in `components/spec/architectures.py`; both are re-exported here. The export formats and the
export step's config are in `components/spec/export.py`, the champion check's policy in
`components/spec/champion.py`; `ExportConfig` and `ChampionPolicy` are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from components.spec.architectures import (
    KERAS_APPLICATIONS,
    KERAS_ARCHITECTURES,
    KERAS_SCRATCH_ARCHITECTURES,
    WEIGHT_FILE_SUFFIXES,
    Application,
    ArchitectureParams,
    min_input_side,
    params_class,
    parse_params,
)
from components.spec.base import Strict

# the export and register components' bodies, which every compiled pipeline embeds, import
# these two from here
from components.spec.champion import ChampionPolicy
from components.spec.export import ExportConfig
from components.spec.search import (
    DISTRIBUTIONS,
    SEARCH_ALGORITHMS,
    SEARCH_METRICS,
    UNSEARCHABLE,
    Distribution,
    Fold,
    Pruning,
    Search,
    SearchOutcome,
    Study,
    apply_overrides,
    flatten_space,
    path_problem,
    set_path,
)

__all__ = [
    "DISTRIBUTIONS",
    "KERAS_APPLICATIONS",
    "KERAS_ARCHITECTURES",
    "KERAS_SCRATCH_ARCHITECTURES",
    "WEIGHT_FILE_SUFFIXES",
    "Application",
    "ArchitectureParams",
    "ChampionPolicy",
    "min_input_side",
    "parse_params",
    "SEARCH_ALGORITHMS",
    "SEARCH_METRICS",
    "UNSEARCHABLE",
    "Distribution",
    "ExportConfig",
    "Fold",
    "Pruning",
    "Search",
    "SearchOutcome",
    "Strict",
    "Study",
    "apply_overrides",
    "flatten_space",
    "set_path",
]

# data.max_file_bytes: far above any training image (a 9,500 x 9,500 16-bit RGB TIFF is ~540 MB
# uncompressed, and MAX_PIXELS rejects those anyway), far below what fills a worker's memory.
MAX_FILE_BYTES = 256 * 2**20


SLUG_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$"
Slug = Annotated[str, Field(pattern=SLUG_PATTERN)]
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]


# --- the metric catalogue ---------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One scalar an evaluation reports."""

    name: str
    description: str
    lower_is_better: bool = False
    in_table: bool = True  # shown in the comparison table and the CLI summary
    min_classes: int = 2  # computed only for tasks with at least this many classes
    max_classes: int | None = None  # ... and at most this many

    def applies(self, num_classes: int) -> bool:
        return num_classes >= self.min_classes and (
            self.max_classes is None or num_classes <= self.max_classes
        )


ECE_BINS = 15
TOP_K = 5
# top-k accuracy only means something when k is well below the number of classes.
TOP_K_MIN_CLASSES = 11

# In the order reports and tables show them.
METRIC_CATALOGUE: tuple[Metric, ...] = (
    Metric("accuracy", "share of test images whose top class is right"),
    Metric(
        "top5_accuracy",
        "share whose true class is among the 5 most probable",
        min_classes=TOP_K_MIN_CLASSES,
    ),
    Metric("balanced_accuracy", "mean recall over classes"),
    Metric("macro_precision", "unweighted mean over classes", in_table=False),
    Metric("macro_recall", "unweighted mean over classes", in_table=False),
    Metric("macro_f1", "unweighted mean over classes"),
    Metric("weighted_precision", "mean over classes weighted by support", in_table=False),
    Metric(
        "weighted_recall",
        "mean over classes weighted by support (equals accuracy)",
        in_table=False,
    ),
    Metric("weighted_f1", "mean over classes weighted by support"),
    Metric("roc_auc", "area under the ROC curve (positive class: the second class)", max_classes=2),
    Metric("pr_auc", "average precision (area under the precision-recall curve)", max_classes=2),
    Metric("log_loss", "mean negative log probability of the true class", lower_is_better=True),
    Metric(
        "ece",
        f"expected calibration error, {ECE_BINS} equal-width confidence bins",
        lower_is_better=True,
    ),
)
METRICS: dict[str, Metric] = {m.name: m for m in METRIC_CATALOGUE}
SCALARS = tuple(METRICS)
LOWER_IS_BETTER = frozenset(m.name for m in METRIC_CATALOGUE if m.lower_is_better)
TABLE_METRICS = tuple(m.name for m in METRIC_CATALOGUE if m.in_table)
MetricName = Literal[SCALARS]  # type: ignore[valid-type]


def metrics_for(num_classes: int) -> tuple[str, ...]:
    """The scalars every evaluation of a `num_classes` task computes."""
    return tuple(m.name for m in METRIC_CATALOGUE if m.applies(num_classes))


def metric_unavailable(metric: str, num_classes: int) -> str | None:
    """Why `metric` cannot rank or gate a `num_classes` task, or None when it can."""
    known = METRICS.get(metric)
    if known is None:
        return f"'{metric}' is not a metric; use one of {', '.join(SCALARS)}"
    if known.applies(num_classes):
        return None
    if known.max_classes is not None and num_classes > known.max_classes:
        need = f"at most {known.max_classes} classes"
    else:
        need = f"at least {known.min_classes} classes"
    return (
        f"{metric} needs {need} and this task has {num_classes}; "
        f"use one of {', '.join(metrics_for(num_classes))}"
    )


# --- step configs -----------------------------------------------------------------------------


class Splits(Strict):
    """Fractions carved out of the source's training data (test only when the source has none)."""

    validation: Fraction = 0.1
    test: Fraction = 0.1

    @model_validator(mode="after")
    def _leave_training_data(self) -> Splits:
        if self.validation + self.test >= 0.9:
            raise ValueError(
                f"validation + test = {self.validation + self.test:.2f} leaves almost nothing to "
                "train on; keep their sum below 0.9"
            )
        return self


class DataConfig(Strict):
    """Where the images come from and how they are shaped."""

    source: str
    image_size: tuple[
        Annotated[int, Field(ge=8, le=1024)], Annotated[int, Field(ge=8, le=1024)]
    ] = (
        224,
        224,
    )
    channels: Literal[1, 3] = 3
    splits: Splits = Splits()
    min_images_per_class: int = Field(default=1, ge=1)
    min_image_side: int = Field(default=1, ge=1)
    classes: list[str] | None = Field(
        default=None, description="keep only these source classes (after label_map)"
    )
    label_map: dict[str, str] | None = Field(
        default=None, description="source class name -> target class name"
    )
    image_column: str = "image"
    label_column: str = "label"
    extra_train_sources: list[str] = Field(default_factory=list)
    shard_size: int = Field(default=2000, ge=10, description="images per TFRecord shard")
    max_file_bytes: int = Field(
        default=MAX_FILE_BYTES,
        ge=1,
        description="files bigger than this are quarantined unread (too large)",
    )

    @field_validator("classes")
    @classmethod
    def _distinct_classes(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if len(value) < 2:
                raise ValueError("a classifier needs at least 2 classes")
            if len(set(value)) != len(value):
                raise ValueError("class names must be distinct")
        return value

    @property
    def scheme(self) -> str:
        return self.source.split(":", 1)[0]


class Optimizer(Strict):
    name: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(default=1e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(
        default=0.0, ge=0.0, description="decoupled weight decay; 0 trains without decay"
    )
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_epochs: int = Field(
        default=0, ge=0, description="linear warm-up before the cosine decay"
    )


class Augment(Strict):
    flip: Literal["none", "horizontal", "vertical", "horizontal_and_vertical"] = "none"
    rotation: Fraction = 0.0
    zoom: Fraction = 0.0
    translation: Fraction = 0.0
    contrast: Fraction = 0.0
    fill: Literal["reflect", "nearest", "constant"] = Field(
        default="reflect",
        description="what rotation, zoom and translation show past the image's edge: its "
        "mirror image, its border pixels, or black (digits on a black background)",
    )


class FineTune(Strict):
    """Second phase of transfer learning: unfreeze the top layers at a lower learning rate."""

    epochs: int = Field(default=0, ge=0)
    unfreeze_layers: int = Field(default=0, ge=0, description="0 unfreezes the whole backbone")
    learning_rate: float = Field(default=1e-5, gt=0.0)


def check_search_space(spec: ModelSpec) -> None:
    """Every path of the space names a field, and the field's own validation takes every end
    of its range (every value of a choice)."""
    assert spec.search is not None
    base = spec.model_dump(mode="json", exclude={"search"}, by_alias=True)
    for path, distribution in spec.search.space.items():
        problem = path_problem(ModelSpec, path)
        if problem:
            raise ValueError(f"model '{spec.name}': search.space.{path}: {problem}")
        for value in distribution.probes():
            try:
                ModelSpec.model_validate(apply_overrides(base, {path: value}))
            except ValidationError as exc:
                reasons = "; ".join(
                    f"{'.'.join(map(str, e['loc'])) or path}: "
                    + e["msg"].removeprefix("Value error, ")
                    for e in exc.errors()
                )
                raise ValueError(
                    f"model '{spec.name}': search.space.{path}: {distribution.kind} value "
                    f"{value!r} is rejected by the field ({reasons}); keep the range inside "
                    "what the field accepts"
                ) from None
    if spec.search.early_stop and spec.framework != "keras":
        raise ValueError(
            f"model '{spec.name}': search.early_stop stops keras trials only; remove it for "
            "framework: transformers"
        )


class ModelSpec(Strict):
    """One candidate model and its training recipe."""

    name: Slug
    framework: Literal["keras", "transformers"] = "keras"
    architecture: str | None = None
    weights: str = Field(default="none", description="keras: imagenet | none | path")
    checkpoint: str | None = Field(default=None, description="transformers: Hub id or folder")
    params: dict[str, Any] = Field(
        default_factory=dict, description="architecture knobs, e.g. filters, dropout, l2"
    )
    epochs: int = Field(default=10, ge=1, le=1000)
    batch_size: int = Field(default=32, ge=1, le=65536)
    optimizer: Optimizer = Optimizer()
    augment: Augment = Augment()
    label_smoothing: Fraction = 0.0
    calibration: Literal["none", "temperature"] = Field(
        default="none",
        description="temperature divides the trained model's logits by one temperature "
        "fitted on the validation split (Guo et al. 2017); the top class is unchanged",
    )
    early_stopping_patience: int | None = Field(default=None, ge=1)
    reduce_lr_patience: int | None = Field(
        default=None, ge=1, description="ReduceLROnPlateau patience (constant schedule only)"
    )
    mixed_precision: Literal["auto", "off"] = Field(
        default="auto", description="auto: float16 on GPU, bfloat16 on TPU, float32 on CPU"
    )
    jit_compile: bool = Field(default=False, description="compile the training step with XLA")
    fine_tune: FineTune = FineTune()
    gradient_accumulation_steps: int = Field(
        default=1, ge=1, le=1024, description="transformers: micro-batches per optimizer step"
    )
    layer_decay: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="transformers: layer-wise learning-rate decay (each block down from the "
        "head gets this factor once more)",
    )
    search: Search | None = Field(
        default=None, description="hyperparameter search around this recipe"
    )

    def knobs(self) -> ArchitectureParams:
        """The keras architecture's typed `params` (validated when the spec was)."""
        assert self.architecture is not None
        return parse_params(self.architecture, self.params)

    @model_validator(mode="after")
    def _framework_fields(self) -> ModelSpec:
        if self.framework == "keras":
            self._check_keras()
        else:
            self._check_transformers()
        if self.search is not None:
            check_search_space(self)
        return self

    def _check_keras(self) -> None:
        if self.architecture is None:
            raise ValueError(
                f"model '{self.name}': keras models need 'architecture' (one of "
                f"{', '.join(KERAS_ARCHITECTURES)})"
            )
        if self.architecture not in KERAS_ARCHITECTURES:
            raise ValueError(
                f"model '{self.name}': architecture '{self.architecture}' is unknown; "
                f"use one of {', '.join(KERAS_ARCHITECTURES)}"
            )
        if self.checkpoint is not None:
            raise ValueError(
                f"model '{self.name}': 'checkpoint' is for framework: transformers; "
                "keras models take 'architecture' and 'weights'"
            )
        if self.reduce_lr_patience and self.optimizer.schedule != "constant":
            raise ValueError(
                f"model '{self.name}': reduce_lr_patience needs optimizer.schedule: constant "
                "(a cosine schedule already sets the learning rate every step)"
            )
        try:
            parse_params(self.architecture, self.params)
        except ValueError as exc:
            raise ValueError(f"model '{self.name}': {exc}") from None
        self._check_searched_knobs(self.architecture)
        if self.weights not in ("none", "imagenet") and not self.weights.endswith(
            WEIGHT_FILE_SUFFIXES
        ):
            raise ValueError(
                f"model '{self.name}': weights '{self.weights}' is neither imagenet, none nor a "
                f"weights file keras reads (a name ending in {', '.join(WEIGHT_FILE_SUFFIXES)})"
            )
        if self.architecture in KERAS_SCRATCH_ARCHITECTURES and self.weights != "none":
            raise ValueError(
                f"model '{self.name}': {self.architecture} trains from scratch; "
                "set weights: none (pretrained weights exist only for keras applications)"
            )
        if self.gradient_accumulation_steps != 1 or self.layer_decay is not None:
            raise ValueError(
                f"model '{self.name}': gradient_accumulation_steps and layer_decay are for "
                "framework: transformers; remove them or raise batch_size for keras models"
            )

    def _check_searched_knobs(self, architecture: str) -> None:
        """Every `params.KEY` the search varies is a knob of the architecture (its values are
        probed against the knob's range by check_search_space)."""
        takes = params_class(architecture).model_fields
        for path in self.search.space if self.search else {}:
            key = path.removeprefix("params.")
            # a path below a knob (params.a.b) is path_problem's to report
            if path.startswith("params.") and "." not in key and key not in takes:
                raise ValueError(
                    f"model '{self.name}': search.space.{path}: {architecture} has no "
                    f"parameter '{key}'; it takes {', '.join(takes)}"
                )

    def _check_transformers(self) -> None:
        if not self.checkpoint:
            raise ValueError(
                f"model '{self.name}': transformers models need 'checkpoint' "
                "(a Hub id such as google/vit-base-patch16-224 or a local folder)"
            )
        if self.architecture is not None:
            raise ValueError(
                f"model '{self.name}': 'architecture' is for framework: keras; "
                "transformers models take 'checkpoint'"
            )
        keras_only = [
            name
            for name, unset in (
                ("weights", self.weights == "none"),
                ("fine_tune", not self.fine_tune.epochs),
                ("reduce_lr_patience", self.reduce_lr_patience is None),
                ("jit_compile", not self.jit_compile),
            )
            if not unset
        ]
        if keras_only:
            raise ValueError(
                f"model '{self.name}': keras-only settings given ({', '.join(keras_only)}); "
                "remove them: transformers models fine-tune the whole checkpoint in one "
                "phase (use optimizer.schedule: cosine with warmup_epochs, and layer_decay)"
            )


# What a failed training or evaluation does to the run (compare.on_failure): its task fails
# either way; `stop` ends the run, `continue` still compares the other candidates.
ON_FAILURE = ("stop", "continue")
OnFailure = Literal[ON_FAILURE]  # type: ignore[valid-type]


class Candidate(Strict):
    """One training task: a candidate model and the seed of this repeat (a ParallelFor item).

    A search trial carries its Optuna trial number (and, with early_stop, its pruning); a
    retrain of a search's winner carries the search's outcome.
    """

    model_spec: ModelSpec
    seed: int = Field(ge=0, le=2**32 - 1)
    trial: int | None = Field(default=None, ge=0)
    prune: Pruning | None = None
    fold: Fold | None = Field(
        default=None, description="a search trial's fold, with search.folds of 2 or more"
    )
    searched: SearchOutcome | None = None
    skip: str | None = Field(
        default=None, description="a search trial left untrained, and why (its budget was spent)"
    )

    @field_validator("seed", "trial", mode="before")
    @classmethod
    def _whole_seed(cls, value: Any) -> Any:
        # kfp.local hands loop items' ints over as floats (0.0); repair them here, once.
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value
