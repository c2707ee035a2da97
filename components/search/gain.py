"""Whether a search paid: the tuned recipe against the candidate's own recipe on the test split,
and whether the validation split could tell the best trials apart.

Both figures are judged against their noise, in the way model comparisons are judged in the
field (Bouthillier et al., "Accounting for Variance in Machine Learning Benchmarks", MLSys 2021;
Google Research's Deep Learning Tuning Playbook, 2023): the spread over training seeds, plus the
sampling noise of the images the figure is measured on, whose standard error for an accuracy p on
n images is sqrt(p (1 - p) / n). A difference inside two standard errors is not a finding.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

# Metrics that are a fraction of images right: their sampling noise is binomial.
BINOMIAL_METRICS = ("accuracy", "val_accuracy")
# A difference counts once it exceeds this many standard errors (about 95%).
Z = 2.0
# The folds suggested where the validation split cannot rank the trials: scikit-learn's default
# (`cv=5`); Kohavi (IJCAI 1995) found 10 folds the better estimate, at twice the cost.
SUGGESTED_FOLDS = 5


def binomial_se(value: float, examples: int) -> float:
    """Standard error of an accuracy `value` measured on `examples` images."""
    return math.sqrt(max(value * (1.0 - value), 0.0) / examples)


@dataclass(frozen=True)
class Gain:
    """tuned - untuned of one metric, paired by seed (higher is better: signs are flipped for
    a metric to minimise)."""

    mean: float
    std: float | None  # over seeds; None with one seed
    seeds: int
    noise: float | None  # Z standard errors of `mean`; None when nothing measures it
    test_examples: int | None

    @property
    def inside_noise(self) -> bool | None:
        return None if self.noise is None else abs(self.mean) <= self.noise

    def text(self, metric: str) -> str:
        spread = f" ± {self.std:.4f}" if self.std is not None else ""
        line = f"gain over the untuned recipe {self.mean:+.4f}{spread} {metric} ({self.seeds} seed"
        line += "s)" if self.seeds != 1 else ")"
        if self.inside_noise is None:
            return line + ": its noise is unknown (one seed, a metric that is not a fraction)"
        where = f" on {self.test_examples} test images" if self.test_examples else ""
        if self.inside_noise:
            return line + (
                f": inside the noise (±{self.noise:.4f}{where}); the search did not measurably "
                "improve on the recipe"
            )
        return line + f": beyond the noise (±{self.noise:.4f}{where})"


def gain(
    tuned: dict[int, float],
    untuned: dict[int, float],
    metric: str,
    higher_is_better: bool,
    test_examples: int | None,
) -> Gain | None:
    """The gain over the seeds both sides ran (None when they share none).

    Its noise adds the seed-to-seed spread (standard error of the mean difference) and the test
    split's sampling noise of both sides (binomial, for accuracy; an upper bound, as the two
    models are scored on the same images)."""
    seeds = sorted(set(tuned) & set(untuned))
    if not seeds:
        return None
    sign = 1.0 if higher_is_better else -1.0
    differences = [sign * (tuned[s] - untuned[s]) for s in seeds]
    mean = statistics.fmean(differences)
    std = statistics.stdev(differences) if len(seeds) > 1 else None
    variance = (std**2 / len(seeds)) if std is not None else 0.0
    measured = std is not None
    if metric in BINOMIAL_METRICS and test_examples:
        # Every seed is scored on the same test images: their sampling noise does not average
        # out over seeds.
        for side in (tuned, untuned):
            value = statistics.fmean(side[s] for s in seeds)
            variance += binomial_se(value, test_examples) ** 2
        measured = True
    noise = Z * math.sqrt(variance) if measured else None
    return Gain(mean, std, len(seeds), noise, test_examples)


def ranking_noise(
    metric: str,
    best: float,
    runner_up: float | None,
    validation_examples: int | None,
    folds: int = 1,
    pool: int | None = None,
    lead_se: float | None = None,
) -> str | None:
    """Whether the images the trials were ranked on tell the best trial from the next one, and
    if not, how many would (None when that cannot be judged). `validation_examples` are those
    images: the validation split, or with `folds` K >= 2 all of train + validation; `pool` is
    train + validation, which K folds would rank on when the validation split alone is short;
    `lead_se`, with folds, the standard error of the lead from the two trials' paired fold
    differences: it also holds the training's own noise, and the larger of the two counts."""
    if metric not in BINOMIAL_METRICS or runner_up is None or not validation_examples:
        return None
    lead = abs(best - runner_up)
    # Two trials scored on the same n images: the standard error of their difference is at
    # most sqrt(2 p (1 - p) / n). With folds, each image is scored once, in its fold.
    noise = Z * math.sqrt(2.0) * binomial_se(best, validation_examples)
    where = f"{validation_examples} images" + (
        f", {folds} folds of train + validation" if folds > 1 else ""
    )
    spread = lead_se is not None and Z * lead_se > noise
    if spread:
        noise = Z * float(lead_se or 0.0)
        where += ", from the spread of the two trials' fold differences"
    if lead > noise:
        return (
            f"the lead over the next trial ({lead:.4f}) is beyond the validation noise "
            f"(±{noise:.4f} on {where})"
        )
    # More images narrow the sampling noise only, not the spread of the folds' trainings.
    needed = (
        math.ceil(2.0 * Z**2 * best * (1.0 - best) / lead**2) if lead > 0 and not spread else None
    )
    advice = (
        f"; telling a {lead:.4f} lead apart needs about {needed} validation images"
        if needed
        else ""
    )
    if folds == 1 and pool and pool > validation_examples:
        advice += (
            f"; search.folds: {SUGGESTED_FOLDS} ranks the trials on all {pool} images of train "
            f"+ validation, at {SUGGESTED_FOLDS}x the trials' training time"
        )
    return (
        f"the lead over the next trial ({lead:.4f}) is inside the validation noise "
        f"(±{noise:.4f} on {where}): the ranking is a coin toss{advice}"
    )
