from kfp import dsl

from components.common.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def track(
    tracking: dict,
    summary: dict,
    pipeline_run: str,
    data_snapshot: str = "",
    params: dict = {},
) -> str:
    """Records the pipeline run in the experiment trackers: in MLflow one parent run and a
    nested run per candidate x seed (parameters, metrics per epoch, test metrics, artifact
    links); in Vertex AI Experiments one experiment run per candidate x seed (parameters, test
    metrics, the best epoch's validation metrics).

    Tracking never fails the run: an unreachable or refused tracker is one warning line.

    Args:
        tracking: Where runs are recorded (TrackingSpec: MLflow URI and experiment, Vertex AI
            Experiments name, project and region) and the tags every run carries (experiment,
            target, commit).
        summary: The compare step's summary: every candidate x seed's result and the best run.
        pipeline_run: The pipeline run's id: the parent run's key, so a retry reopens it.
        data_snapshot: Hash of the source's listing, a tag of every run.
        params: The pipeline run's own parameters (gate, seeds, candidates).

    Returns:
        One line: what was recorded, or the warning when tracking failed.
    """
    from components.common.results import CompareSummary
    from components.spec.tracking import TrackingSpec
    from components.track.run import track_pipeline_run

    line = track_pipeline_run(
        TrackingSpec.model_validate(tracking),
        pipeline_run,
        CompareSummary.model_validate(summary),
        data_snapshot,
        {str(k): str(v) for k, v in params.items()},
    )
    print(line)
    return line


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def track_registration(
    tracking: dict,
    record: dict,
    pipeline_run: str,
    tracked: str,
    data_snapshot: str = "",
) -> str:
    """Mirrors the registered version into the tracker's model registry, and moves its
    `champion` alias there only when the register step promoted the version.

    Args:
        tracking: Where runs are recorded (TrackingSpec) and the tags every run carries.
        record: The register step's record (name, version, folder, details.champion).
        pipeline_run: The pipeline run's id (its parent run in the tracker).
        tracked: The track step's line: after its warning, tracking is off for the whole run
            and nothing is tried (nor warned about) again.
        data_snapshot: Hash of the source's listing, a tag of every run.

    Returns:
        One line: what was mirrored, or the warning when tracking failed.
    """
    from components.common.results import RegistrationRecord
    from components.spec.tracking import TrackingSpec
    from components.track.run import track_registration as run_track_registration

    line = run_track_registration(
        TrackingSpec.model_validate(tracking),
        pipeline_run,
        RegistrationRecord.model_validate(record),
        data_snapshot,
        tracked,
    )
    print(line)
    return line
