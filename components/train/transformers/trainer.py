"""Hugging Face fine-tuning: an AutoModelForImageClassification checkpoint, a new head, our data.

A plain PyTorch loop, so every piece of the recipe is in view: AdamW (or the spec's optimizer)
with no weight decay on biases and norms, optional layer-wise learning-rate decay, warm-up +
cosine schedule per optimizer step, gradient accumulation, gradient clipping, label smoothing,
AMP on GPU (bfloat16 where supported, else float16 with loss scaling), early stopping on
validation accuracy with the best weights restored, temperature scaling of the head on the
validation split (`calibration: temperature`, components/train/calibration.py), and DDP over
every visible GPU and every node of a multi-replica job, launched by torchrun.

`batch_size` is the batch of one step over all processes: each of N processes takes every N-th
example of it (components/train/transformers/input.py), augments it as one process would, and
weighs its loss so that DDP's average is the step's mean. So the seed, the order of the data, the
steps and the metrics are the same whatever the number of processes; only dropout and stochastic
depth draw per process, and sums over processes round differently.

Preemption: after every epoch `<checkpoint_dir>/transformers/last.pt` (weights, optimizer,
scheduler, scaler, history, early-stopping state) is replaced atomically. A restarted step
resumes after the last finished epoch; one that had finished only writes the outputs again.
Batch order and augmentation are seeded from (seed, epoch), dropout from (seed, epoch, rank), so
on CPU a resumed run ends with the same weights as an uninterrupted one. Across replicas only
process 0 (on the chief) writes checkpoints and the Model; every process resumes from its
checkpoint (`resume`, in state.py with the rest of a process's setup).
"""

from __future__ import annotations

import math
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.common.files import local_path, write_json
from components.common.model_card import ModelCard
from components.common.progress import EpochEvents
from components.models.transformers import Preprocessing, model_inputs, save_model
from components.spec import Fold, ModelSpec
from components.train import trainjob
from components.train.calibration import Calibration, calibrate_transformers
from components.train.cluster import Process, describe, nodes_from_environment, torchrun_command
from components.train.events import EpochScalars
from components.train.request import Request
from components.train.transformers.input import SplitBatches
from components.train.transformers.loop import Progress, train_epoch
from components.train.transformers.state import BEST, Setup, resume, save_epoch, set_up

# --- entry point -----------------------------------------------------------------------------


def train_transformers(
    dataset_dir: str | Path,
    spec: ModelSpec,
    seed: int,
    model_dir: str | Path,
    checkpoint_dir: str | Path | None = None,
    *,
    processes: int | None = None,
    tensorboard_dir: str | Path | None = None,
    fold: Fold | None = None,
    calibrate: bool = True,
) -> ModelCard | None:
    """Fine-tune one candidate on the Dataset in `dataset_dir`; write the Model to `model_dir`.

    One process trains here, or torchrun starts `processes` DDP processes on this machine and
    on every other node of a Vertex AI custom job (components/train/cluster.py), or, where the
    kfp target asked for it, a Kubeflow Trainer TrainJob trains (components/train/trainjob.py).
    Returns the card; None on a worker node, where the chief writes the Model.

    Args:
        processes: DDP processes on this machine; default one per visible GPU (one on CPU).
        tensorboard_dir: Where process 0 writes per-epoch TensorBoard scalars; None: nowhere.
        fold: A search trial's fold (search.folds): train on train + validation without the
            fold's images, validate on those (components/common/folds.py).
        calibrate: Apply spec.calibration (False for a search trial: T leaves its accuracy
            as it is).
    """
    if spec.framework != "transformers" or not spec.checkpoint:
        raise ValueError(f"model '{spec.name}' is not a transformers model with a checkpoint")
    # Without a checkpoint folder nothing can resume: save into a throw-away one.
    checkpoints = (
        local_path(checkpoint_dir)
        if checkpoint_dir
        else Path(tempfile.mkdtemp(prefix="checkpoints-"))
    )
    request = Request(
        str(dataset_dir),
        spec,
        seed,
        str(model_dir),
        str(checkpoints),
        str(tensorboard_dir) if tensorboard_dir else "",
        fold,
        calibrate,
    )
    launch = trainjob.launch_from_environment()
    if launch is not None:
        return trainjob.train_in_trainjob(launch, request)
    nodes = nodes_from_environment()
    per_node = processes if processes is not None else _visible_gpus()
    if nodes.count * per_node == 1:
        card = fine_tune(*request.arguments()).card
        assert card is not None
    else:
        print(describe(nodes, per_node), flush=True)
        with tempfile.TemporaryDirectory(prefix="train-request-") as folder:
            path = request.write(Path(folder) / "request.json")
            command = torchrun_command(nodes, per_node, WORKER_MODULE, [str(path)])
            finished = subprocess.run(command, check=False)
        if finished.returncode != 0:
            raise RuntimeError(
                f"the training processes failed (torchrun exit code {finished.returncode}); "
                "the first process's traceback is above"
            )
        if not nodes.is_chief:
            return None
        card = ModelCard.load(model_dir)
    return card


