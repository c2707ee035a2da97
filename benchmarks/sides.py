"""Side-by-side measurement for every benchmark: after a warm-up of each side, the sides run
alternately (A B A B ...) `rounds` times, so a busy machine slows both alike; each figure is
the median of the per-round ratios, shown with their min and max."""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

ROUNDS = 5  # the fewest alternations a figure may rest on


@dataclass
class Sides:
    """Measurements of named sides, one per round each, in the order they alternated."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return statistics.median(self.values[name])

    def ratios(self, top: str, bottom: str) -> list[float]:
        return [a / b for a, b in zip(self.values[top], self.values[bottom], strict=True)]

    def ratio(self, top: str, bottom: str) -> str:
        """`1.23 (min 1.10, max 1.31, 5 rounds)` for top / bottom, round by round."""
        ratios = self.ratios(top, bottom)
        return (
            f"{statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f}, "
            f"{len(ratios)} rounds)"
        )


def alternate(
    sides: dict[str, Callable[[int], float]], rounds: int = ROUNDS, warmup: int = 1
) -> Sides:
    """Call each side `warmup` times unrecorded, then all sides in turn `rounds` times.

    A side takes the round number and returns its measurement (seconds, or a rate)."""
    if rounds < ROUNDS:
        raise SystemExit(f"--rounds must be at least {ROUNDS}: fewer alternations swing too much")
    for round_ in range(warmup):
        for measure in sides.values():
            measure(-1 - round_)
    result = Sides({name: [] for name in sides})
    for round_ in range(rounds):
        for name, measure in sides.items():
            result.values[name].append(measure(round_))
    return result


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """`--set KEY=VALUE` (repeatable, into `overrides`): a field of the experiment, as
    submit.py --set takes it."""
    parser.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override a field of the experiment, as submit.py --set does",
    )
