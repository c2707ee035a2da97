"""A real tfds builder, prepared through the `tfds:` source without mocking.

The other tfds tests run under `tfds.testing.mock_data`, which skips `download_and_prepare`:
they cannot see a module that TFDS imports only when it prepares a dataset. Here a builder over
a local folder of PNGs lives in a package (as the bundled builders do in
`tensorflow_datasets.image_classification`), and ingest prepares and reads it for real.
"""

from __future__ import annotations

import io
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.ingest.run import IngestError, ingest
from components.ingest.sources import open_source
from components.spec import DataConfig

tfds = pytest.importorskip("tensorflow_datasets")

BUILDER_MODULE = textwrap.dedent(
    '''
    """A tfds builder over a local folder: <root>/<split>/<class>/<image>.png."""

    import os

    import tensorflow_datasets as tfds


    class LocalShapes(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return self.dataset_info_from_configs(
                features=tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Image(shape=(None, None, 3)),
                        "label": tfds.features.ClassLabel(names=["circle", "square"]),
                        "file_name": tfds.features.Text(),
                    }
                ),
            )

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(split) for split in ("train", "test")}

        def _generate_examples(self, split):
            for label in ("circle", "square"):
                folder = os.path.join(os.environ["LOCAL_SHAPES_ROOT"], split, label)
                for name in sorted(os.listdir(folder)):
                    path = os.path.join(folder, name)
                    yield f"{split}/{label}/{name}", {
                        "image": path,
                        "label": label,
                        "file_name": f"{label}-{name}",
                    }
    '''
)


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (10, 10, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def local_shapes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Register the `local_shapes` builder (8 train, 4 test images); its data folder in tmp."""
    images = tmp_path / "images"
    seed = 0
    for split, per_class in (("train", 4), ("test", 2)):
        for label in ("circle", "square"):
            (images / split / label).mkdir(parents=True)
            for index in range(per_class):
                seed += 1
                (images / split / label / f"{index}.png").write_bytes(_png(seed))
    package = tmp_path / "modules" / "local_builders"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "local_shapes.py").write_text(BUILDER_MODULE)
    monkeypatch.setenv("LOCAL_SHAPES_ROOT", str(images))
    # TFDS reads TFDS_DATA_DIR once, at import: its default is set where it is read.
    from tensorflow_datasets.core import constants

    monkeypatch.setattr(constants, "DATA_DIR", str(tmp_path / "tensorflow_datasets"))
    monkeypatch.syspath_prepend(str(tmp_path / "modules"))
    if "local_builders.local_shapes" not in sys.modules:  # registered once per process
        __import__("local_builders.local_shapes")
    return "local_shapes"


def test_a_real_builder_is_prepared_and_read(local_shapes: str, tmp_path: Path) -> None:
    config = DataConfig(source=f"tfds:{local_shapes}", image_size=[10, 10], channels=3)

    items = list(open_source(config.source, config))

    assert (tmp_path / "tensorflow_datasets" / local_shapes / "1.0.0").is_dir()  # prepared
    assert len(items) == 12
    assert {(item.split, item.label) for item in items} == {
        (split, label) for split in ("train", "test") for label in ("circle", "square")
    }
    assert all(Image.open(io.BytesIO(item.read())).size == (10, 10) for item in items)


def test_ingest_writes_a_dataset_from_a_real_builder(local_shapes: str, tmp_path: Path) -> None:
    info = ingest(
        {
            "source": f"tfds:{local_shapes}",
            "image_size": [10, 10],
            "channels": 3,
            "splits": {"validation": 0.25},
            "min_images_per_class": 1,
        },
        tmp_path / "dataset",
        tmp_path / "quarantine.csv",
        workers=1,
    )

    assert info["class_names"] == ["circle", "square"]
    assert info["kept"] == 12 and info["quarantined"] == 0
    assert sum(info["counts"]["test"].values()) == 4  # the builder's own test split


def test_a_download_that_fails_is_one_line_saying_what_to_do(
    local_shapes: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(self, *args, **kwargs):
        raise tfds.download.DownloadError(
            "Failed to get url https://example.org/shapes.tar.gz. HTTP code: 0\n"
            "  more lines of the downloader"
        )

    # What a builder whose files cannot be fetched raises (no network here).
    monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract", offline)
    monkeypatch.setattr(
        sys.modules["local_builders.local_shapes"].LocalShapes,
        "_split_generators",
        lambda self, dl_manager: dl_manager.download_and_extract("https://example.org/x"),
    )
    with pytest.raises(IngestError) as raised:
        ingest(
            {"source": f"tfds:{local_shapes}", "image_size": [10, 10]},
            tmp_path / "dataset",
            tmp_path / "quarantine.csv",
            workers=1,
        )

    message = str(raised.value)
    assert "\n" not in message
    assert f"tfds:{local_shapes}" in message and "example.org" in message
    assert "tfds build" in message and "folder:" in message  # what to do about it
