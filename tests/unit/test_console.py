"""The local console (task lines, plain epoch lines), the results folder and the summary."""

from __future__ import annotations

import io
import json
from pathlib import Path

from kfp import dsl

from components.common.progress import EVENT_PREFIX, EVENTS_ENV, emit, parse_event
from components.train.events import training_outcome
from pipelines.summary import format_result
from pipelines.targets.local.console import PLAIN_EPOCH_LINES, Console
from pipelines.targets.local.results import LATEST, task_figure, write_results


def _console(total: int = 9) -> tuple[Console, io.StringIO]:
    stream = io.StringIO()
    return Console(total, stream=stream), stream


def test_plain_console_names_candidate_and_seed_and_caps_epoch_lines(tmp_path: Path) -> None:
    console, stream = _console()
    record = console.new_task(
        name="train", step="train", run_dir=tmp_path, candidate="small-cnn", seed=1
    )
    console.started(record)
    console.event(record, {"event": "epochs", "epochs": 40, "steps": 12, "done": 0})
    for epoch in range(1, 41):
        console.event(record, {"event": "batch", "epoch": epoch, "step": 3, "steps": 12})
        console.event(
            record, {"event": "epoch", "epoch": epoch, "epochs": 40, "metrics": {"loss": 0.5}}
        )
    record.status, record.finished = "SUCCESS", record.started + 31.2
    record.figure = "best val_accuracy 0.9870 at epoch 14 (stopped early at 22)"
    console.finished(record)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[1/9] train small-cnn seed 1 ..."
    assert lines[-1] == (
        "[1/9] train small-cnn seed 1 ... done in 31.2 s, "
        "best val_accuracy 0.9870 at epoch 14 (stopped early at 22)"
    )
    epoch_lines = [line for line in lines if "epoch " in line and "..." not in line]
    assert 1 <= len(epoch_lines) <= PLAIN_EPOCH_LINES
    assert all("small-cnn seed 1" in line for line in epoch_lines)
    assert "\x1b" not in stream.getvalue()


def test_cached_and_failed_tasks_say_so(tmp_path: Path) -> None:
    console, stream = _console(3)
    cached = console.new_task(name="ingest", step="ingest", run_dir=tmp_path)
    cached.status, cached.cached = "SUCCESS", True
    console.finished(cached)
    failed = console.new_task(name="train", step="train", run_dir=tmp_path, candidate="a", seed=0)
    failed.status, failed.log = "FAILURE", tmp_path / "logs" / "train-a-seed0.log"
    failed.finished = failed.started + 2
    console.finished(failed)
    first, second = stream.getvalue().splitlines()
    assert first == "[1/3] ingest ... cached"
    assert second.startswith("[2/3] train a seed 0 ... FAILED after 2.0 s, log: ")
    assert second.endswith("train-a-seed0.log")


def test_events_only_when_the_runner_asks(monkeypatch, capsys) -> None:
    monkeypatch.delenv(EVENTS_ENV, raising=False)
    emit("epoch", epoch=1)
    assert capsys.readouterr().out == ""
    monkeypatch.setenv(EVENTS_ENV, "1")
    emit("epoch", epoch=1, metrics={"loss": 0.25})
    line = capsys.readouterr().out
    assert line.startswith(EVENT_PREFIX)
    assert parse_event(line) == {"event": "epoch", "epoch": 1, "metrics": {"loss": 0.25}}
    assert parse_event("Epoch 1/40") is None


def test_training_outcome_finds_best_and_early_stop() -> None:
    history = {"loss": [1.0] * 6, "val_accuracy": [0.5, 0.9, 0.8, 0.9, 0.85, 0.7]}
    outcome = training_outcome(history, planned_epochs=40, patience=4)
    assert outcome["best_epoch"] == 2  # the first of the tied best, as early stopping keeps it
    assert outcome["best_value"] == 0.9
    assert outcome["stopped_early"] is True and outcome["epochs_run"] == 6
    full = training_outcome({"loss": [1.0, 0.5], "accuracy": [0.4, 0.6]}, 2, None)
    assert full["monitor"] == "accuracy" and full["stopped_early"] is False


def _artifact(cls: type, uri: Path) -> dsl.Artifact:
    artifact = cls(name=uri.name, uri=str(uri))
    return artifact


def _earlier_run(root: Path) -> dict[str, Path]:
    """Outputs a first run wrote: ingest, one training with curves, its evaluation, compare."""
    run = root / "imgclf-x-1"
    paths = {
        "data": run / "ingest" / "report",
        "dataset": run / "ingest" / "dataset",
        "quarantine": run / "ingest" / "quarantine",
        "curves": run / "for-loop-2-iteration-0" / "train" / "curves",
        "model": run / "for-loop-2-iteration-0" / "train" / "model",
        "evaluation": run / "for-loop-2-iteration-0" / "evaluate" / "report",
        "comparison": run / "compare" / "report",
    }
    for name in ("data", "curves", "evaluation", "comparison"):
        paths[name].parent.mkdir(parents=True, exist_ok=True)
        paths[name].write_text(f"<html>{name}</html>")
    paths["dataset"].mkdir(parents=True)
    (paths["dataset"] / "dataset_info.json").write_text(
        json.dumps(
            {
                "source": "sklearn:digits",
                "class_names": [str(i) for i in range(10)],
                "num_classes": 10,
                "image_size": [8, 8],
                "channels": 1,
                "counts": {"train": {}, "validation": {}, "test": {}},
                "num_examples": {"train": 1256, "validation": 179, "test": 359},
                "fingerprint": "f" * 64,
                "kept": 1797,
                "quarantined": 3,
            }
        )
    )
    paths["quarantine"].write_text("key,source,reason\n")
    paths["model"].mkdir(parents=True)
    (paths["model"] / "model_card.json").write_text(
        json.dumps(
            {
                "training": {
                    "outcome": {
                        "monitor": "val_accuracy",
                        "best_value": 0.987,
                        "best_epoch": 14,
                        "epochs_run": 22,
                        "stopped_early": True,
                    }
                }
            }
        )
    )
    (paths["model"].parent / "tensorboard" / "train").mkdir(parents=True)
    (paths["model"].parent / "tensorboard" / "train" / "events.out.tfevents.1").write_bytes(b"x")
    (run / "logs").mkdir()
    (run / "logs" / "train-small-cnn-seed1.log").write_text("Epoch 1/40\n")
    return paths


