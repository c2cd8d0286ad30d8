"""The planner against small in-test catalogs (made-up prices) and the real catalog."""

from __future__ import annotations

import pytest

from nestcloud.catalog import Catalog, load_catalog, parse_catalog
from nestcloud.errors import BudgetError, RefusedError
from nestcloud.planner import HOST_RESERVE_GIB, HOST_RESERVE_VCPUS, PlanRequest, plan

from .conftest import CATALOG_YAML


def keys(res) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    return [(o.provider, o.region, o.type) for o in res.options]


def test_cheapest_first_with_price_dates(cat: Catalog) -> None:
    res = plan(cat, PlanRequest(vcpus=4, memory_gib=8, hours=2, seats=3))
    # Azure's total includes its NAT gateway (~$0.05/h, tests/azure/test_azure_egress_cost.py):
    # 3 x 0.192 + 0.05 > 3 x 0.20.
    assert keys(res) == [
        ("aws", "us-east-1", "c8i.xlarge"),
        ("aws", "us-west-2", "c8i.xlarge"),
        ("azure", "eastus", "Standard_D4s_v5"),
        ("azure", "westus2", "Standard_D4s_v5"),
        ("aws", "us-east-1", "m8i.xlarge"),
        ("aws", "us-east-1", "c7i.metal-24xl"),
    ]
    best = res.options[0]
    assert best.usd_per_hour == 0.20
    assert best.instances == 3
    assert best.total_usd == pytest.approx(0.20 * 3 * 2)
    assert best.price_date == "2025-06-01"
    azure = res.options[2]
    assert azure.usd_per_hour == 0.192
    assert azure.total_usd == pytest.approx((0.192 * 3 + azure.egress_usd_per_hour) * 2)
    assert azure.price_date == "2025 or later, exact date unknown"
    assert all(o.total_usd <= n.total_usd for o, n in zip(res.options, res.options[1:]))


def test_ties_are_broken_by_fewest_spare_resources_then_names(cat: Catalog) -> None:
    # c8i.xlarge costs the same in us-east-1 and us-west-2: region name decides.
    res = plan(cat, PlanRequest(vcpus=4, memory_gib=8, providers=["aws"]))
    assert keys(res)[:2] == [("aws", "us-east-1", "c8i.xlarge"), ("aws", "us-west-2",
                                                                  "c8i.xlarge")]
    # Same price, different size: the smaller type first, whatever the catalog order.
    tied = CATALOG_YAML.replace("{on_demand: 0.25, spot: 0.07", "{on_demand: 0.20, spot: 0.07")
    reordered = parse_catalog(tied)
    rev = parse_catalog(tied).replace(types=list(reversed(reordered.types)))
    for c in (reordered, rev):
        r = plan(c, PlanRequest(vcpus=4, memory_gib=8, providers=["aws"], regions=["us-east-1"]))
        assert keys(r) == [("aws", "us-east-1", "c8i.xlarge"), ("aws", "us-east-1", "m8i.xlarge"),
                           ("aws", "us-east-1", "c7i.metal-24xl")]


def test_filters_providers_regions_and_size(cat: Catalog) -> None:
    res = plan(cat, PlanRequest(vcpus=4, memory_gib=16, providers=["aws"],
                                regions=["us-east-1"]))
    assert keys(res) == [("aws", "us-east-1", "m8i.xlarge"), ("aws", "us-east-1",
                                                              "c7i.metal-24xl")]
    reasons = {(r.type, r.code) for r in res.rejected}
    assert ("c8i.xlarge", "size") in reasons
    assert ("c7g.xlarge", "nesting") in reasons
    assert all(r.provider == "aws" for r in res.rejected)


def test_unpriced_region_is_rejected_with_reason(cat: Catalog) -> None:
    res = plan(cat, PlanRequest(vcpus=4, memory_gib=8, regions=["eu-west-1"]))
    assert res.options == []
    nop = [r for r in res.rejected if r.code == "no-price"]
    assert [(r.type, r.region, r.reason) for r in nop] == [
        ("c8i.xlarge", "eu-west-1", "no price known in eu-west-1")]
    err = res.refusal()
    assert type(err) is RefusedError and err.exit_code == 3
    assert err.message == ("nothing can be ranked for 1 seat(s) of 4 vCPU / 8 GiB, kvm on "
                           "ubuntu-24.04, 1 h, on-demand: aws/c8i.xlarge fit but no price is "
                           "known in eu-west-1")
    assert err.hint == "allow other regions, or run `nestcloud catalog refresh-prices`"


