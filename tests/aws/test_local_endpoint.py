"""The local EC2 endpoint the sandbox and the tests use behaves as EC2 where nestcloud's
checks depend on it: the nested switch is reported back for what was launched with it, and
RunInstances honours ClientToken (moto alone does neither)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from providers.aws.requests import SSM_IMAGE_PARAMETERS


def _ami(endpoint: str) -> str:
    ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=endpoint)
    return str(ssm.get_parameter(Name=SSM_IMAGE_PARAMETERS["al2023"])["Parameter"]["Value"])


def _run(ec2: Any, ami: str, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="c8i.large")
    args.update(kw)
    return ec2.run_instances(**args)["Instances"][0]  # type: ignore[no-any-return]


def _described(ec2: Any, iid: str) -> dict[str, Any]:
    return ec2.describe_instances(InstanceIds=[iid])["Reservations"][0][  # type: ignore
        "Instances"][0]


def test_the_nested_switch_is_reported_for_what_was_launched_with_it(ec2, moto_endpoint):
    ami = _ami(moto_endpoint)
    nested = _run(ec2, ami, CpuOptions={"NestedVirtualization": "enabled"})
    plain = _run(ec2, ami)
    assert nested["CpuOptions"]["NestedVirtualization"] == "enabled"
    assert _described(ec2, nested["InstanceId"])["CpuOptions"] == {
        "NestedVirtualization": "enabled"}
    assert "NestedVirtualization" not in (_described(ec2, plain["InstanceId"]).get(
        "CpuOptions") or {})
    ec2.terminate_instances(InstanceIds=[nested["InstanceId"], plain["InstanceId"]])


def test_fleet_instances_report_the_switch_of_their_launch_template(ec2, moto_endpoint):
    ami = _ami(moto_endpoint)
    lt = ec2.create_launch_template(
        LaunchTemplateName="echo-" + ami, LaunchTemplateData={
            "ImageId": ami, "CpuOptions": {"NestedVirtualization": "enabled"}})[
        "LaunchTemplate"]["LaunchTemplateId"]
    subnet = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])[
        "Subnets"][0]["SubnetId"]
    got = ec2.create_fleet(Type="instant", LaunchTemplateConfigs=[{
        "LaunchTemplateSpecification": {"LaunchTemplateId": lt, "Version": "$Latest"},
        "Overrides": [{"InstanceType": "c8i.large", "SubnetId": subnet}]}],
        TargetCapacitySpecification={"TotalTargetCapacity": 2,
                                     "DefaultTargetCapacityType": "on-demand"})
    ids = [i for g in got["Instances"] for i in g["InstanceIds"]]
    assert len(ids) == 2
    for iid in ids:
        assert _described(ec2, iid)["CpuOptions"]["NestedVirtualization"] == "enabled"
    ec2.terminate_instances(InstanceIds=ids)
    ec2.delete_launch_template(LaunchTemplateId=lt)


def test_client_token_same_request_same_instance_other_request_mismatch(ec2, moto_endpoint,
                                                                        name):
    ami = _ami(moto_endpoint)
    first = _run(ec2, ami, ClientToken=name)
    again = _run(ec2, ami, ClientToken=name)
    assert again["InstanceId"] == first["InstanceId"]
    with pytest.raises(ClientError) as err:
        _run(ec2, ami, ClientToken=name, InstanceType="m8i.large")
    assert err.value.response["Error"]["Code"] == "IdempotentParameterMismatch"
    # Remembered after termination too: the same request answers with the dead instance.
    ec2.terminate_instances(InstanceIds=[first["InstanceId"]])
    after = _run(ec2, ami, ClientToken=name)
    assert after["InstanceId"] == first["InstanceId"]
    assert after["State"]["Name"] in ("shutting-down", "terminated")
    # Per region: the same token in another region is another request.
    west = boto3.client("ec2", region_name="us-west-2", endpoint_url=moto_endpoint)
    ssm = boto3.client("ssm", region_name="us-west-2", endpoint_url=moto_endpoint)
    w_ami = ssm.get_parameter(Name=SSM_IMAGE_PARAMETERS["al2023"])["Parameter"]["Value"]
    other = _run(west, w_ami, ClientToken=name)
    assert other["InstanceId"] != first["InstanceId"]
    west.terminate_instances(InstanceIds=[other["InstanceId"]])
