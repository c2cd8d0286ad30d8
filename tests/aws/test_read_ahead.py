"""What a launch reads, and what it does not read twice: the facts kept in the cache
directory (caller ARN, image and type descriptions, the SSM image alias for a while), the
answers a lab reads ahead (prefetch) and its own search for its seats (list after prefetch)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from fakes.moto_server import Recorder

from nestcloud.launcher import launch
from nestcloud.spec import TAG_OWNER
from providers.aws import AwsProvider
from providers.aws.provider import ALIAS_TTL_S
from providers.aws.requests import SSM_IMAGE_PARAMETERS

ARN = "arn:aws:sts::123456789012:user/moto"
FACT_READS = ("GetCallerIdentity", "GetParameter", "DescribeImages", "DescribeInstanceTypes")


def owner_tag(rec: Recorder) -> str:
    run = rec.params("RunInstances")[-1]
    [inst] = [t for t in run["TagSpecifications"] if t["ResourceType"] == "instance"]
    return {t["Key"]: t["Value"] for t in inst["Tags"]}[TAG_OWNER]


def cache_files(kind: str) -> list[Path]:
    return sorted((Path(os.environ["NESTCLOUD_STATE_DIR"]) / "cache").glob(f"aws-{kind}-*"))


def provider(endpoint: str, rec: Recorder, key: str = "testing") -> AwsProvider:
    """A provider whose session signs with access key ``key``, recorded into ``rec``."""
    s = boto3.Session(aws_access_key_id=key, aws_secret_access_key="testing",
                      region_name="us-east-1")
    s.events.register("provide-client-params.*.*", rec)
    return AwsProvider(region="us-east-1", endpoint_url=endpoint, session=s)


def settle() -> None:
    """Wait for the reads prefetch() started (its worker threads end once they are done)."""
    for t in threading.enumerate():
        if t.name.startswith("nestcloud-ahead"):
            t.join(timeout=30)


def test_a_second_launch_reads_the_facts_from_the_cache(aws, rec, catalog, spec_for, name):
    first = launch(spec_for(), catalog, aws)
    for op in FACT_READS:
        assert rec.ops().count(op) == 1, op
    assert owner_tag(rec) == ARN
    rec.calls.clear()

    second = launch(spec_for(name=name + "b"), catalog, aws)
    assert not set(FACT_READS) & set(rec.ops())
    # Still live: the seats, the network, the group and the launch itself.
    assert {"DescribeInstances", "DescribeSubnets", "CreateSecurityGroup",
            "RunInstances"} <= set(rec.ops())
    assert owner_tag(rec) == ARN
    assert second.instances[0].id != first.instances[0].id
    image = next(n for n in second.notes if n.startswith("image "))
    assert image.endswith(f"{SSM_IMAGE_PARAMETERS['al2023']}, as read in the last "
                          f"{ALIAS_TTL_S / 60:g} minutes)")
    # The files name no key: only hashes of it.
    for f in cache_files("*"):
        assert "testing" not in f.read_text(encoding="utf-8").split("\n", 1)[0]


def test_cache_off_reads_every_fact_live(aws, rec, catalog, spec_for, name,
                                         monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NESTCLOUD_CACHE_DIR", "off")
    launch(spec_for(), catalog, aws)
    launch(spec_for(name=name + "b"), catalog, aws)
    for op in FACT_READS:
        assert rec.ops().count(op) == 2, op


def test_facts_are_kept_per_access_key(moto_endpoint, catalog, spec_for, name):
    rec = Recorder()
    launch(spec_for(), catalog, provider(moto_endpoint, rec, key="AKIAFIRSTKEY"))
    launch(spec_for(name=name + "b"), catalog, provider(moto_endpoint, rec, key="AKIAOTHERKEY"))
    # Another key may be another principal (and see other images): everything asked again.
    for op in FACT_READS:
        assert rec.ops().count(op) == 2, op


def test_an_expired_alias_is_read_again_but_the_image_is_not(aws, rec, catalog, spec_for,
                                                            name):
    launch(spec_for(), catalog, aws)
    [alias] = cache_files("alias")
    old = time.time() - ALIAS_TTL_S - 5
    os.utime(alias, (old, old))
    rec.calls.clear()
    res = launch(spec_for(name=name + "b"), catalog, aws)
    assert rec.ops().count("GetParameter") == 1
    assert "DescribeImages" not in rec.ops()  # the same AMI: its description is kept a day
    assert any(n.endswith(f"(SSM parameter {SSM_IMAGE_PARAMETERS['al2023']})") for n in res.notes)


def test_a_damaged_entry_is_read_again(aws, rec, catalog, spec_for, name):
    launch(spec_for(), catalog, aws)
    [identity] = cache_files("identity")
    head, _ = identity.read_bytes().split(b"\n", 1)
    identity.write_bytes(head + b"\narn:aws:iam::999999999999:user/mallory")
    rec.calls.clear()
    launch(spec_for(name=name + "b"), catalog, aws)
    assert rec.ops().count("GetCallerIdentity") == 1
    assert owner_tag(rec) == ARN


def test_a_type_the_region_does_not_offer_is_asked_every_time(aws, rec):
    assert aws.describe_type("c9z.large", "us-east-1") is None
    assert aws.describe_type("c9z.large", "us-east-1") is None
    assert rec.ops().count("DescribeInstanceTypes") == 2
    assert cache_files("type") == []


def test_prefetched_answers_are_taken_once(aws, rec, catalog, spec_for, name,
                                           monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NESTCLOUD_CACHE_DIR", "off")
    aws.prefetch(spec_for())
    launch(spec_for(), catalog, aws)
    for op in FACT_READS:
        assert rec.ops().count(op) == 1, op
    # Taken: a launch right after reads for itself again.
    launch(spec_for(), catalog, aws)
    for op in FACT_READS:
        assert rec.ops().count(op) == 2, op


def test_a_prefetch_for_other_arguments_or_too_old_is_not_used(
        aws, rec, catalog, spec_for, name, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NESTCLOUD_CACHE_DIR", "off")
    aws.prefetch(spec_for(type="m7i.metal-24xl"))
    monkeypatch.setattr("providers.aws.provider.AHEAD_TTL_S", -1.0)
    launch(spec_for(), catalog, aws)
    settle()
    asked = [p["Filters"][0]["Values"] for p in rec.params("DescribeInstanceTypes")]
    assert sorted(n for names in asked for n in names) == [
        "c8i.large", "m7i.metal-24xl"]
    # The image and the caller were prefetched for the same arguments, but too long ago.
    assert rec.ops().count("GetParameter") == 2
    assert rec.ops().count("GetCallerIdentity") == 2


def test_a_prefetch_error_is_raised_by_the_launch_that_takes_it(
        aws, rec, catalog, spec_for, monkeypatch: pytest.MonkeyPatch):
    from nestcloud.errors import ProviderError

    def broken(self: Any, region: str) -> Any:
        raise ProviderError("no default VPC in us-east-1 (injected)", provider="aws")

    monkeypatch.setattr(AwsProvider, "default_network", broken)
    aws.prefetch(spec_for())  # returns at once; the error waits in its answer
    with pytest.raises(ProviderError, match="injected"):
        launch(spec_for(), catalog, aws)
    assert not {"CreateSecurityGroup", "RunInstances"} & set(rec.ops())


def test_a_listing_kept_for_a_launch_is_dropped_by_down(aws, rec, catalog, spec_for, name):
    # prefetch(spec) marks the name: its next list() is kept for the launch plan (a lab's
    # search right before it launches the missing seats).
    aws.prefetch(spec_for())
    assert aws.list(name) == []
    first = launch(spec_for(), catalog, aws)
    searches = rec.ops().count("DescribeInstances")
    aws.prefetch(spec_for())
    assert [i.id for i in aws.list(name)] == [first.instances[0].id]
    aws.down(name)
    second = launch(spec_for(), catalog, aws)
    # down dropped the kept listing: the launch looked again and replaced the seat.
    assert second.created and second.instances[0].id != first.instances[0].id
    assert rec.ops().count("DescribeInstances") > searches + 2


def test_a_miss_prunes_entries_past_their_age(aws, catalog, spec_for, name):
    launch(spec_for(), catalog, aws)
    [fresh] = cache_files("type")
    fresh.unlink()  # the next launch misses the type and writes it again
    stale = fresh.with_name("aws-type-00000000000000000000.json")
    stale.write_text("x", encoding="utf-8")
    old = time.time() - 2 * 24 * 3600
    os.utime(stale, (old, old))
    launch(spec_for(name=name + "b"), catalog, aws)
    assert not stale.exists()
    assert len(cache_files("type")) == 1 and len(cache_files("identity")) == 1


def test_facts_are_kept_per_endpoint_from_the_environment(moto_endpoint, catalog, spec_for,
                                                         name,
                                                         monkeypatch: pytest.MonkeyPatch):
    """boto3 also reads AWS_ENDPOINT_URL: answers from one endpoint never serve another."""
    rec = Recorder()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    s = boto3.Session(region_name="us-east-1")
    s.events.register("provide-client-params.*.*", rec)
    launch(spec_for(), catalog, AwsProvider(region="us-east-1", session=s, sandbox=True))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint + "/")  # another endpoint's name
    launch(spec_for(name=name + "b"), catalog,
           AwsProvider(region="us-east-1", session=s, sandbox=True))
    assert rec.ops().count("GetCallerIdentity") == 2
