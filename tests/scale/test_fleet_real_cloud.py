"""EC2 Fleet requests as the real EC2 reads them (issue 11): override priorities in the order
the service model documents, and equivalent types confirmed by the live API before they get
the nested switch."""

from __future__ import annotations

from typing import Any

import pytest
from fakes.moto_server import Recorder, recording_session

from nestcloud.catalog import Catalog, parse_catalog
from nestcloud.launcher import launch
from nestcloud.spec import LaunchSpec

from .conftest import CATALOG_YAML, lab_name, leftovers


def _provider(endpoint: str) -> tuple[Any, Recorder]:
    from providers.aws import AwsProvider

    session, rec = recording_session()
    prov = AwsProvider(region="us-east-1", endpoint_url=endpoint, session=session)
    prov.sleep = lambda s: None
    return prov, rec


def _spec(name: str, seats: int = 6, type_: str = "c8i.large") -> LaunchSpec:
    return LaunchSpec(provider="aws", type=type_, region="us-east-1", os="al2023",
                      hypervisor="firecracker", name=name, count=seats)


def _priorities(rec: Recorder) -> dict[str, set[float]]:
    [fleet] = rec.params("CreateFleet")
    out: dict[str, set[float]] = {}
    for cfg in fleet["LaunchTemplateConfigs"]:
        for o in cfg["Overrides"]:
            out.setdefault(o["InstanceType"], set()).add(o["Priority"])
    return out


def test_the_service_model_says_lower_numbers_go_first() -> None:
    """The fact the fleet code relies on, read from the SDK's own EC2 model (not memory)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("ec2")
    doc = model.shape_for("FleetLaunchTemplateOverridesRequest").members[
        "Priority"].documentation
    assert "The lower the number, the higher the priority." in doc
    assert "Valid values are whole numbers starting at <code>0</code>." in doc


def test_the_planned_type_gets_the_highest_priority(moto_endpoint: str,
                                                    catalog: Catalog) -> None:
    prov, rec = _provider(moto_endpoint)
    name = lab_name()
    launch(_spec(name), catalog, prov, types=("m8i.large",))
    prio = _priorities(rec)
    # c8i.large is the planned (cheapest) type: the lowest number, so EC2 tries it first;
    # whole numbers from 0, the same for every zone of a type.
    assert prio == {"c8i.large": {0.0}, "m8i.large": {1.0}}
    prov.down(name)
    assert leftovers(moto_endpoint, name) == {}


# c6i.large is listed as nested here (a stale catalog); DescribeInstanceTypes reports no
# nested-virtualization for it. c9z.large does not exist anywhere.
STALE_EQUIVALENTS = CATALOG_YAML + """
  - {provider: aws, name: c6i.large, family: c6i, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-11-29,
     regions: [us-east-1], prices: {us-east-1: {on_demand: 0.101, source: prices}}}
  - {provider: aws, name: c9z.large, family: c9z, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-11-29,
     regions: [us-east-1], prices: {us-east-1: {on_demand: 0.102, source: prices}}}
"""


def _described(rec: Recorder) -> list[list[str]]:
    """The type names each DescribeInstanceTypes call asked about."""
    out = []
    for p in rec.params("DescribeInstanceTypes"):
        names = list(p.get("InstanceTypes") or [])
        for f in p.get("Filters") or []:
            if f["Name"] == "instance-type":
                names += f["Values"]
        out.append(sorted(names))
    return out


def test_equivalents_are_checked_in_the_planned_types_describe_call(
        moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NESTCLOUD_CACHE_DIR", "off")
    cat = parse_catalog(STALE_EQUIVALENTS, "stale")
    prov, rec = _provider(moto_endpoint)
    name = lab_name()
    res = launch(_spec(name), cat, prov, types=("c6i.large", "c9z.large", "m8i.large"))
    # One call asked about the planned type and every equivalent.
    assert _described(rec) == [["c6i.large", "c8i.large", "c9z.large", "m8i.large"]]
    # Only what the API confirms as nested gets the nested switch through the template;
    # the priorities stay dense in the planner's order.
    assert _priorities(rec) == {"c8i.large": {0.0}, "m8i.large": {1.0}}
    assert ("equivalent type c6i.large left out of the fleet: the catalog says 'nested' but "
            "DescribeInstanceTypes in us-east-1 reports neither bare metal nor "
            "nested-virtualization for it") in res.notes
    assert ("equivalent type c9z.large left out of the fleet: DescribeInstanceTypes does not "
            "know it in us-east-1") in res.notes
    prov.down(name)
    assert leftovers(moto_endpoint, name) == {}


def test_an_unconfirmed_equivalent_alone_leaves_a_one_type_fleet(
        moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NESTCLOUD_CACHE_DIR", "off")
    cat = parse_catalog(STALE_EQUIVALENTS, "stale")
    prov, rec = _provider(moto_endpoint)
    name = lab_name()
    launch(_spec(name), cat, prov, types=("c6i.large",))
    assert _priorities(rec) == {"c8i.large": {0.0}}
    [tmpl] = rec.params("CreateLaunchTemplate")
    assert tmpl["LaunchTemplateData"]["CpuOptions"] == {"NestedVirtualization": "enabled"}
    prov.down(name)


def test_a_lab_rerun_after_a_kill_removes_the_template_it_left(moto_endpoint: str,
                                                              catalog: Catalog) -> None:
    """The first `lab up` was killed after its fleet launched every seat, before it deleted
    its launch template: the re-run launches nothing, and removes the template."""
    import socket

    import boto3

    from nestcloud.spec import TAG_NAME

    from .test_scale_faults import World, make_lab, up

    world = World(moto_endpoint)
    name = lab_name()
    up(make_lab(catalog, name, 6, regions=["us-east-1"]), world)
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_endpoint)
    left = ec2.create_launch_template(
        LaunchTemplateName=f"nestcloud-{name}",
        LaunchTemplateData={"MetadataOptions": {"HttpTokens": "required"}},
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": [
            {"Key": TAG_NAME, "Value": name},
            {"Key": "nestcloud:lock", "Value": f"{socket.gethostname()}:{2 ** 22 + 99}"}]}],
    )["LaunchTemplate"]["LaunchTemplateId"]
    again = up(make_lab(catalog, name, 6, regions=["us-east-1"]), world)
    assert again.launch is not None and again.launch.created == []
    assert any(n.startswith(f"removed launch template {left}") for n in again.launch.notes)
    assert all(not i.startswith("lt-") for i in leftovers(moto_endpoint, name)["us-east-1"])
    make_lab(catalog, name, 6).down(sandbox=True, providers=world.provider)
    assert leftovers(moto_endpoint, name) == {}