WORKER_MODULE = "components.train.transformers.worker"


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 1


def run_process(request: Request, process: Process) -> None:
    """One of torchrun's processes: join the process group, train, leave."""
    import torch
    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    if not cuda and "OMP_NUM_THREADS" not in os.environ:
        # CPU processes share the cores instead of each starting one thread per core.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        torch.set_num_threads(max(cores // process.local_world, 1))
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        fine_tune(
            *request.arguments(),
            rank=process.rank,
            world=process.world,
            local_rank=process.local_rank,
        )
        dist.barrier()
    finally:
        dist.destroy_process_group()


# --- one process's training ------------------------------------------------------------------


@dataclass
class FineTuned:
    card: ModelCard | None  # None on processes other than 0
    model: Any  # the trained (best, with early stopping) model, on its device
    preprocessing: Preprocessing


def fine_tune(
    dataset_dir: str,
    spec: ModelSpec,
    seed: int,
    model_dir: str,
    checkpoint_dir: str,
    tensorboard_dir: str = "",
    fold: Fold | None = None,
    calibrate: bool = True,
    *,
    rank: int = 0,
    world: int = 1,
    local_rank: int = 0,
) -> FineTuned:
    """One process's share of the training; process 0 calibrates (spec.calibration, where
    `calibrate`) and writes the Model artifact."""
    started = time.monotonic()
    setup = set_up(dataset_dir, spec, seed, checkpoint_dir, rank, world, local_rank, fold)
    progress = resume(setup)
    resumed_after = progress.epoch
    setup.state_dir.mkdir(parents=True, exist_ok=True)
    if not progress.finished:
        run_epochs(setup, dataset_dir, progress, tensorboard_dir)
    setup.model.eval()
    if rank != 0:
        return FineTuned(None, setup.model, setup.prep)
    restored = restore_best(setup)
    calibration = None
    if calibrate and spec.calibration == "temperature":
        calibration = calibrate_on_validation(setup, dataset_dir)
    card = write_out(
        setup,
        progress,
        resumed_after,
        Path(model_dir),
        Trained(time.monotonic() - started, restored, calibration),
    )
    return FineTuned(card, setup.model, setup.prep)


