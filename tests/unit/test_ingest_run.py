"""The ingest step end to end on small generated data: splits, determinism, duplicates, leakage,
label maps, class subsets, extra training sources, the books, the report and each source kind."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from functools import partial
from itertools import count
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from components.common.dataset import SPLITS, shard_files
from components.common.results import DATASET_INFO_FILE, DatasetInfo
from components.ingest.parallel import (
    CHUNK_SIZE,
    CHUNKS_IN_FLIGHT_PER_WORKER,
    PARALLEL_MIN_ITEMS,
    check_in_order,
)
from components.ingest.run import IngestError, ingest
from components.ingest.sources.base import given

_seed = count()


def _image() -> bytes:
    """A distinct small PNG each call."""
    rng = np.random.default_rng(next(_seed))
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _folder(root: Path, per_class: dict[str, int]) -> Path:
    for label, n in per_class.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for index in range(n):
            (root / label / f"{index:03d}.png").write_bytes(_image())
    return root


def _examples(dataset_dir: Path, split: str) -> list[dict]:
    """The split's examples, parsed by TensorFlow's own Example proto."""
    import tensorflow as tf

    examples = []
    for record in tf.data.TFRecordDataset(shard_files(dataset_dir, split)):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        examples.append(
            {
                "key": feature["key"].bytes_list.value[0].decode(),
                "label": feature["label"].int64_list.value[0],
                "image": feature["image/encoded"].bytes_list.value[0],
                "format": feature["image/format"].bytes_list.value[0].decode(),
            }
        )
    return examples


def _run(
    tmp_path: Path, name: str = "out", **config: Any
) -> tuple[dict[str, Any], dict[str, list[dict]], list[dict]]:
    """Ingest; return (info, examples per split, quarantine rows)."""
    out = tmp_path / name
    info = ingest(config, out / "dataset", out / "quarantine.csv", out / "report.html")
    examples = {split: _examples(out / "dataset", split) for split in SPLITS}
    with (out / "quarantine.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert info["kept"] + info["quarantined"] == info["seen"] == info["kept"] + len(rows)
    assert {split: len(examples[split]) for split in SPLITS} == info["num_examples"]
    return info, examples, rows


def _keys(examples: dict[str, list[dict]], split: str) -> set[str]:
    return {e["key"] for e in examples[split]}


def test_the_same_input_gives_the_same_dataset_on_every_run(tmp_path: Path) -> None:
    root = _folder(tmp_path / "images", {"a": 20, "b": 15, "c": 12})
    config = {
        "source": f"folder:{root}",
        "splits": {"validation": 0.2, "test": 0.2},
        "shard_size": 10,
    }
    first = ingest(config, tmp_path / "one", tmp_path / "one.csv", workers=1)
    second = ingest(config, tmp_path / "two", tmp_path / "two.csv", workers=2)
    assert first["fingerprint"] == second["fingerprint"]
    for split in SPLITS:
        ones, twos = shard_files(tmp_path / "one", split), shard_files(tmp_path / "two", split)
        assert [Path(f).name for f in ones] == [Path(f).name for f in twos]
        assert all(
            Path(a).read_bytes() == Path(b).read_bytes() for a, b in zip(ones, twos, strict=True)
        )
    assert len(shard_files(tmp_path / "one", "train")) == first["shards"]["train"] == 3
    first.pop("seconds"), second.pop("seconds")
    assert first == second
    # A changed label changes the fingerprint (it covers labels and class names, not only bytes).
    (root / "c" / "000.png").rename(root / "b" / "moved.png")
    third = ingest(config, tmp_path / "three", tmp_path / "three.csv")
    assert third["fingerprint"] != first["fingerprint"]


def test_splits_are_stratified_by_class_and_shuffled_across_classes(tmp_path: Path) -> None:
    root = _folder(tmp_path / "images", {"a": 50, "b": 30})
    info, examples, _ = _run(
        tmp_path, source=f"folder:{root}", splits={"validation": 0.2, "test": 0.1}
    )
    assert info["counts"] == {
        "train": {"a": 35, "b": 21},
        "validation": {"a": 10, "b": 6},
        "test": {"a": 5, "b": 3},
    }
    train_labels = [e["label"] for e in examples["train"]]
    assert train_labels != sorted(train_labels)  # written in key-hash order, not class order


def test_a_source_test_split_is_honoured_and_leakage_into_train_removed(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for label in ("cat", "dog"):
        for index in range(10):
            data = _image()
            (images / f"{label}{index}.png").write_bytes(data)
            rows.append((f"images/{label}{index}.png", label, "train"))
            if index < 2:  # the same picture again, in the test split
                (images / f"{label}{index}-test.png").write_bytes(data)
                rows.append((f"images/{label}{index}-test.png", label, "test"))
        for index in range(3):
            (images / f"{label}-t{index}.png").write_bytes(_image())
            rows.append((f"images/{label}-t{index}.png", label, "test"))
    manifest = tmp_path / "labels.csv"
    manifest.write_text("path,label,split\n" + "".join(",".join(r) + "\n" for r in rows))

    info, examples, quarantine = _run(
        tmp_path, source=f"csv:{manifest}", splits={"validation": 0.25, "test": 0.3}
    )
    test_keys = {path for path, _, split in rows if split == "test"}
    assert _keys(examples, "test") == test_keys  # exactly the source's test split, none carved
    assert info["source_splits"] == ["test"]
    leaked = {row["key"] for row in quarantine if row["reason"].startswith("leakage")}
    assert leaked == {
        f"images/{label}{index}.png" for label in ("cat", "dog") for index in range(2)
    }
    assert all("in test; removed from" in row["reason"] for row in quarantine)
    assert sum(info["leakage"].values()) == 4 and set(info["leakage"]) <= {
        "train/test",
        "validation/test",
    }
    assert not leaked & (_keys(examples, "train") | _keys(examples, "validation"))


def test_exact_duplicates_are_kept_once(tmp_path: Path) -> None:
    root = _folder(tmp_path / "images", {"a": 10, "b": 10})
    for copy in range(3):
        (root / "a" / f"copy{copy}.png").write_bytes((root / "a" / "000.png").read_bytes())
    info, examples, quarantine = _run(
        tmp_path, source=f"folder:{root}", splits={"validation": 0.2, "test": 0.2}
    )
    assert info["duplicates"] == 3 and info["quarantine_reasons"] == {"duplicate": 3}
    group = {"a/000.png", "a/copy0.png", "a/copy1.png", "a/copy2.png"}
    stored = set().union(*(_keys(examples, s) for s in SPLITS))
    assert len(stored & group) == 1
    assert {row["key"] for row in quarantine} == group - stored
    assert all(row["reason"].startswith("duplicate: same image as ") for row in quarantine)


def test_extra_train_sources_go_to_train_only_and_are_checked_for_leakage(tmp_path: Path) -> None:
    main = _folder(tmp_path / "main", {"a": 12, "b": 12})
    extra = _folder(tmp_path / "extra", {"a": 8, "b": 8, "c": 5})
    config = {
        "source": f"folder:{main}",
        "extra_train_sources": [f"folder:{extra}"],
        "splits": {"validation": 0.25, "test": 0.25},
        "classes": ["a", "b"],
    }
    baseline, examples, _ = _run(tmp_path, "baseline", **config)
    assert all(
        key.startswith("extra1/") is False
        for s in ("validation", "test")
        for key in _keys(examples, s)
    )
    assert sum(key.startswith("extra1/") for key in _keys(examples, "train")) == 16
    assert baseline["excluded_by_config"] == {"class 'c' not in classes": 5}
    # The main source's split does not depend on what the extra source brings.
    alone, alone_examples, _ = _run(tmp_path, "alone", **{**config, "extra_train_sources": []})
    for split in ("validation", "test"):
        assert _keys(examples, split) == _keys(alone_examples, split)

    # An extra image that is also a validation image is removed from train.
    validation_key = sorted(_keys(examples, "validation"))[0]
    (extra / "a" / "leak.png").write_bytes((main / validation_key).read_bytes())
    info, examples, quarantine = _run(tmp_path, "leaky", **config)
    assert [(r["key"], r["reason"]) for r in quarantine] == [
        (
            "extra1/a/leak.png",
            f"leakage: same image as {validation_key} in validation; removed from train",
        )
    ]
    assert info["leakage"] == {"train/validation": 1}


def test_label_maps_merge_classes_and_unmapped_labels_are_excluded(tmp_path: Path) -> None:
    root = _folder(tmp_path / "images", {"airplane": 6, "ship": 6, "cat": 6, "dog": 6, "frog": 4})
    label_map = {"airplane": "vehicle", "ship": "vehicle", "cat": "animal", "dog": "animal"}
    info, examples, _ = _run(
        tmp_path,
        source=f"folder:{root}",
        label_map=label_map,
        splits={"validation": 0.0, "test": 0.0},
    )
    assert info["class_names"] == ["animal", "vehicle"]
    assert info["counts"]["train"] == {"animal": 12, "vehicle": 12}
    assert info["excluded_by_config"] == {"label 'frog' not in label_map": 4}
    labels = {e["key"].split("/")[0]: e["label"] for e in examples["train"]}
    assert labels == {"cat": 0, "dog": 0, "airplane": 1, "ship": 1}


def test_a_class_subset_keeps_its_order_and_a_missing_class_is_an_error(tmp_path: Path) -> None:
    root = _folder(tmp_path / "images", {"a": 5, "b": 5, "c": 5})
    info, _, _ = _run(
        tmp_path,
        source=f"folder:{root}",
        classes=["c", "a"],
        splits={"validation": 0.0, "test": 0.0},
    )
    assert info["class_names"] == ["c", "a"] and info["num_examples"]["train"] == 10
    with pytest.raises(IngestError, match=r"'z' \(0\)"):
        ingest(
            {"source": f"folder:{root}", "classes": ["a", "z"]}, tmp_path / "x", tmp_path / "x.csv"
        )


def test_a_class_below_the_minimum_after_quarantine_is_an_error_naming_it(tmp_path: Path) -> None:
    root = _folder(tmp_path / "images", {"big": 10, "small": 5})
    for index in range(3):
        (root / "small" / f"broken{index}.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut")
    config = {"source": f"folder:{root}", "min_images_per_class": 6}
    with pytest.raises(
        IngestError, match=r"min_images_per_class=6.*'small' \(5\).*lower the minimum"
    ):
        ingest(config, tmp_path / "out", tmp_path / "quarantine.csv")
    # The quarantine CSV is written before the error, to show what was rejected.
    assert len((tmp_path / "quarantine.csv").read_text().splitlines()) == 1 + 3


def test_source_errors_name_the_source(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="does not exist"):
        ingest({"source": f"folder:{tmp_path / 'none'}"}, tmp_path / "out", tmp_path / "q.csv")
    root = _folder(tmp_path / "one", {"only": 3})
    with pytest.raises(IngestError, match="at least 2"):
        ingest({"source": f"folder:{root}"}, tmp_path / "out", tmp_path / "q.csv")


def test_the_report_is_one_self_contained_page(tmp_path: Path) -> None:
    root = _folder(tmp_path / "images", {"a": 8, "b": 8})
    (root / "a" / "broken.jpg").write_bytes(b"")
    (root / "b" / "copy.png").write_bytes((root / "b" / "000.png").read_bytes())
    info, _, _ = _run(tmp_path, source=f"folder:{root}")
    page = (tmp_path / "out" / "report.html").read_text()
    for heading in (
        "Images per split and class",
        "Quarantine",
        "Formats and conversions",
        "Image sizes",
        "Samples per class",
    ):
        assert heading in page
    assert page.count("data:image/png;base64,") >= 2  # the class chart and the size histograms
    # four thumbnails for each class, small ones enlarged without smoothing
    assert page.count("image-rendering:pixelated") == 8
    assert "a/broken.jpg" in page and "empty" in page and "duplicate" in page
    assert "http://" not in page and "https://" not in page
    assert info["fingerprint"][:16] in page


def test_dataset_info_keeps_the_contract_keys(tmp_path: Path) -> None:
    info, _, _ = _run(
        tmp_path, source="sklearn:digits", channels=1, splits={"validation": 0.1, "test": 0.2}
    )
    written = json.loads((tmp_path / "out" / "dataset" / DATASET_INFO_FILE).read_text())
    assert written == info
    contract = {
        "source", "class_names", "num_classes", "image_size", "channels", "counts", "num_examples",
        "seen", "kept", "quarantined", "quarantine_reasons", "excluded_by_config", "converted",
        "image_sizes", "fingerprint", "seconds",
    }  # fmt: skip
    assert contract <= set(info)
    assert info["num_examples"] == {"train": 1259, "validation": 179, "test": 359}
    assert info["class_names"] == [str(d) for d in range(10)]


def test_dataset_info_writes_every_field_and_reads_an_older_file(tmp_path: Path) -> None:
    info, _, _ = _run(tmp_path, source="sklearn:digits", channels=1)
    dataset = tmp_path / "out" / "dataset"
    written = json.loads((dataset / DATASET_INFO_FILE).read_text())
    assert set(written) == set(DatasetInfo.model_fields)
    read = DatasetInfo.read(dataset)
    assert read.kept == info["kept"] and read.image_sizes is not None
    assert read.image_sizes.width.max == info["image_sizes"]["width"]["max"]
    # A Dataset written before the bookkeeping keys were added, with a key unknown here.
    contract = ("source", "class_names", "num_classes", "image_size", "channels", "counts")
    older = {key: written[key] for key in (*contract, "num_examples", "fingerprint")}
    (dataset / DATASET_INFO_FILE).write_text(json.dumps({**older, "retired_key": 1}))
    old = DatasetInfo.read(dataset)
    assert old.num_examples == info["num_examples"] and old.fingerprint == info["fingerprint"]
    assert (old.leakage, old.source_formats, old.image_sizes) == ({}, {}, None)


def test_npz_test_arrays_become_the_test_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(
        path,
        x=rng.integers(0, 256, (40, 8, 8), dtype=np.uint8),
        y=np.arange(40) % 2,
        x_test=rng.integers(0, 256, (6, 8, 8), dtype=np.uint8),
        y_test=np.arange(6) % 2,
        class_names=np.array(["even", "odd"]),
    )
    info, examples, _ = _run(
        tmp_path, source=f"npz:{path}", channels=1, splits={"validation": 0.25, "test": 0.25}
    )
    assert _keys(examples, "test") == {f"x_test/{i:07d}" for i in range(6)}
    assert info["num_examples"] == {"train": 30, "validation": 10, "test": 6}


@pytest.fixture
def tfds_mock() -> Any:
    tfds = pytest.importorskip("tensorflow_datasets")
    return tfds.testing.mock_data


def test_tfds_cats_vs_dogs_is_split_from_its_only_split(tmp_path: Path, tfds_mock: Any) -> None:
    # More items than PARALLEL_MIN_ITEMS: decoded by forked workers while tf.data runs.
    with tfds_mock(num_examples=300):
        info, examples, _ = _run(tmp_path, source="tfds:cats_vs_dogs", image_size=(32, 32))
    assert info["class_names"] == ["cat", "dog"]
    assert info["source_splits"] == []
    assert info["kept"] == 300 and all(info["num_examples"][s] for s in SPLITS)
    assert all(e["key"].startswith("train/") for s in SPLITS for e in examples[s])


def test_tfds_mock_data_repeats_train_in_test_which_ingest_reports_as_leakage(
    tmp_path: Path, tfds_mock: Any
) -> None:
    # mock_data generates the same examples for every split: every train image is a test image.
    with (
        tfds_mock(num_examples=20),
        pytest.raises(IngestError, match="leaked into an evaluation split"),
    ):
        ingest({"source": "tfds:mnist", "channels": 1}, tmp_path / "out", tmp_path / "q.csv")
    with (tmp_path / "q.csv").open() as file:
        reasons = Counter(row["reason"].split(":")[0] for row in csv.DictReader(file))
    assert reasons == {"leakage": 20}


def test_hf_source_end_to_end_with_its_test_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    features = datasets.Features(
        {"img": datasets.Image(), "y": datasets.ClassLabel(names=["cat", "dog"])}
    )

    def table(n: int) -> Any:
        rows = {
            "img": [{"bytes": _image(), "path": None} for _ in range(n)],
            "y": [i % 2 for i in range(n)],
        }
        return datasets.Dataset.from_dict(rows, features=features)

    folder = tmp_path / "pets" / "data"
    folder.mkdir(parents=True)
    table(20).to_parquet(str(folder / "train-00000-of-00001.parquet"))
    table(6).to_parquet(str(folder / "test-00000-of-00001.parquet"))
    source = f"hf:{tmp_path / 'pets'}"
    info, examples, _ = _run(
        tmp_path, source=source, image_column="img", label_column="y", splits={"validation": 0.2}
    )
    assert info["class_names"] == ["cat", "dog"]
    assert _keys(examples, "test") == {f"test/{i:07d}" for i in range(6)}
    assert info["num_examples"] == {"train": 16, "validation": 4, "test": 6}


def test_decoding_reads_the_source_only_a_bounded_window_ahead() -> None:
    pulled = 0

    def entries() -> Any:
        nonlocal pulled
        for index in range(2000):
            pulled += 1
            yield index, partial(given, np.full((4, 4), index % 256, np.uint8))

    window = 2 * CHUNKS_IN_FLIGHT_PER_WORKER * CHUNK_SIZE + CHUNK_SIZE
    stream = check_in_order(entries(), channels=1, min_side=1, workers=2)
    for consumed in range(1, 1501):
        next(stream)
        assert pulled - consumed <= max(PARALLEL_MIN_ITEMS, window)
    stream.close()


def test_image_sizes_get_histograms_only_when_they_vary() -> None:
    from components.ingest.report import ReportDetails, _sizes

    sizes = {"sampled": 3, "width": {"min": 8, "median": 8, "max": 16}}
    info = DatasetInfo(
        source="test:sizes",
        class_names=["a", "b"],
        num_classes=2,
        image_size=[8, 8],
        channels=1,
        counts={},
        num_examples={},
        fingerprint="",
        image_sizes={**sizes, "height": {"min": 8, "median": 8, "max": 9}},
    )
    same = _sizes(info, ReportDetails(widths=[8, 8, 8], heights=[8, 8, 8]))
    assert "All 3 images looked at are 8 x 8 pixels" in same and "<img" not in same
    varied = _sizes(info, ReportDetails(widths=[8, 16, 8], heights=[8, 8, 9]))
    assert "image size distribution" in varied
    assert "<td>width</td><td>8</td><td>8</td><td>16</td>" in varied
