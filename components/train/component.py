from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Model, Output

from components.common.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def train(
    dataset: Input[Dataset],
    candidate: dict,
    model: Output[Model],
    curves: Output[HTML],
    checkpoint_root: str = "",
    fresh: bool = False,
):
    """Trains one candidate model with one seed.

    Args:
        dataset: The ingested Dataset (TFRecords + dataset_info.json).
        candidate: `model_spec` (one entry of the experiment's `models` list: framework,
            architecture or checkpoint, training recipe) and `seed` (this repeat's seed); a
            search trial adds `trial` (and `prune`, `fold` with search.folds, or `skip` once
            its search's time budget is spent), a retrain of a search's winner `searched`.
        model: The trained model: model_card.json plus keras/ or hf/, and for keras (but for a
            search trial) stored_predictions.npz, the test split's predictions, which evaluate
            uses.
        curves: HTML training curves (loss and accuracy per epoch).
        checkpoint_root: Folder of the experiment's training checkpoints, outside any run's
            folder; each candidate x seed x dataset x recipe has its own subfolder there, so a
            rerun resumes. Empty: Vertex's AIP_CHECKPOINT_DIR, else the step's own folder.
        fresh: Discard this training's checkpoints and start from scratch.
    """
    import os
    from pathlib import Path

    from components.common.names import TENSORBOARD_DIR
    from components.common.process import skip_collection_at_exit
    from components.spec import Candidate
    from components.train.cluster import leave_outputs_to_the_chief
    from components.train.run import train as run_train

    skip_collection_at_exit()  # TensorFlow / PyTorch processes otherwise linger seconds at exit
    # Validated once here (this also repairs kfp.local's float seeds); typed from here on.
    task = Candidate.model_validate(candidate)
    # A retried or restarted task finds its own checkpoints here and resumes.
    fallback = os.environ.get("AIP_CHECKPOINT_DIR") or str(Path(model.path).parent / "checkpoints")
    # Vertex AI sets the TensorBoard folder when the experiment names one (gcp.tensorboard);
    # elsewhere the event files go beside the model, where the local results folder finds them.
    tensorboard_dir = os.environ.get("AIP_TENSORBOARD_LOG_DIR") or str(
        Path(model.path).parent / TENSORBOARD_DIR
    )
    # A failed training raises and fails the task, so retries act on it and no cache keeps it;
    # with compare.on_failure `continue` the compare step still runs (ignore_upstream_failure).
    card = run_train(
        dataset.path,
        task.model_spec,
        task.seed,
        model.path,
        curves.path,
        fallback,
        tensorboard_dir,
        checkpoint_root=checkpoint_root or None,
        fresh=fresh,
        trial=task.trial,
        prune=task.prune,
        fold=task.fold,
        searched=task.searched,
        skip=task.skip,
    )
    if card is None:  # a worker node of a multi-node training: the chief writes the outputs
        leave_outputs_to_the_chief()
        return
    model.metadata.update(
        framework=card.framework,
        name=card.name,
        seed=card.seed,
        dataset_fingerprint=card.dataset_fingerprint or "",
    )
    if task.trial is not None:
        model.metadata["trial"] = task.trial
    if task.fold is not None:
        model.metadata["fold"] = task.fold.index
