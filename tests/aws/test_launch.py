"""Launch against the local EC2 endpoint: what we send, what exists afterwards."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import pytest
from fakes.moto_server import on_response

from nestcloud.errors import InputError, ProviderError, RefusedError, UnsupportedError
from nestcloud.launcher import launch
from nestcloud.spec import TAG_EXPIRES, TAG_NAME, TAG_OWNER, TAG_SEAT
from providers.aws import AwsProvider
from providers.aws.requests import SSM_IMAGE_PARAMETERS, client_token

AL2023 = SSM_IMAGE_PARAMETERS["al2023"]
WRITE_OPS = {"RunInstances", "CreateSecurityGroup", "AuthorizeSecurityGroupIngress",
             "CreateTags", "TerminateInstances", "DeleteSecurityGroup"}


def tags_of(spec_list: list[dict[str, Any]], rtype: str) -> dict[str, str]:
    [ts] = [t for t in spec_list if t["ResourceType"] == rtype]
    return {t["Key"]: t["Value"] for t in ts["Tags"]}


def test_nested_launch_sends_the_switch_imdsv2_encryption_and_tags(aws, rec, catalog, spec_for,
                                                                   ec2, name, fake_bootstrap):
    res = launch(spec_for(tags={"team": "infra"}), catalog, aws)

    [run] = rec.params("RunInstances")
    assert run["CpuOptions"] == {"NestedVirtualization": "enabled"}
    assert run["MetadataOptions"] == {"HttpTokens": "required", "HttpEndpoint": "enabled",
                                      "HttpPutResponseHopLimit": 1}
    assert run["BlockDeviceMappings"] == [{"DeviceName": "/dev/xvda", "Ebs": {
        "VolumeSize": 30, "VolumeType": "gp3", "Encrypted": True, "DeleteOnTermination": True}}]
    assert run["UserData"] == b"#cloud-config\nruncmd:\n  - echo nestcloud-test\n"
    assert fake_bootstrap == [{"provider": "aws", "os": "al2023", "hypervisor": "firecracker",
                               "extra": None, "l2_smoke": False,
                               # the envelope EC2 declares is what the renderer fits to
                               "envelope": AwsProvider.capabilities.user_data}]
    assert "InstanceInitiatedShutdownBehavior" not in run
    assert "InstanceMarketOptions" not in run
    for rtype in ("instance", "volume"):
        tags = tags_of(run["TagSpecifications"], rtype)
        assert tags[TAG_NAME] == name
        assert tags[TAG_OWNER] == "arn:aws:sts::123456789012:user/moto"
        assert tags[TAG_SEAT] == "0"
        assert tags["team"] == "infra"
        assert TAG_EXPIRES not in tags
    # The image came from the AL2023 SSM parameter, as the endpoint answers it.
    [ssm] = rec.params("GetParameter")
    assert ssm == {"Name": AL2023}

    assert [i.seat for i in res.instances] == [0]
    inst = res.instances[0]
    # The endpoint reports the switch back as EC2 does (tests/fakes): confirmed, no note.
    assert inst.state in ("pending", "running") and inst.name == name and inst.nested is True
    assert res.created == [inst.id] and res.reused == []  # instances only
    assert not any("not reported" in n or "not verified" in n for n in res.notes)

    # What exists at the endpoint: an encrypted gp3 volume with the same tags.
    [vol] = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id",
                                           "Values": [inst.id]}])["Volumes"]
    assert vol["Encrypted"] is True and vol["VolumeType"] == "gp3"
    assert {t["Key"]: t["Value"] for t in vol["Tags"]}[TAG_NAME] == name
    raw = ec2.describe_instances(InstanceIds=[inst.id])["Reservations"][0]["Instances"][0]
    assert raw["MetadataOptions"]["HttpTokens"] == "required"


def test_metal_launch_sends_no_cpu_options(aws, rec, catalog, spec_for):
    res = launch(spec_for(type="m7i.metal-24xl"), catalog, aws)
    [run] = rec.params("RunInstances")
    assert "CpuOptions" not in run
    assert run["InstanceType"] == "m7i.metal-24xl"
    assert not any("not reported" in n for n in res.notes)  # nothing to confirm on metal


def test_ttl_terminates_on_shutdown_and_tags_expiry(aws, rec, catalog, spec_for, ec2):
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    res = launch(spec_for(ttl_seconds=4 * 3600), catalog, aws)
    after = dt.datetime.now(dt.timezone.utc)
    [run] = rec.params("RunInstances")
    assert run["InstanceInitiatedShutdownBehavior"] == "terminate"
    for rtype in ("instance", "volume"):
        expires = tags_of(run["TagSpecifications"], rtype)[TAG_EXPIRES]
        assert expires.endswith("Z")
        at = dt.datetime.fromisoformat(expires.replace("Z", "+00:00"))
        # Rounded up to the minute (same-minute runs send identical requests): never shorter.
        assert before + dt.timedelta(hours=4) <= at <= after + dt.timedelta(hours=4, minutes=1)
        assert at.second == 0
    iid = res.instances[0].id
    attr = ec2.describe_instance_attribute(InstanceId=iid,
                                           Attribute="instanceInitiatedShutdownBehavior")
    assert attr["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    assert res.instances[0].expires == tags_of(run["TagSpecifications"], "instance")[TAG_EXPIRES]


def test_spot_uses_instance_market_options(aws, rec, catalog, spec_for):
    launch(spec_for(spot=True), catalog, aws)
    [run] = rec.params("RunInstances")
    assert run["InstanceMarketOptions"] == {
        "MarketType": "spot",
        "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior":
                        "terminate"}}


def test_security_group_has_no_inbound_by_default(aws, rec, catalog, spec_for, ec2, name):
    res = launch(spec_for(), catalog, aws)
    [sg] = ec2.describe_security_groups(GroupNames=[f"nestcloud-{name}"])["SecurityGroups"]
    assert sg["IpPermissions"] == []
    assert {t["Key"]: t["Value"] for t in sg["Tags"]}[TAG_NAME] == name
    assert (f"created security group {sg['GroupId']} (nestcloud-{name}): no inbound rule"
            in res.notes)
    [run] = rec.params("RunInstances")
    assert run["SecurityGroupIds"] == [sg["GroupId"]]
    assert "AuthorizeSecurityGroupIngress" not in rec.ops()


def test_first_launch_takes_the_group_id_from_create(aws, rec, catalog, spec_for, ec2, name):
    launch(spec_for(), catalog, aws)
    assert "DescribeSecurityGroups" not in rec.ops()
    [sg] = ec2.describe_security_groups(GroupNames=[f"nestcloud-{name}"])["SecurityGroups"]
    assert rec.params("RunInstances")[0]["SecurityGroupIds"] == [sg["GroupId"]]


def test_rerun_takes_the_group_from_its_running_seats(aws, rec, catalog, spec_for, ec2, name):
    launch(spec_for(count=1), catalog, aws)
    rec.calls.clear()
    launch(spec_for(count=2), catalog, aws)
    assert "CreateSecurityGroup" not in rec.ops()
    assert "DescribeSecurityGroups" not in rec.ops()
    [sg] = ec2.describe_security_groups(GroupNames=[f"nestcloud-{name}"])["SecurityGroups"]
    assert rec.params("RunInstances")[0]["SecurityGroupIds"] == [sg["GroupId"]]


def test_a_left_over_group_without_seats_is_reused(aws, rec, catalog, spec_for, ec2, name):
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    gid = ec2.create_security_group(
        GroupName=f"nestcloud-{name}", Description="left over", VpcId=vpc["VpcId"],
        TagSpecifications=[{"ResourceType": "security-group",
                            "Tags": [{"Key": TAG_NAME, "Value": name}]}])["GroupId"]
    res = launch(spec_for(), catalog, aws)
    assert rec.ops().count("CreateSecurityGroup") == 1  # answered InvalidGroup.Duplicate
    assert rec.params("RunInstances")[0]["SecurityGroupIds"] == [gid]
    assert not any(n.startswith("created security group") for n in res.notes)


def test_a_same_named_group_nestcloud_did_not_make_is_refused(aws, rec, catalog, spec_for,
                                                               ec2, name):
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    ec2.create_security_group(GroupName=f"nestcloud-{name}", Description="someone else's",
                              VpcId=vpc["VpcId"])
    with pytest.raises(ProviderError) as err:
        launch(spec_for(), catalog, aws)
    assert str(err.value).startswith(f"security group nestcloud-{name} exists in "
                                     f"{vpc['VpcId']} without the {TAG_NAME}={name} tag")
    assert "RunInstances" not in rec.ops()


def test_ssh_cidr_opens_port_22_from_that_network_only(aws, rec, catalog, spec_for, ec2, name):
    launch(spec_for(ssh_cidr="203.0.113.7/32"), catalog, aws)
    [sg] = ec2.describe_security_groups(GroupNames=[f"nestcloud-{name}"])["SecurityGroups"]
    [perm] = sg["IpPermissions"]
    assert (perm["IpProtocol"], perm["FromPort"], perm["ToPort"]) == ("tcp", 22, 22)
    assert [r["CidrIp"] for r in perm["IpRanges"]] == ["203.0.113.7/32"]


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0"])
def test_world_ssh_refused_before_anything_is_sent(aws, rec, catalog, spec_for, cidr):
    with pytest.raises(InputError) as err:
        launch(spec_for(ssh_cidr=cidr), catalog, aws)
    assert err.value.exit_code == 2
    assert str(err.value).startswith(f"--ssh-cidr {cidr!r} opens SSH to the whole internet")
    assert rec.calls == []


def test_world_ssh_allowed_when_asked(aws, rec, catalog, spec_for):
    launch(spec_for(ssh_cidr="0.0.0.0/0", allow_world_ssh=True), catalog, aws)
    [auth] = rec.params("AuthorizeSecurityGroupIngress")
    assert auth["IpPermissions"][0]["IpRanges"][0]["CidrIp"] == "0.0.0.0/0"


def test_refused_launch_sends_nothing(aws, rec, catalog, spec_for):
    with pytest.raises(RefusedError) as err:
        launch(spec_for(type="c7g.large"), catalog, aws)
    assert err.value.exit_code == 3
    assert "arm64" in str(err.value) and "nothing was created" in str(err.value)
    assert err.value.findings
    assert rec.calls == []


def test_rerun_reconciles_and_launches_only_missing_seats(aws, rec, catalog, spec_for, name):
    first = launch(spec_for(count=2), catalog, aws)
    assert sorted(i.seat for i in first.instances) == [0, 1]
    assert len(rec.params("RunInstances")) == 2

    rec.calls.clear()
    again = launch(spec_for(count=2), catalog, aws)
    assert rec.params("RunInstances") == []
    assert "CreateSecurityGroup" not in rec.ops()
    assert sorted(again.reused) == sorted(i.id for i in first.instances)
    assert again.created == []

    rec.calls.clear()
    grown = launch(spec_for(count=3), catalog, aws)
    [run] = rec.params("RunInstances")
    assert tags_of(run["TagSpecifications"], "instance")[TAG_SEAT] == "2"
    assert sorted(i.seat for i in grown.instances) == [0, 1, 2]
    assert len(grown.created) == 1 and len(grown.reused) == 2
    assert len(aws.list(name)) == 3


def test_rerun_with_another_type_is_refused(aws, catalog, spec_for, name):
    launch(spec_for(), catalog, aws)
    with pytest.raises(InputError, match=f"'{name}' already runs c8i.large"):
        launch(spec_for(type="m7i.metal-24xl"), catalog, aws)


def test_client_token_is_deterministic_per_seat_and_spec(aws, rec, catalog, spec_for, name):
    a = launch(spec_for(count=2), catalog, aws, dry_run=True)
    b = launch(spec_for(count=2), catalog, aws, dry_run=True)
    tok_a = [r.params["ClientToken"] for r in a.requests if r.operation == "RunInstances"]
    tok_b = [r.params["ClientToken"] for r in b.requests if r.operation == "RunInstances"]
    assert tok_a == tok_b and len(set(tok_a)) == 2
    assert all(t.startswith("nc-") and len(t) <= 64 for t in tok_a)
    c = launch(spec_for(count=2, disk_gib=40), catalog, aws, dry_run=True)
    tok_c = [r.params["ClientToken"] for r in c.requests if r.operation == "RunInstances"]
    assert set(tok_c).isdisjoint(tok_a)  # a different request never reuses a token

    # Pure function: every input moves the token.
    base = client_token("lab", 0, "c8i.large", "us-east-1", "d1")
    assert base == client_token("lab", 0, "c8i.large", "us-east-1", "d1")
    others = {client_token("lab", 1, "c8i.large", "us-east-1", "d1"),
              client_token("lab2", 0, "c8i.large", "us-east-1", "d1"),
              client_token("lab", 0, "m8i.large", "us-east-1", "d1"),
              client_token("lab", 0, "c8i.large", "eu-west-1", "d1"),
              client_token("lab", 0, "c8i.large", "us-east-1", "d2"),
              client_token("lab", 0, "c8i.large", "us-east-1", "d1", generation=1)}
    assert base not in others and len(others) == 6


def test_token_bound_to_a_terminated_instance_moves_to_the_next_generation(
        aws, rec, catalog, spec_for, recorded):
    session, _ = recorded
    answered = [0]

    def replay_terminated(parsed: dict[str, Any]) -> None:
        # AWS answers a reused ClientToken with the original (now terminated) instance.
        if answered[0] == 0:
            parsed["Instances"][0]["State"] = {"Code": 48, "Name": "terminated"}
        answered[0] += 1

    on_response(session, "ec2", "RunInstances", replay_terminated)
    res = launch(spec_for(), catalog, aws)
    runs = rec.params("RunInstances")
    assert len(runs) == 2
    assert runs[0]["ClientToken"] != runs[1]["ClientToken"]
    assert len(res.instances) == 1 and res.instances[0].state in ("pending", "running")


def test_dry_run_sends_no_write_and_prints_the_exact_requests(aws, rec, catalog, spec_for,
                                                              name, ec2):
    res = launch(spec_for(count=2, ssh_cidr="198.51.100.0/24", ttl_seconds=3600), catalog, aws,
                 dry_run=True)
    assert WRITE_OPS.isdisjoint(rec.ops())
    assert res.dry_run and res.created == [] and res.instances == []
    assert [r.operation for r in res.requests] == [
        "CreateSecurityGroup", "AuthorizeSecurityGroupIngress", "RunInstances", "RunInstances"]
    run = res.requests[2].params
    assert run["CpuOptions"] == {"NestedVirtualization": "enabled"}
    assert run["SecurityGroupIds"] == ["<new group>"]
    assert base64.b64decode(run["UserData"]) == b"#cloud-config\nruncmd:\n  - echo nestcloud-test\n"
    assert res.requests[0].params["GroupName"] == f"nestcloud-{name}"
    assert ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [
        f"nestcloud-{name}"]}])["SecurityGroups"] == []


def test_api_wins_over_catalog_and_user_is_told(aws, rec, spec_for):
    from nestcloud.catalog import parse_catalog

    # A stale catalog that calls c8i.large bare metal: the live API says nested.
    stale = parse_catalog("""
