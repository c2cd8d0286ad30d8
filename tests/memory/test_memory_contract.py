"""The in-memory provider: the shared contract suite, and what makes it a plugin example.

The provider is found only through its installed distribution's entry point (conftest.py), so
these tests also prove that a provider nestcloud has never heard of works from the contract
alone.
"""

from __future__ import annotations

import ast
import datetime as dt
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from contract import ContractTarget, ProviderContract

from nestcloud.bootstrap.marker import parse_marker
from nestcloud.catalog import Catalog, load_catalog
from nestcloud.errors import CapacityError
from nestcloud.provider import (GROUP, Capabilities, LaunchOutcome, LaunchRequest, Provider,
                                get_provider, load_factory)
from nestcloud.spec import TAG_EXPIRES, TAG_NAME, TAG_OWNER, TAG_SEAT, LaunchSpec

from .conftest import MEMORY_CATALOG, PLUGIN_SRC


@pytest.fixture
def mcat() -> Catalog:
    return load_catalog(MEMORY_CATALOG)


def spec(name: str, count: int = 1, **kw: Any) -> LaunchSpec:
    return LaunchSpec(provider="memory", type="m1.small", region="mem-east-1", name=name,
                      count=count, **kw)


class TestMemoryContract(ProviderContract):
    @pytest.fixture
    def target(self, world: Any, memory_plugin: ModuleType, mcat: Catalog) -> ContractTarget:
        def leftovers(name: str) -> list[str]:
            # Straight from the memory cloud, not through the provider.
            return sorted(i.id for i in world.instances.values() if i.name == name)

        return ContractTarget(provider=get_provider("memory", region="mem-east-1"),
                              catalog=mcat, make_spec=lambda n, c: spec(n, c),
                              leftovers=leftovers)


# -- a plugin like any other -------------------------------------------------------------


def test_found_only_through_its_entry_point(memory_plugin: ModuleType) -> None:
    eps = {ep.name: ep for ep in entry_points(group=GROUP)}
    ep = eps["memory"]
    assert ep.value == "nestcloud_memory:MemoryProvider"
    assert ep.dist is not None and ep.dist.name == "nestcloud-memory"
    # Installed into the temporary target, not imported from the source tree.
    assert Path(memory_plugin.__file__).resolve().parent.parent != PLUGIN_SRC
    assert load_factory("memory") is memory_plugin.MemoryProvider


def test_declares_no_capability_and_no_option(memory_plugin: ModuleType) -> None:
    cls = memory_plugin.MemoryProvider
    assert cls.capabilities == Capabilities()
    assert cls.options == ()
    assert isinstance(cls(region="mem-east-1"), Provider)
    # Only the required verbs: nothing a capability would gate.
    for optional in ("vcpu_quota", "prefetch", "unlock", "local_endpoint"):
        assert optional not in vars(cls), optional


def test_imports_nothing_from_providers() -> None:
    src = (PLUGIN_SRC / "nestcloud_memory" / "__init__.py").read_text()
    mods = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.ImportFrom) and node.module:
            mods.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            mods.update(a.name.split(".")[0] for a in node.names)
    assert "providers" not in mods
    assert mods - {"__future__", "datetime", "itertools", "json", "os", "threading",
                   "collections", "dataclasses", "typing"} == {"nestcloud"}


# -- what the contract says, checked on the memory cloud's own records --------------------


def test_every_instance_carries_nestcloud_tags_and_the_users(world: Any, mcat: Catalog
                                                           ) -> None:
    p = get_provider("memory", region="mem-east-1")
    world.now = lambda: dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.timezone.utc)
    out = p.launch(LaunchRequest(spec=spec("tagged", 2, ttl_seconds=7200,
                                           tags={"team": "infra"}), catalog=mcat))
    assert isinstance(out, LaunchOutcome) and out.created_any
    assert out.result is not None and len(out.result.created) == 2
    for seat, inst in enumerate(sorted(world.instances.values(), key=lambda i: i.seat)):
        assert inst.tags == {TAG_NAME: "tagged", TAG_OWNER: "memory-user",
                             TAG_EXPIRES: "2026-12-07T14:00:00Z", TAG_SEAT: str(seat),
                             "team": "infra"}
        assert inst.nested is True  # m1.small is nested in the catalog


def test_console_carries_a_marker_the_core_reads(world: Any, mcat: Catalog) -> None:
    p = get_provider("memory", region="mem-east-1")
    out = p.launch(LaunchRequest(spec=spec("cons"), catalog=mcat))
    assert out.result is not None
    marker = parse_marker(p.console(out.result.instances[0]))
    assert marker is not None and marker.status == "ready"
    world.faults.console = "failed"
    marker = parse_marker(p.console(out.result.instances[0]))
    assert marker is not None and marker.failed_checks() == ["kvm_device: /dev/kvm missing"]
    world.faults.console = "silent"
    assert parse_marker(p.console(out.result.instances[0])) is None


def test_injected_capacity_failure_is_zone_scoped_and_says_what_it_left(
        world: Any, mcat: Catalog) -> None:
    p = get_provider("memory", region="mem-east-1")
    world.faults.capacity_after = 1
    with pytest.raises(CapacityError) as info:
        p.launch(LaunchRequest(spec=spec("cap", 3), catalog=mcat))
    assert info.value.scope == "zone"
    assert info.value.outcome == LaunchOutcome(created_any=True)
    assert [i.seat for i in p.list("cap")] == [0]  # the caller rolls back, not the provider
    world.faults.capacity_after = 0
    with pytest.raises(CapacityError) as info:
        p.launch(LaunchRequest(spec=spec("cap0", 2), catalog=mcat))
    assert info.value.outcome == LaunchOutcome(created_any=False)
    assert p.list("cap0") == []


def test_failure_only_in_the_regions_named(world: Any, mcat: Catalog) -> None:
    world.faults.capacity_after = 0
    world.faults.regions = frozenset({"mem-east-1"})
    west = get_provider("memory", region="mem-west-1")
    out = west.launch(LaunchRequest(spec=spec("west", 2).model_copy(
        update={"region": "mem-west-1"}), catalog=mcat))
    assert out.result is not None and len(out.result.created) == 2


def test_verify_catalog_agrees_with_the_live_types(world: Any, mcat: Catalog) -> None:
    res = get_provider("memory").verify_catalog(mcat, "mem-east-1")
    assert (res.ok, res.checked, res.diffs, res.missing_live) == (True, 3, [], [])
