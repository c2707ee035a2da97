from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Model, Output

from components.common.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def suggest(
    model_spec: dict,
    study_config: dict,
    seed: int,
    count: int,
    study: Output[Artifact],
    previous: Input[Artifact] | None = None,
) -> list:
    """Asks the candidate's Optuna study for the next round of trials.

    Args:
        model_spec: The candidate's recipe without its search section: every trial starts here.
        study_config: The search without its trial count: space, algorithm, metric,
            parallel_trials, early_stop, folds.
        seed: Seed of the sampler (a new study's) and of every trial's training.
        count: Trials to ask for in this round.
        study: The study's journal after the ask (Optuna JournalStorage file).
        previous: The journal the previous round's tell step wrote; absent in the first round.

    Returns:
        One train candidate per trial (with folds K >= 2, one per trial and fold): the recipe
        with the trial's parameters, the seed, the trial number, its fold and, with
        early_stop, the finished trials' curves.
    """
    from components.search.study import suggest as run_suggest

    return run_suggest(
        previous.path if previous is not None else None,
        study.path,
        model_spec,
        study_config,
        int(seed),
        int(count),
    )


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def tell(
    model_spec: dict,
    study_config: dict,
    seeds: list,
    dataset: Input[Dataset],
    previous: Input[Artifact],
    trial_models: Input[list[Model]],
    study: Output[Artifact],
    report: Output[HTML],
) -> list:
    """Tells the study the round's results and reports on every trial so far.

    Args:
        model_spec: The candidate's recipe without its search section.
        study_config: The search without its trial count.
        seeds: The experiment's seeds: the winner, and the candidate's own recipe beside it,
            are retrained once per seed.
        dataset: The ingested Dataset: only its dataset_info.json (images per split, which
            set the noise of the trials' ranking, reported with the metric's standard error)
            is read.
        previous: The journal the round's suggest step wrote.
        trial_models: The round's trial Models (with folds, each trial's K); the objective
            is the best epoch of the validation metric in a model card's history, with folds
            its mean over the trial's folds.
        study: The study's journal after the tell, and summary.json (every trial's number,
            state, value and parameters, and the best trial).
        report: HTML search report: trials ranked by the metric (with folds, mean ± std),
            what they were ranked on and its noise, each parameter against the metric, the
            best trial's curves.

    Returns:
        The best trial's recipe once per seed, with the search's outcome, and the candidate's
        own recipe per seed (`<name>-untuned`) unless the search kept it: the candidates that
        measure the search's gain. (A single output: kfp.local loops over `Output` only.)
    """
    import json

    from components.common.results import DatasetInfo
    from components.search.report import ranking_lines, write_report
    from components.search.study import SUMMARY_FILE, winner_candidates
    from components.search.study import tell as run_tell

    summary = run_tell(
        previous.path,
        study.path,
        model_spec,
        study_config,
        [(m.path, m.uri) for m in trial_models],
    )
    examples = DatasetInfo.read(dataset.path).num_examples
    write_report(summary, report.path, examples)
    for line in ranking_lines(summary, examples):
        print(line, flush=True)
    with open(f"{study.path}/{SUMMARY_FILE}", "w") as handle:
        json.dump(summary, handle, indent=2)
    return winner_candidates(summary, model_spec, [int(s) for s in seeds], examples)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def gather(first: list, second: list) -> list:
    """Joins the evaluate results of two searches' winners (a pipeline input takes one list).

    Args:
        first: Evaluate results.
        second: More evaluate results.

    Returns:
        Both lists, in order.
    """
    return list(first) + list(second)
