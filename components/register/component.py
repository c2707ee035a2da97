from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Model

from components.common.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def register_local(
    model: Input[Model],
    registry_root: str,
    name: str,
    summary: dict,
    aliases: list = [],
    allow_class_change: bool = False,
    exports: Input[Model] = None,
    dataset: Input[Dataset] = None,
    champion: dict = {},
) -> dict:
    """Registers the best model as the next version in a folder registry.

    The version folder `<registry_root>/<name>/vN/` holds the model, its card, its test metrics
    and the registration record; registering the same model again returns the existing version.

    Args:
        model: The best candidate's Model artifact.
        registry_root: Folder that holds `<name>/v<N>/` versions.
        name: Registered model name.
        summary: The compare step's summary (its best run, metrics and gate are recorded).
        aliases: Labels recorded with the version (e.g. "production").
        allow_class_change: Register even when the class names differ from the latest
            version's (otherwise the step fails and says so).
        exports: The export step's artifact, when the experiment exports: the formats that
            passed go into the version's export/ folder with the record and report, and the
            version's card lists them.
        dataset: The run's Dataset: the champion and the new version are compared on its test
            split, and the new version becomes the champion only when it is no worse.
        champion: The experiment's gate.champion (ChampionPolicy); {} for the defaults.

    Returns:
        The registration record: name, version, path, source model, metrics, and in
        details.champion the decision (promoted or not, why, the checks).
    """
    from components.common.results import CompareSummary
    from components.register.champion import decision_lines
    from components.register.run import champion_decision
    from components.register.run import register_local as run_register
    from components.spec import ChampionPolicy

    compared = CompareSummary.model_validate(summary)
    best = compared.best
    details = {
        "candidate": best.name,
        "seed": best.seed,
        "ranked_by": compared.metric,
        "value": best.value,
        "gate": compared.gate.to_output(),
        "reference": compared.reference.to_output() if compared.reference else None,
    }
    record = run_register(
        model.path,
        registry_root,
        name,
        best.metrics,
        aliases,
        details,
        export_dir=exports.path if exports is not None else None,
        allow_class_change=allow_class_change,
        dataset_dir=dataset.path if dataset is not None else None,
        champion=ChampionPolicy.model_validate(champion),
    )
    print(f"registered {record.name} {record.version} at {record.path}")
    decision = champion_decision(record)
    if decision is not None and not record.existing:
        print("\n".join(decision_lines(decision)))
    return record.to_output()


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def vertex_registration(
    summary: dict,
    record: dict,
    model_name: str,
    endpoint_name: str,
    location: str,
    # A literal: the function's source runs in the step. Vertex resolves it to the run's project.
    project: str = "{{$.pipeline_google_cloud_project_id}}",
) -> NamedTuple(  # type: ignore[valid-type]
    "VertexRegistration",
    serving_uri=str,
    description=str,
    labels=dict,
    parent_model=str,
    parent_model_uri=str,
    endpoint=str,
    endpoint_uri=str,
    version_aliases=list,
    promoted=bool,
):
    """Plans the upload of the best model to the Vertex AI Model Registry.

    Args:
        summary: The compare step's summary (best run: framework, model URI, metric value).
        record: The register step's record (version, framework, folder in the bucket).
        model_name: Display name of the registered model.
        endpoint_name: Display name of the endpoint to deploy to; empty when not deploying.
        location: Region of the Model Registry and the endpoint.
        project: Project of the Model Registry (default: the pipeline's).

    Returns:
        serving_uri: What the serving container loads: the version folder in the folder
            registry (the Model and its exports).
        description: The version's description (best run and its metric).
        labels: Labels of the uploaded model.
        parent_model: Resource name of the model already registered under model_name, or "".
        parent_model_uri: Its API URI, or "".
        endpoint: Resource name of the endpoint named endpoint_name, or "".
        endpoint_uri: Its API URI, or "".
        version_aliases: The uploaded version's aliases: the experiment's, and champion and
            default when the register step promoted it.
        promoted: Whether the register step promoted the version (only then is it deployed).
    """
    import json
    from collections import namedtuple

    from components.common.results import CompareSummary, RegistrationRecord
    from components.register.vertex import plan_registration

    plan = plan_registration(
        CompareSummary.model_validate(summary),
        RegistrationRecord.model_validate(record),
        model_name,
        endpoint_name,
        project,
        location,
    )
    print(json.dumps(plan, indent=2))
    VertexRegistration = namedtuple(
        "VertexRegistration",
        [
            "serving_uri",
            "description",
            "labels",
            "parent_model",
            "parent_model_uri",
            "endpoint",
            "endpoint_uri",
            "version_aliases",
            "promoted",
        ],
    )
    return VertexRegistration(**plan)
