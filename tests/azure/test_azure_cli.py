"""The CLI end to end with --provider azure against the ARM fake (--arm-endpoint on loopback).

Only the bootstrap renderer is replaced (``rendered`` fixture); the CLI builds the provider
exactly as a user run does, with no credential handed in.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from conftest import SSH_KEY
from fakes.arm_fake import SUB, ArmFake

LAUNCH = ("launch", "--provider", "azure", "--type", "Standard_D2s_v5", "--region", "eastus",
          "--name", "demo", "--key-name", SSH_KEY)


def test_launch_ls_down_down_again(cli: Any, arm: ArmFake) -> None:
    res = cli(*LAUNCH, "--count", "2", "--ttl", "4h", "--tag", "team=infra", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["provider"] == "azure" and doc["name"] == "demo"
    assert [(i["seat"], i["state"]) for i in doc["instances"]] == [(0, "running"), (1, "running")]
    assert doc["instances"][0]["tags"]["team"] == "infra"
    vm = arm.bodies("virtualMachines")["demo-0"]
    assert vm["properties"]["securityProfile"] == {"securityType": "Standard"}
    assert base64.b64decode(vm["properties"]["osProfile"]["customData"]).startswith(
        b"#cloud-config")

    res = cli("ls", "--provider", "azure", "--json")
    assert res.exit_code == 0, res.output
    assert [i["id"] for i in json.loads(res.stdout)["instances"]] == \
        [i["id"] for i in doc["instances"]]

    again = cli(*LAUNCH, "--count", "2", "--ttl", "4h", "--tag", "team=infra")
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines()[0] == \
        "demo: 2 instance(s) of Standard_D2s_v5 in eastus: 0 new, 2 reused"

    res = cli("down", "demo", "--provider", "azure", "--yes", "--json")
    assert res.exit_code == 0, res.output
    [result] = json.loads(res.stdout)["results"]
    assert sorted(result["terminated"]) == sorted(i["id"] for i in doc["instances"])
    assert result["deleted"] == [f"/subscriptions/{SUB}/resourceGroups/nestcloud-demo-eastus"]
    assert arm.groups == {} and arm.resources == {}

    res = cli("down", "demo", "--provider", "azure", "--yes")
    assert res.exit_code == 0, res.output
    assert res.stdout == "azure: demo: nothing to remove\n"


def test_dry_run_text_sends_no_write(cli: Any, arm: ArmFake) -> None:
    res = cli(*LAUNCH, "--dry-run")
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0] == \
        "dry run: 7 request(s) would be sent (azure, eastus); nothing was created"
    assert "compute virtual_machines.begin_create_or_update {" in res.stdout
    assert "network nat_gateways.begin_create_or_update {" in res.stdout  # the way out
    assert arm.writes() == []


def test_world_open_ssh_exit_2_and_nothing_sent(cli: Any, arm: ArmFake) -> None:
    res = cli(*LAUNCH, "--ssh-cidr", "0.0.0.0/0")
    assert res.exit_code == 2
    assert "opens SSH to the whole internet" in res.stderr
    assert "Traceback" not in res.output
    assert arm.requests == []


def test_capacity_error_exit_1_with_what_to_do(cli: Any, arm: ArmFake) -> None:
    arm.fail_vm("demo-0", "AllocationFailed")
    res = cli(*LAUNCH, "--json")
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert doc["error"] == "CapacityError"
    assert doc["message"].startswith("seat 0: creating demo-0: injected provisioning failure "
                                     "of demo-0 (AllocationFailed); rolled back")
    assert doc["hint"].startswith("Azure has no capacity for this size there now")
    assert arm.groups == {} and arm.resources == {}
