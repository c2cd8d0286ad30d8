"""Faults injected in the GCE fake: each launch ends complete, or with nothing of it left."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from conftest import fake_leftovers
from fakes.gce_fake import GceFake, load_machine_types

from nestcloud.catalog import Catalog
from nestcloud.errors import CapacityError, ProviderError, QuotaError
from nestcloud.provider import LaunchRequest
from nestcloud.spec import LaunchSpec

REGION = "us-central1"


def zones_of(machine_type: str, region: str = REGION) -> list[str]:
    return sorted(z for r in load_machine_types() if r.name == machine_type for z in r.zones
                  if z.rsplit("-", 1)[0] == region)


def spec(count: int, type_name: str = "n2-standard-4", **kw: Any) -> LaunchSpec:
    return LaunchSpec(provider="gcp", type=type_name, region=REGION, name="lab", count=count,
                      **kw)


@pytest.fixture
def launch(provider: Any, catalog: Catalog) -> Callable[..., Any]:
    def run(s: LaunchSpec, **kw: Any) -> Any:
        return provider.launch(LaunchRequest(s, catalog, **kw))

    return run


@pytest.fixture
def roomy(gce: GceFake) -> GceFake:
    """Quotas big enough for 50 seats (the fake's defaults are test values)."""
    for metric in ("N2_CPUS", "CPUS", "INSTANCES"):
        gce.set_quota(REGION, metric, 1000)
    return gce


def complete(gce: GceFake, provider: Any, n: int) -> list[Any]:
    listed = provider.list("lab")
    assert sorted(i.seat for i in listed) == list(range(n))
    assert all(i.state == "running" and i.nested for i in listed)
    assert len([k for k in gce.instances if k[1].startswith("lab-")]) == n
    return listed


def nothing_left(gce: GceFake, provider: Any) -> None:
    assert provider.list("lab") == []
    assert fake_leftovers(gce, "lab") == []


# -- a zone stocked out ---------------------------------------------------------------------------


def test_a_stocked_out_zone_moves_single_seats_to_the_next(
        gce: GceFake, provider: Any, launch: Callable[..., Any]) -> None:
    first, second = zones_of("n2-standard-4")[:2]
    gce.stockout(first)
    out = launch(spec(3))
    listed = complete(gce, provider, 3)
    assert {i.zone for i in listed} == {second}
    rows = [a for a in out.attempts if a.outcome == "failed"]
    assert rows and {(a.zone, a.scope, a.code) for a in rows} == \
        {(first, "zone", "ZONE_RESOURCE_POOL_EXHAUSTED")}


def test_a_stocked_out_zone_is_skipped_by_the_bulk_insert(
        roomy: GceFake, provider: Any, launch: Callable[..., Any]) -> None:
    first = zones_of("n2-standard-4")[0]
    roomy.stockout(first)
    launch(spec(12))
    listed = complete(roomy, provider, 12)
    assert first not in {i.zone for i in listed}
    assert len(roomy.calls("regionInstances.bulkInsert")) == 1


def test_every_zone_stocked_out_fails_with_zone_scope_and_nothing_left(
        gce: GceFake, provider: Any, launch: Callable[..., Any]) -> None:
    for z in zones_of("n2-standard-4"):
        gce.stockout(z, "n2-standard-4")
    with pytest.raises(CapacityError) as e:
        launch(spec(2, ssh_cidr="203.0.113.7/32"))
    assert e.value.scope == "zone"
    assert "no zone of us-central1 has capacity" in e.value.message
    assert "rolled back" in e.value.message
    assert len(e.value.outcome.attempts) >= len(zones_of("n2-standard-4"))
    nothing_left(gce, provider)


# -- quota -----------------------------------------------------------------------------------------


def test_a_quota_error_from_the_cloud_is_region_scope_and_rolled_back(
        gce: GceFake, provider: Any, launch: Callable[..., Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Another launch takes the quota between our read and our writes: the cloud says no.
    monkeypatch.setattr("providers.gcp.provider._check_quota", lambda *a, **k: None)
    gce.set_quota(REGION, "N2_CPUS", 4)
    with pytest.raises(QuotaError) as e:
        launch(spec(2, ssh_cidr="203.0.113.7/32"))
    assert e.value.scope == "region" and e.value.code == "QUOTA_EXCEEDED"
    assert "N2_CPUS" in e.value.message and "rolled back" in e.value.message
    nothing_left(gce, provider)


def test_a_bulk_insert_over_quota_creates_nothing(
        gce: GceFake, provider: Any, launch: Callable[..., Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("providers.gcp.provider._check_quota", lambda *a, **k: None)
    gce.set_quota(REGION, "N2_CPUS", 16)
    with pytest.raises(QuotaError):
        launch(spec(10))
    nothing_left(gce, provider)


# -- rate limits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [3, 12])
def test_429_on_a_third_of_the_calls_still_completes(
        roomy: GceFake, provider: Any, launch: Callable[..., Any], count: int) -> None:
    roomy.rate_limit(every=3)
    out = launch(spec(count, ssh_cidr="203.0.113.7/32"))
    assert len(out.result.created) == count
    complete(roomy, provider, count)
    assert Counter(r.status for r in roomy.requests)[429] >= 3
    # Retried writes carried their request id: one VM per seat, one rule.
    assert len(roomy.firewalls) == 3  # default-allow-ssh/-rdp and ours
    provider.down("lab")
    nothing_left(roomy, provider)


def test_a_rate_limit_that_never_ends_is_a_throttled_region_error(
        gce: GceFake, make_provider: Callable[..., Any], catalog: Catalog) -> None:
    from providers.gcp._api import make_retry

    p = make_provider(retry=make_retry(initial=0.001, maximum=0.002, timeout=0.2))
    gce.rate_limit(every=1)
    with pytest.raises(ProviderError) as e:
        p.launch(LaunchRequest(spec(1), catalog))
    assert e.value.scope == "region" and "rate limited" in e.value.message
    assert gce.instances == {}


# -- failure at seat 37 of 50 ---------------------------------------------------------------------


def test_failure_at_seat_37_of_50_leaves_nothing(roomy: GceFake, provider: Any,
                                                 launch: Callable[..., Any]) -> None:
    roomy.fail_at(37)
    with pytest.raises(CapacityError) as e:
        launch(spec(50, ssh_cidr="203.0.113.7/32"))
    assert e.value.scope == "zone"
    [bulk] = roomy.calls("regionInstances.bulkInsert")
    assert bulk.body["count"] == bulk.body["minCount"] == "50"
    nothing_left(roomy, provider)


def test_failure_at_seat_37_of_50_then_an_equivalent_type_completes(
        roomy: GceFake, provider: Any, launch: Callable[..., Any]) -> None:
    roomy.fail_at(37)
    out = launch(spec(50), types=("n2-standard-8",))
    assert out.result.type == "n2-standard-8" and len(out.result.created) == 50
    listed = complete(roomy, provider, 50)
    assert {i.type for i in listed} == {"n2-standard-8"}
    [row] = [a for a in out.attempts if a.outcome == "failed"]
    assert (row.type, row.scope) == ("n2-standard-4", "zone")
    assert [r.body["instanceProperties"]["machineType"]
            for r in roomy.calls("regionInstances.bulkInsert")] == \
        ["n2-standard-4", "n2-standard-8"]


def test_a_failed_single_seat_rolls_back_the_others(
        gce: GceFake, provider: Any, launch: Callable[..., Any]) -> None:
    gce.fail_at(3, "INTERNAL_ERROR")
    with pytest.raises(ProviderError) as e:
        launch(spec(4, ssh_cidr="203.0.113.7/32"))
    assert "injected failure" in e.value.message and "rolled back" in e.value.message
    assert e.value.outcome.created_any is False
    nothing_left(gce, provider)


def test_a_rerun_after_a_partial_failure_converges(
        gce: GceFake, provider: Any, launch: Callable[..., Any]) -> None:
    launch(spec(2))
    gce.fail_at(2, "INTERNAL_ERROR")
    with pytest.raises(ProviderError):
        launch(spec(4))
    complete(gce, provider, 2)  # the seats there before stay; this run's are gone
    out = launch(spec(4))
    assert len(out.result.created) == 2 and len(out.result.reused) == 2
    complete(gce, provider, 4)
