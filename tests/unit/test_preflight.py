"""The data preflight: bad sources are config errors (exit 2) before anything is compiled, with a
message that names the field, the path and what to do; good sources pass."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.ingest.preflight import preflight
from components.spec import DataConfig
from pipelines.cli import main


def _png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (10, 10), (shade, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def _classes(root: Path, names: tuple[str, ...] = ("cat", "dog")) -> Path:
    for offset, name in enumerate(names):
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(2):
            (root / name / f"{index}.png").write_bytes(_png(offset * 50 + index))
    return root


def _csv(tmp_path: Path, text: str) -> Path:
    _classes(tmp_path / "images")
    path = tmp_path / "manifest.csv"
    path.write_text(text)
    return path


GOOD_CSV = "path,label\nimages/cat/0.png,cat\nimages/dog/0.png,dog\n"


# Each case: (build the source under tmp_path -> data section, what the message must contain).
Case = Callable[[Path], dict]
BAD_SOURCES: list[tuple[str, Case, list[str]]] = [
    (
        "missing folder",
        lambda t: {"source": f"folder:{t / 'pets'}"},
        ["data.source: folder:", "pets does not exist", "<class>/<image files>"],
    ),
    (
        "folder is a file",
        lambda t: (t / "pets.zip").write_bytes(b"PK") and {"source": f"folder:{t / 'pets.zip'}"},
        ["data.source:", "pets.zip is a file, not a folder"],
    ),
    (
        "no class folders",
        lambda t: (
            (t / "flat").mkdir()
            or (t / "flat" / "x.png").write_bytes(_png(1))
            and {"source": f"folder:{t / 'flat'}"}
        ),
        ["data.source:", "has no class subfolders", "one folder per class"],
    ),
    (
        "one class",
        lambda t: {"source": f"folder:{_classes(t / 'one', ('cat',))}"},
        ["data.source:", "has 1 class(es) ('cat')", "needs at least 2"],
    ),
    (
        "empty class folder",
        lambda t: (_classes(t / "src") / "bird").mkdir() or {"source": f"folder:{t / 'src'}"},
        ["data.source:", "class folder 'bird' has no files", "data.classes"],
    ),
    (
        "class folder with hidden files only",
        lambda t: (
            (_classes(t / "src") / "bird").mkdir()
            or (t / "src" / "bird" / ".DS_Store").write_bytes(b"x")
            and {"source": f"folder:{t / 'src'}"}
        ),
        ["class folder 'bird' has no files (only skipped entries: hidden files: 1)"],
    ),
    (
        "data.classes names a class the folder lacks",
        lambda t: {"source": f"folder:{_classes(t / 'src')}", "classes": ["cat", "zebra"]},
        ["data.classes names classes that folder:", "'zebra'", "available: 'cat', 'dog'"],
    ),
    (
        "data.label_map names a class the folder lacks",
        lambda t: {
            "source": f"folder:{_classes(t / 'src')}",
            "label_map": {"cat": "pet", "zebra": "wild"},
        },
        ["data.label_map names source classes", "'zebra'", "its classes: 'cat', 'dog'"],
    ),
    (
        "label_map leaves one class",
        lambda t: {
            "source": f"folder:{_classes(t / 'src')}",
            "label_map": {"cat": "pet", "dog": "pet"},
        },
        ["has 1 class(es) ('pet') after data.classes and data.label_map"],
    ),
    (
        "missing csv",
        lambda t: {"source": f"csv:{t / 'manifest.csv'}"},
        ["data.source: csv:", "manifest.csv does not exist"],
    ),
    (
        "csv without the label column",
        lambda t: {"source": f"csv:{_csv(t, 'path,kind' + chr(10) + 'images/cat/0.png,cat')}"},
        ["has columns ['path', 'kind'] but not ['label']", "data.label_column"],
    ),
    (
        "csv with a bad split value",
        lambda t: {
            "source": f"csv:{_csv(t, GOOD_CSV.replace('label', 'label,split').replace(',cat', ',cat,train').replace(',dog', ',dog,holdout'))}"
        },
        ["line 3: split 'holdout' is not one of train, validation, test"],
    ),
    (
        "csv listing files that do not exist",
        lambda t: {"source": f"csv:{_csv(t, GOOD_CSV + 'images/dog/9.png,dog' + chr(10))}"},
        ["lists 1 file(s) that do not exist (line 4: images/dog/9.png)", "fix the paths"],
    ),
    (
        "csv with an empty label",
        lambda t: {"source": f"csv:{_csv(t, GOOD_CSV + 'images/dog/1.png,' + chr(10))}"},
        ["line 4: empty label"],
    ),
    (
        "csv that is not UTF-8",
        lambda t: (
            (t / "m.csv").write_bytes(b"path,label\nx.png,caf\xe9\n")
            and {"source": f"csv:{t / 'm.csv'}"}
        ),
        ["is not UTF-8 text (byte 0xe9", "save the manifest as UTF-8"],
    ),
    (
        "missing npz",
        lambda t: {"source": f"npz:{t / 'data.npz'}"},
        ["data.source: npz:", "data.npz does not exist"],
    ),
    (
        "npz without y",
        lambda t: (
            np.savez(t / "data.npz", x=np.zeros((2, 8, 8), np.uint8))
            or {"source": f"npz:{t / 'data.npz'}"}
        ),
        ["must hold arrays 'x' and 'y'; it has ['x']", "np.savez"],
    ),
    (
        "npz that is not an archive",
        lambda t: (t / "data.npz").write_bytes(b"garbage") and {"source": f"npz:{t / 'data.npz'}"},
        ["is not an .npz archive (not a zip file)"],
    ),
    (
        "npz with one class",
        lambda t: (
            np.savez(t / "d.npz", x=np.zeros((2, 8, 8), np.uint8), y=np.array([3, 3]))
            or {"source": f"npz:{t / 'd.npz'}"}
        ),
        ["has 1 class(es) ('3')"],
    ),
    (
        "missing extra training source",
        lambda t: {
            "source": f"folder:{_classes(t / 'src')}",
            "extra_train_sources": [f"folder:{t / 'gone'}"],
        },
        ["data.extra_train_sources.0: folder:", "gone does not exist"],
    ),
    (
        "missing local hf folder",
        lambda t: {"source": f"hf:{t / 'saved'}"},
        ["data.source: hf:", "saved does not exist", "save_to_disk"],
    ),
]


@pytest.mark.parametrize(
    ("build", "expected"), [pytest.param(b, e, id=case) for case, b, e in BAD_SOURCES]
)
def test_bad_sources_are_named_with_what_to_do(tmp_path, build, expected):
    data = DataConfig.model_validate(build(tmp_path))

    problems = preflight(data)

    assert len(problems) == 1, problems
    for part in expected:
        assert part in problems[0], problems[0]


def test_there_are_at_least_twelve_distinct_cases():
    assert len({case for case, _, _ in BAD_SOURCES}) >= 12


@pytest.mark.parametrize(
    "build",
    [
        lambda t: {"source": "sklearn:digits"},
        lambda t: {"source": f"folder:{_classes(t / 'src')}"},
        lambda t: {
            "source": f"folder:{_classes(t / 'src', ('a', 'b', 'c'))}",
            "classes": ["a", "b"],
        },
        lambda t: {
            "source": f"folder:{_classes(t / 'src')}",
            "label_map": {"cat": "pet", "dog": "pet", "fox": "fox"},
            "extra_train_sources": [f"folder:{_classes(t / 'more', ('fox', 'owl'))}"],
            "classes": ["pet", "fox"],
        },
        lambda t: {"source": f"csv:{_csv(t, GOOD_CSV)}"},
        lambda t: (
            np.savez(t / "d.npz", x=np.zeros((2, 8, 8), np.uint8), y=np.array([0, 1]))
            or {"source": f"npz:{t / 'd.npz'}"}
        ),
        lambda t: {"source": "folder:gs://bucket/pets"},  # needs the network: left to ingest
        lambda t: {"source": "tfds:mnist"},
        lambda t: {"source": "hf:owner/dataset"},
    ],
    ids=[
        "digits",
        "folder",
        "classes",
        "label map with extras",
        "csv",
        "npz",
        "gs",
        "tfds",
        "hub",
    ],
)
def test_good_sources_pass(tmp_path, build):
    assert preflight(DataConfig.model_validate(build(tmp_path))) == []


def test_an_empty_class_left_out_by_data_classes_passes(tmp_path):
    root = _classes(tmp_path / "src", ("a", "b"))
    (root / "empty").mkdir()

    assert preflight(DataConfig(source=f"folder:{root}", classes=["a", "b"])) == []


def test_paths_that_exist_only_where_the_steps_run_are_not_checked():
    data = DataConfig(source="folder:/mnt/data/pets", extra_train_sources=["csv:/mnt/data/x.csv"])

    assert preflight(data, not_here=("/mnt/data",)) == []
    assert len(preflight(data)) == 2


def _experiment(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "experiment.yaml"
    path.write_text(
        f"data: {{source: '{source}', image_size: [16, 16]}}\n"
        "models:\n  - {name: m, architecture: small_cnn, epochs: 1}\n"
    )
    return path


@pytest.mark.parametrize("target", ["local", "vertex", "kfp"])
def test_the_cli_stops_with_exit_2_before_compiling(tmp_path, capsys, target):
    output = tmp_path / "pipeline.yaml"
    experiment = _experiment(tmp_path, f"folder:{tmp_path / 'missing'}")

    code = main(["-e", str(experiment), "-t", target, "--compile-only", str(output)])

    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: data.source: folder:") and "missing does not exist" in err
    assert len(err.splitlines()) == 1 and not output.exists()


def test_the_cli_reads_relative_sources_from_the_experiment_files_folder(
    tmp_path, capsys, monkeypatch
):
    project = tmp_path / "project"
    _classes(project / "images")
    experiment = _experiment(project, "folder:images")
    output = tmp_path / "pipeline.yaml"
    monkeypatch.chdir(tmp_path)

    code = main(["-e", "project/experiment.yaml", "--compile-only", str(output)])

    assert code == 0, capsys.readouterr().err
    assert f"folder:{project / 'images'}" in output.read_text()
    assert experiment.is_file()


def test_kfp_with_a_data_volume_does_not_check_its_mount_here(tmp_path, capsys):
    experiment = _experiment(tmp_path, "folder:/mnt/data/pets")
    output = tmp_path / "pipeline.yaml"

    code = main(
        [
            "-e",
            str(experiment),
            "-t",
            "kfp",
            "--set",
            "kfp.data_pvc=imgclf-data",
            "--compile-only",
            str(output),
        ]
    )

    assert code == 0, capsys.readouterr().err
    assert output.is_file()
