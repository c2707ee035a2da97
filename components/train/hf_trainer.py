"""Hugging Face fine-tuning: an AutoModelForImageClassification checkpoint, a new head, our data.

A plain PyTorch loop, so every piece of the recipe is in view: AdamW (or the spec's optimizer)
with no weight decay on biases and norms, optional layer-wise learning-rate decay, warm-up +
cosine schedule per optimizer step, gradient accumulation, gradient clipping, label smoothing,
AMP on GPU (bfloat16 where supported, else float16 with loss scaling), early stopping on
validation accuracy with the best weights restored, and DDP over every visible GPU.

Preemption: after every epoch `<checkpoint_dir>/transformers/last.pt` (weights, optimizer,
scheduler, scaler, history, early-stopping state) is replaced atomically. A restarted step
resumes after the last finished epoch; one that had finished only writes the outputs again.
Batch order, augmentation and dropout are seeded from (seed, epoch, rank), so on CPU a resumed
run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from components.common.dataset import read_info
from components.common.files import local_path, write_json
from components.common.model_card import ModelCard
from components.spec import Augment, ModelSpec
from components.train.checkpoints import resume_message
from components.train.hf_input import BatchOrder, SplitBatches, augment_batch
from components.train.hf_model import (
    HF_DIR,
    CheckpointError,
    Preprocessing,
    center_crop,
    load_processor_config,
    model_inputs,
    normalize,
    quiet_transformers,
    resolve_checkpoint,
)

STATE_DIR = "transformers"
LAST = "last.pt"
BEST = "best.pt"
PROGRESS = "progress.json"
MAX_GRAD_NORM = 1.0
# Parameter names kept out of weight decay besides biases and 1-d (norm) weights.
NO_DECAY = ("position_embeddings", "cls_token", "mask_token", "distillation_token", ".grn.")
# `<stack>.<index>.` segments that number the backbone's blocks (ViT layers.N, ConvNeXt
# stages.S.layers.N, Swin layers.S.blocks.N).
BLOCK = re.compile(r"(?:^|\.)(?:layer|layers|stage|stages|block|blocks)\.(\d+)(?=\.)")


# --- entry point -----------------------------------------------------------------------------


def train_transformers(
    dataset_dir: str | Path,
    spec: ModelSpec | dict[str, Any],
    seed: int,
    model_dir: str | Path,
    checkpoint_dir: str | Path | None = None,
    *,
    processes: int | None = None,
) -> ModelCard:
    """Fine-tune one candidate on the Dataset in `dataset_dir`; write the Model to `model_dir`.

    Args:
        processes: DDP processes on this machine; default one per visible GPU (one on CPU).
    """
    spec = spec if isinstance(spec, ModelSpec) else ModelSpec.model_validate(spec)
    if spec.framework != "transformers" or not spec.checkpoint:
        raise ValueError(f"model '{spec.name}' is not a transformers model with a checkpoint")
    # Without a checkpoint folder nothing can resume: save into a throw-away one.
    checkpoints = (
        local_path(checkpoint_dir)
        if checkpoint_dir
        else Path(tempfile.mkdtemp(prefix="checkpoints-"))
    )
    args = (str(dataset_dir), spec.model_dump(mode="json"), seed, str(model_dir), str(checkpoints))
    world = processes if processes is not None else _visible_gpus()
    if world > 1:
        import torch.multiprocessing as mp

        # One process per device on this machine; process 0 writes the Model.
        mp.spawn(_distributed, args=(world, _free_port(), *args), nprocs=world, join=True)
        return ModelCard.load(model_dir)
    card = fine_tune(*args).card
    assert card is not None
    return card


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _distributed(rank: int, world: int, port: int, *args: Any) -> None:
    import torch
    import torch.distributed as dist

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    cuda = torch.cuda.is_available()
    if not cuda:
        # CPU processes share the cores instead of each starting one thread per core.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        torch.set_num_threads(max(cores // world, 1))
    dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    try:
        fine_tune(*args, rank=rank, world=world)
        dist.barrier()
    finally:
        dist.destroy_process_group()


# --- recipe pieces ---------------------------------------------------------------------------


def layer_ids(names: Iterable[str]) -> tuple[dict[str, int], int]:
    """Parameter name -> depth for layer-wise decay: 0 for embeddings, 1.. for backbone blocks
    in order, `top` for the rest (final norm, head). A stage's own layers (downsampling) go
    with its first block."""
    names = list(names)
    keys = {name: tuple(int(i) for i in BLOCK.findall(name)) for name in names}
    depth = max((len(k) for k in keys.values()), default=0)
    padded = {name: key + (0,) * (depth - len(key)) for name, key in keys.items() if key}
    order = {key: index + 1 for index, key in enumerate(sorted(set(padded.values())))}
    top = len(order) + 1
    ids = {}
    for name in names:
        if name in padded:
            ids[name] = order[padded[name]]
        elif "embeddings" in name.split(".") or ".embeddings." in f".{name}":
            ids[name] = 0
        else:
            ids[name] = top
    return ids, top


def parameter_groups(model: Any, spec: ModelSpec) -> list[dict[str, Any]]:
    """Optimizer groups by (layer, decay): the learning rate scaled by layer_decay ** (top -
    layer), no weight decay on biases, norms, position embeddings and tokens."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    ids, top = layer_ids(n for n, _ in named)
    o = spec.optimizer
    decay = o.weight_decay or (0.01 if o.name == "adamw" else 0.0)  # AdamW implies decay
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, parameter in named:
        layer = ids[name] if spec.layer_decay else top
        no_decay = parameter.ndim <= 1 or name.endswith(".bias") or any(k in name for k in NO_DECAY)
        scale = spec.layer_decay ** (top - layer) if spec.layer_decay else 1.0
        group = groups.setdefault(
            (layer, no_decay),
            {
                "params": [],
                "lr": o.learning_rate * scale,
                "weight_decay": 0.0 if no_decay else decay,
                "layer_id": layer,
            },
        )
        group["params"].append(parameter)
    return [groups[key] for key in sorted(groups)]


