from kfp import dsl
from kfp.dsl import Input, Model

from components.common.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def register_local(
    model: Input[Model],
    registry_root: str,
    name: str,
    summary: dict,
    aliases: list = [],
    allow_class_change: bool = False,
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

    Returns:
        The registration record: name, version, path, source model, metrics.
    """
    from components.register.run import register_local as run_register

    best = summary["best"]
    details = {
        "candidate": best["name"],
        "seed": int(best["seed"]),  # numbers come back as floats from the summary's Struct
        "ranked_by": summary["metric"],
        "value": best["value"],
        "gate": summary["gate"],
        "reference": summary.get("reference"),
    }
    record = run_register(
        model.path, registry_root, name, best["metrics"], aliases, details, allow_class_change
    )
    print(f"registered {record['name']} {record['version']} at {record['path']}")
    return record
