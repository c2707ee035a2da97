"""Vertex images: which image each step runs in, what each image must install, and how an
image reference is pinned."""

from __future__ import annotations

import re

from pipelines.config import Experiment

# A registry path names its registry host: REGION-docker.pkg.dev/..., gcr.io/..., host:5000/...
REGISTRY_HOST = re.compile(r"^(localhost|[a-z0-9-]+(\.[a-z0-9-]+)+|[a-z0-9.-]+:\d+)/")

# What each step's code imports, as extras of pyproject.toml. An image installs the extras of
# every step it runs (IMAGE_STEPS; `train_image` below assigns the images by the same rule); GCPC's
# launchers and the registration lookup ("vertex") run in every image.
STEP_EXTRAS: dict[str, frozenset[str]] = {
    "ingest": frozenset({"tf", "data", "vertex"}),  # TFRecords; tfds:, hf: and gs:// sources
    "train:keras": frozenset({"tf"}),
    "train:transformers": frozenset({"tf", "hf"}),  # reads the TFRecords, trains with torch
    "evaluate:keras": frozenset({"tf"}),
    "evaluate:transformers": frozenset({"tf", "hf"}),
    "compare": frozenset(),
    "gate": frozenset(),
    "register": frozenset({"tf", "hf"}),  # re-scores the champion (loads both models)
    "export": frozenset({"tf", "hf", "export"}),  # converts keras or transformers models
    "vertex": frozenset({"vertex"}),
    "track": frozenset({"tracking"}),  # the MLflow client (tracking.mlflow)
    # the model server: loads every format, reads a gs:// model on Vertex AI
    "serve": frozenset({"serve", "tf", "hf", "export", "vertex"}),
}
IMAGE_STEPS: dict[str, tuple[str, ...]] = {
    "cpu": (
        "ingest",
        "train:keras",  # without an accelerator
        "evaluate:keras",
        "evaluate:transformers",
        "compare",
        "gate",
        "export",
        "register",
        "vertex",
        "serve",
        "track",
    ),
    "gpu": ("train:keras", "vertex"),
    "tpu": ("train:keras", "vertex"),
    "transformers": ("train:transformers", "vertex"),
}
# The same imports from an accelerator build: an image may install one of these for the extra.
EXTRA_BUILDS: dict[str, tuple[str, ...]] = {"tf": ("tf", "tf-gpu", "tf-tpu")}


def image_extras(image: str) -> frozenset[str]:
    """The extras the steps that run in `image` (cpu, gpu, tpu, transformers) import."""
    return frozenset().union(*(STEP_EXTRAS[step] for step in IMAGE_STEPS[image]))


def image_pin(image: str) -> tuple[str, str]:
    """('digest', 'sha256:...'), ('tag', 'v1') or ('tag', 'latest') for an image reference."""
    if "@" in image:
        return "digest", image.split("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    return "tag", last.split(":", 1)[1] if ":" in last else "latest"


def train_image(experiment: Experiment, framework: str) -> str:
    """The image the train step of `framework` runs in (the other steps run in images.cpu)."""
    images = experiment.images
    if framework == "transformers":
        return images.transformers
    accelerator = experiment.resources.vertex
    if accelerator.is_tpu:
        return images.tpu
    if accelerator.accelerator:
        return images.gpu
    return images.cpu


def used_images(experiment: Experiment) -> dict[str, str]:
    """Config field -> image, for every image this experiment's pipeline runs in."""
    fields = {"cpu": "images.cpu", "gpu": "images.gpu", "tpu": "images.tpu"}
    images = experiment.images
    used = {"images.cpu": images.cpu}
    for framework in experiment.frameworks():
        image = train_image(experiment, framework)
        if framework == "transformers":
            used["images.transformers"] = image
        else:
            field = next(f for key, f in fields.items() if getattr(images, key) == image)
            used[field] = image
    registration = experiment.registration
    if registration.serving_image:
        used["register.serving_image"] = registration.serving_image
    return used
