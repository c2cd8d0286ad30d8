"""--instance-profile on EC2, and the readiness note for a Windows L1 that has none."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nestcloud.provider import LaunchRequest
from nestcloud.bootstrap.profiles import TAG_L1
from providers.aws.requests import NO_INSTANCE_PROFILE


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
    aws.launch(LaunchRequest(spec_for(count=2, os="windows-2022", hypervisor="hyperv", image=windows_image,
                        instance_profile=profile), catalog)).result
    [tpl] = rec.params("CreateLaunchTemplate")
    data = tpl["LaunchTemplateData"]
    assert data["IamInstanceProfile"] == {"Name": profile}
    assert TAG_L1 not in tags_of(data["TagSpecifications"], "instance")
    assert rec.params("RunInstances") == []


def test_fleet_windows_without_profile_is_noted_on_the_instance(aws, rec, catalog, spec_for,
                                                               windows_image):
    aws.fleet_threshold = 1
    aws.launch(LaunchRequest(spec_for(count=2, os="windows-2022", hypervisor="hyperv", image=windows_image),
               catalog)).result
    [tpl] = rec.params("CreateLaunchTemplate")
    data = tpl["LaunchTemplateData"]
    assert "IamInstanceProfile" not in data
    assert tags_of(data["TagSpecifications"], "instance")[TAG_L1] == _note()
    assert TAG_L1 not in tags_of(data["TagSpecifications"], "volume")


def test_fleet_linux_gets_no_note(aws, rec, catalog, spec_for):
    aws.fleet_threshold = 1
    aws.launch(LaunchRequest(spec_for(count=2), catalog)).result
    [tpl] = rec.params("CreateLaunchTemplate")
    data = tpl["LaunchTemplateData"]
    assert "IamInstanceProfile" not in data
    assert TAG_L1 not in tags_of(data["TagSpecifications"], "instance")


# -- RunInstances path (seat by seat) --------------------------------------------------------


def test_run_instances_sends_the_profile_and_no_note(aws, rec, catalog, spec_for, profile,
                                                     windows_image):
    res = aws.launch(LaunchRequest(spec_for(os="windows-2022", hypervisor="hyperv", image=windows_image,
                              instance_profile=profile), catalog)).result
    [run] = rec.params("RunInstances")
    assert run["IamInstanceProfile"] == {"Name": profile}
    assert TAG_L1 not in tags_of(run["TagSpecifications"], "instance")
    assert NO_INSTANCE_PROFILE not in res.notes


def test_windows_without_profile_is_noted_and_wait_says_why(aws, rec, catalog, spec_for,
                                                            windows_image):
    from nestcloud.bootstrap.wait import wait_for_ready

    res = aws.launch(LaunchRequest(spec_for(os="windows-2022", hypervisor="hyperv", image=windows_image),
                     catalog)).result
    [run] = rec.params("RunInstances")
    assert "IamInstanceProfile" not in run
    assert tags_of(run["TagSpecifications"], "instance")[TAG_L1] == _note()
    assert TAG_L1 not in tags_of(run["TagSpecifications"], "volume")
    assert NO_INSTANCE_PROFILE in res.notes
    # The waiter reads the note back from the instance's tags: no 600 s timeout.
    t = [0.0]
    report = wait_for_ready(aws, res.instances, timeout_s=600, interval_s=10,
                            clock=lambda: t[0], sleep=lambda s: t.__setitem__(0, t[0] + s))
    [r] = report.instances
    assert (r.status, r.source, r.message) == ("not-verifiable", "tag", NO_INSTANCE_PROFILE)
    assert t[0] == 0.0


def test_linux_without_profile_gets_no_note(aws, rec, catalog, spec_for):
    res = aws.launch(LaunchRequest(spec_for(), catalog)).result
    [run] = rec.params("RunInstances")
    assert "IamInstanceProfile" not in run
    assert TAG_L1 not in tags_of(run["TagSpecifications"], "instance")
    assert NO_INSTANCE_PROFILE not in res.notes


def test_dry_run_shows_the_profile(aws, catalog, spec_for, profile):
    res = aws.launch(LaunchRequest(spec_for(instance_profile=profile), catalog, dry_run=True)).result
    [req] = [r for r in res.requests if r.operation == "RunInstances"]
    assert req.params["IamInstanceProfile"] == {"Name": profile}


def test_cli_dry_run_json_sends_the_profile(moto_endpoint, catalog_file, name, profile):
    from typer.testing import CliRunner

    from nestcloud.cli import app

    res = CliRunner().invoke(app, [
        "launch", "-p", "aws", "-t", "c8i.large", "--region", "us-east-1", "--os", "al2023",
        "--hypervisor", "firecracker", "--name", name, "--instance-profile", profile,
        "--dry-run", "--json", "--catalog", str(catalog_file)],
        env={"AWS_ENDPOINT_URL": moto_endpoint, "NESTCLOUD_DEBUG": ""})
    assert res.exit_code == 0, res.stderr
    [req] = [r for r in json.loads(res.stdout)["requests"] if r["operation"] == "RunInstances"]
    assert req["params"]["IamInstanceProfile"] == {"Name": profile}


def test_cli_bad_profile_name_is_exit_2(moto_endpoint, catalog_file):
    from typer.testing import CliRunner

    from nestcloud.cli import app

    res = CliRunner().invoke(app, [
        "launch", "-p", "aws", "-t", "c8i.large", "--region", "us-east-1",
        "--instance-profile", "no spaces", "--catalog", str(catalog_file)],
        env={"AWS_ENDPOINT_URL": moto_endpoint, "NESTCLOUD_DEBUG": ""})
    assert res.exit_code == 2
    # pydantic's "Value error, " prefix is not part of the message (one formatter: _yamlio).
    assert res.stderr == ("error: --instance-profile 'no spaces': an IAM instance profile name "
                          "is 1-128 characters: letters, digits and + = , . @ _ -\n")
