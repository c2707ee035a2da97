"""Typed step results: what evaluate, compare, gate and register hand on, and what ingest writes
as `dataset_info.json`.

Components pass these over KFP as plain `dict` parameters (`to_output()`); every reader
validates the dict once with the model (`model_validate`). That is also where the kfp.local
repair happens: Collected and Struct values arrive with their ints as floats (`1.0`), which the
int fields accept and turn back into ints.

Ground floor: imports `components.spec` and `components.common.files`, nothing else of ours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from components.common.files import write_json
from components.spec import LOWER_IS_BETTER, SearchOutcome

DATASET_INFO_FILE = "dataset_info.json"


class Result(BaseModel):
    """A step result: unknown keys are an error, so a renamed field is not silently lost."""

    model_config = ConfigDict(extra="forbid")

    def to_output(self) -> dict[str, Any]:
        """The JSON-ready dict a component returns; KFP cannot carry None, so None is left out."""
        return self.model_dump(mode="json", exclude_none=True)


class RunFailure(Result):
    """A planned candidate x seed that has no evaluation result, so it is left out of the
    comparison: its train or evaluate task failed (`compare.on_failure: continue`), and that
    task's own status and log say why."""

    name: str
    seed: int
    error: str


class EvaluationResult(Result):
    """One candidate x seed after evaluation: the evaluate step's output, compare's input."""

    name: str
    seed: int
    framework: str = ""
    model_uri: str
    metrics: dict[str, float]
    search: SearchOutcome | None = None  # the winner of a search: what the search found


class Stats(Result):
    """Mean and sample standard deviation of a metric over a candidate's seeds."""

    mean: float
    std: float


class CandidateRow(Result):
    """One line of the comparison table."""

    name: str
    framework: str = ""
    seeds: int
    seed_list: list[int]
    rank: int
    metrics: dict[str, Stats]


class BestRun(Result):
    """The best seed of the best candidate: the model the gate checks and register registers."""

    name: str
    seed: int
    value: float
    model_uri: str
    metrics: dict[str, float]
    framework: str = ""
    search: SearchOutcome | None = None


class GateVerdict(Result):
    """Whether the best run reaches the gate's threshold, and by how much it missed."""

    passed: bool
    min: float
    metric: str
    value: float
    higher_is_better: bool
    missed_by: float
    message: str

    @classmethod
    def decide(
        cls, metric: str, value: float, threshold: float, name: str, seed: int
    ) -> GateVerdict:
        """The verdict on run `name` (seed `seed`) whose `metric` is `value`.

        For metrics where higher is better `threshold` is a minimum; for lower-is-better metrics
        (log_loss, ece) it is a maximum. `missed_by` is how far the value is on the wrong side
        of the threshold (0 when the gate passes).
        """
        higher_is_better = metric not in LOWER_IS_BETTER
        passed = value >= threshold if higher_is_better else value <= threshold
        missed_by = 0.0 if passed else abs(value - threshold)
        run = f"{name} (seed {seed})"
        if passed:
            relation = ">=" if higher_is_better else "<="
            message = f"gate passed: {run} {metric} {value:.4f} {relation} {threshold:.4f}"
        else:
            bound, side = ("minimum", "below") if higher_is_better else ("maximum", "above")
            message = (
                f"gate failed: the best run, {run}, has {metric} {value:.4f}, {side} the "
                f"{bound} {threshold:.4f} by {missed_by:.4f}; nothing is registered"
            )
        return cls(
            passed=passed,
            min=threshold,
            metric=metric,
            value=value,
            higher_is_better=higher_is_better,
            missed_by=missed_by,
            message=message,
        )


class Reference(Result):
    """What the reference system reached (the experiment's `reference`, as compare receives it)."""

    metric: str
    value: float
    note: str | None = None


class CompareSummary(Result):
    """The compare step's summary: table rows, the best run, the gate verdict."""

    metric: str
    higher_is_better: bool
    rows: list[CandidateRow]
    best: BestRun
    gate: GateVerdict
    reference: Reference | None = None
    runs: int
    all_runs: list[EvaluationResult]
    # Planned runs with no result, left out of the comparison (compare.on_failure: continue).
    failed: list[RunFailure] = []

    @field_validator("reference", mode="before")
    @classmethod
    def _no_reference(cls, value: Any) -> Any:
        # A pipeline parameter cannot be None: no reference travels as an empty mapping.
        return value or None

    def shown_metrics(self, candidates: tuple[str, ...]) -> list[str]:
        """Those of `candidates` (in their order) that some row reports."""
        return [m for m in candidates if any(m in row.metrics for row in self.rows)]