schema_version: 1
sources: {facts: {description: t}}
types:
  - {provider: aws, name: c8i.large, family: c8i, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: native, bare_metal: true, nesting_source: facts,
     verified: 2026-11-29, regions: [us-east-1]}
  - {provider: aws, name: c6i.large, family: c6i, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-11-29,
     regions: [us-east-1]}
""")
    res = launch(spec_for(), stale, aws)
    [run] = rec.params("RunInstances")
    assert run["CpuOptions"] == {"NestedVirtualization": "enabled"}
    told = ("catalog says c8i.large is 'native' but the live API reports nested-virtualization: "
            "sending the nested switch (the API wins)")
    assert told in res.notes  # the CLI prints every note on stderr (tests/aws/test_cli.py)

    rec.calls.clear()
    with pytest.raises(RefusedError, match="c6i.large.*neither bare metal nor "
                                           "nested-virtualization") as err:
        launch(spec_for(type="c6i.large", name="other-" + spec_for().name), stale, aws)
    assert err.value.exit_code == 3
    assert "RunInstances" not in rec.ops() and "CreateSecurityGroup" not in rec.ops()


def _instances(parsed: dict[str, Any]) -> list[dict[str, Any]]:
    """The instances of a RunInstances or DescribeInstances answer."""
    return [*parsed.get("Instances", []),
            *(i for r in parsed.get("Reservations", []) for i in r["Instances"])]


def test_readback_disabled_terminates_and_fails_loudly(aws, rec, catalog, spec_for, recorded,
                                                       ec2, name):
    session, _ = recorded

    def disabled(parsed: dict[str, Any]) -> None:
        for i in _instances(parsed):
            i["CpuOptions"] = {"NestedVirtualization": "disabled"}

    for op in ("RunInstances", "DescribeInstances"):
        on_response(session, "ec2", op, disabled)
    with pytest.raises(UnsupportedError, match="NestedVirtualization = disabled") as err:
        launch(spec_for(), catalog, aws)
    assert err.value.exit_code == 1
    [term] = rec.params("TerminateInstances")
    state = ec2.describe_instances(InstanceIds=term["InstanceIds"])["Reservations"][0][
        "Instances"][0]["State"]["Name"]
    assert state in ("shutting-down", "terminated")


def test_missing_ssm_parameter_names_it(aws, rec, catalog, spec_for):
    with pytest.raises(ProviderError) as err:
        launch(spec_for(os="ubuntu-24.04", hypervisor="kvm"), catalog, aws)
    param = SSM_IMAGE_PARAMETERS["ubuntu-24.04"]
    assert str(err.value).startswith(f"no image for --os ubuntu-24.04 in us-east-1: the public "
                                     f"SSM parameter {param} does not exist there")
    assert "--os al2023" in (err.value.hint or "")
    assert "RunInstances" not in rec.ops()


def test_unknown_image_is_bad_input(aws, catalog, spec_for):
    with pytest.raises(InputError, match="image 'ami-00000000000000000' does not exist in "
                                         "us-east-1"):
        launch(spec_for(image="ami-00000000000000000"), catalog, aws)


def test_explicit_image_skips_ssm(aws, rec, catalog, spec_for, moto_endpoint):
    import boto3

    ssm = boto3.client("ssm", region_name="us-east-1", endpoint_url=moto_endpoint)
    ami = ssm.get_parameter(Name=SSM_IMAGE_PARAMETERS["al2023"])["Parameter"]["Value"]
    launch(spec_for(image=ami), catalog, aws)
    assert "GetParameter" not in rec.ops()
    assert rec.params("RunInstances")[0]["ImageId"] == ami


def test_rhel_without_an_image_says_what_it_searched(aws, rec, catalog, spec_for):
    # The endpoint holds no RHEL-9 image from Red Hat's account.
    with pytest.raises(ProviderError) as err:
        launch(spec_for(os="rhel-9", hypervisor="kvm"), catalog, aws)
    assert err.value.message == ("no image for --os rhel-9 in us-east-1: DescribeImages "
                              "(owner 309956199498, name RHEL-9.*) found none")
    [search] = [p for p in rec.params("DescribeImages") if "Owners" in p]
    assert search == {"Owners": ["309956199498"], "Filters": [
        {"Name": "name", "Values": ["RHEL-9.*"]},
        {"Name": "architecture", "Values": ["x86_64"]},
        {"Name": "state", "Values": ["available"]}]}


def test_rhel_picks_the_newest_red_hat_image(aws, rec, catalog, spec_for, recorded,
                                             moto_endpoint):
    import boto3

    session, _ = recorded
    ami = boto3.client("ssm", region_name="us-east-1", endpoint_url=moto_endpoint).get_parameter(
        Name=SSM_IMAGE_PARAMETERS["al2023"])["Parameter"]["Value"]

    def red_hat_images(parsed: dict[str, Any]) -> None:
        if parsed.get("Images") == []:  # only the owner search comes back empty here
            parsed["Images"] = [
                {"ImageId": "ami-0old0000000000000", "CreationDate": "2024-01-01T00:00:00Z"},
                {"ImageId": ami, "CreationDate": "2026-06-01T00:00:00Z"},
                {"ImageId": "ami-0mid0000000000000", "CreationDate": "2025-01-01T00:00:00Z"}]

    on_response(session, "ec2", "DescribeImages", red_hat_images)
    res = launch(spec_for(os="rhel-9", hypervisor="kvm"), catalog, aws)
    assert rec.params("RunInstances")[0]["ImageId"] == ami
    assert f"image {ami} (newest RHEL-9.* from owner 309956199498)" in res.notes


def test_no_default_vpc_is_a_clear_error(aws, rec, catalog, spec_for, recorded):
    session, _ = recorded
    # No default VPC means no default subnets either (they live only in it).
    on_response(session, "ec2", "DescribeSubnets", lambda parsed: parsed.update(Subnets=[]))
    with pytest.raises(ProviderError) as err:
        launch(spec_for(), catalog, aws)
    assert str(err.value).startswith("no default VPC in us-east-1")
    assert "aws ec2 create-default-vpc --region us-east-1" in (err.value.hint or "")
    assert "RunInstances" not in rec.ops()


def test_user_data_over_16k_is_refused(aws, rec, catalog, spec_for, monkeypatch):
    from nestcloud.bootstrap import RenderedUserData

    monkeypatch.setattr("nestcloud.bootstrap.render_user_data",
                        lambda *a, **k: RenderedUserData("cloud-config", b"x" * 16385, False))
    with pytest.raises(InputError, match="16385 bytes after rendering; EC2 accepts at most "
                                         "16384"):
        launch(spec_for(), catalog, aws)
    assert "RunInstances" not in rec.ops()


def test_public_ip_and_key_name(aws, rec, catalog, spec_for, moto_endpoint):
    import boto3

    boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_endpoint).create_key_pair(
        KeyName=spec_for().name)
    launch(spec_for(public_ip=True, key_name=spec_for().name), catalog, aws)
    [run] = rec.params("RunInstances")
    assert run["KeyName"] == spec_for().name
    [nic] = run["NetworkInterfaces"]
    assert nic["AssociatePublicIpAddress"] is True and nic["DeviceIndex"] == 0
    assert "SecurityGroupIds" not in run and len(nic["Groups"]) == 1


def test_seats_launch_in_parallel_locally_and_remotely(moto_endpoint):
    from providers.aws import AwsProvider

    assert AwsProvider(region="us-east-1", endpoint_url=moto_endpoint).concurrency == 8
    assert AwsProvider(region="us-east-1").concurrency == 8
    assert AwsProvider(region="us-east-1",
                       endpoint_url="https://ec2.example.internal").concurrency == 8


def test_parallel_seats_one_request_per_seat(aws, rec, catalog, spec_for):
    aws.concurrency = 4
    aws.fleet_threshold = 5  # the seat-by-seat path (above it, one CreateFleet: tests/scale)
    res = launch(spec_for(count=5), catalog, aws)
    runs = rec.params("RunInstances")
    seats = sorted(int(tags_of(r["TagSpecifications"], "instance")[TAG_SEAT]) for r in runs)
    assert seats == [0, 1, 2, 3, 4]
    assert len({r["ClientToken"] for r in runs}) == 5
    assert [i.seat for i in res.instances] == [0, 1, 2, 3, 4]


def test_default_name_is_deterministic(aws, catalog):
    from nestcloud.launcher import default_name
    from nestcloud.spec import LaunchSpec

    spec = LaunchSpec(provider="aws", type="c8i.large", os="al2023", hypervisor="firecracker")
    assert default_name(spec) == "c8i-large-firecracker"


def test_failure_mid_launch_names_what_already_runs(aws, rec, catalog, spec_for, recorded, name):
    from fakes.moto_server import client_error_response

    from nestcloud.errors import CapacityError

    calls = [0]

    def third_fails(**_: Any) -> Any:
        calls[0] += 1
        return client_error_response("InsufficientInstanceCapacity") if calls[0] == 3 else None

    recorded[0].events.register("before-call.ec2.RunInstances", third_fails)
    aws.concurrency = 1  # seat order is then call order: the third request (seat 2) fails
    with pytest.raises(CapacityError) as err:
        launch(spec_for(count=4), catalog, aws)
    running = aws.list(name)
    assert [i.seat for i in running] == [0, 1]  # stopped at the failure, tagged, findable
    hint = err.value.hint or ""
    assert all(i.id in hint for i in running)
    assert f"run the same command again to complete, or `nestcloud down {name}`" in hint
    rec.calls.clear()
    recorded[0].events.unregister("before-call.ec2.RunInstances", third_fails)
    aws._clients.clear()
    done = launch(spec_for(count=4), catalog, aws)  # the re-run completes the group
    assert sorted(i.seat for i in done.instances) == [0, 1, 2, 3] and len(done.reused) == 2


def test_dry_run_of_a_running_group_shows_only_what_is_missing(aws, rec, catalog, spec_for):
    first = launch(spec_for(ssh_cidr="203.0.113.7/32"), catalog, aws)
    [sg] = [n.split()[3] for n in first.notes if n.startswith("created security group")]
    rec.calls.clear()
    res = launch(spec_for(count=2, ssh_cidr="203.0.113.7/32"), catalog, aws, dry_run=True)
    assert WRITE_OPS.isdisjoint(rec.ops())
    assert [r.operation for r in res.requests] == ["AuthorizeSecurityGroupIngress",
                                                   "RunInstances"]
    assert res.requests[0].params["GroupId"] == sg
    assert tags_of(res.requests[1].params["TagSpecifications"], "instance")[TAG_SEAT] == "1"
    assert res.reused == [first.instances[0].id]


def test_secrets_in_user_data_refused_before_any_call(aws, rec, catalog, spec_for):
    leaky = "#cloud-config\nruncmd:\n  - echo AKIAIOSFODNN7EXAMPLE\n"
    with pytest.raises(InputError, match="^user data: user data contains an AWS access key id"):
        launch(spec_for(user_data=leaky), catalog, aws)
    assert rec.calls == []


def test_readback_checks_every_instance_when_the_api_reports_the_switch(
        aws, rec, catalog, spec_for, recorded, name):
    session, _ = recorded

    def seat_one_dropped(parsed: dict[str, Any]) -> None:
        for r in parsed.get("Reservations", []):
            for i in r["Instances"]:
                seat = {t["Key"]: t["Value"] for t in i.get("Tags", [])}.get(TAG_SEAT)
                i["CpuOptions"] = {"NestedVirtualization": "disabled" if seat == "1"
                                   else "enabled"}

    # An API that reports the switch in DescribeInstances only (not in RunInstances' answer).
    on_response(session, "ec2", "RunInstances",
                lambda parsed: [i.pop("CpuOptions", None) for i in parsed["Instances"]])
    on_response(session, "ec2", "DescribeInstances", seat_one_dropped)
    with pytest.raises(UnsupportedError) as err:
        launch(spec_for(count=3), catalog, aws)
    [term] = rec.params("TerminateInstances")
    [dropped] = term["InstanceIds"]
    assert err.value.message.startswith(f"AWS launched {dropped} with "
                                        "CpuOptions.NestedVirtualization = disabled")
    reads = [p["InstanceIds"] for p in rec.params("DescribeInstances") if "InstanceIds" in p]
    assert [len(r) for r in reads] == [1, 2]  # a probe, then the rest


def test_the_same_launch_within_a_minute_sends_identical_requests(aws, catalog, spec_for):
    """What lets EC2 dedupe a second machine's RunInstances by its ClientToken: the same
    parameters, expiry tag included, for launch times in the same minute."""
    from providers.aws.requests import run_instances_params

    plan = aws.plan(spec_for(ttl_seconds=3600), catalog)
    t0 = dt.datetime(2026, 11, 29, 10, 0, 1, tzinfo=dt.timezone.utc)
    same = run_instances_params(plan, 0, "sg-1", t0)
    assert run_instances_params(plan, 0, "sg-1", t0 + dt.timedelta(seconds=58)) == same
    later = run_instances_params(plan, 0, "sg-1", t0 + dt.timedelta(seconds=60))
    assert later["ClientToken"] == same["ClientToken"] and later != same
