"""The data snapshot changes exactly when the source's files do."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from components.ingest.snapshot import take_snapshot
from components.ingest.sources.hashing import RemoteObject, SnapshotError, walk_files
from components.spec import DataConfig


def tree(root: Path, classes: dict[str, int]) -> Path:
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            (root / name / f"{index}.png").write_bytes(b"x" * (index + 1))
    return root


def folder(root: Path) -> DataConfig:
    return DataConfig(source=f"folder:{root}")


def test_folder_snapshot_follows_each_kind_of_change(tmp_path: Path) -> None:
    root = tree(tmp_path / "images", {"cat": 3, "dog": 3})
    first = take_snapshot(folder(root))
    assert first.files == 6
    assert take_snapshot(folder(root)).digest == first.digest  # unchanged: same key

    (root / "cat" / "new.png").write_bytes(b"y")
    added = take_snapshot(folder(root))
    assert added.digest != first.digest and added.files == 7

    stat = os.stat(root / "dog" / "0.png")
    os.utime(root / "dog" / "0.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    touched = take_snapshot(folder(root))
    assert touched.digest != added.digest and touched.files == 7

    tree(root, {"bird": 2})
    grown = take_snapshot(folder(root))
    assert grown.digest != touched.digest and grown.files == 9


def test_folder_snapshot_ignores_hidden_files_as_ingest_does(tmp_path: Path) -> None:
    root = tree(tmp_path / "images", {"cat": 2, "dog": 2})
    before = take_snapshot(folder(root)).digest
    (root / ".DS_Store").write_bytes(b"finder")
    (root / "cat" / ".hidden").mkdir()
    (root / "cat" / ".hidden" / "x.png").write_bytes(b"x")
    assert take_snapshot(folder(root)).digest == before


def test_walk_is_sorted_and_relative(tmp_path: Path) -> None:
    root = tree(tmp_path / "images", {"b": 1, "a": 2})
    (root / "a" / "deep").mkdir()
    (root / "a" / "deep" / "z.png").write_bytes(b"zz")
    paths = [path for path, _, _ in walk_files(str(root))]
    assert paths == ["a/0.png", "a/1.png", "a/deep/z.png", "b/0.png"]


def test_same_listing_elsewhere_differs_by_source(tmp_path: Path) -> None:
    one = tree(tmp_path / "one", {"cat": 2, "dog": 2})
    two = tree(tmp_path / "two", {"cat": 2, "dog": 2})
    assert take_snapshot(folder(one)).digest != take_snapshot(folder(two)).digest


def test_describe_names_digest_files_and_time(tmp_path: Path) -> None:
    root = tree(tmp_path / "images", {"cat": 2, "dog": 2})
    snapshot = take_snapshot(folder(root))
    text = snapshot.describe()
    assert text.startswith(f"data snapshot {snapshot.digest[:6]}… 4 files, ")
    assert text.endswith(" s")


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="is not a directory"):
        take_snapshot(folder(tmp_path / "nowhere"))


def test_csv_snapshot_covers_manifest_and_listed_files(tmp_path: Path) -> None:
    images = tree(tmp_path / "images", {"cat": 2, "dog": 2})
    manifest = tmp_path / "labels.csv"
    rows = [f"images/{c}/{i}.png,{c}" for c in ("cat", "dog") for i in range(2)]
    manifest.write_text("path,label\n" + "\n".join(rows) + "\n")
    config = DataConfig(source=f"csv:{manifest}")
    first = take_snapshot(config)
    assert first.files == 5  # the manifest and its four images
    assert take_snapshot(config).digest == first.digest

    (images / "cat" / "0.png").write_bytes(b"changed")
    listed_changed = take_snapshot(config)
    assert listed_changed.digest != first.digest

    (images / "cat" / "unlisted.png").write_bytes(b"u")
    assert take_snapshot(config).digest == listed_changed.digest  # not in the manifest

    manifest.write_text(manifest.read_text().replace("dog\n", "cat\n", 1))
    assert take_snapshot(config).digest != listed_changed.digest  # a relabelled row


def test_npz_snapshot_is_a_content_hash(tmp_path: Path) -> None:
    path = tmp_path / "data.npz"
    np.savez(path, x=np.zeros((4, 8, 8), np.uint8), y=np.array([0, 1, 0, 1]))
    config = DataConfig(source=f"npz:{path}")
    first = take_snapshot(config)
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert take_snapshot(config).digest == first.digest  # same bytes, later time
    np.savez(path, x=np.zeros((4, 8, 8), np.uint8), y=np.array([1, 1, 0, 1]))
    assert take_snapshot(config).digest != first.digest
    with pytest.raises(SnapshotError, match="does not exist"):
        take_snapshot(DataConfig(source=f"npz:{tmp_path / 'none.npz'}"))


class FakeBucket:
    """A listing as google-cloud-storage returns it, recording each request."""

    def __init__(self, objects: dict[str, tuple[int, int]]):
        self.objects = objects
        self.requests: list[tuple[str, str]] = []

    def __call__(self, bucket: str, prefix: str) -> list[RemoteObject]:
        self.requests.append((bucket, prefix))
        return [
            RemoteObject(name, size, str(generation))
            for name, (size, generation) in self.objects.items()
            if name.startswith(prefix)
        ]


def test_gs_folder_snapshot_uses_names_sizes_generations() -> None:
    bucket = FakeBucket(
        {
            "pets/cat/1.jpg": (10, 1),
            "pets/dog/1.jpg": (12, 1),
            "pets/.keep": (0, 1),
            "other/cat/1.jpg": (10, 1),
        }
    )
    config = DataConfig(source="folder:gs://data/pets")
    first = take_snapshot(config, bucket)
    assert bucket.requests == [("data", "pets/")]
    assert first.files == 2  # hidden and other prefixes left out
    assert take_snapshot(config, bucket).digest == first.digest

    bucket.objects["pets/cat/1.jpg"] = (10, 2)  # rewritten: new generation, same size
    assert take_snapshot(config, bucket).digest != first.digest
    bucket.objects["pets/bird/1.jpg"] = (5, 1)
    assert take_snapshot(config, bucket).files == 3


def test_gs_folder_without_objects_is_an_error() -> None:
    with pytest.raises(SnapshotError, match="holds no objects"):
        take_snapshot(DataConfig(source="folder:gs://data/empty"), FakeBucket({}))


def test_csv_listing_gs_files_lists_their_prefix_once(tmp_path: Path) -> None:
    manifest = tmp_path / "labels.csv"
    manifest.write_text("path,label\ngs://data/pets/cat/1.jpg,cat\ngs://data/pets/dog/1.jpg,dog\n")
    bucket = FakeBucket({"pets/cat/1.jpg": (10, 1), "pets/dog/1.jpg": (12, 1)})
    config = DataConfig(source=f"csv:{manifest}")
    first = take_snapshot(config, bucket)
    assert bucket.requests == [("data", "pets")]
    bucket.objects["pets/dog/1.jpg"] = (12, 7)
    assert take_snapshot(config, bucket).digest != first.digest


def test_extra_train_sources_are_part_of_the_snapshot(tmp_path: Path) -> None:
    main = tree(tmp_path / "main", {"cat": 2, "dog": 2})
    extra = tree(tmp_path / "extra", {"cat": 1, "dog": 1})
    config = DataConfig(source=f"folder:{main}", extra_train_sources=[f"folder:{extra}"])
    first = take_snapshot(config)
    assert first.files == 6
    (extra / "dog" / "9.png").write_bytes(b"9")
    assert take_snapshot(config).digest != first.digest


def test_sklearn_snapshot_has_no_file_count() -> None:
    snapshot = take_snapshot(DataConfig(source="sklearn:digits"))
    assert snapshot.files is None
    assert "files" not in snapshot.describe()


def test_hf_local_folder_is_snapshotted_as_a_folder(tmp_path: Path) -> None:
    root = tmp_path / "hf"
    root.mkdir()
    (root / "train-00000.parquet").write_bytes(b"p" * 10)
    config = DataConfig(source=f"hf:{root}")
    first = take_snapshot(config)
    assert first.files == 1
    (root / "test-00000.parquet").write_bytes(b"q")
    assert take_snapshot(config).digest != first.digest


def test_hf_hub_revision_keys_the_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    class Info:
        def __init__(self, sha: str):
            self.sha = sha

    revision = {"sha": "aaa"}
    asked: list[str] = []

    class FakeApi:
        def dataset_info(self, repo: str, timeout: float) -> Info:
            asked.append(repo)
            return Info(revision["sha"])

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    config = DataConfig(source="hf:someone/pets")
    first = take_snapshot(config)
    assert asked == ["someone/pets"] and first.notes == []
    revision["sha"] = "bbb"
    assert take_snapshot(config).digest != first.digest


def test_unresolved_hub_revision_is_said(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    class OfflineApi:
        def dataset_info(self, repo: str, timeout: float) -> None:
            raise ConnectionError("offline")

    monkeypatch.setattr(huggingface_hub, "HfApi", OfflineApi)
    snapshot = take_snapshot(DataConfig(source="hf:someone/pets"))
    assert "revision not resolved (ConnectionError)" in snapshot.describe()


def test_tfds_snapshot_is_the_builder_version() -> None:
    tfds = pytest.importorskip("tensorflow_datasets")
    snapshot = take_snapshot(DataConfig(source="tfds:mnist"))
    assert snapshot.files is None
    again = take_snapshot(DataConfig(source="tfds:mnist"))
    assert again.digest == snapshot.digest
    assert str(tfds.builder("mnist").version)  # the version the digest covers
    with pytest.raises(SnapshotError, match="tfds:no_such_dataset"):
        take_snapshot(DataConfig(source="tfds:no_such_dataset"))


def test_a_vertex_mount_path_is_listed_in_its_bucket() -> None:
    bucket = FakeBucket({"pets/cat/1.jpg": (10, 1), "pets/dog/1.jpg": (12, 1)})
    config = DataConfig(source="folder:/gcs/data/pets")
    snapshot = take_snapshot(config, bucket, not_here=("/gcs/",))
    assert bucket.requests == [("data", "pets/")] and snapshot.files == 2


def test_a_path_only_the_steps_see_is_said(tmp_path: Path) -> None:
    config = DataConfig(source="folder:/mnt/data/pets")
    snapshot = take_snapshot(config, not_here=("/mnt/data",))
    assert snapshot.files is None
    assert "exists only where the steps run" in snapshot.describe()
    assert take_snapshot(config, not_here=("/mnt/data",)).digest == snapshot.digest
