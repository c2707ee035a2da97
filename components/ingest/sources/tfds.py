"""`tfds:NAME[:CONFIG]`: a tensorflow-datasets dataset (mnist, cifar10, cifar100,
oxford_iiit_pet, caltech_birds2011, cats_vs_dogs, ...), prepared into TFDS's data dir
(`TFDS_DATA_DIR`) on first use. Columns from `data.image_column` / `data.label_column`.

The source's own `validation` and `test` splits are honoured; other splits are not read.
Its listing needs the prepared data or the network, so the data preflight leaves it to ingest;
the class count reads the builder's label feature (no download).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

from components.ingest.sources.base import (
    INSTALL_DATA_EXTRA,
    Item,
    SnapshotContext,
    Source,
    SourceKind,
    given,
)
from components.ingest.sources.hashing import SnapshotError
from components.ingest.sources.listing import SOURCE_SPLITS, Listings, SourceError
from components.spec import DataConfig

# Split names of the supported TFDS datasets, for when the builder has no split metadata
# (tfds.testing.mock_data); a prepared dataset lists its own.
TFDS_SPLITS = {
    "mnist": ("train", "test"),
    "cifar10": ("train", "test"),
    "cifar100": ("train", "test"),
    "oxford_iiit_pet": ("train", "test"),
    "caltech_birds2011": ("train", "test"),
    "cats_vs_dogs": ("train",),
}
# Features that name an item better than its position (used in keys and the quarantine report).
TFDS_ID_FEATURES = ("id", "file_name", "image/filename", "filename")


class TfdsKind(SourceKind):
    scheme = "tfds"
    example = "tfds:cifar10"

    def open(self, rest: str, config: Any) -> Source:
        tfds = _tfds_module()
        name = rest.partition(":")[0]
        full_name = _full_name(rest)
        try:
            builder = tfds.builder(full_name)
        except Exception as exc:  # DatasetNotFoundError, bad config name, ...
            raise SourceError(
                f"tfds:{rest}: {str(exc).splitlines()[0]}; known here: {', '.join(TFDS_SPLITS)}"
            ) from None
        features = builder.info.features
        image_column, label_column = config.image_column, config.label_column
        if not isinstance(_feature(features, image_column), tfds.features.Image):
            images = [k for k, v in features.items() if isinstance(v, tfds.features.Image)]
            raise SourceError(
                f"tfds:{rest} has no image feature '{image_column}' (data.image_column); "
                f"its image features: {images}"
            )
        label_feature = _feature(features, label_column)
        if not isinstance(label_feature, tfds.features.ClassLabel):
            labels = [k for k, v in features.items() if isinstance(v, tfds.features.ClassLabel)]
            raise SourceError(
                f"tfds:{rest} has no class-label feature '{label_column}' (data.label_column); "
                f"its class-label features: {labels}"
            )
        _prepare(builder, rest)
        available = list(builder.info.splits) or list(TFDS_SPLITS.get(name, ("train",)))
        splits = [s for s in SOURCE_SPLITS if s in available]
        if not splits:
            raise SourceError(
                f"tfds:{rest} has splits {available}, none of {', '.join(SOURCE_SPLITS)}"
            )
        names = list(label_feature.names)
        # caltech_birds2011 numbers its classes and names them in a text feature beside the label.
        name_feature = f"{label_column}_name"
        numbered = names == [str(i) for i in range(len(names))]
        named_by_text = numbered and isinstance(
            _feature(features, name_feature), tfds.features.Text
        )
        id_feature = next(
            (f for f in TFDS_ID_FEATURES if isinstance(_feature(features, f), tfds.features.Text)),
            None,
        )
        wanted = {image_column: True, label_column: True}
        for extra in (id_feature, name_feature if named_by_text else None):
            if extra:
                wanted[extra] = True
        decoders = tfds.decode.PartialDecoding(
            wanted, decoders={image_column: tfds.decode.SkipDecoding()}
        )
        known = builder.info.splits
        total = sum(known[s].num_examples for s in splits) if known else None

        def items() -> Iterator[Item]:
            text_names: dict[int, str] = {}
            for split in splits:
                dataset = builder.as_dataset(
                    split=split,
                    shuffle_files=False,
                    decoders=decoders,
                    read_config=tfds.ReadConfig(add_tfds_id=True),
                )
                for example in tfds.as_numpy(dataset):
                    ident = _text(example[id_feature] if id_feature else example["tfds_id"])
                    label = int(example[label_column])
                    if named_by_text:
                        class_name = text_names.setdefault(label, _text(example[name_feature]))
                    else:
                        class_name = names[label]
                    yield Item(
                        key=f"{split}/{ident}",
                        label=class_name,
                        read=partial(given, bytes(example[image_column])),
                        origin=f"tfds:{full_name}/{split}/{ident}",
                        split=split,
                    )

        return Source(items(), total)

    def listed_classes(
        self, rest: str, data: DataConfig, not_here: tuple[str, ...], listings: Listings
    ) -> set[str] | None:
        return None  # the builder's listing needs the prepared data or the network

    def class_names(
        self, rest: str, data: DataConfig, not_here: tuple[str, ...], listings: Listings
    ) -> set[str] | None:
        """The builder's label feature, from its info (no download)."""
        try:
            import tensorflow_datasets as tfds
        except ImportError:
            return None
        try:
            builder = tfds.builder(_full_name(rest))
        except Exception:  # unknown name: ingest says so
            return None
        features = builder.info.features
        if data.label_column not in features:  # FeaturesDict has no .get
            return None
        label = features[data.label_column]
        if not isinstance(label, tfds.features.ClassLabel):
            return None
        return {str(n) for n in label.names}

    def snapshot(self, rest: str, context: SnapshotContext) -> int | None:
        """The builder's name and version (no download)."""
        tfds = _tfds_module()
        try:
            builder = tfds.builder(_full_name(rest))
        except Exception as exc:  # DatasetNotFoundError, bad config
            raise SnapshotError(f"data.source tfds:{rest}: {str(exc).splitlines()[0]}") from None
        context.digest.update(f"tfds\0{builder.info.full_name}\0{builder.version}\n".encode())
        return None


def _tfds_module() -> Any:
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise SourceError(f"tfds: sources need tensorflow-datasets: {INSTALL_DATA_EXTRA}") from None
    return tfds


def _full_name(rest: str) -> str:
    """`NAME[:CONFIG]` as tfds names it: `NAME[/CONFIG]`."""
    name, _, builder_config = rest.partition(":")
    return f"{name}/{builder_config}" if builder_config else name


def _prepare(builder: Any, spec: str) -> None:
    """Download and prepare a tfds dataset (a no-op once prepared); SourceError, one line,
    saying what to do when that fails (offline, a host that is down, a full disk)."""
    try:
        builder.download_and_prepare()
    except Exception as exc:  # requests' ConnectionError, tfds' DownloadError, OSError, ...
        root = getattr(builder, "_data_dir_root", None) or "TFDS_DATA_DIR"
        reason = " ".join(str(exc).split()) or "no message"
        reason = reason if len(reason) <= 240 else f"{reason[:240]}..."
        raise SourceError(
            f"tfds:{spec} could not be downloaded and prepared ({type(exc).__name__}: {reason}); "
            f"give this machine network access, or prepare it where there is network "
            f"(`tfds build {spec.replace(':', '/')}`) and copy the folder it writes into {root} "
            "(or set TFDS_DATA_DIR), or use data.source=folder:PATH with the images"
        ) from None


def _feature(features: Any, name: str | None) -> Any:
    return features[name] if name is not None and name in features else None


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
