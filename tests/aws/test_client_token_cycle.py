"""Launch, down, launch again (with --ttl, in another minute): re-runs keep working and never
double, against the local endpoint with EC2's ClientToken semantics (tests/fakes/ec2_tokens.py:
the same token with other parameters is IdempotentParameterMismatch, and a token stays bound
after its instance is terminated)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from conftest import running
from fakes.moto_server import on_response, recording_session

from nestcloud.launcher import launch
from nestcloud.spec import TAG_EXPIRES
from providers.aws import AwsProvider

T0 = dt.datetime(2026, 11, 29, 10, 0, 30, tzinfo=dt.timezone.utc)


def _first_search_finds_nothing(session: Any) -> None:
    """The session's first DescribeInstances answers no instances: its run searched before the
    other run launched."""
    first_search = [True]

    def nothing_yet(parsed: dict[str, Any]) -> None:
        if first_search[0]:
            first_search[0] = False
            parsed["Reservations"] = []

    on_response(session, "ec2", "DescribeInstances", nothing_yet)


def _provider(endpoint: str, at: dt.datetime) -> tuple[AwsProvider, Any, Any]:
    session, rec = recording_session()
    prov = AwsProvider(region="us-east-1", endpoint_url=endpoint, session=session)
    prov.sleep = lambda s: None
    prov.clock = lambda: at
    return prov, session, rec


def test_down_and_launch_with_ttl_again_and_again(moto_endpoint, catalog, spec_for, ec2, name):
    seen: list[str] = []
    for cycle in range(3):
        at = T0 + dt.timedelta(minutes=7 * cycle)  # every launch in another minute
        prov, _, rec = _provider(moto_endpoint, at)
        res = launch(spec_for(ttl_seconds=3600, count=2), catalog, prov)
        assert len(res.created) == 2 and res.reused == []
        assert not set(res.created) & set(seen)  # new machines, not the dead ones
        assert running(ec2, name) == sorted(res.created)
        expires = {i.expires for i in res.instances}
        assert expires == {(at.replace(second=0) + dt.timedelta(hours=1, minutes=1))
                           .strftime("%Y-%m-%dT%H:%M:%SZ")}
        # The same command again, a minute later: it finds both seats, launches nothing.
        prov.clock = lambda at=at: at + dt.timedelta(minutes=1)
        again = launch(spec_for(ttl_seconds=3600, count=2), catalog, prov)
        assert again.created == [] and sorted(again.reused) == sorted(res.created)
        assert running(ec2, name) == sorted(res.created)
        seen += res.created
        prov.down(name)
        assert running(ec2, name) == []


def test_a_relaunch_after_the_seat_died_keeps_its_group_and_still_launches(
        moto_endpoint, catalog, spec_for, ec2, name):
    """The seat's instance is gone (a spot reclaim, a shutdown with --ttl) but its group is
    not: the token is bound to the dead instance with another expiry; the next generation
    launches the seat again."""
    prov, _, rec = _provider(moto_endpoint, T0)
    first = launch(spec_for(ttl_seconds=3600), catalog, prov)
    ec2.terminate_instances(InstanceIds=first.created)
    prov.clock = lambda: T0 + dt.timedelta(minutes=30)
    rec.calls.clear()
    second = launch(spec_for(ttl_seconds=3600), catalog, prov)
    assert len(second.created) == 1 and second.created != first.created
    runs = rec.params("RunInstances")
    assert len(runs) == 2 and runs[0]["ClientToken"] != runs[1]["ClientToken"]
    assert running(ec2, name) == second.created
    prov.down(name)


def test_two_concurrent_runs_in_different_minutes_do_not_double(
        moto_endpoint, catalog, spec_for, ec2, name):
    """B searched before A launched (it found nothing), then launches a minute later than A:
    the same token with another expiry tag. B takes the seat A launched."""
    a, _, _ = _provider(moto_endpoint, T0)
    b, b_session, b_rec = _provider(moto_endpoint, T0 + dt.timedelta(minutes=1))
    _first_search_finds_nothing(b_session)
    res_a = launch(spec_for(ttl_seconds=3600), catalog, a)
    res_b = launch(spec_for(ttl_seconds=3600), catalog, b)
    assert running(ec2, name) == res_a.created
    assert [i.id for i in res_b.instances] == res_a.created
    [run_b] = b_rec.params("RunInstances")
    tags = {t["Key"]: t["Value"] for t in run_b["TagSpecifications"][0]["Tags"]}
    assert tags[TAG_EXPIRES] != res_a.instances[0].expires  # it was another request
    a.down(name)


def test_two_concurrent_runs_in_the_same_minute_get_one_instance(
        moto_endpoint, catalog, spec_for, ec2, name):
    a, _, _ = _provider(moto_endpoint, T0)
    b, b_session, _ = _provider(moto_endpoint, T0 + dt.timedelta(seconds=20))
    _first_search_finds_nothing(b_session)
    res_a = launch(spec_for(ttl_seconds=3600), catalog, a)
    res_b = launch(spec_for(ttl_seconds=3600), catalog, b)
    assert [i.id for i in res_b.instances] == res_a.created == running(ec2, name)
    a.down(name)


def test_a_token_whose_instance_is_no_longer_listed_moves_on(moto_endpoint, catalog, spec_for,
                                                             ec2, name):
    """A terminated instance drops out of DescribeInstances after about an hour while EC2
    keeps its token bound for a day: the token's owner is looked for a few times, then the
    next generation launches."""
    prov, session, rec = _provider(moto_endpoint, T0)
    first = launch(spec_for(ttl_seconds=3600), catalog, prov)
    ec2.terminate_instances(InstanceIds=first.created)

    def long_gone(parsed: dict[str, Any]) -> None:
        for r in parsed.get("Reservations", []):
            r["Instances"] = [i for i in r["Instances"] if i["InstanceId"] not in first.created]

    on_response(prov.client("ec2"), "ec2", "DescribeInstances", long_gone)
    prov.clock = lambda: T0 + dt.timedelta(hours=2)
    rec.calls.clear()
    second = launch(spec_for(ttl_seconds=3600), catalog, prov)
    assert len(second.created) == 1 and second.created != first.created
    tokens = [p["ClientToken"] for p in rec.params("RunInstances")]
    assert len(tokens) == 2 and len(set(tokens)) == 2
    owner_reads = [p for p in rec.params("DescribeInstances")
                   if any("terminated" in f["Values"] for f in p.get("Filters", [])
                          if f["Name"] == "instance-state-name")]
    assert len(owner_reads) == 3  # TOKEN_OWNER_READS, then it moved on
    prov.down(name)
