"""The quality gate: its decision on the compare summary.

The verdict itself (threshold a minimum, or a maximum for lower-is-better metrics, and by how
much the best run missed) is decided once, by `GateVerdict.decide` in
`components/common/results.py`, when compare builds the summary; the gate step turns it into
the pipeline's branch.
"""

from __future__ import annotations

from components.common.results import CompareSummary, GateVerdict

PASSED, FAILED = "passed", "failed"

__all__ = ["FAILED", "PASSED", "GateVerdict", "decision"]


def decision(summary: CompareSummary) -> str:
    """PASSED or FAILED for the summary's verdict."""
    return PASSED if summary.gate.passed else FAILED
