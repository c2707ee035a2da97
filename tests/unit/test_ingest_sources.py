"""Each data source: keys, labels, the source's own splits, and errors that say what to fix.

TFDS runs offline under `tfds.testing.mock_data`; Hugging Face datasets are made in the test
(a folder of parquet files and a `save_to_disk` folder). Nothing is downloaded.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from components.ingest.sources import open_source
from components.ingest.sources.listing import SourceError
from components.spec import DataConfig


def _config(source: str, **fields: Any) -> DataConfig:
    return DataConfig(source=source, **fields)


def _items(source: str, **fields: Any) -> list:
    return list(open_source(source, _config(source, **fields)))


def _png(value: int, size: int = 12) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _decodes(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
    return True


def test_digits_are_embedded() -> None:
    source = open_source("sklearn:digits", _config("sklearn:digits"))
    items = list(source)
    assert source.total == len(items) == 1797
    assert items[0].key == "digits/00000" and items[0].label == "0"
    assert items[0].read().shape == (8, 8)


def test_folder_classes_are_subfolders_and_every_file_is_an_item(tmp_path: Path) -> None:
    for label in ("cat", "dog"):
        (tmp_path / label / "nested").mkdir(parents=True)
        (tmp_path / label / "1.jpg").write_bytes(_png(1))
        (tmp_path / label / "nested" / "2.png").write_bytes(_png(2))
        (tmp_path / label / ".hidden.jpg").write_bytes(b"x")
    (tmp_path / "cat" / "Thumbs.db").write_bytes(b"not an image")
    (tmp_path / "README.txt").write_text("loose files in the root are not items")
    source = open_source(f"folder:{tmp_path}", _config(f"folder:{tmp_path}"))
    items = list(source)
    assert source.total == len(items) == 5
    assert [i.key for i in items] == [
        "cat/1.jpg",
        "cat/Thumbs.db",
        "cat/nested/2.png",
        "dog/1.jpg",
        "dog/nested/2.png",
    ]
    assert {i.label for i in items} == {"cat", "dog"}
    assert items[0].read() == _png(1) and items[0].origin == str(tmp_path / "cat" / "1.jpg")


def test_folder_enters_the_kaggle_petimages_wrapper(tmp_path: Path) -> None:
    root = tmp_path / "kagglecatsanddogs_5340"
    for label in ("Cat", "Dog"):
        (root / "PetImages" / label).mkdir(parents=True)
        (root / "PetImages" / label / "0.jpg").write_bytes(_png(0))
    (root / "readme[1].txt").write_text("licence")
    for source in (f"folder:{root}", f"folder:{root / 'PetImages'}"):
        assert [(i.key, i.label) for i in _items(source)] == [
            ("Cat/0.jpg", "Cat"),
            ("Dog/0.jpg", "Dog"),
        ]


def test_folder_errors_say_what_layout_is_expected(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        _items(f"folder:{tmp_path / 'missing'}")
    (tmp_path / "flat.jpg").write_bytes(_png(0))
    with pytest.raises(SourceError, match="<class>/<image files>"):
        _items(f"folder:{tmp_path}")


def test_folder_reads_uris_through_tf_io_gfile() -> None:
    tf = pytest.importorskip("tensorflow")

    root = "ram://ingest-sources/pets"
    for label in ("cat", "dog"):
        tf.io.gfile.makedirs(f"{root}/{label}")
        with tf.io.gfile.GFile(f"{root}/{label}/a.png", "wb") as file:
            file.write(_png(7))
    items = _items(f"folder:{root}")
    assert [(i.key, i.label, i.origin) for i in items] == [
        ("cat/a.png", "cat", f"{root}/cat/a.png"),
        ("dog/a.png", "dog", f"{root}/dog/a.png"),
    ]
    assert items[1].read() == _png(7)


def test_csv_paths_are_relative_to_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "images" / "a.png").write_bytes(_png(1))
    (tmp_path / "elsewhere.png").write_bytes(_png(2))
    manifest = tmp_path / "data" / "labels.csv"
    manifest.write_text(
        f"path,label,split\nimages/a.png,cat,train\n{tmp_path / 'elsewhere.png'},dog,TEST\nimages/a.png,cat,\n"
    )
    monkeypatch.chdir(tmp_path)  # not the manifest's folder
    items = _items("csv:data/labels.csv")
    assert [(i.key, i.label, i.split) for i in items][:2] == [
        ("images/a.png", "cat", "train"),
        (str(tmp_path / "elsewhere.png"), "dog", "test"),
    ]
    assert items[0].read() == _png(1) and items[1].read() == _png(2)
    assert items[2].split is None


def test_csv_columns_come_from_the_config(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(_png(1))
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,breed\na.png,beagle\n")
    items = _items(f"csv:{manifest}", image_column="file", label_column="breed")
    assert [(i.key, i.label) for i in items] == [("a.png", "beagle")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "filename,class\na.png,cat\n",
            r"not \['image', 'label'\]: it needs a path column \('path', or data.image_column.*data.label_column",
        ),
        ("path,label,split\na.png,cat,holdout\n", "line 2: split 'holdout' is not one of"),
        ("path,label\na.png,\n", "line 2: empty label"),
    ],
)
def test_csv_errors_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(text)
    with pytest.raises(SourceError, match=message):
        _items(f"csv:{manifest}")
    with pytest.raises(SourceError, match="does not exist"):
        _items(f"csv:{tmp_path / 'none.csv'}")


def test_npz_honours_its_test_arrays_and_class_names(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    x = np.zeros((4, 8, 8), np.uint8)
    np.savez(
        path,
        x=x,
        y=np.array([0, 1, 0, 1]),
        x_test=x[:2],
        y_test=np.array([1, 0]),
        class_names=np.array(["a", "b"]),
    )
    source = open_source(f"npz:{path}", _config(f"npz:{path}"))
    items = list(source)
    assert source.total == 6
    assert [(i.key, i.label, i.split) for i in items][-2:] == [
        ("x_test/0000000", "b", "test"),
        ("x_test/0000001", "a", "test"),
    ]
    assert items[0].read().shape == (8, 8)


TFDS_CASES = {
    # name: (splits read, a class name the builder's code defines, or None where the names come
    # with the download (cifar: from its meta files, restored by TFDS once prepared) or, for
    # caltech_birds2011, from the label_name text feature beside the numbered label)
    "mnist": (["train", "test"], "7"),
    "cifar10": (["train", "test"], None),
    "cifar100": (["train", "test"], None),
    "oxford_iiit_pet": (["train", "test"], "Abyssinian"),
    "caltech_birds2011": (["train", "test"], None),
    "cats_vs_dogs": (["train"], "cat"),
}


@pytest.mark.parametrize("name", sorted(TFDS_CASES))
def test_tfds_datasets_map_splits_and_label_names(name: str) -> None:
    tfds = pytest.importorskip("tensorflow_datasets")
    splits, a_class = TFDS_CASES[name]
    with tfds.testing.mock_data(num_examples=6):
        names = tfds.builder(name).info.features["label"].names
        items = _items(f"tfds:{name}")
    assert [i.split for i in items] == [s for s in splits for _ in range(6)]
    assert len({i.key for i in items}) == len(items)
    assert all(i.key.startswith(f"{i.split}/") for i in items)
    if name == "caltech_birds2011":
        assert not {i.label for i in items} & set(names)
    else:
        assert {i.label for i in items} <= set(names)
    if a_class is not None:
        assert a_class in names
    assert all(_decodes(i.read()) for i in items)


def test_tfds_columns_come_from_the_config() -> None:
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=4):
        items = _items("tfds:oxford_iiit_pet", label_column="species")
        assert {i.label for i in items} <= {"Cat", "Dog"}
        with pytest.raises(
            SourceError, match=r"no class-label feature 'breed'.*\['label', 'species'\]"
        ):
            _items("tfds:oxford_iiit_pet", label_column="breed")
        with pytest.raises(SourceError, match="no image feature 'picture'.*data.image_column"):
            _items("tfds:oxford_iiit_pet", image_column="picture")


def test_an_unknown_tfds_dataset_is_a_clear_error() -> None:
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(SourceError, match="tfds:no_such_dataset.*known here: mnist"):
        _items("tfds:no_such_dataset")


def _hf_dataset(classlabel: bool = True) -> Any:
    datasets = pytest.importorskip("datasets")
    label = datasets.ClassLabel(names=["cat", "dog"]) if classlabel else datasets.Value("string")
    features = datasets.Features(
        {"picture": datasets.Image(), "kind": label, "note": datasets.Value("string")}
    )

    def split(offset: int, labels: list) -> Any:
        rows = {
            "picture": [{"bytes": _png(offset + i), "path": None} for i in range(len(labels))],
            "kind": labels,
            "note": ["x"] * len(labels),
        }
        return datasets.Dataset.from_dict(rows, features=features)

    if classlabel:
        return datasets.DatasetDict(
            {"train": split(0, [0, 1, 0, 1, -1]), "test": split(100, [1, 0])}
        )
    return datasets.DatasetDict(
        {"train": split(0, ["cat", "dog", "cat"]), "validation": split(50, ["dog"])}
    )


@pytest.fixture
def hf_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)


def test_hf_reads_a_folder_of_parquet_files(tmp_path: Path, hf_offline: None) -> None:
    folder = tmp_path / "pets" / "data"
    folder.mkdir(parents=True)
    for name, table in _hf_dataset().items():
        table.to_parquet(str(folder / f"{name}-00000-of-00001.parquet"))
    source = f"hf:{tmp_path / 'pets'}"
    items = _items(source, image_column="picture", label_column="kind")
    assert [(i.key, i.label, i.split) for i in items] == [
        ("train/0000000", "cat", "train"),
        ("train/0000001", "dog", "train"),
        ("train/0000002", "cat", "train"),
        ("train/0000003", "dog", "train"),
        ("train/0000004", None, "train"),  # label -1: unlabelled
        ("test/0000000", "dog", "test"),
        ("test/0000001", "cat", "test"),
    ]
    assert items[5].read() == _png(100)


def test_hf_reads_a_save_to_disk_folder_with_string_labels(
    tmp_path: Path, hf_offline: None
) -> None:
    _hf_dataset(classlabel=False).save_to_disk(str(tmp_path / "saved"))
    items = _items(f"hf:{tmp_path / 'saved'}", image_column="picture", label_column="kind")
    assert [(i.label, i.split) for i in items] == [
        ("cat", "train"),
        ("dog", "train"),
        ("cat", "train"),
        ("dog", "validation"),
    ]
    assert items[3].read() == _png(50)


def test_hf_errors_name_the_columns(tmp_path: Path, hf_offline: None) -> None:
    _hf_dataset().save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(
        SourceError, match=r"has columns \['picture', 'kind', 'note'\] but not \['image', 'label'\]"
    ):
        _items(f"hf:{tmp_path / 'saved'}")
    with pytest.raises(SourceError, match="'note' is Value, not an Image feature"):
        _items(f"hf:{tmp_path / 'saved'}", image_column="note", label_column="kind")
    with pytest.raises(SourceError, match="cannot be loaded"):
        _items(f"hf:{tmp_path / 'nothing-here'}")


def test_an_unknown_scheme_lists_the_readable_ones() -> None:
    class Config:
        image_column, label_column = "image", "label"

    with pytest.raises(
        SourceError, match="sklearn:..., folder:..., csv:..., npz:..., tfds:..., hf:..."
    ):
        open_source("s3:bucket/x", Config())
