"""The CLI through typer's CliRunner, against the local endpoint via AWS_ENDPOINT_URL."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from nestcloud.cli import app
from providers.aws.requests import SSM_IMAGE_PARAMETERS

USER_DATA = b"#cloud-config\nruncmd:\n  - echo nestcloud-test\n"  # tests/aws/conftest.py


@pytest.fixture
def cli(moto_endpoint: str, catalog_file: Path) -> Any:
    runner = CliRunner()

    def run(*args: str, input: str | None = None, catalog: bool = True) -> Any:
        argv = list(args)
        wants_catalog = argv[0] == "launch" or argv[:2] == ["catalog", "verify"]
        if catalog and wants_catalog and "--catalog" not in argv:
            argv += ["--catalog", str(catalog_file)]
        return runner.invoke(app, argv, input=input,
                             env={"AWS_ENDPOINT_URL": moto_endpoint, "NESTCLOUD_DEBUG": ""})

    return run


LAUNCH = ("launch", "--provider", "aws", "--type", "c8i.large", "--region", "us-east-1",
          "--os", "al2023", "--hypervisor", "firecracker")


def sg_names(ec2: Any, name: str) -> list[str]:
    return [g["GroupName"] for g in ec2.describe_security_groups(Filters=[
        {"Name": "group-name", "Values": [f"nestcloud-{name}"]}])["SecurityGroups"]]


def test_launch_ls_down_text(cli, name, ec2):
    res = cli(*LAUNCH, "--name", name, "--count", "2", "--ttl", "2h", "--tag", "team=infra")
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"{name}: 2 instance(s) of c8i.large in us-east-1: 2 new, 0 reused"
    assert lines[1].split() == ["provider", "name", "seat", "id", "type", "region", "zone",
                                "state", "nested", "public", "ip", "expires"]
    rows = [ln.split() for ln in lines[3:]]
    assert [(r[0], r[1], r[2], r[4], r[5], r[8]) for r in rows] == [
        ("aws", name, "0", "c8i.large", "us-east-1", "yes"),
        ("aws", name, "1", "c8i.large", "us-east-1", "yes")]
    assert all(r[10].endswith("Z") for r in rows)  # the expiry tag
    assert len(lines) == 5
    assert "note: image ami-" in res.stderr
    assert "NestedVirtualization" not in res.stderr  # reported back: nothing to say

    ls = cli("ls", "--provider", "aws", "--region", "us-east-1", "--name", name, "--json")
    assert ls.exit_code == 0 and ls.stderr == ""
    doc = json.loads(ls.stdout)
    assert [(i["name"], i["seat"], i["tags"]["team"]) for i in doc["instances"]] == [
        (name, 0, "infra"), (name, 1, "infra")]
    ids = [i["id"] for i in doc["instances"]]

    refused = cli("down", name, "--provider", "aws", "--region", "us-east-1")
    assert refused.exit_code == 2 and refused.stdout == ""
    assert refused.stderr == (f"error: refusing to remove 2 instance(s) of '{name}' without "
                              "--yes (no terminal to ask on)\n")
    assert sg_names(ec2, name) == [f"nestcloud-{name}"]

    down = cli("down", name, "--provider", "aws", "--region", "us-east-1", "--yes")
    assert down.exit_code == 0, down.stderr
    [line] = down.stdout.splitlines()
    assert line.startswith(f"aws: {name}: terminated 2 instance(s) ({ids[0]}, {ids[1]}); "
                           "deleted sg-")
    assert sg_names(ec2, name) == []
    again = cli("down", name, "--provider", "aws", "--region", "us-east-1", "--yes")
    assert again.exit_code == 0 and again.stdout == f"aws: {name}: nothing to remove\n"
    assert again.stderr == f"nothing named '{name}' in us-east-1\n"
    empty = cli("ls", "--provider", "aws", "--region", "us-east-1", "--name", name)
    assert empty.exit_code == 0 and empty.stdout == ""
    assert empty.stderr == f"no nestcloud instances named '{name}' (aws)\n"


def test_launch_json_and_rerun_reconciles(cli, name):
    first = cli(*LAUNCH, "--name", name, "--json")
    assert first.exit_code == 0
    doc = json.loads(first.stdout)
    assert (doc["provider"], doc["name"], doc["type"], doc["dry_run"]) == (
        "aws", name, "c8i.large", False)
    [inst] = doc["instances"]
    assert doc["created"] == [inst["id"]] and doc["reused"] == []
    again = json.loads(cli(*LAUNCH, "--name", name, "--json").stdout)
    assert again["reused"] == [inst["id"]] and again["created"] == []


def test_dry_run_prints_requests_and_creates_nothing(cli, name, ec2):
    res = cli(*LAUNCH, "--name", name, "--count", "2", "--ssh-cidr", "203.0.113.9/32",
              "--dry-run")
    assert res.exit_code == 0, res.stderr
    out = res.stdout
    assert out.startswith("dry run: 4 request(s) would be sent (aws, us-east-1); nothing was "
                          "created\nec2 CreateSecurityGroup {\n")
    assert out.count("ec2 RunInstances {") == 2
    assert '"NestedVirtualization": "enabled"' in out
    assert '"CidrIp": "203.0.113.9/32"' in out
    # Short user data is shown as the exact base64 boto3 sends (long is summarised).
    assert f'"UserData": "{base64.b64encode(USER_DATA).decode()}"' in out
    assert sg_names(ec2, name) == []
    assert ec2.describe_instances(Filters=[{"Name": "tag:nestcloud:name",
                                            "Values": [name]}])["Reservations"] == []


def test_world_ssh_is_bad_input(cli, name, ec2):
    res = cli(*LAUNCH, "--name", name, "--ssh-cidr", "0.0.0.0/0")
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr == ("error: --ssh-cidr '0.0.0.0/0' opens SSH to the whole internet\n"
                          "  hint: use your own address (e.g. 203.0.113.7/32), or add "
                          "--allow-world-ssh if you really mean it\n")
    assert sg_names(ec2, name) == []


def test_refused_launch_exit_3_creates_nothing(cli, name, ec2):
    res = cli("launch", "--provider", "aws", "--type", "c7g.large", "--region", "us-east-1",
              "--name", name, "--json")
    assert res.exit_code == 3
    doc = json.loads(res.stdout)
    assert doc["error"] == "RefusedError" and doc["exit_code"] == 3
    assert doc["message"].startswith("launch refused by the pre-launch checks (nothing was "
                                     "created):\n  [error] arm64: c7g.large is an Arm")
    assert sg_names(ec2, name) == []


@pytest.mark.parametrize(("args", "message"), [
    (("--ttl", "soon"), "error: --ttl: not a duration: 'soon' (use e.g. 90m, 4h, 2d, 4h30m)\n"),
    (("--tag", "novalue"), "error: --tag 'novalue': expected KEY=VALUE\n"),
    (("--ssh-cidr", "10.0.0.300/8"), "error: --ssh-cidr '10.0.0.300/8': not an IPv4 or IPv6 "
                                     "network (use e.g. 203.0.113.7/32)\n"),
])
def test_bad_flags_exit_2(cli, name, args, message):
    res = cli(*LAUNCH, "--name", name, *args)
    assert res.exit_code == 2 and res.stderr == message


def test_missing_image_parameter_is_exit_1_with_json_error(cli, name):
    res = cli(*LAUNCH[:-4], "--os", "debian-12", "--hypervisor", "kvm", "--name", name,
              "--json")
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert doc["error"] == "ProviderError"
    assert doc["message"] == (f"no image for --os debian-12 in us-east-1: the public SSM "
                              f"parameter {SSM_IMAGE_PARAMETERS['debian-12']} does not exist "
                              "there")


def test_api_wins_note_reaches_stderr(cli, name, tmp_path):
    stale = tmp_path / "stale.yaml"
    stale.write_text("""
