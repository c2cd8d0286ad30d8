"""--instance-profile on EC2, and the readiness note for a Windows L1 that has none."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nestcloud.bootstrap.profiles import NO_INSTANCE_PROFILE, TAG_L1


def tags_of(specs: list[dict[str, Any]], rtype: str) -> dict[str, str]:
    [spec] = [s for s in specs if s["ResourceType"] == rtype]
    return {t["Key"]: t["Value"] for t in spec["Tags"]}


@pytest.fixture
def profile(moto_endpoint: str, name: str) -> str:
    """An instance profile that exists at the endpoint (what an operator creates once)."""
    import boto3

    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=moto_endpoint)
    iam.create_instance_profile(InstanceProfileName=f"{name}-l1")
    return f"{name}-l1"


@pytest.fixture
def windows_image(ec2: Any) -> str:
    return str(ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"])


def _note() -> str:
    return json.dumps({"status": "not-verifiable", "reason": NO_INSTANCE_PROFILE},
                      separators=(",", ":"))


def test_fleet_template_carries_the_profile(aws, rec, catalog, spec_for, profile,
                                            windows_image):
    aws.fleet_threshold = 1
    aws.launch(spec_for(count=2, os="windows-2022", hypervisor="hyperv", image=windows_image,
                        instance_profile=profile), catalog)
    [tpl] = rec.params("CreateLaunchTemplate")
    data = tpl["LaunchTemplateData"]
    assert data["IamInstanceProfile"] == {"Name": profile}
    assert TAG_L1 not in tags_of(data["TagSpecifications"], "instance")
    assert rec.params("RunInstances") == []


def test_fleet_windows_without_profile_is_noted_on_the_instance(aws, rec, catalog, spec_for,
                                                               windows_image):
    aws.fleet_threshold = 1
    aws.launch(spec_for(count=2, os="windows-2022", hypervisor="hyperv", image=windows_image),
               catalog)
    [tpl] = rec.params("CreateLaunchTemplate")
    data = tpl["LaunchTemplateData"]
    assert "IamInstanceProfile" not in data
    assert tags_of(data["TagSpecifications"], "instance")[TAG_L1] == _note()
    assert TAG_L1 not in tags_of(data["TagSpecifications"], "volume")


def test_fleet_linux_gets_no_note(aws, rec, catalog, spec_for):
    aws.fleet_threshold = 1
    aws.launch(spec_for(count=2), catalog)
    [tpl] = rec.params("CreateLaunchTemplate")
    data = tpl["LaunchTemplateData"]
    assert "IamInstanceProfile" not in data
    assert TAG_L1 not in tags_of(data["TagSpecifications"], "instance")
