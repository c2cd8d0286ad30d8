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
