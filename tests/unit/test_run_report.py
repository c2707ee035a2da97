"""What a local run reports about itself: resumed and stopped steps on the console line, the
verdict at the head of index.html, the real time of cached tasks, the best model through its
`<candidate>-seed<k>` link, and runs that failed and were left out (compare.on_failure)."""

from __future__ import annotations

import io
import json
from html.parser import HTMLParser
from pathlib import Path

from kfp import dsl

from components.common.results import EvaluationResult
from components.compare.run import MISSING_RESULT, compare
from pipelines.summary import format_result
from pipelines.targets.local.capture import Capture
from pipelines.targets.local.console import Console
from pipelines.targets.local.outcome import best_model_link, index_verdict, task_row
from pipelines.targets.local.results import (
    TASKS_FILE,
    Verdict,
    earlier_seconds,
    failed_run_line,
    task_figure,
    write_results,
)
from pipelines.targets.local.tasks import TaskRecord


def _console(total: int = 9) -> tuple[Console, io.StringIO]:
    stream = io.StringIO()
    return Console(total, stream=stream), stream


def test_a_resumed_training_says_so_on_its_console_line(tmp_path: Path) -> None:
    console, stream = _console()
    record = console.new_task(
        name="train", step="train", run_dir=tmp_path, candidate="small-cnn", seed=0
    )
    console.started(record)
    console.event(record, {"event": "epochs", "epochs": 150, "steps": 12, "done": 53})
    record.status, record.finished = "SUCCESS", record.started + 40.0
    console.finished(record)
    lines = stream.getvalue().splitlines()
    assert lines[1] == "[1/9] train small-cnn seed 0 ... resuming at epoch 54/150"
    assert lines[-1] == "[1/9] train small-cnn seed 0 ... done in 40.0 s (resumed at epoch 54/150)"

    first_start = console.new_task(name="train", step="train", run_dir=tmp_path, candidate="b")
    console.event(first_start, {"event": "epochs", "epochs": 150, "steps": 12, "done": 0})
    assert "resuming" not in stream.getvalue().splitlines()[-1]


def test_keras_training_counts_the_epochs_its_checkpoints_hold(tmp_path: Path, capsys) -> None:
    """What the trainer's first `epochs` event carries as `done` (the console's source for the
    line above; the stop-and-resume e2e test sees the line itself)."""
    from components.train.keras.resume import announce_resume

    backup = tmp_path / "head" / "backup"
    backup.mkdir(parents=True)
    (backup / "training_metadata.json").write_text(json.dumps({"epoch": 53}))
    assert announce_resume("small-cnn", 0, tmp_path, [("head", 150, 0.01)]) == 53
    assert "resuming small-cnn seed 0 at epoch 54/150" in capsys.readouterr().out


def test_a_step_ended_by_a_stop_shows_as_stopped_not_failed(tmp_path: Path) -> None:
    console, stream = _console(2)
    stop = {"at": None}
    capture = Capture(console, tmp_path, stopped_at=lambda: stop["at"])
    before = console.new_task(name="ingest", step="ingest", run_dir=tmp_path)
    before.status, before.finished = "SUCCESS", 100.0
    capture._mark_stopped(before)
    assert before.status == "SUCCESS"  # no stop yet
    stop["at"] = 120.0
    killed = console.new_task(name="train", step="train", run_dir=tmp_path, candidate="a", seed=0)
    killed.started, killed.status, killed.finished = 110.0, "FAILURE", 121.5
    capture._mark_stopped(killed)
    console.finished(killed)
    line = stream.getvalue().splitlines()[-1]
    assert line == "[2/2] train a seed 0 ... stopped after 11.5 s"
    assert killed.status == "STOPPED" and task_row(killed)["status"] == "STOPPED"


def _artifact(cls: type, uri: Path) -> dsl.Artifact:
    return cls(name=uri.name, uri=str(uri))


def test_a_cached_task_reports_the_time_of_the_run_that_ran_it(tmp_path: Path) -> None:
    console, stream = _console(1)
    first_dir, second_dir = tmp_path / "imgclf-x-1", tmp_path / "imgclf-x-2"
    model = first_dir / "for-loop-2-iteration-0" / "train" / "model"
    model.mkdir(parents=True)
    ran = console.new_task(name="train", step="train", run_dir=first_dir, candidate="c", seed=0)
    ran.status, ran.finished = "SUCCESS", ran.started + 17.6
    ran.outputs = {"model": _artifact(dsl.Model, model)}
    gate = console.new_task(name="gate", step="gate", run_dir=first_dir)  # no artifact output
    gate.status, gate.finished, gate.inputs = "SUCCESS", gate.started + 0.9, "a1b2"
    write_results(first_dir, "x", [ran, gate])
    assert json.loads((first_dir / TASKS_FILE).read_text())["train-c-seed0"]["seconds"] == 17.6

    cached = console.new_task(name="train", step="train", run_dir=second_dir, candidate="c", seed=0)
    cached.status, cached.cached, cached.finished = "SUCCESS", True, cached.started
    cached.outputs = {"model": _artifact(dsl.Model, model)}
    cached.earlier_seconds = earlier_seconds(cached)
    assert cached.earlier_seconds == 17.6
    console.finished(cached)
    assert stream.getvalue().splitlines()[-1] == "[3/3] train c seed 0 ... cached (ran in 17.6 s)"
    row = task_row(cached)
    assert row["seconds"] == 17.6 and row["status"] == "CACHED"
    summary = format_result(
        {"experiment": "x", "target": "local", "status": "SUCCEEDED", "tasks": [row]}
    )
    assert any(
        line.split()[-2:] == ["17.6", "cached"]
        for line in summary.splitlines()
        if "train c" in line
    ), summary
    # the second run records the first run's time for the run after it
    write_results(second_dir, "x", [cached])
    assert json.loads((second_dir / TASKS_FILE).read_text())["train-c-seed0"]["seconds"] == 17.6
    # a task with no artifact output: the earlier run that ran it on the same inputs
    again = TaskRecord("gate", "gate", 2, second_dir, status="SUCCESS", cached=True, inputs="a1b2")
    assert earlier_seconds(again) == 0.9
    # other inputs, or no earlier run that says: nothing rather than 0.0
    other = TaskRecord("gate", "gate", 2, second_dir, status="SUCCESS", cached=True, inputs="ffff")
    assert earlier_seconds(other) is None and task_row(other)["seconds"] is None


