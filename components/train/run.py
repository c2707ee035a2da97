"""The train step: dispatch on the candidate's framework; write the Model and its curves."""

from __future__ import annotations

from pathlib import Path

from components.common.files import local_path
from components.common.model_card import ModelCard
from components.spec import ModelSpec
from components.train.curves import write_curves_report
from components.train.events import training_outcome


def train(
    dataset_dir: str | Path,
    spec: ModelSpec,
    seed: int,
    model_dir: str | Path,
    curves_html: str | Path,
    checkpoint_dir: str | Path | None = None,
    tensorboard_dir: str | Path | None = None,
) -> ModelCard:
    if checkpoint_dir is not None:
        checkpoint_dir = local_path(checkpoint_dir)
    if spec.framework == "keras":
        from components.train.keras.trainer import train_keras

        card = train_keras(dataset_dir, spec, seed, model_dir, checkpoint_dir, tensorboard_dir)
    else:
        from components.train.transformers.trainer import train_transformers

        card = train_transformers(
            dataset_dir, spec, seed, model_dir, checkpoint_dir, tensorboard_dir=tensorboard_dir
        )
    planned = spec.epochs + (
        spec.fine_tune.epochs if len(card.training.get("phases", [])) > 1 else 0
    )
    outcome = training_outcome(card.history, planned, spec.early_stopping_patience)
    card.training["outcome"] = outcome
    card.save(model_dir)
    write_curves_report(
        card.history, f"Training curves: {spec.name} (seed {seed})", curves_html, outcome
    )
    return card
