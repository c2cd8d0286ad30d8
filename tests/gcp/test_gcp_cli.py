"""The CLI end to end with --provider gcp against the GCE fake.

The CLI builds the provider exactly as a user run does: the endpoint and project come from
NESTCLOUD_GCP_ENDPOINT / GOOGLE_CLOUD_PROJECT (or -o), and the provider itself chooses
anonymous credentials for the loopback endpoint; nothing is handed in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import fake_leftovers, gcp_catalog
from fakes.gce_fake import GceFake, load_machine_types
from typer.testing import CliRunner

from nestcloud._catalog_dump import dump as dump_catalog
from nestcloud.cli import app

REGION = "us-central1"
LAUNCH = ("launch", "--provider", "gcp", "--type", "n2-standard-4", "--region", REGION,
          "--name", "lab")
READY = {"status": "ready", "profile": "kvm", "checks": {"kvm": {"ok": True}}, "failed": []}


def writes(gce: GceFake) -> list[Any]:
    return [r for r in gce.requests if r.method in ("POST", "DELETE")
            and not r.route.endswith(".wait")]


@pytest.fixture
def catalog_file(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(dump_catalog(gcp_catalog()), encoding="utf-8")
    return path


@pytest.fixture
def cli(gce: GceFake, catalog_file: Path) -> Any:
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None) -> Any:
        base = {"NESTCLOUD_CATALOG": str(catalog_file), "NESTCLOUD_GCP_ENDPOINT": gce.url,
                "GOOGLE_CLOUD_PROJECT": gce.project}
        return runner.invoke(app, list(args), env=base if env is None else env)

    return run


def test_launch_ls_wait_down_down_again(cli: Any, gce: GceFake) -> None:
    res = cli(*LAUNCH, "--count", "2", "--ttl", "4h", "--tag", "team=infra", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert (doc["provider"], doc["name"], doc["region"]) == ("gcp", "lab", REGION)
    assert [(i["seat"], i["state"], i["nested"]) for i in doc["instances"]] == \
        [(0, "running", True), (1, "running", True)]
    assert doc["instances"][0]["tags"]["team"] == "infra"
    assert doc["instances"][0]["expires"].endswith("Z")
    assert any(n.startswith("egress: an ephemeral external IPv4 per VM") for n in doc["notes"])
    for b in gce.sent_instances():
        assert b["advancedMachineFeatures"] == {"enableNestedVirtualization": True}
        assert b["scheduling"]["instanceTerminationAction"] == "DELETE"

    res = cli("ls", "--provider", "gcp", "--json")
    assert res.exit_code == 0, res.output
    listed = json.loads(res.stdout)
    assert [i["id"] for i in listed["instances"]] == [i["id"] for i in doc["instances"]]
    assert listed["leftovers"] == []

    for n in ("lab-0", "lab-1"):
        gce.set_guest_attribute(n, "nestcloud/l1", json.dumps(READY))
    res = cli("wait", "lab", "--provider", "gcp", "--region", REGION, "--timeout", "30",
              "--interval", "0.05", "--json")
    assert res.exit_code == 0, res.output
    assert [r["status"] for r in json.loads(res.stdout)["instances"]] == ["ready", "ready"]

    again = cli(*LAUNCH, "--count", "2", "--ttl", "4h", "--tag", "team=infra")
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines()[0] == \
        f"lab: 2 instance(s) of n2-standard-4 in {REGION}: 0 new, 2 reused"

    res = cli("down", "lab", "--provider", "gcp", "--yes", "--json")
    assert res.exit_code == 0, res.output
    [result] = json.loads(res.stdout)["results"]
    assert sorted(result["terminated"]) == sorted(i["id"] for i in doc["instances"])
    assert fake_leftovers(gce, "lab") == []

    res = cli("down", "lab", "--provider", "gcp", "--yes")
    assert res.exit_code == 0, res.output
    assert res.stdout == "gcp: lab: nothing to remove\n"


def test_provider_options_by_name_without_the_environment(cli: Any, gce: GceFake,
                                                          catalog_file: Path) -> None:
    env = {"NESTCLOUD_CATALOG": str(catalog_file)}
    res = cli(*LAUNCH, "-o", f"project={gce.project}", "-o", f"gcp_endpoint={gce.url}",
              "--json", env=env)
    assert res.exit_code == 0, res.output
    res = cli("ls", "--provider", "gcp", "-o", f"--project={gce.project}",
              "-o", f"--gcp-endpoint={gce.url}", "--json", env=env)
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["instances"]) == 1


def test_no_project_with_a_local_endpoint_is_bad_input(cli: Any, gce: GceFake,
                                                       catalog_file: Path) -> None:
    res = cli(*LAUNCH, env={"NESTCLOUD_CATALOG": str(catalog_file),
                            "NESTCLOUD_GCP_ENDPOINT": gce.url})
    assert res.exit_code == 2
    assert "no GCP project" in res.stderr and "Traceback" not in res.output
    assert gce.requests == []


def test_dry_run_json_shows_the_exact_insert_bodies(cli: Any, gce: GceFake) -> None:
    res = cli(*LAUNCH, "--count", "2", "--ssh-cidr", "203.0.113.7/32", "--dry-run", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["dry_run"] is True and doc["created"] == []
    assert writes(gce) == []
    inserts = [r for r in doc["requests"] if r["operation"] == "instances.insert"]
    assert [r["params"]["body"]["name"] for r in inserts] == ["lab-0", "lab-1"]
    body = inserts[0]["params"]["body"]
    assert body["advancedMachineFeatures"] == {"enableNestedVirtualization": True}
    assert body["networkInterfaces"][0]["network"] == "global/networks/nestcloud"
    [fw] = [r for r in doc["requests"] if r["operation"] == "firewalls.insert"]
    assert fw["params"]["body"]["sourceRanges"] == ["203.0.113.7/32"]
    zone = inserts[0]["params"]["zone"]
    assert zone in {z for r in load_machine_types() if r.name == "n2-standard-4"
                    for z in r.zones}


def test_world_open_ssh_exit_2_and_nothing_sent(cli: Any, gce: GceFake) -> None:
    res = cli(*LAUNCH, "--ssh-cidr", "0.0.0.0/0")
    assert res.exit_code == 2
    assert "opens SSH to the whole internet" in res.stderr
    assert "Traceback" not in res.output
    assert gce.requests == []


@pytest.mark.parametrize("type_name,code", [("n2-standard-4", 0), ("e2-standard-4", 3),
                                            ("n2d-standard-4", 3), ("t2a-standard-4", 3)])
def test_check_exit_codes(cli: Any, gce: GceFake, type_name: str, code: int) -> None:
    res = cli("check", "--provider", "gcp", "--type", type_name, "--region", REGION,
              "--os", "ubuntu-24.04", "--hypervisor", "kvm")
    assert res.exit_code == code, res.output
    assert gce.requests == []


def test_e2_launch_is_refused_exit_3_and_nothing_sent(cli: Any, gce: GceFake) -> None:
    res = cli("launch", "--provider", "gcp", "--type", "e2-standard-4", "--region", REGION)
    assert res.exit_code == 3, res.output
    assert gce.requests == []


def test_capacity_error_exit_1_with_what_to_do(cli: Any, gce: GceFake) -> None:
    for z in sorted({z for r in load_machine_types() if r.name == "n2-standard-4"
                     for z in r.zones if z.startswith(REGION)}):
        gce.stockout(z)
    res = cli(*LAUNCH, "--json")
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert doc["error"] == "CapacityError"
    assert doc["message"].startswith("seat 0: no zone of us-central1 has capacity")
    assert doc["attempts"] and {a["scope"] for a in doc["attempts"]} == {"zone"}
    assert fake_leftovers(gce, "lab") == []


def test_org_policy_exit_1_naming_the_constraint(cli: Any, gce: GceFake) -> None:
    gce.disable_nested_by_org_policy()
    res = cli(*LAUNCH)
    assert res.exit_code == 1
    assert "constraints/compute.disableNestedVirtualization" in res.stderr
    assert "Traceback" not in res.output


def test_ls_shows_leftover_rules_and_down_removes_them(cli: Any, gce: GceFake) -> None:
    assert cli(*LAUNCH, "--ssh-cidr", "203.0.113.7/32").exit_code == 0
    for key in [k for k in gce.instances if k[1] == "lab-0"]:
        gce.instances.pop(key)
    res = cli("ls", "--provider", "gcp", "--json")
    assert json.loads(res.stdout)["leftovers"] == [{
        "provider": "gcp", "name": "lab", "region": "global", "kind": "firewall",
        "id": f"projects/{gce.project}/global/firewalls/nestcloud-lab-ssh"}]
    res = cli("down", "lab", "--provider", "gcp", "--yes")
    assert res.exit_code == 0, res.output
    assert fake_leftovers(gce, "lab") == []


def test_catalog_verify(cli: Any, gce: GceFake) -> None:
    res = cli("catalog", "verify", "--provider", "gcp", "--region", REGION, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["ok"] is True


def test_egress_nat_through_the_cli(cli: Any, gce: GceFake) -> None:
    res = cli(*LAUNCH, "--egress", "nat", "--json")
    assert res.exit_code == 0, res.output
    assert gce.calls("routers.insert")


def test_project_and_endpoint_flags(cli: Any, gce: GceFake, catalog_file: Path) -> None:
    res = cli(*LAUNCH, "--project", gce.project, "--gcp-endpoint", gce.url,
              env={"NESTCLOUD_CATALOG": str(catalog_file)})
    assert res.exit_code == 0, res.output
