"""A lab on GCP through the real client against the GCE fake: failover across regions, then
status, re-run and down (nestcloud.lab drives the provider exactly as for AWS and Azure)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from conftest import fake_leftovers, gcp_catalog
from fakes.gce_fake import GceFake

from nestcloud.lab import Lab
from nestcloud.spec import TAG_LAB


@pytest.fixture
def places(make_provider: Callable[..., Any]) -> tuple[Callable[[str, str], Any],
                                                      dict[tuple[str, str], Any]]:
    made: dict[tuple[str, str], Any] = {}

    def make(provider: str, region: str) -> Any:
        assert provider == "gcp", "the lab allows gcp only"
        if (provider, region) not in made:
            made[(provider, region)] = make_provider(region=region)
        return made[(provider, region)]

    return make, made


def test_a_big_lab_fails_over_to_the_next_region_and_comes_down_whole(
        gce: GceFake, places: Any) -> None:
    make, _ = places
    catalog = gcp_catalog()
    name = "gl" + uuid.uuid4().hex[:6]
    lab = Lab(name, 6, vcpus=4, memory_gib=16, providers=["gcp"], ttl="1h",
              tags={"course": "gcp"}, catalog=catalog)
    first = lab.plan().options[0]
    assert first.provider == "gcp" and first.nesting == "nested"
    for metric in ("N2_CPUS", "C3_CPUS", "INSTANCES"):
        for region in gce.regions:
            gce.set_quota(region, metric, 1000)
    # No capacity for anything in the cheapest region: the lab must go elsewhere, whole.
    for zone in gce.regions[first.region]:
        gce.stockout(zone)
    res = lab.up(providers=make, wait=False)
    assert res.launch is not None and len(res.launch.instances) == 6
    assert res.launch.region != first.region
    assert {i.tags.get(TAG_LAB) for i in res.launch.instances} == {name}
    assert {i.seat for i in res.launch.instances} == set(range(6))
    failed = [a for a in res.attempts if a["outcome"] == "failed"]
    assert failed and {a["region"] for a in failed} == {first.region}
    assert {a["scope"] for a in failed} == {"zone"}
    # Six seats is above fleet_above: one bulkInsert per try, all or nothing.
    assert {r.path.split("/regions/")[1].split("/")[0]
            for r in gce.calls("regionInstances.bulkInsert")} >= {first.region,
                                                                 res.launch.region}
    assert not [k for k in gce.instances if gce.zones[k[0]] == first.region]

    st = lab.status(providers=make)
    assert (st.running, st.missing) == (6, 0)
    again = lab.up(providers=make, wait=False)
    assert again.launch is not None and again.launch.created == []
    down = lab.down(providers=make)
    assert sorted(down.terminated) == sorted(i.id for i in res.launch.instances)
    assert fake_leftovers(gce, name) == []
