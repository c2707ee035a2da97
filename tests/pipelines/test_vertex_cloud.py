"""The digits experiment on Vertex AI Pipelines, end to end, in a real project.

Needs the one-time setup of the README's "Run on Vertex AI" (terraform, `make images`),
application-default credentials, and:

    IMGCLF_VERTEX_FLAGS="$(terraform -chdir=infra/terraform output -raw submit_flags)" \
    IMGCLF_VERTEX_IMAGES="$(terraform -chdir=infra/terraform output -raw image_repository)" \
    IMGCLF_VERTEX_TAG="$(git rev-parse HEAD)" \
    .venv/bin/python -m pytest -m vertex

Skipped, with the reason, when those are not set. A run takes about 20 minutes (images pulled,
one epoch, Model Registry upload) and costs a few CPU-minutes.
"""

from __future__ import annotations

import json
import os
import shlex

import pytest

from pipelines.cli import main
from pipelines.targets.vertex import VertexTarget

pytestmark = pytest.mark.vertex

HOW = "see this module's docstring (terraform outputs and the image tag in IMGCLF_VERTEX_*)"


@pytest.fixture(scope="module")
def settings() -> list[str]:
    flags = os.environ.get("IMGCLF_VERTEX_FLAGS", "").strip()
    images = os.environ.get("IMGCLF_VERTEX_IMAGES", "").strip()
    tag = os.environ.get("IMGCLF_VERTEX_TAG", "").strip()
    if not (flags and images and tag):
        pytest.skip(f"IMGCLF_VERTEX_FLAGS, _IMAGES and _TAG are not all set; {HOW}")
    return [
        *shlex.split(flags),
        *(f"--set=images.{name}={images}/{name}:{tag}" for name in ("cpu", "gpu", "tpu")),
        f"--set=images.transformers={images}/transformers:{tag}",
    ]


def test_digits_succeeds_on_vertex_and_registers_a_model(settings, monkeypatch, capsys):
    monkeypatch.setattr(VertexTarget, "poll_seconds", 15.0)

    code = main(
        [
            "--experiment",
            "digits",
            "--target",
            "vertex",
            *settings,
            "--set",
            "models.0.epochs=1",
            "--set",
            "gate.min=0",  # one epoch may miss the gate; the test is about the whole path
            "--wait",
            "--json",
        ]
    )

    result = json.loads(capsys.readouterr().out)
    assert code == 0, result.get("error")
    assert result["status"] == "SUCCEEDED"
    assert all(
        task["status"] in ("SUCCEEDED", "SKIPPED", "NOT_TRIGGERED") for task in result["tasks"]
    )
    assert len(result["tasks"]) >= 8  # ingest, train, evaluate, compare, gate, register, upload
