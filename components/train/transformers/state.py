"""One process's training state: the model, optimizer, schedule and input sizes built from the
spec and the Dataset (`set_up`), saved after every epoch (`save_epoch`) into
`<checkpoint_dir>/transformers/` and resumed from there by a restarted step (`resume`).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from components.common.files import write_json
from components.common.folds import input_sizes
from components.common.results import DatasetInfo
from components.models.transformers import (
    Preprocessing,
    load_pretrained,
    load_processor_config,
    resolve_checkpoint,
)
from components.spec import Fold, ModelSpec
from components.train.checkpoints import resume_message
from components.train.transformers.input import BatchOrder
from components.train.transformers.loop import Progress, Step, save_atomic
from components.train.transformers.optim import (
    make_optimizer,
    parameter_groups,
    precision,
    schedule,
)

STATE_DIR = "transformers"
LAST = "last.pt"
BEST = "best.pt"
PROGRESS = "progress.json"


@dataclass
class Setup:
    """One process's model, optimizer and input, built from the spec and the checkpoint."""

    spec: ModelSpec
    seed: int
    rank: int
    world: int
    info: DatasetInfo
    class_names: list[str]
    processor_config: dict[str, Any]
    prep: Preprocessing
    model: Any
    device: Any
    dtype: str
    optimizer: Any
    scheduler: Any
    scaler: Any
    step: Step
    steps_per_epoch: int
    state_dir: Path
    run_id: dict[str, Any]
    fold: Fold | None = None  # a search trial's fold (search.folds)
    sizes: dict[str, int] = field(default_factory=dict)  # images of the train, validation input

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def totals(self, *values: Any) -> list[float]:
        """Sums of `values` over every process."""
        import torch

        sums = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        if self.distributed:
            torch.distributed.all_reduce(sums)
        return sums.tolist()


def set_up(
    dataset_dir: str,
    spec: ModelSpec,
    seed: int,
    checkpoint_dir: str,
    rank: int,
    world: int,
    local_rank: int = 0,
    fold: Fold | None = None,
) -> Setup:
    """Device, seeds, the checkpoint with a new head, its preprocessing, optimizer, schedule."""
    import torch

    assert spec.checkpoint is not None
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)

    info = DatasetInfo.read(dataset_dir)
    class_names = [str(name) for name in info.class_names]
    checkpoint = resolve_checkpoint(spec.checkpoint)
    processor_config = load_processor_config(checkpoint)
    prep = Preprocessing.from_processor_config(processor_config, spec.checkpoint)
    model = load_pretrained(checkpoint, spec, class_names).to(device)
    dtype = precision(spec, device)

    sizes = input_sizes(dataset_dir, info.num_examples, fold)
    n_train = sizes["train"]
    micro_steps = len(BatchOrder(n_train, spec.batch_size, True, seed, rank, world))
    steps_per_epoch = math.ceil(micro_steps / spec.gradient_accumulation_steps)
    optimizer = make_optimizer(spec, parameter_groups(model, spec))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(spec, steps_per_epoch))
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == "float16")
    network: Any = model
    if world > 1:
        network = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if cuda else None
        )
    step = Step(network, optimizer, scheduler, scaler, spec, device, dtype, world > 1)
    run_id = {
        "spec": spec.model_dump(mode="json"),
        "seed": seed,
        "dataset": info.fingerprint,
        "fold": fold.model_dump() if fold is not None else None,
    }
    return Setup(
        spec=spec,
        seed=seed,
        rank=rank,
        world=world,
        info=info,
        class_names=class_names,
        processor_config=processor_config,
        prep=prep,
        model=model,
        device=device,
        dtype=dtype,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        step=step,
        steps_per_epoch=steps_per_epoch,
        state_dir=Path(checkpoint_dir) / STATE_DIR,
        run_id=run_id,
        fold=fold,
        sizes=sizes,
    )


def resume(setup: Setup) -> Progress:
    """The saved state of an earlier attempt of this same run, loaded into the setup's model,
    optimizer, scheduler and scaler; a fresh `Progress` when there is none.

    Only process 0 reads the checkpoint (as only it writes one) and hands it to the others, so
    every process resumes from the same state even where the nodes share no folder.
    """
    import torch

    last = setup.state_dir / LAST
    found: tuple[str, Any] = ("none", None)
    if setup.rank == 0 and last.is_file():
        saved = torch.load(last, map_location="cpu", weights_only=True)
        found = ("state", saved)
        if saved["run"] != setup.run_id:
            found = (
                "error",
                f"{last} holds a run with another spec, seed or dataset; delete "
                f"{setup.state_dir} or give this run its own checkpoint folder",
            )
    if setup.distributed:
        shared = [found]
        torch.distributed.broadcast_object_list(shared, src=0)
        found = shared[0]
    kind, saved = found
    if kind == "error":
        raise RuntimeError(saved)
    if kind == "none":
        return Progress()
    setup.model.load_state_dict(saved["model"])
    setup.optimizer.load_state_dict(saved["optimizer"])
    setup.scheduler.load_state_dict(saved["scheduler"])
    setup.scaler.load_state_dict(saved["scaler"])
    progress = Progress(**saved["progress"])
    if setup.rank == 0:
        spec = setup.spec
        done = spec.epochs if progress.finished else progress.epoch
        print(f"{resume_message(spec.name, setup.seed, done, spec.epochs)} from {last}", flush=True)
    return progress


def save_epoch(setup: Setup, progress: Progress, improved: bool, monitor: str) -> None:
    """Process 0 after each epoch: best weights (early stopping), last.pt, progress.json."""
    spec, state_dir = setup.spec, setup.state_dir
    if improved and spec.early_stopping_patience:
        save_atomic(setup.model.state_dict(), state_dir / BEST)
    save_atomic(
        {
            "run": setup.run_id,
            "progress": asdict(progress),
            "model": setup.model.state_dict(),
            "optimizer": setup.optimizer.state_dict(),
            "scheduler": setup.scheduler.state_dict(),
            "scaler": setup.scaler.state_dict(),
        },
        state_dir / LAST,
    )
    write_json(state_dir / PROGRESS, {"epochs_done": progress.epoch, "finished": progress.finished})
    if progress.stopped and progress.epoch < spec.epochs:
        print(
            f"early stopping: no better {monitor} for {progress.wait} epochs; "
            f"best epoch {progress.best_epoch}",
            flush=True,
        )
