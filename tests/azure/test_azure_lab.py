"""A lab on Azure, through the real SDK against the local ARM fake: up -> status -> down."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from conftest import SSH_KEY

from nestcloud.catalog import parse_catalog
from nestcloud.lab import Lab
from nestcloud.spec import TAG_LAB

# Made-up prices; eastus is the cheaper of the two regions.
CATALOG_YAML = """
schema_version: 1
sources:
  facts: {description: "test facts"}
  prices: {description: "test prices", date: 2025-06-01}
types:
  - {provider: azure, name: Standard_D2s_v5, family: Dsv5, vcpus: 2, memory_gib: 8,
     arch: x86_64, cpu_vendor: intel, nesting: nested, nesting_source: facts,
     verified: 2026-11-29, regions: [eastus, westus2], hyperv_generations: [V1, V2],
     prices: {eastus: {on_demand: 0.096, source: prices}, westus2: {on_demand: 0.1, source: prices}}}
  - {provider: aws, name: c8i.large, family: c8i, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-11-29,
     regions: [us-east-1], prices: {us-east-1: {on_demand: 0.5, source: prices}}}
"""


def test_azure_lab_cycle(make_provider: Callable[..., Any], rendered: Any) -> None:
    made: dict[tuple[str, str], Any] = {}

    def make(provider: str, region: str) -> Any:
        assert provider == "azure", "the lab allows azure only"
        if (provider, region) not in made:
            made[(provider, region)] = make_provider(region=region)
        return made[(provider, region)]

    name = "az" + uuid.uuid4().hex[:8]
    lab = Lab(name, 2, vcpus=2, memory_gib=8, providers=["azure"], ttl="1h", budget=1,
              key_name=SSH_KEY, tags={"course": "az"}, catalog=parse_catalog(CATALOG_YAML))
    res = lab.up(providers=make, wait=False)
    assert (res.cost.option.type, res.cost.option.region) == ("Standard_D2s_v5", "eastus")
    # Two VMs and the group's NAT gateway with its public IP (FACTS.md, Azure, "Egress").
    assert res.cost.total_usd == pytest.approx(2 * 0.096 + 0.045 + 0.005)
    assert res.cost.option.egress == "nat"
    assert res.launch is not None and len(res.launch.instances) == 2
    assert {i.tags.get(TAG_LAB) for i in res.launch.instances} == {name}
    st = lab.status(providers=make)
    assert (st.running, len(st.instances), st.missing) == (2, 2, 0)
    again = lab.up(providers=make, wait=False)
    assert again.reused_placement and again.launch is not None
    assert sorted(again.launch.reused) == sorted(i.id for i in res.launch.instances)
    down = lab.down(providers=make)
    assert sorted(down.terminated) == sorted(i.id for i in res.launch.instances)
    assert lab.status(providers=make).instances == []
