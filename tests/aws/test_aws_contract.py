"""The shared provider contract (tests/contract.py) run against AWS on a local EC2 endpoint."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from contract import ContractTarget, ProviderContract

from nestcloud.catalog import Catalog
from nestcloud.spec import TAG_NAME, LaunchSpec


@pytest.fixture(scope="module")
def own_endpoint() -> Iterator[str]:
    """Its own server: the contract expects a world holding nothing else, so it resets it."""
    from fakes.moto_server import moto_server

    with moto_server() as url:
        yield url


class TestAwsContract(ProviderContract):
    @pytest.fixture
    def target(self, own_endpoint: str, catalog: Catalog) -> ContractTarget:
        from providers.aws import AwsProvider

        urllib.request.urlopen(urllib.request.Request(  # noqa: S310 - loopback
            f"{own_endpoint}/moto-api/reset", method="POST"), timeout=30).close()
        ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=own_endpoint)

        def make_spec(name: str, count: int) -> LaunchSpec:
            return LaunchSpec(provider="aws", type="c8i.large", region="us-east-1",
                              os="al2023", hypervisor="firecracker", name=name, count=count)

        def leftovers(name: str) -> list[str]:
            # Straight from the endpoint, not through the provider: live instances, volumes
            # and security groups carrying the name.
            tagged = [{"Name": f"tag:{TAG_NAME}", "Values": [name]}]
            out: list[Any] = [i["InstanceId"] for r in ec2.describe_instances(Filters=[
                *tagged, {"Name": "instance-state-name",
                          "Values": ["pending", "running", "stopping", "stopped"]}])[
                "Reservations"] for i in r["Instances"]]
            out += [v["VolumeId"] for v in ec2.describe_volumes(Filters=tagged)["Volumes"]]
            out += [g["GroupId"] for g in ec2.describe_security_groups(Filters=tagged)[
                "SecurityGroups"]]
            return sorted(out)

        prov = AwsProvider(region="us-east-1", endpoint_url=own_endpoint)
        return ContractTarget(provider=prov, catalog=catalog, make_spec=make_spec,
                              leftovers=leftovers)
