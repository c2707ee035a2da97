"""The accelerators an experiment may train on (`resources.vertex.accelerator`): one table of
each accelerator's Vertex AI name, its kind (GPU or TPU), the machine types that carry it and the
regions that offer it for custom training.

Config validation reads the names and kinds; the vertex target reads the rest (its preflight
checks the region and the machine type, its custom jobs name the machine). The views below the
table are computed from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Accelerator:
    """One accelerator, as Vertex AI custom training names and offers it.

    `machine_families`: prefixes of the machine types that carry it (a custom job names a machine
    type). `regions`: where Vertex AI custom training offers it, a snapshot of the "Locations"
    page of the Vertex AI docs; when Google adds it to a region, add the region here.
    `per_machine`: how many a machine type carries where its name does not say (g2-standard-N).
    """

    name: str
    kind: Literal["GPU", "TPU"]
    machine_families: tuple[str, ...]
    regions: frozenset[str]
    per_machine: Mapping[str, int] = field(default_factory=dict)


# The order is the order the experiment's error messages list them in: GPUs, then TPUs.
_TABLE = (
    Accelerator(
        "NVIDIA_TESLA_T4",
        "GPU",
        ("n1-",),
        frozenset(
            {
                "us-central1",
                "us-east1",
                "us-east4",
                "us-west1",
                "us-west4",
                "europe-west1",
                "europe-west4",
                "asia-northeast1",
                "asia-southeast1",
            }
        ),
    ),
    Accelerator(
        "NVIDIA_TESLA_V100",
        "GPU",
        ("n1-",),
        frozenset({"us-central1", "us-east1", "us-west1", "europe-west4"}),
    ),
    Accelerator(
        "NVIDIA_TESLA_P100",
        "GPU",
        ("n1-",),
        frozenset({"us-central1", "us-east1", "us-west1", "europe-west1", "europe-west4"}),
    ),
    Accelerator(
        "NVIDIA_TESLA_A100",
        "GPU",
        ("a2-highgpu-", "a2-megagpu-"),
        frozenset(
            {
                "us-central1",
                "us-east1",
                "us-east4",
                "us-west1",
                "us-west4",
                "europe-west4",
                "asia-northeast1",
                "asia-southeast1",
            }
        ),
    ),
    Accelerator(
        "NVIDIA_A100_80GB",
        "GPU",
        ("a2-ultragpu-",),
        frozenset({"us-central1", "us-east4", "us-east5", "europe-west4", "asia-southeast1"}),
    ),
    Accelerator(
        "NVIDIA_L4",
        "GPU",
        ("g2-",),
        frozenset(
            {
                "us-central1",
                "us-east1",
                "us-east4",
                "us-west1",
                "us-west4",
                "europe-west1",
                "europe-west4",
                "asia-northeast1",
                "asia-southeast1",
            }
        ),
        per_machine={
            "g2-standard-4": 1,
            "g2-standard-8": 1,
            "g2-standard-12": 1,
            "g2-standard-16": 1,
            "g2-standard-32": 1,
            "g2-standard-24": 2,
            "g2-standard-48": 4,
            "g2-standard-96": 8,
        },
    ),
    Accelerator(
        "NVIDIA_H100_80GB",
        "GPU",
        ("a3-highgpu-",),
        frozenset(
            {
                "us-central1",
                "us-east1",
                "us-east4",
                "us-east5",
                "us-west1",
                "us-west4",
                "europe-west4",
                "asia-northeast1",
                "asia-southeast1",
            }
        ),
    ),
    Accelerator(
        "NVIDIA_H100_MEGA_80GB",
        "GPU",
        ("a3-megagpu-",),
        frozenset({"us-central1", "us-east4", "europe-west4"}),
    ),
    Accelerator(
        "NVIDIA_H200_141GB",
        "GPU",
        ("a3-ultragpu-",),
        frozenset({"us-central1", "us-east4"}),
    ),
    Accelerator(
        "TPU_V5_LITEPOD",
        "TPU",
        ("ct5lp-hightpu-",),
        frozenset(
            {"us-central1", "us-east5", "us-west1", "us-west4", "europe-west4", "asia-southeast1"}
        ),
    ),
    Accelerator(
        "TPU_V6E",
        "TPU",
        ("ct6e-standard-",),
        frozenset(
            {
                "us-central1",
                "us-east1",
                "us-east5",
                "us-west1",
                "europe-west4",
                "asia-northeast1",
                "asia-southeast1",
            }
        ),
    ),
    Accelerator(
        "TPU_V5P",
        "TPU",
        ("ct5p-hightpu-",),
        frozenset({"us-central1", "us-east5", "europe-west4"}),
    ),
)
ACCELERATORS: Mapping[str, Accelerator] = {a.name: a for a in _TABLE}

GPU_TYPES = tuple(a.name for a in _TABLE if a.kind == "GPU")
TPU_TYPES = tuple(a.name for a in _TABLE if a.kind == "TPU")
# Region -> the accelerators it offers. The vertex preflight fails on a region here without the
# experiment's accelerator, and only warns on a region missing here (one the table does not know).
ACCELERATORS_BY_REGION: Mapping[str, frozenset[str]] = {
    region: frozenset(a.name for a in _TABLE if region in a.regions)
    for region in sorted({region for a in _TABLE for region in a.regions})
}
MACHINE_FAMILIES: Mapping[str, tuple[str, ...]] = {a.name: a.machine_families for a in _TABLE}
# N of g2-standard-N -> the L4s that machine carries.
G2_GPUS: Mapping[int, int] = {
    int(machine.removeprefix("g2-standard-")): count
    for machine, count in ACCELERATORS["NVIDIA_L4"].per_machine.items()
}
