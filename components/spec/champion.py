"""The champion check's policy (`gate.champion`): when a registered version takes over."""

from __future__ import annotations

from pydantic import Field

from components.spec.base import Strict


class ChampionPolicy(Strict):
    """When a registered version becomes its model's champion (`gate.champion`).

    The register step re-scores the champion on this run's test split and compares the two on
    the same images: the challenger is promoted unless it may be worse than the champion by more
    than `margin` (the lower end of the paired bootstrap interval of the accuracy difference is
    below -margin), loses more than `recall_tolerance` of any class's recall, or is worse
    calibrated by more than `ece_tolerance` (expected calibration error). This is TFX
    Evaluator's "no worse than the baseline" blessing, with the noise of the test split taken
    into account (non-inferiority on a paired interval).
    """

    enabled: bool = Field(
        default=True,
        description="compare with the champion; off: every registered version is promoted",
    )
    margin: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="most accuracy (a fraction) the challenger may be worse by, at the lower end "
        "of the interval",
    )
    recall_tolerance: float = Field(
        default=0.10, ge=0.0, le=1.0, description="most recall any one class may lose"
    )
    ece_tolerance: float = Field(
        default=0.03, ge=0.0, le=1.0, description="most expected calibration error may grow"
    )
    confidence: float = Field(
        default=0.95, gt=0.5, lt=1.0, description="confidence level of the interval"
    )
    resamples: int = Field(
        default=2000, ge=200, le=100_000, description="paired bootstrap resamples"
    )
