"""Provider options reach Azure the same way from every command that reaches a cloud: `lab up`,
`lab status`, `lab down`, `reap`, `ls` take --subscription and --arm-endpoint (issue 12: the
provider declares its options; one factory builds it for the CLI, labs and reap).

Nothing Azure is in the environment here: the flags alone must point the provider at the ARM
fake, or the run fails (no subscription) instead of passing by accident.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import CATALOG_YAML, SSH_KEY
from fakes.arm_fake import SUB, ArmFake
from typer.testing import CliRunner

from nestcloud.cli import app

LAB = f"""
name: optlab
seats: 2
seat: {{type: Standard_D2s_v5}}
providers: [azure]
regions: [eastus]
ttl: 1h
key_name: "{SSH_KEY}"
"""


@pytest.fixture
def run(arm: ArmFake, tmp_path: Path, rendered: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    cat = tmp_path / "catalog.yaml"
    cat.write_text(CATALOG_YAML, encoding="utf-8")
    monkeypatch.delenv("NESTCLOUD_CATALOG", raising=False)
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    monkeypatch.delenv("NESTCLOUD_AZURE_ARM_ENDPOINT", raising=False)
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(tmp_path / "no-az-cli"))  # no CLI default
    monkeypatch.setenv("NESTCLOUD_STATE_DIR", str(tmp_path / "state"))
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        # Labs price from the shipped catalog (Standard_D2s_v5 has an eastus price there).
        catalog = () if args[0] == "lab" else ("--catalog", str(cat))
        return runner.invoke(app, [*args, *catalog])

    return invoke


def test_lab_up_status_down_take_the_azure_flags(run: Any, arm: ArmFake, tmp_path: Path
                                                 ) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text(LAB, encoding="utf-8")
    flags = ("--subscription", SUB, "--arm-endpoint", arm.url)
    up = run("lab", "up", str(lab), "--no-wait", "--json", *flags)
    assert up.exit_code == 0, up.output
    doc = json.loads(up.stdout)
    assert sorted(i["name"] for i in doc["launch"]["instances"]) == ["optlab", "optlab"]
    assert sorted(arm.bodies("virtualMachines")) == ["optlab-0", "optlab-1"]
    st = run("lab", "status", str(lab), "--json", *flags)
    assert st.exit_code == 0, st.output
    assert json.loads(st.stdout)["running"] == 2
    down = run("lab", "down", str(lab), "--json", *flags)
    assert down.exit_code == 0, down.output
    assert len(json.loads(down.stdout)["terminated"]) == 2
    after = run("lab", "status", str(lab), "--json", *flags)
    assert after.exit_code == 0 and json.loads(after.stdout)["running"] == 0


def test_without_the_flags_the_lab_cannot_reach_azure(run: Any, arm: ArmFake, tmp_path: Path
                                                      ) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text(LAB, encoding="utf-8")
    up = run("lab", "up", str(lab), "--no-wait", "--json")
    assert up.exit_code == 2, up.output
    assert "no Azure subscription" in json.loads(up.stdout)["message"]
    assert arm.bodies("virtualMachines") == {}


def test_a_flag_the_lab_providers_do_not_declare_is_refused(run: Any, tmp_path: Path) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text(LAB.replace("providers: [azure]", "providers: [aws]")
                   .replace("Standard_D2s_v5", "c8i.large").replace("eastus", "us-east-1"),
                   encoding="utf-8")
    res = run("lab", "status", str(lab), "--resource-group", "rg")
    assert res.exit_code == 2
    assert res.stderr == "error: --resource-group does not apply to --provider aws\n"


def test_provider_option_by_name_reaches_the_provider(run: Any, arm: ArmFake) -> None:
    res = run("ls", "--provider", "azure", "--json", "--provider-option", f"subscription_id={SUB}",
              "-o", f"arm_endpoint={arm.url}")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"instances": [], "leftovers": []}


def test_provider_option_the_provider_does_not_declare(run: Any) -> None:
    res = run("ls", "--provider", "azure", "-o", "endpoint_url=http://127.0.0.1:1")
    assert res.exit_code == 2
    assert res.stderr == ("error: --provider-option endpoint_url: not an option of --provider "
                          "azure (its options: arm_endpoint, resource_group, subscription_id)\n")


def test_reap_takes_the_azure_flags(run: Any, arm: ArmFake) -> None:
    res = run("reap", "--providers", "azure", "--regions", "eastus", "--dry-run", "--json",
              "--subscription", SUB, "--arm-endpoint", arm.url)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["errors"] == []
