"""The in-memory provider through the CLI: what a plugin that declares no capability gets.

Every command a user runs for a cloud works for a provider nestcloud has never heard of,
found only through its entry point (conftest.py): check, launch, ls, wait, down, lab up (with
an injected capacity failure and the all-or-nothing rollback), plan with the provider's own
catalog entries, and reap. Assertions are exact: exit codes, stdout/JSON and what is left in
the memory cloud afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from typer.testing import CliRunner

from nestcloud.bootstrap.marker import parse_marker
from nestcloud.spec import TAG_EXPIRES, TAG_LAB, TAG_NAME, TAG_OWNER, TAG_SEAT

from .conftest import MEMORY_CATALOG

WHERE = ("--provider", "memory", "--region", "mem-east-1")
LAUNCH = ("launch", *WHERE, "--type", "m1.small")


@pytest.fixture
def cli(world: Any) -> Any:
    from nestcloud.cli import app

    runner = CliRunner()

    def run(*args: str, env: dict[str, str | None] | None = None) -> Any:
        argv = [*args]
        if "--catalog" not in argv and argv[0] != "userdata":  # userdata reads no catalog
            argv += ["--catalog", str(MEMORY_CATALOG)]
        return runner.invoke(app, argv, env={"NESTCLOUD_DEBUG": "", **(env or {})})

    return run


def ids(world: Any, name: str | None = None) -> list[str]:
    return sorted(i.id for i in world.instances.values() if name is None or i.name == name)


def lab_file(tmp_path: Path, name: str = "mlab", seats: int = 3, extra: str = "") -> Path:
    f = tmp_path / f"{name}.yaml"
    f.write_text(f"name: {name}\nseats: {seats}\nseat: {{vcpus: 2, memory_gib: 4}}\n"
                 f"providers: [memory]\nttl: 2h\nbudget: 5\n{extra}")
    return f


# -- check --------------------------------------------------------------------------------


def test_check_a_nested_type_is_launchable(cli: Any) -> None:
    res = cli("check", *WHERE, "--type", "m1.small", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"ok": True, "provider": "memory", "type": "m1.small",
                                      "region": "mem-east-1", "findings": []}
    text = cli("check", *WHERE, "--type", "m1.small")
    assert (text.exit_code, text.stdout) == (0, "memory/m1.small in mem-east-1: launchable\n")


def test_check_a_type_without_nesting_is_refused(cli: Any) -> None:
    res = cli("check", *WHERE, "--type", "m1.flat", "--json")
    assert res.exit_code == 3, res.output
    doc = json.loads(res.stdout)
    assert (doc["ok"], [f["rule"] for f in doc["findings"]]) == (False, ["no-nesting"])
    assert doc["findings"][0]["message"].startswith(
        "m1.flat cannot run a hypervisor: memory does not offer nested virtualization on it")
    # The suggestion comes from the provider's own catalog entries, price and date included.
    assert doc["findings"][0]["suggestion"].startswith("use m1.small (2 vCPU, 4 GiB, nesting "
                                                       "nested): the cheapest memory type")
    assert "$0.1000/h on-demand in mem-east-1 (price date: 2026-12-07)" in \
        doc["findings"][0]["suggestion"]


# -- launch, ls, wait, down ---------------------------------------------------------------


def test_launch_json_then_relaunch_reconciles(cli: Any, world: Any) -> None:
    res = cli(*LAUNCH, "--name", "web", "--count", "2", "--ttl", "2h", "--tag", "team=infra",
              "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert (doc["provider"], doc["name"], doc["region"], doc["type"], doc["dry_run"]) == (
        "memory", "web", "mem-east-1", "m1.small", False)
    assert sorted(doc["created"]) == ids(world, "web") and len(doc["created"]) == 2
    assert doc["reused"] == []
    assert [i["seat"] for i in doc["instances"]] == [0, 1]
    for i in doc["instances"]:
        assert set(i["tags"]) == {TAG_NAME, TAG_OWNER, TAG_EXPIRES, TAG_SEAT, "team"}
        assert (i["tags"][TAG_NAME], i["tags"]["team"], i["state"]) == ("web", "infra",
                                                                         "running")
    again = cli(*LAUNCH, "--name", "web", "--count", "2", "--json")
    assert again.exit_code == 0, again.output
    second = json.loads(again.stdout)
    assert (second["created"], sorted(second["reused"])) == ([], ids(world, "web"))
    assert len(world.instances) == 2  # re-running never duplicates


def test_launch_text_and_dry_run(cli: Any, world: Any) -> None:
    dry = cli(*LAUNCH, "--name", "dry", "--count", "2", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    doc = json.loads(dry.stdout)
    assert (doc["dry_run"], doc["created"], len(doc["requests"])) == (True, [], 2)
    assert world.instances == {}
    res = cli(*LAUNCH, "--name", "txt")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == "txt: 1 instance(s) of m1.small in mem-east-1: 1 new, 0 reused"
    row = lines[3].split()
    assert row[:8] == ["memory", "txt", "0", ids(world)[0], "m1.small", "mem-east-1",
                       "mem-east-1a", "running"]


def test_ls_lists_from_the_provider(cli: Any, world: Any) -> None:
    assert cli(*LAUNCH, "--name", "one", "--count", "2").exit_code == 0
    assert cli(*LAUNCH, "--name", "two").exit_code == 0
    res = cli("ls", *WHERE, "--json")
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)["instances"]
    assert [(i["name"], i["seat"], i["provider"]) for i in got] == [
        ("one", 0, "memory"), ("one", 1, "memory"), ("two", 0, "memory")]
    only = cli("ls", *WHERE, "--name", "two", "--json")
    assert [i["id"] for i in json.loads(only.stdout)["instances"]] == ids(world, "two")
    none = cli("ls", *WHERE, "--name", "three")
    assert (none.exit_code, none.stdout) == (0, "")
    assert "no nestcloud instances named 'three' (memory)" in none.stderr


def test_wait_reads_the_console_marker(cli: Any, world: Any) -> None:
    assert cli(*LAUNCH, "--name", "w", "--count", "2").exit_code == 0
    res = cli("wait", "w", *WHERE, "--timeout", "30", "--interval", "0.01", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["exit_code"] == 0 and doc["provider"] == "memory"
    assert [(i["id"], i["status"], i["source"]) for i in doc["instances"]] == [
        (iid, "ready", "console") for iid in ids(world, "w")]


def test_wait_reports_a_failed_l1_and_a_silent_one(cli: Any, world: Any) -> None:
    assert cli(*LAUNCH, "--name", "w").exit_code == 0
    failed = cli("wait", "w", *WHERE, "--timeout", "30", "--interval", "0.01", "--json",
                 env={"NESTCLOUD_MEMORY_CONSOLE": "failed"})
    assert failed.exit_code == 1, failed.output
    inst = json.loads(failed.stdout)["instances"][0]
    assert (inst["status"], inst["failed_checks"]) == ("failed",
                                                       ["kvm_device: /dev/kvm missing"])
    silent = cli("wait", "w", *WHERE, "--timeout", "1s", "--interval", "0.05", "--json",
                 env={"NESTCLOUD_MEMORY_CONSOLE": "silent"})
    assert silent.exit_code == 4, silent.output
    assert json.loads(silent.stdout)["instances"][0]["status"] == "timeout"


def test_launch_wait_in_one_command(cli: Any) -> None:
    res = cli(*LAUNCH, "--name", "lw", "--wait", "--timeout", "30", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [i["status"] for i in doc["wait"]["instances"]] == ["ready"]


def test_down_leaves_nothing_and_repeats_harmlessly(cli: Any, world: Any) -> None:
    assert cli(*LAUNCH, "--name", "gone", "--count", "3").exit_code == 0
    assert cli(*LAUNCH, "--name", "stays").exit_code == 0
    made = ids(world, "gone")
    res = cli("down", "gone", *WHERE, "--yes", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"results": [
        {"provider": "memory", "name": "gone", "terminated": made, "deleted": [],
         "notes": []}]}
    assert ids(world, "gone") == [] and len(ids(world, "stays")) == 1
    again = cli("down", "gone", *WHERE, "--yes")
    assert (again.exit_code, again.stdout) == (0, "memory: gone: nothing to remove\n")


def test_catalog_verify_against_the_provider(cli: Any) -> None:
    res = cli("catalog", "verify", *WHERE, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"provider": "memory", "region": "mem-east-1",
                                      "checked": 3, "diffs": [], "missing_live": [],
                                      "ok": True}


# -- plan -----------------------------------------------------------------------------------


def test_plan_with_the_providers_own_catalog_entries(cli: Any) -> None:
    res = cli("plan", "--vcpus", "2", "--memory", "4", "--providers", "memory", "--seats", "3",
              "--hours", "2", "--json")
    assert res.exit_code == 0, res.output
    opts = json.loads(res.stdout)["options"]
    # m1.flat (no nesting) is never an option; cheapest first.
    assert [(o["type"], o["region"], o["usd_per_hour"], o["total_usd"], o["price_date"])
            for o in opts] == [("m1.small", "mem-east-1", 0.1, 0.6, "2026-12-07"),
                               ("m1.small", "mem-west-1", 0.12, 0.72, "2026-12-07"),
                               ("m1.large", "mem-east-1", 0.4, 2.4, "2026-12-07"),
                               ("m1.large", "mem-west-1", 0.44, 2.64, "2026-12-07")]
    short = cli("plan", "--vcpus", "2", "--memory", "4", "--providers", "memory", "--seats",
                "3", "--hours", "2", "--budget", "0.5", "--json")
    assert short.exit_code == 3, short.output


# -- labs: failure and all-or-nothing rollback ----------------------------------------------


def test_lab_up_status_down(cli: Any, world: Any, tmp_path: Path) -> None:
    lab = lab_file(tmp_path)
    res = cli("lab", "up", str(lab), "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert (doc["lab"], doc["dry_run"], doc["cost"]["option"]["region"]) == (
        "mlab", False, "mem-east-1")
    assert sorted(doc["launch"]["created"]) == ids(world, "mlab") and len(ids(world)) == 3
    assert [i["status"] for i in doc["ready"]["instances"]] == ["ready"] * 3
    assert {i.tags[TAG_LAB] for i in world.instances.values()} == {"mlab"}
    again = cli("lab", "up", str(lab), "--no-wait", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["launch"]["created"] == [] and len(world.instances) == 3
    st = cli("lab", "status", str(lab), "--json")
    assert (st.exit_code, json.loads(st.stdout)["running"]) == (0, 3)
    down = cli("lab", "down", str(lab), "--json")
    assert down.exit_code == 0, down.output
    assert sorted(json.loads(down.stdout)["terminated"]) == sorted(doc["launch"]["created"])
    assert world.instances == {}


def test_lab_up_fails_everywhere_and_leaves_nothing(cli: Any, world: Any, tmp_path: Path
                                                   ) -> None:
    lab = lab_file(tmp_path)
    # Every launch creates one seat, then the zone runs out: each attempt must be rolled back.
    res = cli("lab", "up", str(lab), "--no-wait", "--json",
              env={"NESTCLOUD_MEMORY_FAIL_AFTER": "1"})
    assert res.exit_code == 1, res.output
    doc = json.loads(res.stdout)
    assert (doc["error"], doc["exit_code"]) == ("CapacityError", 1)
    assert doc["message"] == ("no place could take the whole launch: 2 attempt(s) failed "
                              "across 2 region(s)")
    assert [(a["provider"], a["region"], a["type"], a["outcome"], a["scope"])
            for a in doc["attempts"]] == [
        ("memory", "mem-east-1", "m1.small", "failed", "zone"),
        ("memory", "mem-west-1", "m1.small", "failed", "zone")]
    assert world.instances == {}  # all or nothing: every seat an attempt created is gone
    # Each failed attempt is rolled back before failover tries the next place.
    assert [c for c in world.calls if c in ("launch", "down")] == ["launch", "down"] * 2
    assert "removed what this run created" in res.stderr


def test_lab_up_fails_over_to_the_next_region_and_cleans_the_first(
        cli: Any, world: Any, tmp_path: Path) -> None:
    lab = lab_file(tmp_path)
    res = cli("lab", "up", str(lab), "--no-wait", "--json",
              env={"NESTCLOUD_MEMORY_FAIL_AFTER": "2",
                   "NESTCLOUD_MEMORY_FAIL_REGIONS": "mem-east-1"})
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [(a["region"], a["outcome"]) for a in doc["attempts"]] == [
        ("mem-east-1", "failed"), ("mem-west-1", "ok")]
    assert {i.region for i in world.instances.values()} == {"mem-west-1"}
    assert sorted(i.seat for i in world.instances.values()) == [0, 1, 2]
    assert doc["cost"]["option"]["region"] == "mem-west-1"
    assert [c for c in world.calls if c in ("launch", "down")] == ["launch", "down", "launch"]


def test_lab_up_keep_partial_keeps_what_the_failed_launch_made(
        cli: Any, world: Any, tmp_path: Path) -> None:
    lab = lab_file(tmp_path)
    res = cli("lab", "up", str(lab), "--no-wait", "--keep-partial", "--json",
              env={"NESTCLOUD_MEMORY_FAIL_AFTER": "2"})
    assert res.exit_code == 1, res.output
    # Kept where it is: failing over would split the lab.
    assert "down" not in world.calls and world.calls.count("launch") == 1
    assert sorted((i.region, i.seat) for i in world.instances.values()) == [
        ("mem-east-1", 0), ("mem-east-1", 1)]


# -- reap -----------------------------------------------------------------------------------


def test_reap_removes_expired_groups_only(cli: Any, world: Any) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    world.now = lambda: now - dt.timedelta(hours=3)  # launched 3 h ago with a 1 h TTL
    assert cli(*LAUNCH, "--name", "old", "--count", "2", "--ttl", "1h").exit_code == 0
    world.now = lambda: now
    assert cli(*LAUNCH, "--name", "fresh", "--ttl", "4h").exit_code == 0
    assert cli(*LAUNCH, "--name", "forever").exit_code == 0
    old = ids(world, "old")
    dry = cli("reap", "--dry-run", "--json")  # default: every installed provider in the catalog
    assert dry.exit_code == 0, dry.output
    doc = json.loads(dry.stdout)
    assert [(g["name"], g["instances"]) for g in doc["expired"]] == [("old", old)]
    assert sorted(g["name"] for g in doc["kept"]) == ["forever", "fresh"]
    assert doc["removed"] == [] and len(world.instances) == 4
    res = cli("reap", "--providers", "memory", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [(r["provider"], r["name"], r["terminated"]) for r in doc["removed"]] == [
        ("memory", "old", old)]
    assert doc["errors"] == []
    assert sorted({i.name for i in world.instances.values()}) == ["forever", "fresh"]


def test_console_marker_is_the_documented_format(memory_plugin: ModuleType) -> None:
    from nestcloud.models import Instance

    p = memory_plugin.MemoryProvider(region="mem-east-1")
    inst = Instance(provider="memory", id="mem-x", name="n", region="mem-east-1",
                    type="m1.small", state="running")
    text = p.console(inst)
    assert "NESTCLOUD-L1 {" in text
    marker = parse_marker(text)
    assert marker is not None and marker.ready


# -- what the core must not assume about a provider ------------------------------------------


def test_userdata_renders_for_a_provider_the_core_never_heard_of(cli: Any) -> None:
    # The envelope comes from the provider's declaration (here: Capabilities() defaults).
    res = cli("userdata", "--provider", "memory", "--os", "ubuntu-24.04", "--hypervisor",
              "kvm", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert (doc["provider"], doc["kind"], doc["limit"], doc["readiness"]) == (
        "memory", "cloud-config", 16 * 1024, "console")
    assert doc["size"] <= 16 * 1024


def test_ls_and_down_without_provider_find_the_plugin(cli: Any, world: Any) -> None:
    assert cli(*LAUNCH, "--name", "found").exit_code == 0
    # No AWS credentials and no Azure subscription: only the plugin is usable, and nothing
    # may reach a real cloud.
    env = {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_SESSION_TOKEN": None,
           "AZURE_SUBSCRIPTION_ID": None}
    res = cli("ls", "--json", env=env)
    assert res.exit_code == 0, res.output
    assert [(i["provider"], i["name"]) for i in json.loads(res.stdout)["instances"]] == [
        ("memory", "found")]
    down = cli("down", "found", "--yes", "--json", env=env)
    assert down.exit_code == 0, down.output
    assert world.instances == {}


@pytest.mark.parametrize("extra", [
    ("--sandbox",),                        # no capabilities.local_endpoint
    ("--subscription", "0000"),            # an option only another provider declares
    ("--resource-group", "rg"),
])
def test_what_the_provider_does_not_declare_is_bad_input(cli: Any, world: Any,
                                                         extra: tuple[str, ...]) -> None:
    res = cli(*LAUNCH, "--name", "nope", *extra, "--json")
    assert res.exit_code == 2, res.output
    doc = json.loads(res.stdout)
    assert (doc["error"], doc["exit_code"]) == ("InputError", 2)
    assert extra[0] in doc["message"] and "memory" in doc["message"]
    assert world.instances == {} and "launch" not in world.calls


def test_lab_up_sandbox_needs_a_local_endpoint(cli: Any, world: Any, tmp_path: Path) -> None:
    res = cli("lab", "up", str(lab_file(tmp_path)), "--sandbox", "--json")
    assert res.exit_code == 2, res.output
    assert "memory" in json.loads(res.stdout)["message"]
    assert world.instances == {} and world.calls == []


def test_refresh_prices_without_a_price_source_is_bad_input(cli: Any, world: Any,
                                                            tmp_path: Path) -> None:
    cat = tmp_path / "catalog.yaml"
    cat.write_bytes(MEMORY_CATALOG.read_bytes())
    res = cli("catalog", "refresh-prices", "--provider", "memory", "--catalog", str(cat),
              "--json")
    assert res.exit_code == 2, res.output
    assert "memory" in json.loads(res.stdout)["message"]
    assert cat.read_bytes() == MEMORY_CATALOG.read_bytes()  # nothing rewritten


def test_catalog_verify_reports_a_disagreement(cli: Any, tmp_path: Path) -> None:
    wrong = tmp_path / "catalog.yaml"
    text = MEMORY_CATALOG.read_text()
    assert text.count("    vcpus: 4\n") == 1
    wrong.write_text(text.replace("    vcpus: 4\n", "    vcpus: 8\n"))
    res = cli("catalog", "verify", *WHERE, "--catalog", str(wrong), "--json")
    assert res.exit_code == 1, res.output
    doc = json.loads(res.stdout)
    assert (doc["ok"], doc["diffs"]) == (False, [{"type": "m1.large", "field": "vcpus",
                                                  "catalog": 8, "live": 4}])


def test_lab_up_failure_in_text_mode_shows_the_attempts_and_the_rollback(
        cli: Any, world: Any, tmp_path: Path) -> None:
    res = cli("lab", "up", str(lab_file(tmp_path)), "--no-wait",
              env={"NESTCLOUD_MEMORY_FAIL_AFTER": "1"})
    assert (res.exit_code, res.stdout) == (1, "")
    assert "attempts:" in res.stderr
    assert res.stderr.count("no capacity for m1.small in mem-") == 2  # one row per attempt
    assert ("error: no place could take the whole launch: 2 attempt(s) failed across 2 "
            "region(s)") in res.stderr
    assert world.instances == {}