schema_version: 1
sources: {facts: {description: t}}
types:
  - {provider: aws, name: c8i.large, family: c8i, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: native, bare_metal: true, nesting_source: facts,
     verified: 2026-11-29, regions: [us-east-1]}
""", encoding="utf-8")
    res = cli(*LAUNCH, "--name", name, "--catalog", str(stale))
    assert res.exit_code == 0, res.stderr
    assert ("note: catalog says c8i.large is 'native' but the live API reports "
            "nested-virtualization: sending the nested switch (the API wins)\n") in res.stderr


def test_sandbox_has_no_azure(cli):
    res = cli("ls", "--provider", "azure", "--sandbox")
    assert res.exit_code == 2
    assert res.stderr.startswith("error: --sandbox: provider 'azure' has no local endpoint\n")


def test_catalog_verify_exit_codes(cli, tmp_path, verify_yaml):
    bad = tmp_path / "bad.yaml"
    bad.write_text(verify_yaml, encoding="utf-8")
    res = cli("catalog", "verify", "--provider", "aws", "--region", "us-east-1", "--catalog",
              str(bad))
    assert res.exit_code == 1
    assert res.stdout.splitlines()[-1] == ("catalog DISAGREES with the live aws API in "
                                           "us-east-1: 5 type(s) checked, 2 difference(s), "
                                           "1 missing")
    assert "c9z.large: in the catalog for us-east-1 but the live API does not offer it there" \
        in res.stdout
    js = cli("catalog", "verify", "--provider", "aws", "--region", "us-east-1", "--catalog",
             str(bad), "--json")
    doc = json.loads(js.stdout)
    assert js.exit_code == 1 and doc["ok"] is False
    assert doc["diffs"][0] == {"type": "c8i.xlarge", "field": "vcpus", "catalog": 8, "live": 4}

    good = cli("catalog", "verify", "--provider", "aws", "--region", "us-east-1")
    assert good.exit_code == 0, good.stdout
    assert good.stdout == ("catalog agrees with the live aws API in us-east-1: 3 type(s) "
                           "checked, 0 difference(s), 0 missing\n")


def test_wait_times_out_with_exit_4_and_reports_it(cli, name):
    # The local endpoint's console holds canned text, never the readiness marker.
    res = cli(*LAUNCH, "--name", name, "--wait", "--timeout", "0.3", "--json")
    assert res.exit_code == 4, res.stderr
    doc = json.loads(res.stdout)
    assert doc["wait"]["exit_code"] == 4 and doc["wait"]["sandbox"] is False
    assert [i["id"] for i in doc["wait"]["instances"]] == [doc["instances"][0]["id"]]
    assert doc["instances"][0]["name"] == name  # the launch itself is in the same document


def test_user_data_is_passed_to_the_bootstrap_and_secrets_are_refused(cli, name, tmp_path,
                                                                     fake_bootstrap, ec2):
    mine = tmp_path / "mine.yaml"
    mine.write_text("#cloud-config\npackages: [htop]\n", encoding="utf-8")
    ok = cli(*LAUNCH, "--name", name, "--user-data", str(mine), "--dry-run")
    assert ok.exit_code == 0, ok.stderr
    assert fake_bootstrap[-1]["extra"] == "#cloud-config\npackages: [htop]\n"

    leaky = tmp_path / "leaky.yaml"
    leaky.write_text("#cloud-config\nruncmd:\n  - export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n",
                     encoding="utf-8")
    res = cli(*LAUNCH, "--name", name, "--user-data", str(leaky))
    assert res.exit_code == 2
    assert res.stderr.startswith(f"error: {leaky}: user data contains an AWS access key id; "
                                 "refusing to send it\n")
    assert "AKIAIOSFODNN7EXAMPLE" not in res.stderr
    assert sg_names(ec2, name) == []


def test_default_region_comes_from_the_sdk_and_is_checked(cli, name, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")  # the test catalog has no such region
    res = cli("launch", "--provider", "aws", "--type", "c8i.large", "--os", "al2023",
              "--hypervisor", "firecracker", "--name", name, "--dry-run")
    assert res.exit_code == 3
    assert res.stderr == ("error: launch refused by the pre-launch checks (nothing was "
                          "created):\n  [error] unknown-region: unknown aws region 'ap-south-1'"
                          "\n      -> known regions: eu-west-1, us-east-1\n")
