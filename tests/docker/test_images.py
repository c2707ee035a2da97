"""Inside each built image every step module imports, and so does every library the steps load
only when they run (TensorBoard for the trainers' callback, ONNX Runtime and LiteRT for export,
optuna for the search, TFDS and its importlib_resources for ingest, GCPC for the launchers)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from containers.image_locks import inputs
from pipelines.targets.vertex.images import IMAGE_STEPS

pytestmark = pytest.mark.docker

# The modules each extra brings that some step imports lazily (a missing one fails the step on
# the cluster, never at import time).
EXTRA_MODULES = {
    "tf": ["tensorflow", "keras", "tensorboard"],
    "tf-gpu": ["tensorflow", "keras", "tensorboard"],
    "tf-tpu": ["tensorflow", "keras", "tensorboard"],
    "hf": ["torch", "transformers", "safetensors", "tensorboardX"],
    "data": ["tensorflow_datasets", "datasets", "huggingface_hub", "importlib_resources"],
    "export": ["onnx", "onnxruntime", "tf2onnx", "ai_edge_litert.interpreter"],
    "vertex": ["google.cloud.aiplatform", "google_cloud_pipeline_components.v1.custom_job"],
    "serve": ["fastapi", "uvicorn"],
    "tracking": ["mlflow"],
}
BASE_MODULES = ["kfp", "optuna", "sklearn", "PIL", "matplotlib", "psutil", "rich"]
IMPORT_ALL = """
import importlib, json, pkgutil, sys
failed = {}
names = json.loads(sys.argv[1])
elsewhere = tuple(json.loads(sys.argv[2]))
import components
names += [m.name for m in pkgutil.walk_packages(components.__path__, "components.")
          if not m.name.endswith(".__main__")  # a CLI, it would run
          and not m.name.startswith(elsewhere)]
for name in names:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"failed": failed, "count": len(names)}))
"""


@pytest.mark.parametrize("image", sorted(inputs.IMAGE_EXTRAS))
def test_every_step_module_and_lazy_library_imports_in_the_image(
    image: str, built_image: Callable[[str], str], in_image: Callable[..., tuple[int, str]]
) -> None:
    modules = list(BASE_MODULES)
    for extra in inputs.IMAGE_EXTRAS[image]:
        modules += EXTRA_MODULES[extra]
    # the model server runs in the images that serve (its own extra); every other module of
    # components/ is a step's, and imports in every image
    elsewhere = [] if "serve" in IMAGE_STEPS[image] else ["components.serve"]

    code, out = in_image(
        built_image(image),
        ["python", "-c", IMPORT_ALL, json.dumps(modules), json.dumps(elsewhere)],
    )

    assert code == 0, out[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["failed"] == {}
    assert result["count"] > len(modules) + 20  # the step modules were found and imported
