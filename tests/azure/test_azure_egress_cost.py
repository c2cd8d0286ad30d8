"""The outbound path of Azure hosts is priced in `plan` and lab costs, dated and sourced.

Prices from FACTS.md (Azure, "Egress": third-party cost guides summarising Azure's pricing page
in 2026, approximate, US regions): NAT gateway about $0.045/h plus $0.045 per GB processed, its
Standard public IP about $0.005/h; a Standard public IP per VM about $0.005/h.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import PRICED_CATALOG_YAML
from typer.testing import CliRunner

from nestcloud.catalog import parse_catalog
from nestcloud.errors import BudgetError
from nestcloud.planner import PlanRequest, plan

NAT_H, NAT_GB, IP_H = 0.045, 0.045, 0.005  # FACTS.md, Azure, "Egress" (approximate, 2026)

# The instance prices are PRICED_CATALOG_YAML's made-up ones (Standard_D2s_v5 $0.096/h in
# eastus, c8i.large $0.5/h): only the egress lines are under test.


def option(provider: str, **kw: object) -> object:
    res = plan(parse_catalog(PRICED_CATALOG_YAML), PlanRequest(vcpus=2, memory_gib=4, **kw))
    return next(o for o in res.options if o.provider == provider)


@pytest.mark.parametrize(("egress", "extra_per_hour"), [
    (None, NAT_H + IP_H),           # the default: one NAT gateway and its address per group
    ("nat", NAT_H + IP_H),
    ("public-ip", 3 * IP_H),        # one address per VM
    ("none", 0.0),
])
def test_azure_options_carry_the_egress_price(egress: str | None,
                                              extra_per_hour: float) -> None:
    o = option("azure", seats=3, hours=2, egress=egress)
    assert o.egress == (egress or "nat")
    assert o.egress_usd_per_hour == pytest.approx(extra_per_hour)
    assert o.hourly_usd == pytest.approx(3 * 0.096 + extra_per_hour)
    assert o.total_usd == pytest.approx(2 * (3 * 0.096 + extra_per_hour))
    assert o.usd_per_seat_hour == pytest.approx(0.096 + extra_per_hour / 3, abs=1e-6)
    [note] = [n for n in o.notes if n.startswith("egress:")]
    if egress == "none":
        assert "no route to the internet" in note
        assert o.egress_price_date is None
    else:
        assert "approximate" in note and "2026" in note
        assert o.egress_price_date == "2026 (approximate)"
    if (egress or "nat") == "nat":
        assert f"${NAT_GB:.3f} per GB" in note  # the per-GB part is named, not totalled


def test_aws_options_have_no_egress_line() -> None:
    o = option("aws", seats=3, hours=2, egress="nat")
    assert o.egress is None and o.egress_usd_per_hour == 0
    assert o.hourly_usd == pytest.approx(3 * 0.5)
    assert not [n for n in o.notes if n.startswith("egress:")]


def test_the_budget_counts_the_egress() -> None:
    # 1 seat for 10 h: the VM alone is $0.96, with its NAT gateway $1.46, with a public IP
    # $1.01.
    cat = parse_catalog(PRICED_CATALOG_YAML)
    res = plan(cat, PlanRequest(vcpus=2, memory_gib=4, providers=["azure"], hours=10,
                                budget=1.2))
    assert res.options == []
    with pytest.raises(BudgetError):
        res.require()
    cheaper = plan(cat, PlanRequest(vcpus=2, memory_gib=4, providers=["azure"], hours=10,
                                    budget=1.2, egress="public-ip"))
    assert cheaper.require().total_usd == pytest.approx(10 * (0.096 + IP_H))


def test_plan_cli_shows_and_takes_egress(tmp_path: Path) -> None:
    from nestcloud.cli import app

    cat = tmp_path / "catalog.yaml"
    cat.write_text(PRICED_CATALOG_YAML, encoding="utf-8")
    run = CliRunner().invoke
    res = run(app, ["plan", "--vcpus", "2", "--memory", "4", "--providers", "azure",
                    "--catalog", str(cat)])
    assert res.exit_code == 0, res.output
    assert "note: egress: NAT gateway" in res.stdout
    res = run(app, ["plan", "--vcpus", "2", "--memory", "4", "--providers", "azure",
                    "--egress", "public-ip", "--json", "--catalog", str(cat)])
    assert res.exit_code == 0, res.output
    [o] = json.loads(res.stdout)["options"]
    assert (o["egress"], o["egress_usd_per_hour"]) == ("public-ip", pytest.approx(IP_H))
    res = run(app, ["plan", "--vcpus", "2", "--memory", "4", "--egress", "vpn",
                    "--catalog", str(cat)])
    assert res.exit_code == 2 and "--egress" in res.stderr


def test_lab_cost_includes_the_nat_gateway() -> None:
    from nestcloud.lab import Lab

    lab = Lab("egr", 2, vcpus=2, memory_gib=8, providers=["azure"], ttl="3h",
              catalog=parse_catalog(PRICED_CATALOG_YAML))
    assert lab.cost().total_usd == pytest.approx(3 * (2 * 0.096 + NAT_H + IP_H))
    lab = Lab("egr", 2, vcpus=2, memory_gib=8, providers=["azure"], ttl="3h",
              egress="public-ip", catalog=parse_catalog(PRICED_CATALOG_YAML))
    assert lab.cost().total_usd == pytest.approx(3 * 2 * (0.096 + IP_H))


def test_cut_seats_hints_count_the_egress() -> None:
    # 3 seats x 10 h with a NAT gateway: (3 x 0.096 + 0.05) x 10 = $3.38. Two seats would cost
    # $2.42, over a $2 budget: only one seat ($1.46) fits, and that is what the hints say.
    from nestcloud.lab import Lab

    cat = parse_catalog(PRICED_CATALOG_YAML)
    res = plan(cat, PlanRequest(vcpus=2, memory_gib=4, providers=["azure"], hours=10,
                                seats=3, budget=2.0))
    with pytest.raises(BudgetError) as err:
        res.require()
    assert "cut seats to 1;" in (err.value.hint or "")
    lab = Lab("egr", 3, vcpus=2, memory_gib=4, providers=["azure"], ttl="10h", budget=2.0,
              catalog=cat)
    with pytest.raises(BudgetError) as err:
        lab.up(dry_run=True)
    assert (err.value.hint or "").endswith("or cut seats to 1")
