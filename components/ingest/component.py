from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Dataset, Output

from components.common.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def ingest(
    data_config: dict,
    dataset: Output[Dataset],
    quarantine: Output[Dataset],
    report: Output[HTML],
    data_snapshot: str = "",
) -> NamedTuple("IngestOutputs", fingerprint=str, num_classes=int, num_examples=dict):
    """Reads the data source, validates every image and writes sharded TFRecords.

    Args:
        data_config: The experiment's `data` section (source, image size, channels, splits,
            class subset and label map).
        dataset: Sharded TFRecords per split plus dataset_info.json (class names, counts,
            content fingerprint).
        quarantine: CSV of every rejected item (key, source, reason), duplicates and leakage
            included.
        report: HTML data report: counts per split and class, quarantine reasons and examples,
            conversions, image sizes, thumbnails per class.
        data_snapshot: Hash of the source's listing (names, sizes, times or generations) taken
            before the run; an input only so that changed data misses the cache.

    Returns:
        fingerprint: Content hash of the kept images, labels and splits.
        num_classes: Number of classes.
        num_examples: Images per split.
    """
    from collections import namedtuple

    from components.common.process import skip_collection_at_exit
    from components.ingest.run import ingest as run_ingest

    skip_collection_at_exit()  # a tfds: source loads TensorFlow, which lingers seconds at exit

    info = run_ingest(data_config, dataset.path, quarantine.path, report.path)
    dataset.metadata.update(
        fingerprint=info["fingerprint"],
        num_classes=info["num_classes"],
        class_names=info["class_names"],
        num_examples=info["num_examples"],
        data_snapshot=data_snapshot,
    )
    quarantine.metadata.update(count=info["quarantined"], reasons=info["quarantine_reasons"])
    outputs = namedtuple("IngestOutputs", ["fingerprint", "num_classes", "num_examples"])
    return outputs(info["fingerprint"], info["num_classes"], info["num_examples"])