def test_spot_uses_spot_prices_and_rejects_types_without_one(cat: Catalog) -> None:
    res = plan(cat, PlanRequest(vcpus=4, memory_gib=8, spot=True))
    # Azure's spot VM is cheapest, but not with its NAT gateway (~$0.05/h) added.
    assert [(o.type, o.region, o.usd_per_hour) for o in res.options] == [
        ("c8i.xlarge", "us-east-1", 0.06), ("m8i.xlarge", "us-east-1", 0.07),
        ("c8i.xlarge", "us-west-2", 0.08), ("Standard_D4s_v5", "eastus", 0.05)]
    assert all(o.spot for o in res.options)
    missing = {(r.type, r.region) for r in res.rejected if r.code == "no-price"}
    assert missing == {("Standard_D4s_v5", "westus2"), ("c7i.metal-24xl", "us-east-1"),
                       ("c8i.xlarge", "eu-west-1")}
    assert {r.reason for r in res.rejected if r.code == "no-price"} == {
        "no spot price known in westus2", "no spot price known in us-east-1",
        "no spot price known in eu-west-1"}


def test_budget_edges(cat: Catalog) -> None:
    req = dict(vcpus=4, memory_gib=16, providers=["aws"], seats=2, hours=2)
    # m8i.xlarge: 0.25 * 2 * 2 = 1.00 exactly: a budget equal to the cost is enough.
    exact = plan(cat, PlanRequest(**req, budget=1.0))
    assert keys(exact) == [("aws", "us-east-1", "m8i.xlarge")]
    short = plan(cat, PlanRequest(**req, budget=0.99))
    assert short.options == []
    assert short.closest is not None and short.closest.type == "m8i.xlarge"
    err = short.refusal()
    assert isinstance(err, BudgetError) and err.exit_code == 3
    assert err.message == (
        "over budget: the cheapest option for 2 seat(s) of 4 vCPU / 16 GiB, kvm on "
        "ubuntu-24.04, 2 h, on-demand is aws/m8i.xlarge in us-east-1 at $0.2500/h x 2 x 2 h = "
        "$1.00 (price date: 2025-06-01), over the $0.99 budget")
    assert err.hint == ("raise the budget to at least $1.00; cut hours to 1.9; cut seats to 1; "
                        "try spot")
    with pytest.raises(BudgetError):
        short.require()
    zero = plan(cat, PlanRequest(**req, budget=0))
    assert zero.options == [] and isinstance(zero.refusal(), BudgetError)


def test_max_hourly_is_per_seat(cat: Catalog) -> None:
    res = plan(cat, PlanRequest(vcpus=4, memory_gib=8, max_hourly=0.2, providers=["aws"]))
    assert keys(res) == [("aws", "us-east-1", "c8i.xlarge"), ("aws", "us-west-2", "c8i.xlarge")]
    none = plan(cat, PlanRequest(vcpus=4, memory_gib=8, max_hourly=0.1, providers=["aws"]))
    err = none.refusal()
    assert err.message == ("nothing fits 1 seat(s) of 4 vCPU / 8 GiB, kvm on ubuntu-24.04, 1 h, "
                           "on-demand under the hourly ceiling: cheapest is aws/c8i.xlarge in "
                           "us-east-1: $0.2000/h per seat is over the $0.1000/h ceiling")


def test_nothing_large_enough_names_the_largest(cat: Catalog) -> None:
    res = plan(cat, PlanRequest(vcpus=128, memory_gib=8))
    err = res.refusal()
    assert err.message == ("nothing fits 1 seat(s) of 128 vCPU / 8 GiB, kvm on ubuntu-24.04, "
                           "1 h, on-demand: no nested-capable type is that large")
    assert err.hint == ("the largest candidate is aws/c7i.metal-24xl (96 vCPU / 192 GiB): "
                        "lower --vcpus / --memory")


def test_checks_refuse_os_hypervisor_mismatch(cat: Catalog) -> None:
    res = plan(cat, PlanRequest(vcpus=2, memory_gib=4, os="al2023", hypervisor="kvm"))
    assert res.options == []
    assert {r.code for r in res.rejected} == {"checks", "nesting"}
    err = res.refusal()
    assert err.message.startswith("nothing fits 1 seat(s) of 2 vCPU / 4 GiB, kvm on al2023, "
                                  "1 h, on-demand: every type that is big enough was refused by "
                                  "the pre-launch checks, e.g. aws/c8i.large: os-hypervisor: "
                                  "Amazon Linux 2023 ships no qemu or libvirt")


