"""Labs against a real local EC2 endpoint (moto's server): up -> status -> down, re-runs,
budget refusals that create nothing. What exists is always checked by listing the endpoint."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from nestcloud.provider import UserDataEnvelope
from nestcloud.bootstrap import RenderedUserData
from nestcloud.catalog import Catalog, parse_catalog
from nestcloud.errors import BudgetError
from nestcloud.lab import Lab
from nestcloud.spec import TAG_EXPIRES, TAG_LAB, TAG_NAME

# Made-up prices for a test catalog; sizes as moto reports them.
CATALOG_YAML = """
schema_version: 1
sources:
  facts: {description: "test facts"}
  prices: {description: "test prices", date: 2025-06-01}
types:
  - {provider: aws, name: c8i.large, family: c8i, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-11-29,
     regions: [us-east-1, us-west-2],
     prices: {us-east-1: {on_demand: 0.10, source: prices},
              us-west-2: {on_demand: 0.09, source: prices}}}
  - {provider: aws, name: c8i.xlarge, family: c8i, vcpus: 4, memory_gib: 8, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-11-29,
     regions: [us-east-1], prices: {us-east-1: {on_demand: 0.20, source: prices}}}
"""


@pytest.fixture
def catalog() -> Catalog:
    return parse_catalog(CATALOG_YAML, "test-catalog")


@pytest.fixture(autouse=True)
def fake_bootstrap(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The renderer is another unit: record the user data the lab passes, return a body."""
    extras: list[str | None] = []

    def render(envelope: UserDataEnvelope, os_alias: str, hypervisor: str, *,
               provider_name: str = "", extra: str | None = None,
               l2_smoke: bool = False) -> RenderedUserData:
        extras.append(extra)
        return RenderedUserData(kind="cloud-config", body=b"#cloud-config\n", gzipped=False)

    monkeypatch.setattr("nestcloud.bootstrap.render_user_data", render)
    return extras


@pytest.fixture
def opened(moto_endpoint: str) -> tuple[Any, dict[tuple[str, str], Any]]:
    from providers.aws import AwsProvider

    made: dict[tuple[str, str], Any] = {}

    def make(provider: str, region: str) -> Any:
        assert provider == "aws"
        if (provider, region) not in made:
            p = AwsProvider(region=region, endpoint_url=moto_endpoint)
            p.sleep = lambda s: None
            made[(provider, region)] = p
        return made[(provider, region)]

    return make, made


def live(moto_endpoint: str, name: str, region: str = "us-east-1") -> list[dict[str, Any]]:
    import boto3

    ec2 = boto3.client("ec2", region_name=region, endpoint_url=moto_endpoint)
    out = []
    for r in ec2.describe_instances(Filters=[{"Name": f"tag:{TAG_NAME}", "Values": [name]}])[
            "Reservations"]:
        out += [i for i in r["Instances"] if i["State"]["Name"] not in ("terminated",
                                                                       "shutting-down")]
    return out


def new_seats(res: Any) -> list[str]:
    """Instances this run created (``created`` also names other resources, e.g. the SG)."""
    ids = {i.id for i in res.launch.instances}
    return [c for c in res.launch.created if c in ids]


def new_name() -> str:
    return "lab" + uuid.uuid4().hex[:8]


def make_lab(catalog: Catalog, name: str, **kw: Any) -> Lab:
    args: dict[str, Any] = dict(vcpus=2, memory_gib=4, providers=["aws"], os="al2023",
                                hypervisor="firecracker", ttl="2h", tags={"course": "t"},
                                user_data="echo seat", catalog=catalog)
    args.update(kw)
    return Lab(name, kw.pop("seats", 3), **{k: v for k, v in args.items() if k != "seats"})


