"""The checks before compiling ask the target (pipelines/targets/base.py: `runners`,
`writes_runs_dir`, `steps_only_paths`, `warnings_before_compiling`, `registry_preflight`), so the
CLI knows no target by its name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipelines.cli import main
from pipelines.config import load_experiment
from pipelines.targets import TARGETS, get_target
from pipelines.targets.base import RunOptions
from pipelines.targets.local import LocalTarget


@pytest.mark.parametrize(
    ("target", "overrides", "paths"),
    [
        ("local", [], ()),
        ("vertex", [], ("/gcs/",)),
        ("kfp", [], ()),
        ("kfp", ["kfp.data_pvc=imgclf-data"], ("/mnt/data",)),
    ],
)
def test_each_target_names_the_paths_only_its_steps_see(
    target: str, overrides: list[str], paths: tuple[str, ...]
) -> None:
    experiment = load_experiment("digits", overrides)
    assert get_target(target, experiment, RunOptions()).steps_only_paths() == paths


def test_only_the_local_target_takes_a_runner_and_writes_the_runs_folder() -> None:
    experiment = load_experiment("digits")
    hooks = {
        name: (t.runners, t.writes_runs_dir)
        for name in TARGETS
        for t in [get_target(name, experiment, RunOptions())]
    }
    assert hooks == {
        "local": (("subprocess", "docker"), True),
        "vertex": (("subprocess",), False),
        "kfp": (("subprocess",), False),
    }


class Elsewhere(LocalTarget):
    """A target whose steps see /elsewhere/, which this machine does not have."""

    name = "elsewhere"

    def steps_only_paths(self) -> tuple[str, ...]:
        return ("/elsewhere/",)

    def warnings_before_compiling(self) -> list[str]:
        return ["the elsewhere cluster is far away"]


@pytest.mark.parametrize("cls", [LocalTarget, Elsewhere])
def test_the_cli_follows_the_targets_hooks(
    cls: type[LocalTarget], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: Any
) -> None:
    import pipelines.targets as targets

    monkeypatch.setattr(
        targets, "get_target", lambda name, experiment, options: cls(experiment, options)
    )
    argv = ["--experiment", "digits", "--set", "data.source=folder:/elsewhere/images"]
    code = main([*argv, "--compile-only", str(tmp_path / "p.yaml")])
    err = capsys.readouterr().err
    if cls is LocalTarget:  # the control: a folder this machine lacks is refused
        assert code == 2 and "/elsewhere/images" in err
        assert "far away" not in err
    else:
        assert code == 0, err
        assert "warning: the elsewhere cluster is far away" in err
