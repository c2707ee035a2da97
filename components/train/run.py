"""The train step: dispatch on the candidate's framework; write the Model and its curves."""

from __future__ import annotations

import shutil
from pathlib import Path

from components.common.files import local_path
from components.common.model_card import ModelCard
from components.common.results import DatasetInfo
from components.spec import Fold, ModelSpec, Pruning, SearchOutcome
from components.train.checkpoints import checkpoint_dir as checkpoint_folder
from components.train.cluster import nodes_from_environment
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
    *,
    checkpoint_root: str | Path | None = None,
    fresh: bool = False,
    trial: int | None = None,
    prune: Pruning | None = None,
    fold: Fold | None = None,
    searched: SearchOutcome | None = None,
    skip: str | None = None,
) -> ModelCard | None:
    """Train one candidate x seed. Returns its card; None on a worker node of a multi-node
    training, where the chief writes the Model.

    Checkpoints go to this training's own folder under `checkpoint_root` when given (a pure
    function of candidate, seed, dataset and recipe: components/train/checkpoints.py), else to
    `checkpoint_dir`. `fresh` discards them first. A search trial's card records its trial
    number (and its `fold`, with search.folds: components/common/folds.py), a winner's the
    search outcome. A trial with `skip` (its search's time budget was spent) trains nothing: its
    card says why, and no framework is imported. A keras training, but for a search trial's
    (which no evaluate step scores), keeps its test split's predictions in the Model
    (components/models/prediction.py); a transformers training keeps none, so it never imports
    TensorFlow.
    """
    if skip is not None:
        return skipped_trial(dataset_dir, spec, seed, model_dir, curves_html, trial, skip, fold)
    # Of a training on several machines only the chief empties the shared checkpoint folder
    # (the other nodes never read it: components/train/transformers/state.py, `resume`).
    fresh = fresh and nodes_from_environment().is_chief
    if checkpoint_root is not None:
        fingerprint = DatasetInfo.read(dataset_dir).fingerprint
        checkpoint_dir = checkpoint_folder(
            local_path(checkpoint_root), spec, seed, fingerprint, fresh, fold
        )
    elif checkpoint_dir is not None:
        checkpoint_dir = local_path(checkpoint_dir)
        if fresh and checkpoint_dir.exists():
            shutil.rmtree(checkpoint_dir)
    if spec.framework == "keras":
        from components.train.keras.trainer import train_keras

        card = train_keras(
            dataset_dir,
            spec,
            seed,
            model_dir,
            checkpoint_dir,
            tensorboard_dir,
            prune,
            fold,
            keep_predictions=trial is None,
        )
    else:
        from components.train.transformers.trainer import train_transformers

        trained = train_transformers(
            dataset_dir,
            spec,
            seed,
            model_dir,
            checkpoint_dir,
            tensorboard_dir=tensorboard_dir,
            fold=fold,
            calibrate=trial is None,
        )
        if trained is None:
            return None
        card = trained
    planned = spec.epochs + (
        spec.fine_tune.epochs if len(card.training.get("phases", [])) > 1 else 0
    )
    outcome = training_outcome(card.history, planned, spec.early_stopping_patience)
    card.training["outcome"] = outcome
    if trial is not None or searched is not None:
        card.training.update(
            trial=trial, search=searched.model_dump(mode="json") if searched else None
        )
    card.save(model_dir)
    title = f"Training curves: {spec.name} (seed {seed}" + (
        f", trial {trial + 1}" if trial is not None else ""
    )
    title += f", fold {fold.index + 1}/{fold.count})" if fold is not None else ")"
    write_curves_report(card.history, title, curves_html, outcome)
    return card


def skipped_trial(
    dataset_dir: str | Path,
    spec: ModelSpec,
    seed: int,
    model_dir: str | Path,
    curves_html: str | Path,
    trial: int | None,
    reason: str,
    fold: Fold | None = None,
) -> ModelCard:
    """The Model of a search trial left untrained: a card with no history that says why."""
    from components.common import html

    info = DatasetInfo.read(dataset_dir)
    card = ModelCard(
        framework=spec.framework,
        name=spec.name,
        seed=seed,
        class_names=info.class_names,
        input_size=(int(info.image_size[0]), int(info.image_size[1])),
        channels=info.channels,
        preprocessing="none: not trained",
        training={
            "trial": trial,
            "skipped": reason,
            "fold": fold.model_dump() if fold is not None else None,
        },
        dataset_fingerprint=info.fingerprint,
    )
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    card.save(model_dir)
    Path(curves_html).parent.mkdir(parents=True, exist_ok=True)
    Path(curves_html).write_text(
        html.page(
            f"{spec.name}: trial {trial + 1 if trial is not None else '?'} not trained",
            [f"<p>{html.escape(reason)}</p>"],
        ),
        encoding="utf-8",
    )
    return card