def test_up_status_rerun_down(moto_endpoint: str, catalog: Catalog, opened: Any,
                              fake_bootstrap: list[str | None]) -> None:
    make, made = opened
    name = new_name()
    lab = make_lab(catalog, name, budget=1.0)
    res = lab.up(sandbox=True, providers=make)
    # Cheapest: c8i.large in us-west-2 at $0.09 x 3 seats x 2 h = $0.54.
    assert (res.cost.option.type, res.cost.option.region) == ("c8i.large", "us-west-2")
    assert res.cost.total_usd == pytest.approx(0.54)
    assert res.cost.price_date == "2025-06-01"
    assert res.launch is not None and len(new_seats(res)) == 3
    assert fake_bootstrap == ["echo seat"]
    assert res.ready["sandbox"] is True
    insts = live(moto_endpoint, name, "us-west-2")
    assert len(insts) == 3
    tags = {t["Key"]: t["Value"] for t in insts[0]["Tags"]}
    assert tags[TAG_LAB] == name and tags["course"] == "t" and TAG_EXPIRES in tags
    assert {i["InstanceType"] for i in insts} == {"c8i.large"}

    st = lab.status(sandbox=True, providers=make)
    assert (st.running, st.missing, len(st.instances)) == (3, 0, 3)

    # Re-run after a price change that makes us-east-1 cheaper: the lab stays where it is
    # and nothing new is created.
    cheaper = parse_catalog(CATALOG_YAML.replace("on_demand: 0.10", "on_demand: 0.01"))
    again = make_lab(cheaper, name, budget=1.0).up(sandbox=True, providers=make)
    assert again.reused_placement
    assert again.launch is not None and new_seats(again) == []
    assert len(again.launch.reused) == 3
    assert live(moto_endpoint, name, "us-east-1") == []
    assert len(live(moto_endpoint, name, "us-west-2")) == 3

    # One seat lost: re-running launches exactly the missing one.
    import boto3

    ec2 = boto3.client("ec2", region_name="us-west-2", endpoint_url=moto_endpoint)
    ec2.terminate_instances(InstanceIds=[insts[0]["InstanceId"]])
    third = lab.up(sandbox=True, providers=make)
    assert third.launch is not None and len(new_seats(third)) == 1
    assert len(live(moto_endpoint, name, "us-west-2")) == 3

    down = lab.down(sandbox=True, providers=make)
    assert len(down.terminated) == 3
    assert live(moto_endpoint, name, "us-west-2") == []
    again_down = lab.down(sandbox=True, providers=make)
    assert again_down.terminated == [] and again_down.notes == [f"lab {name}: nothing to remove"]


def test_budget_refusal_creates_nothing(moto_endpoint: str, catalog: Catalog,
                                        opened: Any) -> None:
    make, made = opened
    name = new_name()
    lab = make_lab(catalog, name, seats=3, budget=0.5)
    with pytest.raises(BudgetError) as ei:
        lab.up(sandbox=True, providers=make)
    assert ei.value.exit_code == 3
    assert str(ei.value) == (
        f"lab {name}: 3 seat(s) for 2 h cost $0.54 with the cheapest option (aws/c8i.large in "
        "us-west-2 at $0.0900/h x 3 x 2 h = $0.54 (price date: 2025-06-01)), over the $0.50 "
        "budget; nothing was created\n"
        "  hint: raise the budget to at least $0.54, or shorten the ttl to 111 minutes, or cut "
        "seats to 2")
    for region in ("us-east-1", "us-west-2"):
        assert live(moto_endpoint, name, region) == []
    # Nothing was even launched through a provider: only listing happened.
    assert all(not hasattr(p, "launched") for p in made.values())


def test_dry_run_calls_no_cloud(catalog: Catalog) -> None:
    def explode(provider: str, region: str) -> Any:
        raise AssertionError("dry run must not open a provider")

    res = make_lab(catalog, new_name(), budget=1.0).up(dry_run=True, providers=explode)
    assert res.dry_run and res.launch is None
    assert res.cost.total_usd == pytest.approx(0.54)
    assert "<td>c8i.large</td>" not in res._repr_html_()  # no instances yet
    assert "dry run" in res._repr_html_()


# -- through the CLI and the real sandbox endpoint ------------------------------------------


