"""The failover core without any cloud: order, scopes, skipped rows, quota checks."""

from __future__ import annotations

from typing import Any

import pytest

from nestcloud import failover
from nestcloud.errors import (CapacityError, CleanupError, CredentialsError,
                              MissingDependencyError, ProviderError, QuotaError,
                              ThrottledError, UnsupportedError)
from nestcloud.failover import Attempt, Candidate, Launched
from nestcloud.planner import PlanRequest, plan


def C(provider: str, region: str, *types: str) -> Candidate:
    return Candidate(provider, region, tuple(types))


@pytest.mark.parametrize("exc,scope", [
    (CapacityError("x", code="InsufficientInstanceCapacity"), "zone"),
    # The provider's scope decides (its translation sets it); a code alone is fatal.
    (ProviderError("x", code="SkuNotAvailable", scope="zone"), "zone"),
    (ProviderError("x", code="AllocationFailed"), "fatal"),
    (UnsupportedError("x", code="UnsupportedOperation"), "type"),
    (QuotaError("x", code="VcpuLimitExceeded"), "region"),
    (ProviderError("x", code="OperationNotAllowed", scope="region"), "region"),
    (ProviderError("x", scope="account"), "fatal"),
    (ThrottledError("x"), "region"),
    (MissingDependencyError("x"), "provider"),
    (CredentialsError("x", code="AuthFailure"), "fatal"),
    (CleanupError("x", leftovers=["i-1"]), "fatal"),
    (ProviderError("x", code="InvalidParameterValue", scope="request"), "fatal"),
])
def test_classify(exc: Exception, scope: str) -> None:
    assert failover.classify(exc) == scope


def test_zone_then_type_then_region_then_provider() -> None:
    tried: list[Candidate] = []
    errors = {
        ("aws", "r1", "a"): CapacityError("no a", code="InsufficientInstanceCapacity"),
        ("aws", "r1", "b"): QuotaError("limit", code="VcpuLimitExceeded"),
        ("aws", "r2", "a"): MissingDependencyError("no boto3"),
    }

    def launch(c: Candidate) -> Launched[str]:
        tried.append(c)
        if (c.provider, c.region, c.type) in errors:
            raise errors[(c.provider, c.region, c.type)]
        return Launched(f"{c.provider}/{c.region}/{c.type}")

    cands = [C("aws", "r1", "a"), C("aws", "r1", "b"), C("aws", "r1", "c"),
             C("aws", "r2", "a"), C("aws", "r3", "a"), C("azure", "eastus", "D2")]
    result, rows = failover.run(cands, launch)
    assert result == "azure/eastus/D2"
    assert [(c.region, c.type) for c in tried] == [("r1", "a"), ("r1", "b"), ("r2", "a"),
                                                   ("eastus", "D2")]
    assert rows == [
        Attempt("aws", "r1", "a", None, "failed", "zone", "InsufficientInstanceCapacity",
                "no a"),
        Attempt("aws", "r1", "b", None, "failed", "region", "VcpuLimitExceeded", "limit"),
        Attempt("aws", "r1", "c", None, "skipped", reason="VcpuLimitExceeded earlier in r1"),
        Attempt("aws", "r2", "a", None, "failed", "provider", None, "no boto3"),
        Attempt("aws", "r3", "a", None, "skipped", reason="aws unusable: no boto3"),
        Attempt("azure", "eastus", "D2", None, "ok", reason="launched"),
    ]


def test_fatal_stops_at_once_and_carries_the_table() -> None:
    def launch(c: Candidate) -> Launched[str]:
        raise CredentialsError("expired", code="ExpiredToken")

    with pytest.raises(CredentialsError) as ei:
        failover.run([C("aws", "r1", "a"), C("aws", "r2", "a")], launch)
    assert failover.attempts_of(ei.value) == [
        Attempt("aws", "r1", "a", None, "failed", "fatal", "ExpiredToken", "expired")]


def test_nothing_launches_is_a_capacity_error_with_every_row() -> None:
    inner = [Attempt("aws", "r1", "a", "r1b", "failed", "zone", "InsufficientInstanceCapacity",
                     "none in b")]

    def launch(c: Candidate) -> Launched[str]:
        raise failover.attach(CapacityError("short", code="InsufficientInstanceCapacity"),
                              inner)

    with pytest.raises(CapacityError) as ei:
        failover.run([C("aws", "r1", "a")], launch)
    assert ei.value.message == ("no place could take the whole launch: 2 attempt(s) failed "
                                "across 1 region(s)")
    assert [r.zone for r in failover.attempts_of(ei.value)] == ["r1b", None]


def test_quota_check_blocks_a_region_before_any_launch() -> None:
    asked: list[str] = []

    def quota(c: Candidate) -> str | None:
        asked.append(c.region)
        return "needs 10 vCPUs; quota 8" if c.region == "r1" else None

    launched: list[str] = []

    def launch(c: Candidate) -> Launched[str]:
        launched.append(c.region)
        return Launched(c.region)

    result, rows = failover.run([C("aws", "r1", "a"), C("aws", "r1", "b"),
                                 C("aws", "r2", "a")], launch, quota=quota)
    assert (result, launched, asked) == ("r2", ["r2"], ["r1", "r2"])
    assert [(r.region, r.type, r.outcome, r.code) for r in rows] == [
        ("r1", "a", "failed", "quota-check"), ("r1", "b", "skipped", None),
        ("r2", "a", "ok", None)]


def test_keyboard_interrupt_is_not_swallowed() -> None:
    def launch(c: Candidate) -> Launched[str]:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        failover.run([C("aws", "r1", "a"), C("aws", "r2", "a")], launch)


def test_candidates_follow_the_plan_and_the_price_ceiling(catalog: Any) -> None:
    res = plan(catalog, PlanRequest(vcpus=2, memory_gib=4, providers=["aws"], seats=10))
    fleet = failover.candidates(res.options, fleet=True)
    assert fleet == [C("aws", "us-east-1", "c8i.large", "m8i.large"),
                     C("aws", "us-west-2", "c8i.large", "m8i.large")]
    single = failover.candidates(res.options, fleet=False)
    assert single == [C("aws", "us-east-1", "c8i.large"), C("aws", "us-east-1", "m8i.large"),
                      C("aws", "us-west-2", "c8i.large"), C("aws", "us-west-2", "m8i.large")]
    # c8i.xlarge fits but costs 2x the plan; a budget cuts pricier equivalents too.
    assert all("c8i.xlarge" not in c.types for c in fleet)
    # Cheapest first: east c8i 0.100, west c8i 0.105, east m8i 0.110, west m8i 0.115.
    tight = failover.candidates(res.options, fleet=True, budget=res.options[1].total_usd)
    assert tight == [C("aws", "us-east-1", "c8i.large"), C("aws", "us-west-2", "c8i.large")]
