"""Scale and fault-injection fixtures: labs against the shared local EC2 endpoint, faults
injected through botocore's event hooks on the provider's own session, and a plain boto3
client (not nestcloud's code) to count what is left."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nestcloud.provider import UserDataEnvelope  # noqa: E402
from nestcloud.bootstrap import RenderedUserData  # noqa: E402
from nestcloud.catalog import Catalog, parse_catalog  # noqa: E402
from nestcloud.spec import TAG_NAME  # noqa: E402

# Made-up prices (sizes as moto reports them). Failover order for 2 vCPU / 4 GiB seats:
# us-east-1 c8i.large (0.100), us-east-1 m8i.large (0.110), us-west-2 c8i.large (0.105),
# us-west-2 m8i.large (0.115); c8i.xlarge (0.200) is over EQUIVALENT_PRICE_FACTOR x 0.100.
CATALOG_YAML = """
schema_version: 1
sources:
  facts: {description: "test facts"}
  prices: {description: "test prices", date: 2025-06-01}
types:
  - {provider: aws, name: c8i.large, family: c8i, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-11-29,
     regions: [us-east-1, us-west-2],
     prices: {us-east-1: {on_demand: 0.100, source: prices},
              us-west-2: {on_demand: 0.105, source: prices}}}
  - {provider: aws, name: m8i.large, family: m8i, vcpus: 2, memory_gib: 8, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-11-29,
     regions: [us-east-1, us-west-2],
     prices: {us-east-1: {on_demand: 0.110, source: prices},
              us-west-2: {on_demand: 0.115, source: prices}}}
  - {provider: aws, name: c8i.xlarge, family: c8i, vcpus: 4, memory_gib: 8, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-11-29,
     regions: [us-east-1], prices: {us-east-1: {on_demand: 0.200, source: prices}}}
"""

REGIONS = ("us-east-1", "us-west-2")


@pytest.fixture
def catalog() -> Catalog:
    return parse_catalog(CATALOG_YAML, "scale-catalog")


@pytest.fixture(autouse=True)
def fake_bootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    """The renderer is another unit; a fixed body keeps the requests comparable."""

    def render(envelope: UserDataEnvelope, os_alias: str, hypervisor: str, *,
               provider_name: str = "", extra: str | None = None,
               l2_smoke: bool = False) -> RenderedUserData:
        return RenderedUserData(kind="cloud-config", body=b"#cloud-config\n", gzipped=False)

    monkeypatch.setattr("nestcloud.bootstrap.render_user_data", render)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's retry machinery runs for real; only its sleep between attempts is zero and
    the adaptive rate limiter's clock runs 1000x fast (its waits shrink, its logic holds)."""
    import time

    from botocore.retries import bucket, standard

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount",
                        lambda self, context: 0.0)
    monkeypatch.setattr(bucket.Clock, "current_time", lambda self: time.monotonic() * 1000)


def lab_name() -> str:
    return "sc" + uuid.uuid4().hex[:8]


def live(endpoint: str, name: str, region: str) -> list[dict[str, Any]]:
    """Instances of ``name`` that still exist, listed with a plain boto3 client."""
    import boto3

    ec2 = boto3.client("ec2", region_name=region, endpoint_url=endpoint)
    out: list[dict[str, Any]] = []
    for page in ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": f"tag:{TAG_NAME}", "Values": [name]}]):
        for r in page["Reservations"]:
            out += [i for i in r["Instances"]
                    if i["State"]["Name"] not in ("terminated", "shutting-down")]
    return out


def leftovers(endpoint: str, name: str) -> dict[str, list[str]]:
    """Every nestcloud resource of ``name`` in every test region: instances, security
    groups, launch templates (plain boto3)."""
    import boto3

    left: dict[str, list[str]] = {}
    for region in REGIONS:
        ec2 = boto3.client("ec2", region_name=region, endpoint_url=endpoint)
        tag = [{"Name": f"tag:{TAG_NAME}", "Values": [name]}]
        ids = [i["InstanceId"] for i in live(endpoint, name, region)]
        ids += [g["GroupId"] for g in ec2.describe_security_groups(Filters=tag)
                ["SecurityGroups"]]
        ids += [t["LaunchTemplateId"] for t in ec2.describe_launch_templates(Filters=tag)
                ["LaunchTemplates"]]
        if ids:
            left[region] = ids
    return left
