"""The experiment package: its one accelerator table, read by validation and the vertex target,
and a name that does not shadow an installed module."""

from __future__ import annotations

import sys
from importlib.metadata import packages_distributions

import pytest
from pydantic import ValidationError

import pipelines.config
from pipelines.config import (
    ACCELERATORS_BY_REGION,
    G2_GPUS,
    GPU_TYPES,
    MACHINE_FAMILIES,
    TPU_TYPES,
    VertexResources,
)
from pipelines.config.accelerators import ACCELERATORS


def test_the_package_exposes_every_name_it_lists():
    missing = [name for name in pipelines.config.__all__ if not hasattr(pipelines.config, name)]
    assert not missing


def test_the_package_name_shadows_no_installed_or_standard_module():
    # `python pipelines/submit.py` puts pipelines/ first on sys.path: a dependency's
    # `import config` would get this package.
    assert "config" not in sys.stdlib_module_names
    assert "config" not in packages_distributions()


def test_gpus_then_tpus_in_the_tables_order():
    assert tuple(ACCELERATORS) == GPU_TYPES + TPU_TYPES
    assert {ACCELERATORS[name].kind for name in GPU_TYPES} == {"GPU"}
    assert {ACCELERATORS[name].kind for name in TPU_TYPES} == {"TPU"}


@pytest.mark.parametrize("name", list(ACCELERATORS))
def test_every_accelerator_of_the_table_validates_with_its_kind(name):
    is_tpu = ACCELERATORS[name].kind == "TPU"
    resources = VertexResources(accelerator=name, tpu_topology="2x2" if is_tpu else None)
    assert resources.is_tpu == is_tpu


def test_an_unknown_accelerator_is_refused_naming_every_one_of_the_table():
    with pytest.raises(ValidationError, match="accelerator 'NVIDIA_GTX_1080' is unknown") as caught:
        VertexResources(accelerator="NVIDIA_GTX_1080")
    assert f"use one of {', '.join(ACCELERATORS)}" in str(caught.value)


def test_each_region_offers_exactly_the_accelerators_that_list_it():
    for name, accelerator in ACCELERATORS.items():
        assert accelerator.regions, f"{name} is offered in no region"
        offering = {region for region, names in ACCELERATORS_BY_REGION.items() if name in names}
        assert offering == accelerator.regions


def test_machine_counts_are_of_machines_that_carry_the_accelerator():
    for name, accelerator in ACCELERATORS.items():
        assert MACHINE_FAMILIES[name] == accelerator.machine_families
        assert accelerator.machine_families, f"{name} names no machine type"
        for machine in accelerator.per_machine:
            assert machine.startswith(accelerator.machine_families), machine
    # The preflight's g2 check: g2-standard-24 has 2 L4s, g2-standard-96 has 8.
    assert (G2_GPUS[24], G2_GPUS[96], G2_GPUS[8]) == (2, 8, 1)
