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
) -> dict:
    """Registers the best model as the next version in a folder registry.

    Args:
        model: The best candidate's Model artifact.
        registry_root: Folder that holds `<name>/v<N>/` versions.
        name: Registered model name.
        summary: The compare step's summary (its best run's metrics are recorded).
        aliases: Labels recorded with the version (e.g. "production").

    Returns:
        The registration record: name, version, path, metrics.
    """
    from components.register.run import register_local as run_register

    record = run_register(model.path, registry_root, name, summary["best"]["metrics"], aliases)
    print(f"registered {record['name']} {record['version']} at {record['path']}")
    return record
