"""The transformers trainer's epoch: micro-batch steps with accumulation, clipping and AMP,
evaluation over every process, and the `Progress` a restart resumes from."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.models.transformers import Preprocessing, center_crop, model_inputs, normalize
from components.spec import Augment, ModelSpec
from components.train.transformers.input import SplitBatches, augment_batch

MAX_GRAD_NORM = 1.0


def seed_of(seed: int, epoch: int, rank: int) -> int:
    """The seed of one process's epoch (batch order, augmentation, dropout)."""
    return (seed * 1_000_003 + epoch * 1_009 + rank) % 2**63


def save_atomic(payload: Any, path: Path) -> None:
    """Write-then-rename, so a kill mid-save leaves the previous file whole."""
    import torch

    partial = path.with_suffix(".partial")
    torch.save(payload, partial)
    os.replace(partial, path)


@dataclass
class Progress:
    """What a restart needs besides the weights and optimizer: saved in last.pt every epoch."""

    epoch: int = 0
    finished: bool = False
    history: dict[str, list[float]] = field(default_factory=dict)
    best: float = -math.inf
    best_epoch: int = 0
    wait: int = 0
    stopped: bool = False  # early stopping triggered

    def record(self, metrics: dict[str, float], monitor: str, patience: int | None) -> bool:
        """Append one epoch; True when it is the best so far."""
        for name, value in metrics.items():
            self.history.setdefault(name, []).append(float(value))
        self.epoch += 1
        improved = metrics[monitor] > self.best
        if improved:
            self.best, self.best_epoch, self.wait = metrics[monitor], self.epoch, 0
        else:
            self.wait += 1
        self.stopped = bool(patience) and self.wait >= (patience or 0)
        return improved


class Step:
    """One micro-batch: forward, loss, backward; at an accumulation boundary also the clipped
    optimizer step and the schedule step (DDP syncs gradients only then)."""

    def __init__(
        self,
        network: Any,
        optimizer: Any,
        scheduler: Any,
        scaler: Any,
        spec: ModelSpec,
        device: Any,
        dtype: str,
        distributed: bool,
    ):
        import torch

        self.network = network
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scaler = scaler
        self.spec = spec
        self.device = device
        self.distributed = distributed
        self.amp = dtype != "float32"
        self.amp_dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float16

    def logits(self, model: Any, inputs: Any) -> Any:
        import torch

        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            return model(pixel_values=inputs).logits.float()

    def evaluate(
        self,
        model: Any,
        batches: Iterable[tuple[Any, Any]],
        prep: Preprocessing,
        totals: Callable[..., list[float]],
    ) -> tuple[float, float]:
        """(loss, accuracy) over every process's batches, without augmentation."""
        import torch
        import torch.nn.functional as F

        model.eval()
        sums = [0.0, 0.0, 0.0]  # loss x images, correct, images
        with torch.inference_mode():
            for images, labels in batches:
                labels = labels.to(self.device)
                logits = self.logits(model, model_inputs(images.to(self.device).float(), prep))
                loss = F.cross_entropy(logits, labels, label_smoothing=self.spec.label_smoothing)
                sums[0] += float(loss) * len(labels)
                sums[1] += float((logits.argmax(1) == labels).sum())
                sums[2] += len(labels)
        loss_sum, correct, count = totals(*sums)
        return loss_sum / count, correct / count

    def __call__(
        self, inputs: Any, labels: Any, real: int, scale: float, boundary: bool
    ) -> tuple[Any, Any]:
        """Backward of `scale` x the summed loss of the first `real` examples (the rest are
        padding); returns every example's loss and logits."""
        import torch.nn.functional as F

        sync = (
            self.network.no_sync()
            if self.distributed and not boundary
            else contextlib.nullcontext()
        )
        with sync:
            logits = self.logits(self.network, inputs)
            losses = F.cross_entropy(
                logits, labels, label_smoothing=self.spec.label_smoothing, reduction="none"
            )
            self.scaler.scale(losses[:real].sum() * scale).backward()
        if boundary:
            import torch

            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), MAX_GRAD_NORM)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
        return losses.detach(), logits.detach()


def train_epoch(
    step: Step,
    train: SplitBatches,
    prep: Preprocessing,
    epoch: int,
    seed: int,
    rank: int,
    totals: Callable[..., list[float]],
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """One pass over this process's training batches -> {loss, accuracy} over all processes.
    `on_batch` hears the number of each finished batch."""
    import torch

    spec, device = step.spec, step.device
    accumulation = spec.gradient_accumulation_steps
    micro_steps = len(train)
    full_groups = (micro_steps // accumulation) * accumulation
    augments = spec.augment != Augment()
    torch.manual_seed(seed_of(seed, epoch, rank))  # dropout and stochastic depth: per process
    # augmentation: drawn for the step's whole batch on every process (augment_batch)
    generator = torch.Generator(device=device).manual_seed(seed_of(seed, epoch, 0))
    step.network.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    count = 0
    for index, (images, labels, share) in enumerate(train.steps(epoch)):
        images = center_crop(images.to(device, non_blocking=True).float(), prep.crop_size)
        labels = labels.to(device, non_blocking=True)
        if augments:
            images = augment_batch(images, spec.augment, generator, share)
        # the last optimizer step of an epoch may gather fewer micro-batches
        group = accumulation if index < full_groups else micro_steps - full_groups
        boundary = (index + 1) % accumulation == 0 or index + 1 == micro_steps
        # DDP averages the processes' gradients, so each process's summed loss times
        # world / (the step's examples) averages to the step's mean loss, as on one process.
        scale = share.world / share.batch / group
        losses, logits = step(normalize(images, prep), labels, share.real, scale, boundary)
        real = share.real
        loss_sum += losses[:real].double().sum()
        correct += (logits[:real].argmax(1) == labels[:real]).sum()
        count += real
        if on_batch is not None:
            on_batch(index + 1)
    train_loss, train_correct, train_count = totals(loss_sum, correct, count)
    return {"loss": train_loss / train_count, "accuracy": train_correct / train_count}