def test_a_cached_run_has_every_report_in_its_own_folder(tmp_path: Path) -> None:
    paths = _earlier_run(tmp_path)
    run_dir = tmp_path / "imgclf-x-2"  # a fully cached rerun: kfp.local wrote nothing here
    console, _ = _console()
    tasks = []
    for name, step, candidate, outputs in (
        (
            "ingest",
            "ingest",
            None,
            {
                "report": _artifact(dsl.HTML, paths["data"]),
                "dataset": _artifact(dsl.Dataset, paths["dataset"]),
                "quarantine": _artifact(dsl.Dataset, paths["quarantine"]),
            },
        ),
        (
            "train",
            "train",
            "small-cnn",
            {
                "curves": _artifact(dsl.HTML, paths["curves"]),
                "model": _artifact(dsl.Model, paths["model"]),
            },
        ),
        ("evaluate", "evaluate", "small-cnn", {"report": _artifact(dsl.HTML, paths["evaluation"])}),
        ("compare", "compare", None, {"report": _artifact(dsl.HTML, paths["comparison"])}),
    ):
        record = console.new_task(
            name=name,
            step=step,
            run_dir=run_dir,
            candidate=candidate,
            seed=1 if candidate else None,
        )
        record.status, record.cached, record.outputs = "SUCCESS", True, outputs
        record.figure = task_figure(record)
        tasks.append(record)
    assert tasks[0].figure == "1797 images kept, 3 quarantined"
    assert tasks[1].figure == "best val_accuracy 0.9870 at epoch 14 (stopped early at 22)"

    results = write_results(run_dir, "x", tasks)
    names = sorted(p.name for p in results.reports)
    assert names == [
        "comparison.html",
        "curves-small-cnn-seed1.html",
        "data.html",
        "evaluation-small-cnn-seed1.html",
    ]
    assert all(p.parent == run_dir and p.is_file() for p in results.reports)
    index = results.index.read_text()
    for name in names:
        assert f'href="{name}"' in index
    assert results.logs == [tmp_path / "imgclf-x-1" / "logs" / "train-small-cnn-seed1.log"]
    assert (run_dir / "small-cnn-seed1").resolve() == paths["model"].parent.parent.resolve()
    assert (run_dir / "tensorboard" / "small-cnn-seed1" / "train").is_dir()
    assert (tmp_path / LATEST).resolve() == run_dir.resolve()
    assert results.data == {
        "kept": 1797,
        "quarantined": 3,
        "classes": 10,
        "quarantine_csv": str(run_dir / "quarantine.csv"),
    }


def test_summary_has_a_row_per_task_the_data_line_and_one_results_path() -> None:
    tasks = [
        {
            "name": "train",
            "label": f"train small-cnn seed {s}",
            "status": "SUCCESS",
            "cached": c,
            "seconds": 3.0,
        }
        for s, c in ((0, True), (1, False))
    ]
    text = format_result(
        {
            "experiment": "digits",
            "target": "local",
            "status": "SUCCEEDED",
            "seconds": 12.0,
            "tasks": tasks,
            "data": {"kept": 1797, "quarantined": 0, "quarantine_csv": "/r/quarantine.csv"},
            "index": "/r/index.html",
            "reports": ["/r/data.html", "/r/comparison.html"],
        }
    )
    lines = text.splitlines()
    assert any("train small-cnn seed 0" in line and "cached" in line for line in lines)
    assert any("train small-cnn seed 1" in line and "ran" in line for line in lines)
    assert "data: 1797 images kept, 0 quarantined (list: /r/quarantine.csv)" in lines
    assert "results: /r/index.html" in lines
    assert "/r/data.html" not in text  # the index links them; the console names one path


def test_a_step_process_output_goes_to_its_log_and_events_to_the_console(tmp_path: Path) -> None:
    import sys

    from pipelines.targets.local import capture as capture_module
    from pipelines.targets.local.capture import Capture

    console, stream = _console(1)
    capture = Capture(console, tmp_path)
    record = console.new_task(name="train", step="train", run_dir=tmp_path, candidate="c", seed=0)
    step = (
        "import sys; print('Epoch 1/2 noisy library output'); "
        "print('a warning', file=sys.stderr); "
        "from components.common.progress import emit; "
        "emit('epochs', epochs=2, steps=4, done=0); "
        "emit('epoch', epoch=2, epochs=2, metrics={'loss': 0.5}); sys.exit(3)"
    )
    capture_module._current.record = record
    try:
        code = capture.run_subprocess([sys.executable, "-c", step])
    finally:
        capture_module._current.record = None
    assert code == 3
    log = (tmp_path / "logs" / "train-c-seed0.log").read_text()
    assert "noisy library output" in log and "a warning" in log
    assert "imgclf-event" not in log
    shown = stream.getvalue()
    assert "noisy" not in shown and "a warning" not in shown
    assert "train c seed 0  epoch 2/2  loss 0.5" in shown
    assert record.log == tmp_path / "logs" / "train-c-seed0.log" and not capture.processes