def make_optimizer(spec: ModelSpec, groups: list[dict[str, Any]]) -> Any:
    import torch

    o = spec.optimizer
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=o.learning_rate)
    if o.name == "adam":
        return torch.optim.Adam(groups, lr=o.learning_rate)
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.learning_rate, momentum=o.momentum, nesterov=True)
    return torch.optim.RMSprop(groups, lr=o.learning_rate, momentum=o.momentum)


def schedule(spec: ModelSpec, steps_per_epoch: int) -> Callable[[int], float]:
    """Learning-rate factor per optimizer step, as the Keras trainer's: constant, or a linear
    warm-up from 1/100 of the rate followed by a cosine decay to 0."""
    if spec.optimizer.schedule == "constant":
        return lambda step: 1.0
    warmup = spec.optimizer.warmup_epochs * steps_per_epoch
    decay = max(spec.epochs * steps_per_epoch - warmup, 1)

    def factor(step: int) -> float:
        if step < warmup:
            return 0.01 + 0.99 * step / warmup
        return 0.5 * (1 + math.cos(math.pi * min((step - warmup) / decay, 1.0)))

    return factor


def precision(spec: ModelSpec, device: Any) -> str:
    import torch

    if spec.mixed_precision == "off" or device.type != "cuda":
        return "float32"
    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


def load_pretrained(checkpoint: str, spec: ModelSpec, class_names: list[str]) -> Any:
    """The checkpoint with a head for `class_names`; spec.params override config fields
    (e.g. drop_path_rate, hidden_dropout_prob)."""
    import torch
    from transformers import AutoConfig, AutoModelForImageClassification

    where = f"model '{spec.name}': checkpoint '{spec.checkpoint}'"
    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(checkpoint)
            unknown = sorted(k for k in spec.params if not hasattr(config, k))
            if unknown:
                raise CheckpointError(
                    f"model '{spec.name}': params {', '.join(unknown)} are not fields of "
                    f"{type(config).__name__}; transformers params override config fields "
                    "such as drop_path_rate or hidden_dropout_prob"
                )
            model = AutoModelForImageClassification.from_pretrained(
                checkpoint,
                num_labels=len(class_names),
                id2label=dict(enumerate(class_names)),
                label2id={name: index for index, name in enumerate(class_names)},
                ignore_mismatched_sizes=True,
                **spec.params,
            )
    except (OSError, ValueError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(
            f"{where} cannot be loaded as an image classifier ({exc}); use a Hub id of an "
            "AutoModelForImageClassification model (reachable from the training machine) or a "
            "folder written by save_pretrained"
        ) from None
    # A head of the right size trained for other classes is loaded as it is: start it afresh.
    old = [str(v) for _, v in sorted((int(k), v) for k, v in config.id2label.items())]
    if len(old) == len(class_names) and old != class_names:
        for name, module in model.named_modules():
            if name.split(".")[0] == "classifier" and isinstance(module, torch.nn.Linear):
                module.reset_parameters()
    return model


# --- training --------------------------------------------------------------------------------


def _seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 1_009 + rank) % 2**63


