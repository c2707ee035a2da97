"""The quality gate's verdict: does the best run reach the configured threshold, and by how much
did it miss?"""

from __future__ import annotations

from typing import Any

from components.spec import LOWER_IS_BETTER


def verdict(metric: str, value: float, threshold: float, name: str, seed: int) -> dict[str, Any]:
    """The gate entry of the compare summary.

    For metrics where higher is better `threshold` is a minimum; for lower-is-better metrics
    (log_loss, ece) it is a maximum. `missed_by` is how far the value is on the wrong side of
    the threshold (0 when the gate passes).
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
            f"gate failed: the best run, {run}, has {metric} {value:.4f}, {side} the {bound} "
            f"{threshold:.4f} by {missed_by:.4f}; nothing is registered"
        )
    return {
        "passed": passed,
        "min": threshold,
        "metric": metric,
        "value": value,
        "higher_is_better": higher_is_better,
        "missed_by": missed_by,
        "message": message,
    }
