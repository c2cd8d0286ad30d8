"""The Windows L1 instance role (EC2) and iam:PassRole in the operator policy, only when asked."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from nestcloud import iam
from nestcloud.bootstrap.profiles import TAG_L1, windows_script
from nestcloud.cli import app


def _run(*args: str) -> object:
    return CliRunner().invoke(app, ["iam-policy", *args])


def test_l1_role_may_only_set_the_readiness_tag_on_nestcloud_instances() -> None:
    role = iam.aws_l1_role()
    assert role["TrustPolicy"] == {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
         "Action": "sts:AssumeRole"}]}
    [st] = role["Policy"]["Statement"]
    assert st == {"Sid": "NestcloudL1ReportsReadiness", "Effect": "Allow",
                  "Action": "ec2:CreateTags", "Resource": "arn:aws:ec2:*:*:instance/*",
                  "Condition": {"Null": {"aws:ResourceTag/nestcloud:name": "false"},
                                "ForAllValues:StringEquals": {"aws:TagKeys": ["nestcloud:l1"]}}}
    assert iam.TAG_L1 == TAG_L1
    # It is what the bootstrap does: New-EC2Tag of $NcTag (= TAG_L1) on its own instance.
    body = windows_script("aws", "hyperv")
    assert f"$NcTag = '{TAG_L1}'" in body
    assert "New-EC2Tag -Region $region -Resource $id -Tag @{Key = $NcTag; Value = $Value}" in body
    assert iam.aws_l1_role() is not iam.aws_l1_role()


def test_pass_role_only_when_asked_and_only_that_role() -> None:
    base = iam.aws_policy()
    assert "iam:PassRole" not in iam.policy_actions(base)
    with_role = iam.aws_policy("nc-l1")
    assert with_role["Statement"][:-1] == base["Statement"]
    assert with_role["Statement"][-1] == {"Sid": "NestcloudPassL1Role", "Effect": "Allow",
                                          "Action": "iam:PassRole",
                                          "Resource": "arn:aws:iam::*:role/nc-l1"}
    for bad in ("", "a b", "x" * 65, "role/*", "*"):
        with pytest.raises(ValueError, match="not an IAM role name"):
            iam.aws_policy(bad)


def test_cli_l1_role() -> None:
    res = _run("-p", "aws", "--l1-role")
    assert res.exit_code == 0
    assert json.loads(res.stdout) == iam.aws_l1_role()
    assert res.stderr == iam.explain("aws-l1") + "\n"
    res = _run("-p", "aws", "--l1-role", "--json")
    assert json.loads(res.stdout) == iam.aws_l1_role() and res.stderr == ""


def test_cli_instance_role_adds_pass_role() -> None:
    res = _run("-p", "aws", "--instance-role", "nc-l1", "--json")
    assert res.exit_code == 0
    assert json.loads(res.stdout) == iam.aws_policy("nc-l1")
    res = _run("--instance-role", "nc-l1", "--json")
    assert json.loads(res.stdout)["aws"] == iam.aws_policy("nc-l1")
    # The plain policy points at the L1 role.
    res = _run("-p", "aws")
    assert "`nestcloud iam-policy -p aws --l1-role`" in res.stderr


@pytest.mark.parametrize("args, message", [
    (("-p", "aws", "--instance-role", "a b"),
     "error: --instance-role: not an IAM role name (1-64 of letters, digits and + = , . @ _ -):"
     " 'a b'"),
    # `$` matches before a final newline: the whole name must be checked.
    (("-p", "aws", "--instance-role", "nc-l1\n"),
     "error: --instance-role: not an IAM role name (1-64 of letters, digits and + = , . @ _ -):"
     " 'nc-l1\\n'"),
    (("-p", "azure", "--l1-role"),
     "error: --instance-role and --l1-role are AWS IAM settings: not for --provider azure "
     "(Azure VMs need no identity for readiness)"),
    (("-p", "aws", "--l1-role", "--instance-role", "r"),
     "error: --l1-role prints the instance role itself: use --instance-role separately, for "
     "the operator policy"),
])
def test_cli_bad_combinations_are_exit_2(args: tuple[str, ...], message: str) -> None:
    res = _run(*args)
    assert res.exit_code == 2
    assert res.stdout == ""
    assert res.stderr.splitlines()[0] == message
