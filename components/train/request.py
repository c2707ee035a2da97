"""What every training process of a transformers candidate is told: the arguments of
`fine_tune` (components/train/transformers/trainer.py) as a JSON file, which torchrun's
processes and a Kubeflow Trainer TrainJob (components/train/trainjob.py) read."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from components.common.files import write_json
from components.spec import Fold, ModelSpec


@dataclass
class Request:
    """What every training process is told: the arguments of `fine_tune`, as a JSON file."""

    dataset_dir: str
    spec: ModelSpec
    seed: int
    model_dir: str
    checkpoint_dir: str
    tensorboard_dir: str = ""
    fold: Fold | None = None
    calibrate: bool = True  # spec.calibration applies (search trials, ranked on accuracy: not)

    def arguments(self) -> tuple[str, ModelSpec, int, str, str, str, Fold | None, bool]:
        return (
            self.dataset_dir,
            self.spec,
            self.seed,
            self.model_dir,
            self.checkpoint_dir,
            self.tensorboard_dir,
            self.fold,
            self.calibrate,
        )

    def write(self, path: Path) -> Path:
        fields = {
            **asdict(self),
            "spec": self.spec.model_dump(mode="json"),
            "fold": self.fold.model_dump() if self.fold is not None else None,
        }
        write_json(path, fields)
        return path

    @classmethod
    def read(cls, path: str | Path) -> Request:
        fields = json.loads(Path(path).read_text())
        fold = fields.get("fold")
        return cls(
            **{
                **fields,
                "spec": ModelSpec.model_validate(fields["spec"]),
                "fold": Fold.model_validate(fold) if fold is not None else None,
            }
        )