class ChampionCheck(Result):
    """One row of the champion decision: a metric of both models on the same test images."""

    check: str  # "accuracy", "recall <class>", "ece"
    champion: float
    challenger: float
    difference: float  # challenger - champion
    low: float | None = None  # the paired interval of the difference (accuracy)
    high: float | None = None
    p_value: float | None = None  # recall: one-sided exact McNemar on the class's images
    limit: str  # what the challenger had to meet, in words
    passed: bool


class ChampionDecision(Result):
    """Whether a registered version became its model's champion, and why (`details.champion`
    of its record): the checks against the champion of the time, on this run's test split."""

    promoted: bool
    reason: str  # "first version of ...", "accuracy +0.4 points ...", "accuracy may be ..."
    champion: str | None = None  # the champion's version when the decision was made
    test_images: int = 0
    discordant: list[int] = []  # [champion right and challenger wrong, the other way round]
    mcnemar_p: float | None = None  # exact McNemar test of the two error rates
    confidence: float | None = None
    checks: list[ChampionCheck] = []  # accuracy, the classes whose recall fell most, ece
    classes_below: int = 0  # classes whose recall fell past the tolerance (some not in checks)

    @property
    def verdict(self) -> str:
        """`promoted: <reason>` or `not promoted: <reason>`, as the console and index.html say."""
        return f"{'promoted' if self.promoted else 'not promoted'}: {self.reason}"


class RegistrationRecord(Result):
    """A registered model version (`registration.json` in the folder registry)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str
    version: str
    path: str
    source_model: str
    model_name: str | None = None
    seed: int | None = None
    framework: str | None = None
    dataset_fingerprint: str | None = None
    metrics: dict[str, float]
    exports: list[str] = []  # formats under the version's export/ folder
    # The earlier version of the same source model, when this one was made for new exports.
    same_model_as: str | None = None
    # Set on the record a registration returns when it found this version already there.
    existing: bool = False
    aliases: list[str] = []
    details: dict[str, Any] = {}
    registered_at: str


class SizeRange(Result):
    """The smallest, median and largest of one image dimension, in pixels."""

    min: int
    median: int
    max: int


class ImageSizes(Result):
    """Widths and heights of the kept images (`sampled`: how many were looked at)."""

    sampled: int
    width: SizeRange
    height: SizeRange


class DatasetInfo(Result):
    """`dataset_info.json` of a Dataset artifact: what ingest kept, per split and class, and its
    bookkeeping (everything it saw, quarantined, converted or left out).

    The first fields are the contract every reader relies on; the bookkeeping fields have
    defaults, so a Dataset written before one of them existed still reads. Keys this version does
    not know are ignored for the same reason.
    """

    model_config = ConfigDict(extra="ignore")

    source: str
    class_names: list[str]
    num_classes: int
    image_size: list[int]
    channels: int
    counts: dict[str, dict[str, int]]
    num_examples: dict[str, int]
    fingerprint: str
    extra_train_sources: list[str] = []
    source_splits: list[str] = []  # the source's own splits kept as given ("validation", "test")
    shards: dict[str, int] = {}
    seen: int = 0  # items the config keeps: each one is kept or quarantined
    kept: int = 0
    quarantined: int = 0
    quarantine_reasons: dict[str, int] = {}  # reason code -> items
    duplicates: int = 0
    leakage: dict[str, int] = {}  # "<split>/<split it leaked from>" -> images removed
    excluded_by_config: dict[str, int] = {}  # why (data.classes, data.label_map) -> items
    skipped: dict[str, int] = {}  # entries of a listing that are not items -> how many
    converted: int = 0
    conversions: dict[str, int] = {}  # what was converted ("EXIF orientation", ...) -> images
    source_formats: dict[str, int] = {}  # format as decoded -> images
    extension_mismatches: int = 0
    image_sizes: ImageSizes | None = None
    seconds: float = 0.0

    @field_validator("image_sizes", mode="before")
    @classmethod
    def _no_sizes(cls, value: Any) -> Any:
        return value or None  # an ingest that kept no image wrote {}

    @classmethod
    def read(cls, dataset_dir: str | Path) -> DatasetInfo:
        """The info of the Dataset in `dataset_dir`; a clear error when it is not one."""
        path = Path(dataset_dir) / DATASET_INFO_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: {dataset_dir} is not a Dataset written by the ingest step"
            )
        return cls.model_validate_json(path.read_text(encoding="utf-8"))

    def write(self, dataset_dir: str | Path) -> Path:
        """Write this info as the `dataset_info.json` of the Dataset in `dataset_dir`."""
        return write_json(Path(dataset_dir) / DATASET_INFO_FILE, self.model_dump(mode="json"))
