"""nestcloud.render: one renderer per format (terminal table, --json, notebook HTML) for every
result the CLI prints or the Python API returns.

The --json documents are a public contract: each is compared with the shape the CLI printed
before the renderers existed (``to_dict()`` plus what each command added). Every HTML view
escapes what users write (names, tags, type names): ``<script>`` never reaches a notebook.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import nestcloud
from nestcloud.bootstrap.doctor import LocalHost, DoctorItem, DoctorReport, Placement
from nestcloud.bootstrap.wait import InstanceReadiness, WaitReport
from nestcloud.checks import CheckResult, Finding
from nestcloud.failover import Attempt, Attempts
from nestcloud.lab import LabCost, LabDownResult, LabStatus, LabUpResult
from nestcloud.models import (CatalogDiff, DownResult, DownResults, Instance, LaunchResult,
                              Listing, PlannedRequest, VerifyResult)
from nestcloud.planner import PlanOption, PlanRequest, PlanResult, plan
from nestcloud.prices import RefreshResult
from nestcloud.reap import Group, ReapResult
from nestcloud.render import Rendered, html_table, table, to_html, to_json, to_table
from tests.planner.conftest import CATALOG_YAML

EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
EXPIRES = "2026-12-08T10:00:00+00:00"


def inst(name: str = "web", seat: int | None = 0, iid: str = "i-0a", **kw: Any) -> Instance:
    fields: dict[str, Any] = dict(provider="aws", id=iid, name=name, region="us-east-1",
                                  type="c8i.large", state="running", zone="us-east-1a",
                                  seat=seat, nested=True, private_ip="10.0.0.4",
                                  public_ip="203.0.113.7", expires=EXPIRES,
                                  tags={"team": EVIL})
    return Instance(**{**fields, **kw})


def option(**kw: Any) -> PlanOption:
    from nestcloud.catalog import parse_catalog

    res = plan(parse_catalog(CATALOG_YAML), PlanRequest(vcpus=2, memory_gib=4, seats=3,
                                                        hours=2, providers=["aws"]))
    return res.options[0].model_copy(update=kw)


def plan_result() -> PlanResult:
    from nestcloud.catalog import parse_catalog

    return plan(parse_catalog(CATALOG_YAML), PlanRequest(vcpus=4, memory_gib=8, seats=2,
                                                         hours=3, providers=["aws"]))


def cost(lab: str = "virt", budget: float | None = 5.0) -> LabCost:
    o = option()
    return LabCost(lab=lab, seats=3, hours=2.0, option=o, total_usd=o.total_usd,
                   price_date=o.price_date, budget=budget, within_budget=True)


def finding(message: str = "c7g.large is an Arm (arm64) type") -> Finding:
    return Finding(rule="arm64", severity="error", message=message,
                   suggestion="use c8i.large")


def wait_report(name: str = "web") -> WaitReport:
    return WaitReport(provider="aws", timeout_s=30.0, message="1 ready, 1 failed", instances=[
        InstanceReadiness(id="i-0a", name=name, status="ready", source="console",
                          message="L1 hypervisor ready", waited_s=1.5),
        InstanceReadiness(id="i-0b", name=name, status="failed", source="tag",
                          failed_checks=["kvm_device: /dev/kvm missing"],
                          message="L1 reported failed: kvm_device: /dev/kvm missing")])


def doctor(summary: str = "vmx present") -> DoctorReport:
    return DoctorReport(ready=False, verdict="this machine cannot run KVM guests: dev_kvm",
                        placement=Placement(is_vm=True, platform="QEMU/KVM", depth="L1"),
                        items=[DoctorItem(name="cpu_flag", ok=True, summary=summary,
                                          explanation="A hypervisor needs VT-x."),
                               DoctorItem(name="virt_host_validate", ok=False, optional=True,
                                          summary="WARN only", explanation=""),
                               DoctorItem(name="dev_kvm", ok=False, summary="missing",
                                          explanation="")],
                        payload={"status": "failed"},
                        local_host=LocalHost(mode="emulation", summary=summary))


def refresh(type_name: str = "c8i.large") -> RefreshResult:
    return RefreshResult(provider="aws", regions=["us-east-1"], source="aws-prices-2026-12-07",
                         date="2026-12-07", updated=2, changed=[
                             {"type": type_name, "region": "us-east-1",
                              "old": {"on_demand": 0.1, "spot": 0.03},
                              "new": {"on_demand": 0.11, "spot": None}},
                             {"type": "m8i.xlarge", "region": "us-east-1", "old": None,
                              "new": {"on_demand": 0.25, "spot": None}}])


def reap_result(name: str = "old", dry_run: bool = True) -> ReapResult:
    return ReapResult(now="2026-11-29T12:00:00+00:00", dry_run=dry_run, places=3, expired=[
        Group(provider="aws", region="us-east-1", name=name, instances=["i-1", "i-2"],
              expires="2026-11-29T10:00:00+00:00", expired=True, reason="expired 2h00m ago")],
        kept=[Group(provider="aws", region="us-east-1", name="new", instances=["i-3"],
                    expires=None, expired=False,
                    reason="no nestcloud:expires tag on every instance: kept (no TTL was set)")])


def attempts(reason: str = "no capacity in us-east-1a") -> Attempts:
    return Attempts.of([
        Attempt("aws", "us-east-1", "c8i.large", "us-east-1a", "failed", "zone",
                "InsufficientInstanceCapacity", reason),
        {"provider": "aws", "region": "us-west-2", "type": "c8i.large", "zone": None,
         "outcome": "ok", "scope": None, "code": None, "reason": "launched"}])


# -- JSON: the documents the CLI printed before, unchanged --------------------------------


def test_json_of_pydantic_results_is_their_dump() -> None:
    for r in (inst(), LaunchResult(provider="aws", name="web", region="us-east-1",
                                   type="c8i.large", instances=[inst()], created=["i-0a"]),
              DownResult(provider="aws", name="web", terminated=["i-0a"]), cost(),
              LabStatus(lab="virt", seats=3, instances=[inst()], running=1, missing=2),
              LabUpResult(lab="virt", dry_run=True, cost=cost()), doctor()):
        assert to_json(r) == r.to_dict() == r.model_dump(mode="json")


def test_json_of_check_is_the_cli_document_in_its_key_order() -> None:
    res = CheckResult(ok=False, provider="aws", type="c7g.large", region=None,
                      findings=[finding()])
    doc = to_json(res)
    assert list(doc) == ["ok", "provider", "type", "region", "findings"]
    assert doc == {"ok": False, "provider": "aws", "type": "c7g.large", "region": None,
                   "findings": [{"rule": "arm64", "severity": "error",
                                 "message": "c7g.large is an Arm (arm64) type",
                                 "suggestion": "use c8i.large"}]}
    assert doc == res.to_dict()


def test_json_of_ls_down_and_verify_wrap_their_results_as_before() -> None:
    i = inst()
    left = [{"provider": "aws", "name": "gone", "region": "us-east-1",
             "kind": "security-group", "id": "sg-1"}]
    assert to_json(Listing(instances=[i], leftovers=left)) == {
        "instances": [i.to_dict()], "leftovers": left}
    d = DownResult(provider="aws", name="web", terminated=["i-0a"], notes=["n"])
    assert to_json(DownResults(results=[d])) == {"results": [d.to_dict()]}
    v = VerifyResult(provider="aws", region="us-east-1", checked=3, missing_live=["x"],
                     diffs=[CatalogDiff(type="c8i.large", field="vcpus", catalog=4, live=2)])
    doc = to_json(v)
    assert doc == {**v.to_dict(), "ok": False} and list(doc)[-1] == "ok"


def test_json_of_plan_is_request_and_options_and_rejected_with_explain() -> None:
    res = plan_result()
    assert to_json(res) == {"request": res.request.to_dict(),
                            "options": [o.to_dict() for o in res.options]}
    explained = to_json(res, explain=True)
    assert list(explained) == ["request", "options", "rejected"]
    assert explained["rejected"] == [r.to_dict() for r in res.rejected] != []


def test_json_of_labs_reap_wait_refresh_and_attempts() -> None:
    d = DownResult(provider="aws", name="virt", terminated=["i-1", "i-2"])
    assert to_json(LabDownResult(lab="virt", results=[d], notes=["x"])) == {
        "lab": "virt", "terminated": ["i-1", "i-2"], "results": [d.to_dict()], "notes": ["x"]}
    r = reap_result()
    doc = to_json(r)
    assert doc == r.to_dict() and "places" not in doc  # said in the text only
    assert list(doc) == ["now", "dry_run", "expired", "kept", "removed", "errors"]
    w = wait_report()
    assert to_json(w) == {**w.model_dump(mode="json"), "exit_code": 1} == w.to_dict()
    p = refresh()
    assert to_json(p, file="catalog.yaml") == {**p.to_dict(), "file": "catalog.yaml"}
    assert to_json(p) == p.to_dict()
    a = attempts()
    assert to_json(a) == [dataclasses.asdict(x) for x in a.attempts]


# -- the terminal ---------------------------------------------------------------------------


def test_table_is_plain_and_aligned() -> None:
    assert table([["a", "long cell"], ["bbb", "c"]], ["h1", "h2"]) == (
        "h1   h2\n---  ---------\na    long cell\nbbb  c")


def test_text_of_check() -> None:
    ok = CheckResult(ok=True, provider="aws", type="c8i.large", region="us-east-1",
                     findings=[])
    assert to_table(ok) == "aws/c8i.large in us-east-1: launchable"
    no = CheckResult(ok=False, provider="aws", type="c7g.large", region=None,
                     findings=[finding()])
    assert to_table(no) == ("aws/c7g.large: refused\n"
                            "  [error] arm64: c7g.large is an Arm (arm64) type\n"
                            "      -> use c8i.large")


def test_text_of_launch_and_its_dry_run() -> None:
    res = LaunchResult(provider="aws", name="web", region="us-east-1", type="c8i.large",
                       instances=[inst(), inst(seat=1, iid="i-0b", nested=None,
                                           public_ip=None, expires=None, zone=None)],
                       created=["i-0b"], reused=["i-0a"], sandbox=True)
    assert to_table(res).splitlines() == [
        "web: 2 instance(s) of c8i.large in us-east-1 (sandbox): 1 new, 1 reused",
        "provider  name  seat  id    type       region     zone        state    nested  "
        "public ip    expires",
        "--------  ----  ----  ----  ---------  ---------  ----------  -------  ------  "
        "-----------  -------------------------",
        "aws       web   0     i-0a  c8i.large  us-east-1  us-east-1a  running  yes     "
        "203.0.113.7  2026-12-08T10:00:00+00:00",
        "aws       web   1     i-0b  c8i.large  us-east-1  -           running  ?       "
        "-            -"]
    dry = LaunchResult(provider="aws", name="web", region="us-east-1", type="c8i.large",
                       dry_run=True, requests=[PlannedRequest(
                           service="ec2", operation="RunInstances",
                           params={"MinCount": 1, "UserData": "A" * 81})])
    assert to_table(dry) == (
        "dry run: 1 request(s) would be sent (aws, us-east-1); nothing was created\n"
        'ec2 RunInstances {\n  "MinCount": 1,\n'
        '  "UserData": "<81 base64 chars; --json shows them>"\n}')


def test_text_of_ls_and_its_leftovers() -> None:
    left = [{"provider": "aws", "name": "gone", "region": "us-east-1",
             "kind": "security-group", "id": "sg-1"}]
    assert to_table(Listing()) == ""  # stdout stays empty: the CLI says so on stderr
    only_left = to_table(Listing(leftovers=left)).splitlines()
    assert only_left == [
        "leftovers (a name without instances; `nestcloud down NAME` removes them):",
        "provider  name  region     kind            id",
        "--------  ----  ---------  --------------  ----",
        "aws       gone  us-east-1  security-group  sg-1"]
    both = to_table(Listing(instances=[inst()], leftovers=left)).splitlines()
    assert both[0].startswith("provider  name  seat  id") and both[2].startswith("aws ")
    assert both[3:5] == ["", only_left[0]]


def test_text_of_down_and_verify() -> None:
    res = DownResults(results=[
        DownResult(provider="aws", name="web", terminated=["i-1", "i-2"], deleted=["sg-1"]),
        DownResult(provider="azure", name="web")])
    assert to_table(res) == ("aws: web: terminated 2 instance(s) (i-1, i-2); deleted sg-1\n"
                             "azure: web: nothing to remove")
    v = VerifyResult(provider="aws", region="us-east-1", checked=3, missing_live=["m8i.xlarge"],
                     diffs=[CatalogDiff(type="c8i.large", field="vcpus", catalog=4, live=2)])
    assert to_table(v).splitlines() == [
        "type       field  catalog  live", "---------  -----  -------  ----",
        "c8i.large  vcpus  4        2",
        "m8i.xlarge: in the catalog for us-east-1 but the live API does not offer it there",
        "catalog DISAGREES with the live aws API in us-east-1: 3 type(s) checked, "
        "1 difference(s), 1 missing"]
    assert to_table(VerifyResult(provider="aws", region="us-east-1", checked=3)) == (
        "catalog agrees with the live aws API in us-east-1: 3 type(s) checked, "
        "0 difference(s), 0 missing")


def test_text_of_plan_honours_limit_and_explain() -> None:
    res = plan_result()
    assert len(res.options) > 1
    lines = to_table(res, limit=1).splitlines()
    assert lines[0] == ("Plan for 2 seat(s) of 4 vCPU / 8 GiB, kvm on ubuntu-24.04, 3 h, "
                        "on-demand")
    assert lines[1].split() == ["#", "provider", "region", "type", "nesting", "vCPU", "GiB",
                                "instances", "USD/h", "each", "total", "USD", "price", "date"]
    assert lines[3].split()[:4] == ["1", "aws", res.options[0].region, res.options[0].type]
    assert lines[4] == f"... {len(res.options) - 1} more (--limit 0 shows all)"
    assert lines[5] == f"cheapest: {res.options[0].line()}"
    assert "rejected" not in to_table(res)
    explained = to_table(res, limit=0, explain=True).splitlines()
    assert len([x for x in explained if x[:1].isdigit()]) == len(res.options)
    assert explained[-len(res.rejected) - 1] == f"rejected ({len(res.rejected)}):"
    r = res.rejected[0]
    assert explained[-len(res.rejected)] == (f"  {r.provider}/{r.type} "
                                             f"({r.region or 'any region'}): {r.code}: "
                                             f"{r.reason}")


def test_text_of_lab_up_status_and_down() -> None:
    c = cost()
    o = c.option
    head = [f"lab virt: 3 seat(s) of aws/{o.type} in {o.region}, {o.vcpus} vCPU / "
            f"{o.memory_gib:g} GiB, nested",
            f"cost: ${o.usd_per_hour:.4f}/h x {o.instances} x 2 h = ${c.total_usd:.2f} "
            f"(budget $5.00) (price date: {c.price_date})"]
    assert to_table(LabUpResult(lab="virt", dry_run=True, cost=c)).splitlines() == [
        *head, "dry run: nothing was created"]
    launch = LaunchResult(provider="aws", name="virt", region="us-east-1", type="c8i.large",
                          instances=[inst("virt", 1, "i-0b"), inst("virt", 0, "i-0a")],
                          created=["i-0b"], reused=["i-0a"])
    up = LabUpResult(lab="virt", dry_run=False, cost=c, launch=launch, ready={
        "message": "1 ready", "instances": [{"name": "virt", "id": "i-0a", "status": "ready",
                                             "message": ""}]})
    assert to_table(up).splitlines() == [
        *head,
        "seat  name  id    provider  region     type       state    ip           expires",
        "----  ----  ----  --------  ---------  ---------  -------  -----------  "
        "-------------------------",
        "0     virt  i-0a  aws       us-east-1  c8i.large  running  203.0.113.7  " + EXPIRES,
        "1     virt  i-0b  aws       us-east-1  c8i.large  running  203.0.113.7  " + EXPIRES,
        "1 seat(s) launched, 1 already running",
        "readiness: 1 ready",
        "readiness: virt i-0a: ready"]
    st = LabStatus(lab="virt", seats=3, instances=[inst("virt", public_ip=None)], running=1,
                   missing=2)
    assert to_table(st).splitlines()[0] == "lab virt: 1/3 running, 2 missing"
    assert to_table(st).splitlines()[3].split()[7] == "10.0.0.4"  # the private one
    assert to_table(LabStatus(lab="virt", seats=3, missing=3)) == "lab virt: 0/3 running, 3 missing"
    down = LabDownResult(lab="virt", results=[
        DownResult(provider="aws", name="virt", terminated=["i-1", "i-2"])])
    assert to_table(down) == "lab virt: terminated 2 instance(s): i-1, i-2"
    assert to_table(LabDownResult(lab="virt")) == "lab virt: terminated 0 instance(s)"


def test_text_of_reap_wait_doctor_refresh_and_attempts() -> None:
    assert to_table(reap_result()).splitlines() == [
        "provider  region     name  instances  expires                    action        why",
        "--------  ---------  ----  ---------  -------------------------  ------------  "
        + "-" * len("no nestcloud:expires tag on every instance: kept (no TTL was set)"),
        "aws       us-east-1  old   2          2026-11-29T10:00:00+00:00  would remove  "
        "expired 2h00m ago",
        "aws       us-east-1  new   1          -                          kept          "
        "no nestcloud:expires tag on every instance: kept (no TTL was set)",
        "1 expired group(s) would be removed (dry run), 1 kept; scanned 3 place(s)"]
    assert "  removed  " in to_table(reap_result(dry_run=False))
    assert to_table(ReapResult(now="t", dry_run=False)) == (
        "0 expired group(s) removed, 0 kept; scanned 0 place(s)")
    assert to_table(wait_report()).splitlines() == [
        "name  id    status  from     detail",
        "----  ----  ------  -------  ------------------------------------------------",
        "web   i-0a  ready   console  L1 hypervisor ready",
        "web   i-0b  failed  tag      L1 reported failed: kvm_device: /dev/kvm missing"]
    assert to_table(doctor()).splitlines() == [
        "nestcloud doctor: this machine cannot run KVM guests: dev_kvm", "",
        "[ok  ] cpu_flag: vmx present", "       A hypervisor needs VT-x.",
        "[warn] virt_host_validate: WARN only", "[FAIL] dev_kvm: missing"]
    assert to_table(refresh(), file="catalog.yaml") == (
        "catalog.yaml: 2 aws price(s) in us-east-1 now from aws-prices-2026-12-07 "
        "(price date: 2026-12-07); 2 changed")
    code = "code".ljust(len("InsufficientInstanceCapacity"))
    assert to_table(attempts()).splitlines() == [
        "attempts:",
        f"provider  region     type       zone        outcome  scope  {code}  reason",
        "--------  ---------  ---------  ----------  -------  -----  ----------------------------"
        "  -------------------------",
        "aws       us-east-1  c8i.large  us-east-1a  failed   zone   InsufficientInstanceCapacity"
        "  no capacity in us-east-1a",
        "aws       us-west-2  c8i.large  -           ok       -      -                           "
        "  launched"]


# -- notebooks -----------------------------------------------------------------------------


def _evil_results() -> list[Rendered]:
    """One of every result, with user input (a name, a tag, a type) that is markup."""
    evil_option = option(type=EVIL)
    return [
        inst(EVIL),
        LaunchResult(provider="aws", name=EVIL, region="us-east-1", type="c8i.large",
                     instances=[inst(EVIL)]),
        Listing(instances=[inst(EVIL)]),
        DownResult(provider="aws", name=EVIL, terminated=["i-1"]),
        DownResults(results=[DownResult(provider="aws", name=EVIL)]),
        CatalogDiff(type=EVIL, field="vcpus", catalog=4, live=2),
        VerifyResult(provider="aws", region="us-east-1", checked=1,
                     diffs=[CatalogDiff(type=EVIL, field="vcpus", catalog=4, live=2)]),
        CheckResult(ok=False, provider="aws", type=EVIL, region=None,
                    findings=[finding(f"unknown type {EVIL}")]),
        evil_option,
        PlanResult(request=PlanRequest(type=EVIL), options=[evil_option]),
        LabCost(lab=EVIL, seats=1, hours=1, option=evil_option, total_usd=1.0,
                price_date="2025-06-01", budget=None, within_budget=True),
        LabStatus(lab=EVIL, seats=1, instances=[inst(EVIL)], running=1),
        LabUpResult(lab=EVIL, dry_run=True, cost=cost()),
        LabDownResult(lab=EVIL, results=[DownResult(provider="aws", name=EVIL)]),
        reap_result(EVIL),
        wait_report(EVIL),
        doctor(EVIL),
        refresh(EVIL),
        attempts(EVIL),
    ]


@pytest.mark.parametrize("result", _evil_results(), ids=lambda r: type(r).__name__)
def test_html_escapes_what_users_write(result: Rendered) -> None:
    page = to_html(result)
    assert EVIL not in page and "<script" not in page
    assert ESCAPED in page
    assert page.startswith("<table>") and page.endswith("</table>")
    # One notebook view, inherited: no result type has its own.
    assert type(result)._repr_html_ is Rendered._repr_html_
    assert result._repr_html_() == page


def test_html_caption_headers_and_cells() -> None:
    page = to_html(LabStatus(lab="virt", seats=2, instances=[inst("virt")], running=1,
                             missing=1))
    assert page.startswith("<table><caption>lab virt: 1/2 running, 1 missing</caption>"
                           "<thead><tr><th>seat</th><th>name</th>")
    assert "<td>virt</td><td>i-0a</td>" in page and f"<td>{EXPIRES}</td>" in page
    assert html_table(["a&b"], [["<i>"]], "x < y") == (
        "<table><caption>x &lt; y</caption><thead><tr><th>a&amp;b</th></tr></thead>"
        "<tbody><tr><td>&lt;i&gt;</td></tr></tbody></table>")


def test_html_of_an_empty_plan_says_why() -> None:
    from nestcloud.catalog import parse_catalog

    res = plan(parse_catalog(CATALOG_YAML), PlanRequest(vcpus=999, memory_gib=8))
    page = to_html(res)
    assert page.startswith("<p><b>No feasible option</b> for 1 seat(s) of 999 vCPU / 8 GiB")
    assert page.endswith("</p>") and str(res.refusal()).replace("'", "&#x27;") in page


def test_results_without_a_table_fall_back_to_their_text_repr() -> None:
    assert PlannedRequest(service="ec2", operation="X", params={})._repr_html_() is None
    assert PlanRequest(vcpus=1, memory_gib=1)._repr_html_() is None


def test_no_module_renders_html_by_itself() -> None:
    """Every ``_repr_html_`` is Rendered's: new result types declare, they do not format."""
    own = []
    for mod in pkgutil.walk_packages(nestcloud.__path__, "nestcloud."):
        if mod.name.endswith("__main__"):
            continue
        module = importlib.import_module(mod.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == mod.name and "_repr_html_" in vars(cls) and cls is not Rendered:
                own.append(f"{mod.name}.{cls.__name__}")
    assert own == []


# -- start-up ------------------------------------------------------------------------------


def test_render_imports_only_the_standard_library() -> None:
    code = ("import sys, nestcloud.render; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pydantic', 'yaml', 'typer', 'nestcloud', 'html')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "['nestcloud', 'nestcloud.errors', 'nestcloud.render']"


def test_check_renders_without_loading_the_result_models(tmp_path: Path) -> None:
    from tests.test_imports import loaded_modules

    for args in (["check", "--provider", "aws", "--type", "c8i.large", "--region",
                  "us-east-1"], ["check", "--provider", "aws", "--type", "c7g.large",
                                 "--json"]):
        code, modules = loaded_modules(tmp_path, args)
        assert code in (0, 3)
        assert "nestcloud.render" in modules
        assert not {"nestcloud.models", "nestcloud.lab", "nestcloud.planner"} & set(modules)


def test_the_api_returns_the_rendered_results() -> None:
    from nestcloud.catalog import parse_catalog

    chk = nestcloud.check("aws", EVIL, catalog=parse_catalog(CATALOG_YAML))
    assert isinstance(chk, CheckResult) and not chk.ok
    assert ESCAPED in chk._repr_html_() and EVIL not in chk._repr_html_()