def run_epochs(
    setup: Setup, dataset_dir: str, progress: Progress, tensorboard_dir: str = ""
) -> None:
    """Train epoch after epoch until the spec's epochs or early stopping; save each one.
    Process 0 also reports progress events and writes TensorBoard scalars."""
    import torch

    spec, rank, world = setup.spec, setup.rank, setup.world
    train = SplitBatches(
        dataset_dir,
        "train",
        setup.prep,
        spec.batch_size,
        shuffle=True,
        seed=setup.seed,
        rank=rank,
        world=world,
        pin_memory=setup.device.type == "cuda",
        fold=setup.fold,
    )
    validation = None
    if setup.sizes["validation"]:
        validation = SplitBatches(
            dataset_dir,
            "validation",
            setup.prep,
            spec.batch_size,
            rank=rank,
            world=world,
            fold=setup.fold,
        )
    monitor = "val_accuracy" if validation is not None else "accuracy"
    events = EpochEvents(spec.epochs, len(train), progress.epoch) if rank == 0 else None
    board = EpochScalars(tensorboard_dir) if rank == 0 and tensorboard_dir else None
    while not progress.finished:
        began = time.monotonic()
        metrics = train_epoch(
            setup.step,
            train,
            setup.prep,
            progress.epoch,
            setup.seed,
            rank,
            setup.totals,
            on_batch=events.batch if events is not None else None,
        )
        if validation is not None:
            metrics["val_loss"], metrics["val_accuracy"] = setup.step.evaluate(
                setup.model, validation.epoch(0), setup.prep, setup.totals
            )
        metrics["learning_rate"] = float(max(setup.scheduler.get_last_lr()))
        improved = progress.record(metrics, monitor, spec.early_stopping_patience)
        progress.finished = progress.stopped or progress.epoch == spec.epochs
        if rank == 0:
            shown = " - ".join(f"{k}: {v:.4g}" for k, v in metrics.items())
            print(
                f"Epoch {progress.epoch}/{spec.epochs} - {time.monotonic() - began:.1f}s - {shown}",
                flush=True,
            )
            if events is not None:
                events.epoch_end(metrics)
            if board is not None:
                board.write(progress.epoch, metrics)
            save_epoch(setup, progress, improved, monitor)
        if setup.distributed:
            torch.distributed.barrier()
    if board is not None:
        board.close()


def restore_best(setup: Setup) -> bool:
    """The best epoch's weights back in the model, where early stopping kept them."""
    import torch

    best = setup.state_dir / BEST
    if not (setup.spec.early_stopping_patience and best.is_file()):
        return False
    setup.model.load_state_dict(torch.load(best, map_location=setup.device, weights_only=True))
    return True


def calibrate_on_validation(setup: Setup, dataset_dir: str) -> Calibration:
    """Temperature scaling of the trained model on the whole validation split, by process 0."""
    validation = None
    if setup.sizes["validation"]:
        validation = SplitBatches(
            dataset_dir, "validation", setup.prep, setup.spec.batch_size, fold=setup.fold
        ).epoch(0)
    model, device, prep = setup.model, setup.device, setup.prep
    return calibrate_transformers(
        model,
        validation,
        lambda images: setup.step.logits(model, model_inputs(images.to(device).float(), prep)),
        setup.spec.name,
    )


@dataclass(frozen=True)
class Trained:
    """What the card tells of the training beyond the spec and the setup."""

    seconds: float
    restored_best: bool
    calibration: Calibration | None


def write_out(
    setup: Setup, progress: Progress, resumed_after: int, model_dir: Path, trained: Trained
) -> ModelCard:
    """The Model artifact: hf/ (save_pretrained + processor config), card, history."""
    import torch

    spec, model, device = setup.spec, setup.model, setup.device
    accumulation = spec.gradient_accumulation_steps
    training = {
        "spec": spec.model_dump(mode="json"),
        "epochs_run": progress.epoch,
        "best_epoch": progress.best_epoch,
        "restored_best": trained.restored_best,
        "resumed_after_epoch": resumed_after,
        "seconds": round(trained.seconds, 2),
        "train_examples": setup.sizes["train"],
        "validation_examples": setup.sizes["validation"],
        "fold": setup.fold.model_dump() if setup.fold is not None else None,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "processes": setup.world,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": setup.dtype,
        "batch_size_per_process": math.ceil(spec.batch_size / setup.world),
        "gradient_accumulation_steps": accumulation,
        "effective_batch_size": spec.batch_size * accumulation,
        "optimizer_steps_per_epoch": setup.steps_per_epoch,
        "calibration": trained.calibration.record() if trained.calibration else None,
    }
    save_model(model, setup.processor_config, model_dir)
    card = ModelCard(
        framework="transformers",
        name=spec.name,
        seed=setup.seed,
        class_names=setup.class_names,
        **setup.prep.card_fields(),
        training=training,
        history=progress.history,
        dataset_fingerprint=setup.info.fingerprint,
    )
    card.save(model_dir)
    write_json(model_dir / "history.json", progress.history)
    return card
