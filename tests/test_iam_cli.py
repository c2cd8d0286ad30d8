"""`nestcloud iam-policy`: the command prints each provider's own ``access_policy`` document
(the provider declares ``capabilities.access_policy``) and names no cloud itself. The policies'
content is tested with each provider (tests/aws/test_aws_iam.py, tests/azure/test_azure_iam.py,
tests/gcp/test_gcp_iam.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from typer.testing import CliRunner

from nestcloud.cli import app
from nestcloud.provider import load_factory

WRITERS = ("aws", "azure", "gcp")  # the installed providers that declare a policy


def _run(*args: str) -> Any:
    return CliRunner().invoke(app, ["iam-policy", *args])


def policy(name: str, **kw: Any) -> Any:
    return load_factory(name).access_policy(**kw)


@pytest.mark.parametrize("name", WRITERS)
def test_json_prints_exactly_the_providers_document(name: str) -> None:
    res = _run("--provider", name.upper(), "--json")
    assert res.exit_code == 0, res.output
    assert res.stdout == json.dumps(policy(name).document, indent=2) + "\n"
    assert res.stderr == ""


@pytest.mark.parametrize("name", WRITERS)
def test_without_json_the_provider_explains_on_stderr(name: str) -> None:
    res = _run("-p", name)
    assert res.exit_code == 0
    assert json.loads(res.stdout) == policy(name).document
    assert res.stderr == policy(name).explain + "\n"


def test_default_is_every_provider_that_writes_one() -> None:
    res = _run()
    assert res.exit_code == 0
    assert json.loads(res.stdout) == {n: policy(n).document for n in WRITERS}
    assert res.stderr.splitlines() == [f"{policy(n).explain} (the {n!r} key above)"
                                       for n in WRITERS]


def test_unknown_provider_is_exit_2_naming_the_known_ones() -> None:
    res = _run("--provider", "oci")
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr == "error: --provider 'oci': expected one of aws, azure, gcp, all\n"
    res = _run("--provider", "oci", "--json")
    assert res.exit_code == 2
    assert json.loads(res.stdout)["error"] == "InputError"


def test_instance_role_goes_to_the_provider() -> None:
    res = _run("-p", "aws", "--instance-role", "nc-l1", "--json")
    assert res.exit_code == 0
    assert json.loads(res.stdout) == policy("aws", instance_role="nc-l1").document
    assert json.loads(res.stdout) != policy("aws").document


def test_with_all_a_provider_without_use_for_the_role_gets_its_plain_policy_and_says_why(
) -> None:
    res = _run("--instance-role", "nc-l1")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["aws"] == policy("aws", instance_role="nc-l1").document
    assert doc["azure"] == policy("azure").document
    assert any(line.startswith("azure: ") and "need no identity" in line
               for line in res.stderr.splitlines())


def test_l1_role_is_the_providers_and_all_lists_only_those_that_have_one() -> None:
    res = _run("-p", "aws", "--l1-role", "--json")
    assert res.exit_code == 0
    assert json.loads(res.stdout) == policy("aws", l1=True).document
    res = _run("--l1-role", "--json")
    assert res.exit_code == 0
    assert json.loads(res.stdout) == {"aws": policy("aws", l1=True).document}


@pytest.mark.parametrize(("args", "message"), [
    (("-p", "aws", "--instance-role", "a b"),
     "error: --instance-role: not an IAM role name (1-64 of letters, digits and + = , . @ _ -):"
     " 'a b'"),
    # `$` matches before a final newline: the whole name must be checked.
    (("-p", "aws", "--instance-role", "nc-l1\n"),
     "error: --instance-role: not an IAM role name (1-64 of letters, digits and + = , . @ _ -):"
     " 'nc-l1\\n'"),
    (("-p", "aws", "--l1-role", "--instance-role", "r"),
     "error: --l1-role prints the instance role itself: use --instance-role separately, for "
     "the operator policy"),
])
def test_bad_combinations_are_exit_2(args: tuple[str, ...], message: str) -> None:
    res = _run(*args)
    assert res.exit_code == 2
    assert res.stdout == ""
    assert res.stderr.splitlines()[0] == message


def test_azure_l1_role_is_the_providers_refusal() -> None:
    res = _run("-p", "azure", "--l1-role")
    assert res.exit_code == 2
    assert "need no identity" in res.stderr


def test_the_command_imports_no_cloud_sdk() -> None:
    code = ("import sys; from typer.testing import CliRunner; from nestcloud.cli import app; "
            "r = CliRunner().invoke(app, ['iam-policy', '--json']); assert r.exit_code == 0; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', "
            "'azure', 'google')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"
