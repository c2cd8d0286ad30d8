"""A failed or interrupted plain `launch` leaves nothing it made, or says exactly what is left;
a re-run removes a launch template a killed run left; `ls` shows what a name without any
instance still has (issue 11)."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import pytest
from conftest import running
from fakes.moto_server import inject_error
from typer.testing import CliRunner

from nestcloud.cli import app
from nestcloud.errors import CapacityError
from nestcloud.launcher import launch
from nestcloud.spec import TAG_NAME
from providers.aws import AwsProvider


def groups(ec2: Any, name: str) -> list[str]:
    return [g["GroupId"] for g in ec2.describe_security_groups(Filters=[
        {"Name": f"tag:{TAG_NAME}", "Values": [name]}])["SecurityGroups"]]


def templates(ec2: Any, name: str) -> list[str]:
    return [t["LaunchTemplateId"] for t in ec2.describe_launch_templates(Filters=[
        {"Name": f"tag:{TAG_NAME}", "Values": [name]}])["LaunchTemplates"]]


def lock_template(ec2: Any, name: str, holder: str) -> str:
    """The launch template a run of ``name`` takes as its lock, held by ``holder``."""
    return str(ec2.create_launch_template(
        LaunchTemplateName=f"nestcloud-{name}",
        LaunchTemplateData={"MetadataOptions": {"HttpTokens": "required"}},
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": [
            {"Key": TAG_NAME, "Value": name}, {"Key": "nestcloud:lock", "Value": holder}]}],
    )["LaunchTemplate"]["LaunchTemplateId"])


def dead_lock(ec2: Any, name: str) -> str:
    """The launch template a run killed mid-launch leaves: tagged, held by a dead process of
    this host."""
    return lock_template(ec2, name, f"{socket.gethostname()}:{2 ** 22 + 4321}")  # > pid_max


def test_a_launch_that_fails_before_any_instance_removes_its_group(aws, catalog, spec_for,
                                                                    ec2, name):
    inject_error(aws.client("ec2"), "ec2", "RunInstances", "InsufficientInstanceCapacity")
    with pytest.raises(CapacityError) as err:
        launch(spec_for(), catalog, aws)
    assert groups(ec2, name) == []
    hint = err.value.hint or ""
    assert "removed security group sg-" in hint and f"nothing of {name!r} is left" in hint


def test_a_fleet_that_launches_nothing_leaves_nothing(aws, catalog, spec_for, ec2, name):
    inject_error(aws.client("ec2"), "ec2", "CreateFleet", "InsufficientInstanceCapacity")
    with pytest.raises(CapacityError) as err:
        launch(spec_for(count=6), catalog, aws)
    assert (groups(ec2, name), templates(ec2, name), running(ec2, name)) == ([], [], [])
    assert f"nothing of {name!r} is left" in (err.value.hint or "")


def test_a_failure_after_some_seats_names_everything_left(aws, catalog, spec_for, ec2, name,
                                                          recorded):
    from fakes.moto_server import client_error_response

    calls = [0]

    def second_fails(**_: Any) -> Any:
        calls[0] += 1
        return client_error_response("InsufficientInstanceCapacity") if calls[0] == 2 else None

    recorded[0].events.register("before-call.ec2.RunInstances", second_fails)
    aws.concurrency = 1
    with pytest.raises(CapacityError) as err:
        launch(spec_for(count=3), catalog, aws)
    [seat0] = running(ec2, name)
    [sg] = groups(ec2, name)
    hint = err.value.hint or ""
    assert (f"left: instance {seat0} (launched by this run, running); security group {sg}"
            in hint)
    assert f"run the same command again to complete, or `nestcloud down {name}`" in hint
    aws.down(name)


def test_ctrl_c_after_the_fleet_says_exactly_what_runs(aws, catalog, spec_for, ec2, name,
                                                       monkeypatch):
    real = AwsProvider.readback

    def interrupted(self: AwsProvider, plan: Any, launched: Any) -> Any:
        real(self, plan, launched)
        raise KeyboardInterrupt

    monkeypatch.setattr(AwsProvider, "readback", interrupted)
    with pytest.raises(KeyboardInterrupt) as err:
        launch(spec_for(count=6), catalog, aws)
    seats = running(ec2, name)
    [sg] = groups(ec2, name)
    assert len(seats) == 6 and templates(ec2, name) == []  # the lock was released
    [note] = err.value.args
    assert note == (f"interrupted; left: instances {', '.join(seats)} (launched by this run, "
                    f"running); security group {sg}: run the same command again to complete, "
                    f"or `nestcloud down {name}` to remove them")
    aws.down(name)


def test_cli_ctrl_c_prints_what_is_left(moto_endpoint, catalog_file, ec2, name, monkeypatch):
    real = AwsProvider.readback

    def interrupted(self: AwsProvider, plan: Any, launched: Any) -> Any:
        real(self, plan, launched)
        raise KeyboardInterrupt

    monkeypatch.setattr(AwsProvider, "readback", interrupted)
    res = CliRunner().invoke(app, [
        "launch", "--provider", "aws", "--type", "c8i.large", "--region", "us-east-1", "--os",
        "al2023", "--hypervisor", "firecracker", "--name", name, "--count", "6", "--catalog",
        str(catalog_file)], env={"AWS_ENDPOINT_URL": moto_endpoint, "NESTCLOUD_DEBUG": ""})
    assert res.exit_code == 130
    seats = running(ec2, name)
    assert len(seats) == 6
    assert f"interrupted; left: instances {', '.join(seats)}" in res.stderr
    assert res.stderr.rstrip().endswith("interrupted")
    prov = AwsProvider(region="us-east-1", endpoint_url=moto_endpoint)
    prov.sleep = lambda s: None
    prov.down(name)


def test_a_rerun_after_a_kill_removes_the_fleets_template(aws, catalog, spec_for, ec2, name):
    first = launch(spec_for(count=6), catalog, aws)
    left = dead_lock(ec2, name)  # the run was killed before it deleted its template
    again = launch(spec_for(count=6), catalog, aws)
    assert again.created == [] and sorted(again.reused) == sorted(first.created)
    assert templates(ec2, name) == []
    assert any(n.startswith(f"removed launch template {left} (nestcloud-{name}) left by an "
                            "interrupted run: its holder") for n in again.notes)
    aws.down(name)


def test_a_template_a_live_run_holds_is_left_alone_and_named(aws, catalog, spec_for, ec2,
                                                             name):
    launch(spec_for(), catalog, aws)
    lock_template(ec2, name, f"other-host:{os.getpid()}")
    again = launch(spec_for(), catalog, aws)
    [held] = templates(ec2, name)
    assert any(n.startswith(f"launch template {held} (nestcloud-{name}) is held by "
                            "other-host:") for n in again.notes)
    aws.down(name)
    assert templates(ec2, name) == []


def test_ls_shows_what_a_name_without_instances_still_has(moto_endpoint, ec2, name):
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    sg = ec2.create_security_group(
        GroupName=f"nestcloud-{name}", Description="left", VpcId=vpc["VpcId"],
        TagSpecifications=[{"ResourceType": "security-group",
                            "Tags": [{"Key": TAG_NAME, "Value": name}]}])["GroupId"]
    lt = dead_lock(ec2, name)
    runner = CliRunner()
    env = {"AWS_ENDPOINT_URL": moto_endpoint, "NESTCLOUD_DEBUG": ""}
    base = ["ls", "--provider", "aws", "--region", "us-east-1"]
    doc = json.loads(runner.invoke(app, [*base, "--json"], env=env).stdout)
    mine = [x for x in doc["leftovers"] if x["name"] == name]
    assert mine == [
        {"provider": "aws", "name": name, "region": "us-east-1", "kind": "security-group",
         "id": sg},
        {"provider": "aws", "name": name, "region": "us-east-1", "kind": "launch-template",
         "id": lt}]
    one = runner.invoke(app, [*base, "--name", name], env=env)
    assert one.exit_code == 0
    lines = one.stdout.splitlines()
    assert lines[0] == (f"leftovers (a name without instances; `nestcloud down NAME` "
                        "removes them):")
    assert lines[1].split() == ["provider", "name", "region", "kind", "id"]
    assert [ln.split() for ln in lines[3:]] == [
        ["aws", name, "us-east-1", "security-group", sg],
        ["aws", name, "us-east-1", "launch-template", lt]]
    down = runner.invoke(app, ["down", name, "--provider", "aws", "--region", "us-east-1",
                               "--yes"], env=env)
    assert down.exit_code == 0, down.stderr
    after = json.loads(runner.invoke(app, [*base, "--name", name, "--json"], env=env).stdout)
    assert after == {"instances": [], "leftovers": []}


def test_ls_does_not_call_a_running_names_group_a_leftover(aws, catalog, spec_for, name,
                                                          moto_endpoint):
    launch(spec_for(), catalog, aws)
    res = CliRunner().invoke(app, ["ls", "--provider", "aws", "--region", "us-east-1",
                                   "--name", name, "--json"],
                             env={"AWS_ENDPOINT_URL": moto_endpoint})
    doc = json.loads(res.stdout)
    assert len(doc["instances"]) == 1 and doc["leftovers"] == []
    aws.down(name)


def test_cli_ctrl_c_while_waiting_names_the_running_seats(moto_endpoint, catalog_file, ec2,
                                                         name, monkeypatch):
    def interrupted(*_: Any, **__: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr("nestcloud.bootstrap.wait.wait_for_ready", interrupted)
    res = CliRunner().invoke(app, [
        "launch", "--provider", "aws", "--type", "c8i.large", "--region", "us-east-1", "--os",
        "al2023", "--hypervisor", "firecracker", "--name", name, "--wait", "--catalog",
        str(catalog_file)], env={"AWS_ENDPOINT_URL": moto_endpoint, "NESTCLOUD_DEBUG": ""})
    assert res.exit_code == 130
    [seat] = running(ec2, name)
    assert (f"interrupted while waiting for readiness; left running: {seat} ({name}): "
            f"`nestcloud down {name}` removes them") in res.stderr
    prov = AwsProvider(region="us-east-1", endpoint_url=moto_endpoint)
    prov.sleep = lambda s: None
    prov.down(name)


def test_a_template_another_launch_of_this_process_holds_is_not_removed(
        aws, catalog, spec_for, ec2, name):
    """A notebook may run several launches at once: a template this process holds for
    another launch of the name is that launch's lock, not a leftover."""
    from providers.aws import lock

    launch(spec_for(), catalog, aws)
    lock_template(ec2, name, lock.lock_holder())
    lock._taking(f"nestcloud-{name}", +1)  # the other launch is taking it
    try:
        again = launch(spec_for(), catalog, aws)
        assert len(templates(ec2, name)) == 1
        assert any(" is held by " in n for n in again.notes)
    finally:
        lock._taking(f"nestcloud-{name}", -1)
    again = launch(spec_for(), catalog, aws)  # that launch is over: now it is a leftover
    assert templates(ec2, name) == []
    assert any(n.startswith("removed launch template") for n in again.notes)
    aws.down(name)