def _save(payload: Any, path: Path) -> None:
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


@dataclass
class FineTuned:
    card: ModelCard | None  # None on processes other than 0
    model: Any  # the trained (best, with early stopping) model, on its device
    preprocessing: Preprocessing


class _Step:
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

    def __call__(self, inputs: Any, labels: Any, weight: float, boundary: bool) -> tuple[Any, Any]:
        import torch
        import torch.nn.functional as F

        sync = (
            self.network.no_sync()
            if self.distributed and not boundary
            else contextlib.nullcontext()
        )
        with sync:
            logits = self.logits(self.network, inputs)
            loss = F.cross_entropy(logits, labels, label_smoothing=self.spec.label_smoothing)
            self.scaler.scale(loss * weight).backward()
        if boundary:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), MAX_GRAD_NORM)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
        return loss.detach(), logits.detach()


def fine_tune(
    dataset_dir: str,
    spec_json: dict[str, Any],
    seed: int,
    model_dir: str,
    checkpoint_dir: str,
    *,
    rank: int = 0,
    world: int = 1,
) -> FineTuned:
    """One process's share of the training; process 0 writes the Model artifact."""
    import torch

    spec = ModelSpec.model_validate(spec_json)
    assert spec.checkpoint is not None
    started = time.monotonic()
    distributed = world > 1
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)

    info = read_info(dataset_dir)
    class_names = [str(name) for name in info["class_names"]]
    checkpoint = resolve_checkpoint(spec.checkpoint)
    processor_config = load_processor_config(checkpoint)
    prep = Preprocessing.from_processor_config(processor_config, spec.checkpoint)
    model = load_pretrained(checkpoint, spec, class_names).to(device)
    dtype = precision(spec, device)

    n_train = int(info["num_examples"]["train"])
    micro_steps = len(BatchOrder(n_train, spec.batch_size, True, seed, rank, world))
    accumulation = spec.gradient_accumulation_steps
    steps_per_epoch = math.ceil(micro_steps / accumulation)
    optimizer = make_optimizer(spec, parameter_groups(model, spec))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(spec, steps_per_epoch))
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == "float16")
    network: Any = model
    if distributed:
        network = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[rank] if cuda else None
        )
    step = _Step(network, optimizer, scheduler, scaler, spec, device, dtype, distributed)

    state_dir = Path(checkpoint_dir) / STATE_DIR
    run_id = {
        "spec": spec.model_dump(mode="json"),
        "seed": seed,
        "dataset": info.get("fingerprint"),
    }
    progress = Progress()
    if (state_dir / LAST).is_file():
        saved = torch.load(state_dir / LAST, map_location=device, weights_only=True)
        if saved["run"] != run_id:
            raise RuntimeError(
                f"{state_dir / LAST} holds a run with another spec, seed or dataset; delete "
                f"{state_dir} or give this run its own checkpoint folder"
            )
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        progress = Progress(**saved["progress"])
        if rank == 0:
            done = spec.epochs if progress.finished else progress.epoch
            print(
                f"{resume_message(spec.name, seed, done, spec.epochs)} from {state_dir / LAST}",
                flush=True,
            )
    resumed_after = progress.epoch
    state_dir.mkdir(parents=True, exist_ok=True)

    def totals(*values: Any) -> list[float]:
        sums = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
        if distributed:
            torch.distributed.all_reduce(sums)
        return sums.tolist()

    train = validation = None
    if not progress.finished:
        train = SplitBatches(
            dataset_dir,
            "train",
            prep,
            spec.batch_size,
            shuffle=True,
            seed=seed,
            rank=rank,
            world=world,
            pin_memory=cuda,
        )
        if int(info["num_examples"].get("validation", 0)):
            validation = SplitBatches(
                dataset_dir, "validation", prep, spec.batch_size, rank=rank, world=world
            )
    monitor = "val_accuracy" if validation is not None else "accuracy"
    augments = spec.augment != Augment()
    full_groups = (micro_steps // accumulation) * accumulation
    while train is not None and not progress.finished:
        began = time.monotonic()
        epoch = progress.epoch
        torch.manual_seed(_seed(seed, epoch, rank))  # dropout and stochastic depth
        generator = torch.Generator(device=device).manual_seed(_seed(seed, epoch, rank))
        network.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        count = 0
        for index, (images, labels) in enumerate(train.epoch(epoch)):
            images = center_crop(images.to(device, non_blocking=True).float(), prep.crop_size)
            labels = labels.to(device, non_blocking=True)
            if augments:
                images = augment_batch(images, spec.augment, generator)
            # the last optimizer step of an epoch may gather fewer micro-batches
            group = accumulation if index < full_groups else micro_steps - full_groups
            boundary = (index + 1) % accumulation == 0 or index + 1 == micro_steps
            loss, logits = step(normalize(images, prep), labels, 1 / group, boundary)
            loss_sum += loss.double() * len(labels)
            correct += (logits.argmax(1) == labels).sum()
            count += len(labels)
        train_loss, train_correct, train_count = totals(loss_sum, correct, count)
        metrics: dict[str, float] = {
            "loss": train_loss / train_count,
            "accuracy": train_correct / train_count,
        }
        if validation is not None:
            metrics["val_loss"], metrics["val_accuracy"] = step.evaluate(
                model, validation.epoch(0), prep, totals
            )
        metrics["learning_rate"] = float(max(scheduler.get_last_lr()))
        improved = progress.record(metrics, monitor, spec.early_stopping_patience)
        progress.finished = progress.stopped or progress.epoch == spec.epochs
        if rank == 0:
            shown = " - ".join(f"{k}: {v:.4g}" for k, v in metrics.items())
            print(
                f"Epoch {progress.epoch}/{spec.epochs} - {time.monotonic() - began:.1f}s - {shown}",
                flush=True,
            )
            if improved and spec.early_stopping_patience:
                _save(model.state_dict(), state_dir / BEST)
            _save(
                {
                    "run": run_id,
                    "progress": asdict(progress),
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                },
                state_dir / LAST,
            )
            write_json(
                state_dir / PROGRESS, {"epochs_done": progress.epoch, "finished": progress.finished}
            )
            if progress.stopped and progress.epoch < spec.epochs:
                print(
                    f"early stopping: no better {monitor} for {progress.wait} epochs; "
                    f"best epoch {progress.best_epoch}",
                    flush=True,
                )
        if distributed:
            torch.distributed.barrier()

    model.eval()
    if rank != 0:
        return FineTuned(None, model, prep)
    restored = bool(spec.early_stopping_patience) and (state_dir / BEST).is_file()
    if restored:
        model.load_state_dict(torch.load(state_dir / BEST, map_location=device, weights_only=True))
    training = {
        "spec": spec.model_dump(mode="json"),
        "epochs_run": progress.epoch,
        "best_epoch": progress.best_epoch,
        "restored_best": restored,
        "resumed_after_epoch": resumed_after,
        "seconds": round(time.monotonic() - started, 2),
        "train_examples": n_train,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "processes": world,
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "precision": dtype,
        "batch_size_per_process": spec.batch_size,
        "gradient_accumulation_steps": accumulation,
        "effective_batch_size": spec.batch_size * world * accumulation,
        "optimizer_steps_per_epoch": steps_per_epoch,
    }
    card = write_model(
        model,
        processor_config,
        prep,
        spec,
        seed,
        class_names,
        info,
        training,
        progress.history,
        Path(model_dir),
    )
    return FineTuned(card, model, prep)


def write_model(
    model: Any,
    processor_config: dict[str, Any],
    prep: Preprocessing,
    spec: ModelSpec,
    seed: int,
    class_names: list[str],
    info: dict[str, Any],
    training: dict[str, Any],
    history: dict[str, list[float]],
    model_dir: Path,
) -> ModelCard:
    """The Model artifact: hf/ (save_pretrained + processor config), card, history."""
    hf_dir = model_dir / HF_DIR
    hf_dir.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(hf_dir)
    write_json(hf_dir / "preprocessor_config.json", processor_config)
    card = ModelCard(
        framework="transformers",
        name=spec.name,
        seed=seed,
        class_names=class_names,
        **prep.card_fields(),
        training=training,
        history=history,
        dataset_fingerprint=info.get("fingerprint"),
    )
    card.save(model_dir)
    write_json(model_dir / "history.json", history)
    return card
