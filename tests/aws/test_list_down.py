"""ls from tags, down (terminate, wait, delete the group), console and catalog verify."""

from __future__ import annotations

from typing import Any

import pytest
from fakes.moto_server import inject_error

from nestcloud.catalog import parse_catalog
from nestcloud.errors import CleanupError
from nestcloud.launcher import launch


def test_list_finds_instances_by_tag_only(aws, catalog, spec_for, name, ec2):
    launch(spec_for(count=2), catalog, aws)
    # An untagged instance in the same account is not nestcloud's.
    ami, _ = aws.resolve_image(spec_for(), "us-east-1")
    ec2.run_instances(ImageId=ami, InstanceType="t3.micro", MinCount=1, MaxCount=1)
    mine = aws.list(name)
    assert [(i.name, i.seat, i.type, i.region) for i in mine] == [
        (name, 0, "c8i.large", "us-east-1"), (name, 1, "c8i.large", "us-east-1")]
    assert all(i.provider == "aws" and i.zone and i.state in ("pending", "running")
               for i in mine)
    everything = aws.list()
    assert {i.id for i in mine} <= {i.id for i in everything}
    assert all(i.name for i in everything)  # only tagged instances


def test_down_terminates_waits_deletes_the_group_and_is_harmless_twice(aws, rec, catalog,
                                                                       spec_for, name, ec2):
    res = launch(spec_for(count=2, ssh_cidr="203.0.113.0/24"), catalog, aws)
    ids = sorted(i.id for i in res.instances)
    [sg] = ec2.describe_security_groups(GroupNames=[f"nestcloud-{name}"])["SecurityGroups"]
    rec.calls.clear()

    out = aws.down(name)
    assert sorted(out.terminated) == ids and out.deleted == [sg["GroupId"]]
    assert rec.ops()[:2] == ["DescribeInstances", "TerminateInstances"]
    assert rec.ops().count("DeleteSecurityGroup") == 1
    states = {i["State"]["Name"] for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
              for i in r["Instances"]}
    assert states == {"terminated"}
    assert aws.list(name) == []
    assert ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [
        f"nestcloud-{name}"]}])["SecurityGroups"] == []

    again = aws.down(name)
    assert again.terminated == [] and again.deleted == []
    assert again.notes == [f"nothing named {name!r} in us-east-1"]


def test_relaunch_after_down_gets_new_instances(aws, catalog, spec_for, name):
    first = launch(spec_for(), catalog, aws)
    aws.down(name)
    second = launch(spec_for(), catalog, aws)
    assert second.instances[0].id != first.instances[0].id
    assert second.instances[0].state in ("pending", "running")


def test_down_retries_dependency_violation(aws, rec, catalog, spec_for, name):
    launch(spec_for(), catalog, aws)
    slept: list[float] = []
    aws.sleep = slept.append
    hits = inject_error(aws.client("ec2"), "ec2", "DeleteSecurityGroup", "DependencyViolation",
                        message="resource has a dependent object", times=2)
    out = aws.down(name)
    assert hits == [2] and slept == [1.0, 2.0]
    assert len(out.deleted) == 1
    assert rec.ops().count("DeleteSecurityGroup") == 3


def test_down_gives_up_with_cleanup_error_naming_the_group(aws, catalog, spec_for, name):
    launch(spec_for(), catalog, aws)
    aws.sg_delete_timeout_s = 0
    inject_error(aws.client("ec2"), "ec2", "DeleteSecurityGroup", "DependencyViolation")
    with pytest.raises(CleanupError) as err:
        aws.down(name)
    [gid] = err.value.leftovers
    assert gid.startswith("sg-") and f"--group-id {gid}" in (err.value.hint or "")


def test_console_reads_the_latest_output(aws, rec, catalog, spec_for):
    inst = launch(spec_for(), catalog, aws).instances[0]
    text = aws.console(inst)
    assert isinstance(text, str) and text  # the endpoint's canned serial text
    assert rec.params("GetConsoleOutput") == [{"InstanceId": inst.id, "Latest": True}]




def diffs_of(res: Any) -> list[tuple[str, str, Any, Any]]:
    return [(d.type, d.field, d.catalog, d.live) for d in res.diffs]


def test_verify_catalog_reports_every_disagreement(aws, rec, verify_yaml):
    res = aws.verify_catalog(parse_catalog(verify_yaml), "us-east-1")
    # c8i.2xlarge is catalogued for eu-west-1 only, azure types are not AWS's.
    assert res.checked == 5
    assert diffs_of(res) == [("c8i.xlarge", "vcpus", 8, 4),
                             ("c6i.large", "nesting", "nested", "none")]
    assert res.missing_live == ["c9z.large"]
    assert not res.ok
    # Asked by name only: no processor-feature filter (the local endpoint rejects it).
    assert rec.params("DescribeInstanceTypes") == [{"Filters": [{
        "Name": "instance-type",
        "Values": ["c6i.large", "c8i.large", "c8i.xlarge", "c9z.large", "m7i.metal-24xl"]}]}]


def test_verify_catalog_agrees(aws, verify_yaml):
    ok = parse_catalog(verify_yaml.split("  - {provider: aws, name: c8i.xlarge")[0])
    res = aws.verify_catalog(ok, "us-east-1")
    assert res.ok and res.checked == 1 and res.diffs == [] and res.missing_live == []
