"""The digits experiment on KFP standalone in a kind cluster, end to end.

Needs a reachable KFP API in KFP_HOST, with our CPU image loaded:

    make kind-up && make kind-load
    KFP_HOST=http://localhost:8080 .venv/bin/python -m pytest -m kind

Skipped, with the reason, when KFP_HOST is not set or does not answer as a KFP API.
"""

from __future__ import annotations

import json
import os

import pytest

from pipelines.cli import main
from pipelines.targets.base import SubmitError
from pipelines.targets.kfp import KfpTarget
from pipelines.targets.kfp.api import check_api

pytestmark = pytest.mark.kind

RUN_TIMEOUT_S = 45 * 60  # first runs pull images; digits itself takes a few minutes
HOW = "make kind-up && make kind-load, then KFP_HOST=http://localhost:8080 pytest -m kind"


@pytest.fixture(scope="module")
def kfp_host() -> str:
    host = os.environ.get("KFP_HOST", "").strip()
    if not host:
        pytest.skip(f"KFP_HOST is not set; to run on a local kind cluster: {HOW}")
    try:
        check_api(host.rstrip("/"), timeout=5.0)
    except SubmitError as exc:
        pytest.skip(f"KFP_HOST={host} does not answer as a KFP API ({exc}); {HOW}")
    return host


def test_digits_succeeds_on_kind_and_registers_a_model(kfp_host, monkeypatch, capsys):
    monkeypatch.setattr(KfpTarget, "wait_timeout_s", RUN_TIMEOUT_S)

    code = main(
        [
            "--experiment",
            "digits",
            "--target",
            "kfp",
            "--host",
            kfp_host,
            "--set",
            "models.0.epochs=1",
            # One epoch may miss the experiment's gate; the test is about registering a model.
            "--set",
            "gate.min=0",
            "--wait",
            "--json",
        ]
    )

    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert code == 0, f"{result}\n{captured.err[-4000:]}"
    assert result["status"] == result["state"] == "SUCCEEDED"
    assert result["url"].startswith(kfp_host.rstrip("/") + "/#/runs/details/")
    steps = {task["name"]: task["status"] for task in result["tasks"]}
    for step in ("ingest", "train keras", "evaluate keras", "compare", "gate"):
        assert steps.get(step) == "SUCCEEDED", (step, steps)
    # register runs only when the gate passes, and writes the version into the registry volume.
    assert steps.get("register") == "SUCCEEDED", steps


def test_a_training_task_in_the_loop_is_retried_on_the_cluster(kfp_host):
    """The check that the compile tests cannot make: on KFP 2.17's backend the retry policy of a
    task in the loop body, placed as the kfp target places training's, does start the pod again.
    Each item fails its first attempt (KFP_RETRY_INDEX 0, which the backend sets in retried pods
    only) and succeeds on its retry."""
    import kfp
    from kfp import dsl

    from components.common.images import BASE_IMAGE
    from pipelines.config import load_experiment

    target = KfpTarget(load_experiment("digits", ["resources.kfp.retries=1"]))

    @dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
    def fails_first_attempt(item: int) -> int:
        import os
        import sys

        attempt = os.environ.get("KFP_RETRY_INDEX", "0")
        if attempt in ("", "0"):
            sys.exit(f"item {item}, attempt {attempt or 0}: failing on purpose")
        return item

    @dsl.pipeline(name="imgclf-retry-check")
    def retry_check() -> None:
        with dsl.ParallelFor([0, 1]) as item:
            task = fails_first_attempt(item=item).set_caching_options(False)
            target.configure(task, "train", "keras")

    client = kfp.Client(host=kfp_host)
    run = client.create_run_from_pipeline_func(retry_check, arguments={}, enable_caching=False)
    done = client.wait_for_run_completion(run.run_id, timeout=RUN_TIMEOUT_S)

    assert str(done.state).rsplit(".", 1)[-1].upper() == "SUCCEEDED", done
