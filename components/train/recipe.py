"""The training recipe both trainers share: learning-rate schedule and optimizer defaults.

Each trainer translates these into its framework's objects (Keras `CosineDecay`, a torch
`LambdaLR` factor), so a spec means the same thing in Keras and transformers alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from components.spec import Optimizer

# A warm-up starts from this fraction of the base rate and rises linearly to it.
WARMUP_START = 0.01
# SGD always uses Nesterov momentum.
NESTEROV = True


@dataclass(frozen=True)
class Schedule:
    """The learning rate over a phase's optimizer steps: constant, or linear warm-up from
    `WARMUP_START` x the rate followed by a cosine decay to 0 over `decay_steps`."""

    kind: str  # "constant" | "cosine"
    warmup_steps: int
    decay_steps: int

    def factor(self, step: int) -> float:
        """The multiplier of the base rate at optimizer step `step`."""
        if self.kind == "constant":
            return 1.0
        if step < self.warmup_steps:
            return WARMUP_START + (1 - WARMUP_START) * step / self.warmup_steps
        progress = min((step - self.warmup_steps) / self.decay_steps, 1.0)
        return 0.5 * (1 + math.cos(math.pi * progress))


def schedule_for(optimizer: Optimizer, epochs: int, steps_per_epoch: int) -> Schedule:
    """The schedule of a phase of `epochs` epochs with `steps_per_epoch` optimizer steps each."""
    warmup = optimizer.warmup_epochs * steps_per_epoch
    return Schedule(
        kind=optimizer.schedule,
        warmup_steps=warmup,
        decay_steps=max(epochs * steps_per_epoch - warmup, 1),
    )


def weight_decay(optimizer: Optimizer) -> float:
    """The decoupled weight decay to apply: exactly what the spec says; 0 trains without decay."""
    return optimizer.weight_decay