def test_cli_lab_cycle_on_the_sandbox(tmp_path: Path, catalog: Catalog,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from providers.aws import sandbox
    from nestcloud.cli import app

    cat = tmp_path / "catalog.yaml"
    cat.write_text(CATALOG_YAML)
    name = new_name()
    labfile = tmp_path / "lab.yaml"
    labfile.write_text(f"name: {name}\nseats: 2\nseat: {{vcpus: 2, memory_gib: 4}}\n"
                       "providers: [aws]\nos: al2023\nhypervisor: firecracker\nttl: 1h\n"
                       "budget: 0.5\n")
    runner = CliRunner()
    try:
        r = runner.invoke(app, ["lab", "up", str(labfile), "--dry-run", "--catalog", str(cat)])
        assert r.exit_code == 0, r.stderr
        assert r.stdout.splitlines() == [
            f"lab {name}: 2 seat(s) of aws/c8i.large in us-west-2, 2 vCPU / 4 GiB, nested",
            "cost: $0.0900/h x 2 x 1 h = $0.18 (budget $0.50) (price date: 2025-06-01)",
            "dry run: nothing was created",
        ]
        r = runner.invoke(app, ["lab", "up", str(labfile), "--sandbox", "--json",
                                "--catalog", str(cat)])
        assert r.exit_code == 0, r.stderr
        doc = json.loads(r.stdout)
        assert len([c for c in doc["launch"]["created"] if c.startswith("i-")]) == 2
        assert doc["cost"]["price_date"] == "2025-06-01"
        r = runner.invoke(app, ["lab", "status", str(labfile), "--sandbox", "--json",
                                "--catalog", str(cat)])
        assert r.exit_code == 0, r.stderr
        st = json.loads(r.stdout)
        assert (st["running"], st["missing"]) == (2, 0)
        r = runner.invoke(app, ["lab", "down", str(labfile), "--sandbox", "--catalog", str(cat)])
        assert r.exit_code == 0, r.stderr
        assert r.stdout.startswith(f"lab {name}: terminated 2 instance(s): i-")
        r = runner.invoke(app, ["lab", "status", str(labfile), "--sandbox", "--catalog",
                                str(cat)])
        assert r.stdout == f"lab {name}: 0/2 running, 2 missing\n"
        # Over budget: exit 3, nothing created.
        labfile.write_text(labfile.read_text().replace("budget: 0.5", "budget: 0.1"))
        r = runner.invoke(app, ["lab", "up", str(labfile), "--sandbox", "--catalog", str(cat)])
        assert r.exit_code == 3
        assert "over the $0.10 budget; nothing was created" in r.stderr
        r = runner.invoke(app, ["lab", "status", str(labfile), "--sandbox", "--json",
                                "--catalog", str(cat)])
        assert json.loads(r.stdout)["instances"] == []
    finally:
        sandbox.stop()


def test_readiness_timeout_is_reported(moto_endpoint: str, catalog: Catalog,
                                       opened: Any) -> None:
    """Off the sandbox the lab waits for the in-guest marker; moto's canned console has none."""
    make, _ = opened
    name = new_name()
    lab = make_lab(catalog, name, seats=1)
    try:
        res = lab.up(providers=make, timeout_s=0.3, interval_s=0.1)
        assert res.ready["exit_code"] == 4
        assert [i["status"] for i in res.ready["instances"]] == ["timeout"]
    finally:
        lab.down(providers=make)
    assert live(moto_endpoint, name, "us-west-2") == []


def flaky_at(moto_endpoint: str, seat: int) -> Any:
    """Fresh providers whose RunInstances fails for one seat, as EC2 does out of capacity."""
    from nestcloud.errors import CapacityError
    from providers.aws import AwsProvider

    def make(provider: str, region: str) -> Any:
        prov = AwsProvider(region=region, endpoint_url=moto_endpoint)
        prov.sleep = lambda s: None
        real = prov.run_seat

        def run_seat(plan: Any, s: int, sg: str, now: Any) -> Any:
            if s == seat:
                raise CapacityError("InsufficientInstanceCapacity: no c8i.large capacity",
                                    provider="aws", code="InsufficientInstanceCapacity")
            return real(plan, s, sg, now)

        prov.run_seat = run_seat  # type: ignore[method-assign]
        return prov

    return make


def test_failed_first_up_rolls_back(moto_endpoint: str, catalog: Catalog, opened: Any) -> None:
    from nestcloud.errors import CapacityError

    make, _ = opened
    name = new_name()
    lab = make_lab(catalog, name, seats=4)
    with pytest.raises(CapacityError) as ei:
        lab.up(sandbox=True, providers=flaky_at(moto_endpoint, 2))
    assert ei.value.hint is not None
    assert (f"all or nothing: lab {name} did not reach 4 seat(s); removed what this run "
            "created (i-") in ei.value.hint
    assert live(moto_endpoint, name, "us-west-2") == []

    # --keep-partial keeps what launched (the provider starts no seat after a failure, so
    # how many got going before seat 2 failed depends on its threads); a re-run completes it.
    with pytest.raises(CapacityError) as kept_err:
        lab.up(sandbox=True, providers=flaky_at(moto_endpoint, 2), keep_partial=True)
    assert "all or nothing" not in (kept_err.value.hint or "")
    kept = len(live(moto_endpoint, name, "us-west-2"))
    assert 0 <= kept <= 3
    done = lab.up(sandbox=True, providers=make)
    assert len(new_seats(done)) == 4 - kept
    assert len(live(moto_endpoint, name, "us-west-2")) == 4
    lab.down(sandbox=True, providers=make)
    assert live(moto_endpoint, name, "us-west-2") == []


def test_status_skips_a_cloud_without_credentials(moto_endpoint: str, opened: Any) -> None:
    from nestcloud.errors import CredentialsError

    make, _ = opened
    both = parse_catalog(CATALOG_YAML + """
  - {provider: azure, name: Standard_D2s_v5, family: Dsv5, vcpus: 2, memory_gib: 8,
     arch: x86_64, cpu_vendor: intel, nesting: nested, nesting_source: facts,
     verified: 2026-11-29, regions: [eastus], prices: {eastus: {on_demand: 0.5, source: prices}}}
""")
    calls: list[tuple[str, str]] = []

    def open_(provider: str, region: str) -> Any:
        calls.append((provider, region))
        if provider == "azure":
            raise CredentialsError("no Azure credentials found", provider="azure")
        return make(provider, region)

    name = new_name()
    lab = make_lab(both, name, seats=1, providers=None)
    res = lab.up(providers=open_, wait=False)
    assert res.launch is not None and res.cost.option.provider == "aws"
    assert "azure: not searched (no Azure credentials found)" in res.notes
    assert calls.count(("azure", "eastus")) == 1
    lab.down(providers=open_)
    assert live(moto_endpoint, name, "us-west-2") == []