class _Text(HTMLParser):
    """The text a reader sees, in page order (no title, no style sheets)."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []
        self.shown = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.shown = tag not in ("style", "title", "head") and (self.shown or tag == "body")

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self.shown = True

    def handle_data(self, data: str) -> None:
        if self.shown and data.strip():
            self.chunks.append(data.strip())


def _page_text(path: Path) -> list[str]:
    parser = _Text()
    parser.feed(path.read_text())
    return parser.chunks


def test_index_heads_with_the_verdict_time_registered_version_and_error(tmp_path: Path) -> None:
    console, _ = _console(1)
    record = console.new_task(name="ingest", step="ingest", run_dir=tmp_path / "run")
    record.status = "FAILURE"
    failed = Verdict(
        status="FAILED",
        seconds=83.25,
        error="ingest: csv:x.csv does not exist",
        error_log=str(tmp_path / "run" / "logs" / "ingest.log"),
    )
    text = _page_text(write_results(tmp_path / "run", "x", [record], failed).index)
    assert text[:3] == ["Run of x", "FAILED", "in 83.2 s"], text
    assert text.index("ingest: csv:x.csv does not exist") < text.index("Reports")
    assert text.index("logs/ingest.log") < text.index("Reports")

    passed = Verdict(
        status="SUCCEEDED",
        seconds=12.0,
        registered="digits-classifier v3 at /r/registry/digits-classifier/v3",
        gate="gate passed: small-cnn (seed 0) accuracy 0.9700 >= 0.9000",
        failed_runs=["big seed 0 failed in train: ValueError: boom"],
    )
    text = _page_text(write_results(tmp_path / "run", "x", [record], passed).index)
    head = text[: text.index("Reports")]
    assert head[1:3] == ["SUCCEEDED", "in 12.0 s"]
    assert "digits-classifier v3 at /r/registry/digits-classifier/v3" in head
    assert "big seed 0 failed in train: ValueError: boom" in head


def _result(name: str, seed: int, accuracy: float, uri: str) -> EvaluationResult:
    return EvaluationResult(
        name=name, seed=seed, framework="keras", model_uri=uri, metrics={"accuracy": accuracy}
    )


def _failed_training(tmp_path: Path) -> TaskRecord:
    """A train task that failed in a run that went on (compare.on_failure: continue)."""
    log = tmp_path / "logs" / "train-big-seed0.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(
        'epoch 1\nTraceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
        "ValueError: boom\n"
    )
    record = TaskRecord("train", "train", 1, tmp_path, candidate="big", seed=0, status="FAILURE")
    record.log, record.goes_on = log, True
    return record


def test_the_summary_names_the_best_model_by_its_link_and_the_failed_runs(tmp_path: Path) -> None:
    run_dir = tmp_path / "imgclf-x-1"
    model = run_dir / "for-loop-2-iteration-1" / "train" / "model"
    model.mkdir(parents=True)
    (run_dir / "small-cnn-seed1").symlink_to("for-loop-2-iteration-1")
    summary = compare(
        [_result("small-cnn", 1, 0.97, str(model))],
        "accuracy",
        0.9,
        planned=[("small-cnn", 1), ("big", 0)],
    ).to_output()
    link = best_model_link(run_dir, summary)
    assert link == str(run_dir / "small-cnn-seed1" / "train" / "model")
    result = {"experiment": "x", "target": "local", "status": "PARTIAL", "summary": summary}
    text = format_result({**result, "best_model": link})
    assert f"  best model: {link}" in text.splitlines()
    assert "for-loop" not in text
    # compare alone knows only that the run has no result ...
    assert f"  failed, left out: big seed 0: {MISSING_RESULT}" in text.splitlines()
    # ... the local target reads why from the failed task's log
    failed = _failed_training(tmp_path)
    lines = [failed_run_line(failed)]
    assert lines == ["big seed 0 failed in train: ValueError: boom"]
    text = format_result({**result, "best_model": link, "failed_runs": lines})
    assert "  failed, left out: big seed 0 failed in train: ValueError: boom" in text.splitlines()
    verdict = index_verdict({"status": "PARTIAL", "error": "x"}, 1.0, summary, None, [failed])
    assert verdict.failed_runs == lines and verdict.status == "PARTIAL"
    assert index_verdict({"status": "PARTIAL"}, 1.0, summary, None, []).failed_runs == [
        f"big seed 0: {MISSING_RESULT}"
    ]


def test_a_failed_task_the_run_goes_on_past_says_so_with_its_error(tmp_path: Path) -> None:
    record = _failed_training(tmp_path)
    console, stream = _console(1)
    capture = Capture(console, tmp_path, goes_on=lambda r: True, figure=task_figure)
    record.figure = capture.figure(record)
    console.finished(record)
    line = stream.getvalue().splitlines()[-1]
    assert "FAILED after" in line and "(the other candidates go on)" in line
    assert line.endswith("ValueError: boom")
    record.goes_on = False  # a failure that ends the run: its error closes the summary instead
    assert task_figure(record) == ""
