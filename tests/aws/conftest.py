"""AWS provider fixtures: a recording boto3 session against the shared local endpoint."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fakes.moto_server import Recorder, recording_session  # noqa: E402

from nestcloud.provider import UserDataEnvelope  # noqa: E402
from nestcloud.bootstrap import RenderedUserData  # noqa: E402
from nestcloud.catalog import Catalog, parse_catalog  # noqa: E402

# Sizes and features as moto 5.2.5's DescribeInstanceTypes reports them (FACTS.md).
CATALOG_YAML = """
schema_version: 1
sources:
  facts: {description: "test facts"}
types:
  - {provider: aws, name: c8i.large, family: c8i, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-11-29,
     regions: [us-east-1, eu-west-1]}
  - {provider: aws, name: m7i.metal-24xl, family: m7i, vcpus: 96, memory_gib: 384,
     arch: x86_64, cpu_vendor: intel, nesting: native, bare_metal: true, nesting_source: facts,
     verified: 2026-11-29, regions: [us-east-1]}
  - {provider: aws, name: c7g.large, family: c7g, vcpus: 2, memory_gib: 4, arch: arm64,
     cpu_vendor: amazon, nesting: none, nesting_source: facts, verified: 2026-11-29,
     regions: [us-east-1]}
"""

# c8i.xlarge has a wrong vCPU count, c6i.large cannot nest, c9z.large does not exist.
VERIFY_YAML = """
schema_version: 1
sources: {facts: {description: t}}
types:
  - {provider: aws, name: c8i.large, family: c8i, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-11-29,
     regions: [us-east-1]}
  - {provider: aws, name: c8i.xlarge, family: c8i, vcpus: 8, memory_gib: 8, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-11-29,
     regions: [us-east-1]}
  - {provider: aws, name: c6i.large, family: c6i, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-11-29,
     regions: [us-east-1]}
  - {provider: aws, name: m7i.metal-24xl, family: m7i, vcpus: 96, memory_gib: 384,
     arch: x86_64, cpu_vendor: intel, nesting: native, bare_metal: true,
     nesting_source: facts, verified: 2026-11-29, regions: [us-east-1]}
  - {provider: aws, name: c9z.large, family: c9z, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-11-29,
     regions: [us-east-1]}
  - {provider: aws, name: c8i.2xlarge, family: c8i, vcpus: 8, memory_gib: 16, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-11-29,
     regions: [eu-west-1]}
  - {provider: azure, name: Standard_D2s_v5, family: Dsv5, vcpus: 2, memory_gib: 8,
     arch: x86_64, cpu_vendor: intel, nesting: nested, nesting_source: facts,
     verified: 2026-11-29, regions: [eastus]}
"""


USER_DATA = b"#cloud-config\nruncmd:\n  - echo nestcloud-test\n"


def running(ec2: Any, name: str) -> list[str]:
    """The ids of group ``name``'s pending or running instances, as EC2 lists them."""
    from nestcloud.spec import TAG_NAME

    out = []
    for r in ec2.describe_instances(Filters=[{"Name": f"tag:{TAG_NAME}", "Values": [name]}])[
            "Reservations"]:
        out += [i["InstanceId"] for i in r["Instances"]
                if i["State"]["Name"] in ("pending", "running")]
    return sorted(out)


@pytest.fixture
def catalog() -> Catalog:
    return parse_catalog(CATALOG_YAML, "test-catalog")


@pytest.fixture
def catalog_file(tmp_path: Path) -> Path:
    p = tmp_path / "catalog.yaml"
    p.write_text(CATALOG_YAML, encoding="utf-8")
    return p


@pytest.fixture(autouse=True)
def fake_bootstrap(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The bootstrap renderer is someone else's unit: record how we call it, return a body."""
    calls: list[dict[str, Any]] = []

    def render(envelope: UserDataEnvelope, os_alias: str, hypervisor: str, *,
               provider_name: str = "", extra: str | None = None,
               l2_smoke: bool = False) -> RenderedUserData:
        calls.append({"provider": provider_name, "os": os_alias, "hypervisor": hypervisor,
                      "extra": extra, "l2_smoke": l2_smoke, "envelope": envelope})
        return RenderedUserData(kind="cloud-config", body=USER_DATA, gzipped=False)

    monkeypatch.setattr("nestcloud.bootstrap.render_user_data", render)
    return calls


@pytest.fixture
def recorded() -> tuple[Any, Recorder]:
    return recording_session()


@pytest.fixture
def aws(moto_endpoint: str, recorded: tuple[Any, Recorder]) -> Any:
    from providers.aws import AwsProvider

    prov = AwsProvider(region="us-east-1", endpoint_url=moto_endpoint, session=recorded[0])
    prov.sleep = lambda s: None
    return prov


@pytest.fixture
def rec(recorded: tuple[Any, Recorder]) -> Recorder:
    return recorded[1]


@pytest.fixture
def name() -> str:
    """A group name no other test uses: the endpoint is shared by the whole session."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def ec2(moto_endpoint: str) -> Any:
    """A plain client to look at the endpoint's world without going through nestcloud."""
    import boto3

    return boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_endpoint)


@pytest.fixture
def spec_for(name: str) -> Iterator[Any]:
    from nestcloud.spec import LaunchSpec

    def make(**kw: Any) -> LaunchSpec:
        base: dict[str, Any] = dict(provider="aws", type="c8i.large", region="us-east-1",
                                    os="al2023", hypervisor="firecracker", name=name)
        base.update(kw)
        return LaunchSpec(**base)

    yield make


@pytest.fixture
def verify_yaml() -> str:
    return VERIFY_YAML