def test_bare_metal_one_seat_per_instance_unless_packed(cat: Catalog) -> None:
    big = plan(cat, PlanRequest(vcpus=64, memory_gib=128))
    assert keys(big) == [("aws", "us-east-1", "c7i.metal-24xl")]
    o = big.options[0]
    assert (o.nesting, o.seats_per_instance, o.instances) == ("native", 1, 1)
    assert o.notes == ["bare metal: the hypervisor runs on the hardware; one seat per instance"]
    # Packed: (96 - 2) // 4 = 23 by CPU, (192 - 8) // 8 = 23 by memory.
    assert (HOST_RESERVE_VCPUS, HOST_RESERVE_GIB) == (2, 8.0)
    packed = plan(cat, PlanRequest(vcpus=4, memory_gib=8, seats=40, pack_metal=True,
                                   providers=["aws"], regions=["us-east-1"]))
    metal = next(x for x in packed.options if x.bare_metal)
    assert (metal.seats_per_instance, metal.instances, metal.total_usd) == (23, 2, 8.0)
    assert metal.notes[0].startswith("bare metal packed with 23 seats per host")
    assert "you create the seat VMs on them" in metal.notes[0]
    # 40 c8i.xlarge at $0.20 = $8.00 too: the tie goes to the cheaper seat-hour, then fewer
    # instances: metal (4.00/23 per seat) wins.
    assert packed.options[0].type == "c7i.metal-24xl"


def test_explicit_type(cat: Catalog) -> None:
    res = plan(cat, PlanRequest(type="standard_d4s_v5"))
    assert keys(res) == [("azure", "eastus", "Standard_D4s_v5"),
                         ("azure", "westus2", "Standard_D4s_v5")]
    nothing = plan(cat, PlanRequest(type="nope.large"))
    assert nothing.refusal().message.startswith("nothing fits 1 seat(s) of nope.large")


def test_request_needs_size_or_type() -> None:
    with pytest.raises(ValueError, match="give vcpus and memory_gib per seat, or an explicit"):
        PlanRequest(vcpus=4)


def test_html_and_dict(cat: Catalog) -> None:
    res = plan(cat, PlanRequest(vcpus=4, memory_gib=8, providers=["aws"]))
    page = res._repr_html_()
    assert page.startswith("<table><caption>1 seat(s) of 4 vCPU / 8 GiB")
    assert "<td>c8i.xlarge</td>" in page and "<td>2025-06-01</td>" in page
    d = res.to_dict()
    assert d["options"][0]["type"] == "c8i.xlarge" and d["options"][0]["price_date"]
    empty = plan(cat, PlanRequest(vcpus=999, memory_gib=8))._repr_html_()
    assert empty.startswith("<p><b>No feasible option</b>")


# -- the real catalog ----------------------------------------------------------------------


def test_real_catalog_four_by_sixteen() -> None:
    real = load_catalog()
    res = plan(real, PlanRequest(vcpus=4, memory_gib=16, providers=["aws"],
                                 regions=["us-east-1"]))
    assert res.options, "the real catalog prices nested 4 vCPU / 16 GiB types in us-east-1"
    best = res.options[0]
    assert best.vcpus >= 4 and best.memory_gib >= 16 and best.nesting == "nested"
    # Cheapest really is cheapest: nothing priced lower was rejected for a cost reason.
    t = real.get("aws", best.type)
    assert t is not None and t.price("us-east-1") == best.usd_per_hour
    for o in res.options:
        assert o.price_date and o.region == "us-east-1"
    # Arm and AMD non-metal never appear.
    fams = {real.get(o.provider, o.type).arch for o in res.options}  # type: ignore[union-attr]
    assert fams == {"x86_64"}


def test_windows_costs_say_the_licence_is_not_included(cat: Catalog) -> None:
    from nestcloud.planner import WINDOWS_PRICE_NOTE

    res = plan(cat, PlanRequest(vcpus=4, memory_gib=16, os="windows-2022",
                                hypervisor="hyperv", providers=["azure"]))
    assert res.options and all(WINDOWS_PRICE_NOTE in o.notes for o in res.options)
    linux = plan(cat, PlanRequest(vcpus=4, memory_gib=16, providers=["azure"]))
    assert all(WINDOWS_PRICE_NOTE not in o.notes for o in linux.options)
