"""providers/gcp/rules.py: GCP's own pre-launch rules, on the shipped catalog.

``check`` runs the core rules and then the provider's (capabilities.rules); ``_check`` below
does the same so these tests show what a user sees whatever the CLI's wiring state.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from gen_catalog_module import gen_catalog

from nestcloud.catalog import Catalog, InstanceType, load_catalog
from nestcloud.checks import RULES, Finding, refused, run_checks
from nestcloud.spec import LaunchSpec
from providers.gcp import rules as gcp_rules
from providers.gcp.rules import UNCONFIRMED_SOURCE, rules

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return load_catalog(REPO / "catalog.yaml")


def _spec(type_: str = "n2-standard-4", **kw: Any) -> LaunchSpec:
    fields: dict[str, Any] = {"provider": "gcp", "type": type_, "region": "us-central1"}
    fields.update(kw)
    return LaunchSpec(**fields)


def _rules(cat: Catalog, spec: LaunchSpec) -> list[Finding]:
    return rules(spec, cat, cat.get("gcp", spec.type))


def _check(cat: Catalog, spec: LaunchSpec) -> list[Finding]:
    return run_checks(spec, cat) + _rules(cat, spec)


def _by_rule(findings: list[Finding], rule: str) -> list[Finding]:
    return [f for f in findings if f.rule == rule]


# -- confirmed, unconfirmed, refused --------------------------------------------------------


def test_n2_with_kvm_on_ubuntu_is_launchable_without_findings(cat: Catalog) -> None:
    spec = _spec(os="ubuntu-24.04", hypervisor="kvm")
    assert _rules(cat, spec) == []
    assert not refused(_check(cat, spec))


@pytest.mark.parametrize("name", ["c2-standard-4", "c3-standard-4", "n4-standard-4"])
def test_unconfirmed_series_warn_and_name_the_cheapest_confirmed_type(cat: Catalog,
                                                                      name: str) -> None:
    found = _rules(cat, _spec(name))
    assert [f.severity for f in found] == ["warning"]
    w = found[0]
    t = cat.get("gcp", name)
    assert t is not None
    assert w.rule == "gcp-nesting-unconfirmed"
    assert name in w.message and f"{t.family.upper()} series" in w.message
    assert "unconfirmed" in w.message and "in-guest check" in w.message
    # The cheapest type whose nesting is confirmed, with at least this size, in the region.
    confirmed = [c for c in cat.of("gcp") if c.nesting == "nested"
                 and c.nesting_source != UNCONFIRMED_SOURCE and c.vcpus >= t.vcpus
                 and c.memory_gib >= t.memory_gib and c.price("us-central1") is not None]
    best = min(confirmed, key=lambda c: (c.price("us-central1"), c.vcpus, c.name))
    assert w.suggestion is not None
    assert w.suggestion.startswith(f"for a series confirmed by name use {best.name} "
                                   f"({best.vcpus} vCPU, {best.memory_gib:g} GiB)")
    assert f"${best.price('us-central1'):.4f}/h on-demand in us-central1" in w.suggestion
    assert f"(price date: {cat.source_date('gcp-prices')})" in w.suggestion
    assert not refused(_check(cat, _spec(name)))


def test_the_warning_follows_the_catalog_field_not_a_family_list(cat: Catalog) -> None:
    n2 = cat.get("gcp", "n2-standard-4")
    assert n2 is not None and _rules(cat, _spec()) == []
    moved = n2.replace(nesting_source=UNCONFIRMED_SOURCE)
    other = Catalog(schema_version=1, sources=cat.sources,
                    types=[moved if t is n2 else t for t in cat.types])
    assert [f.rule for f in _rules(other, _spec())] == ["gcp-nesting-unconfirmed"]


def test_spot_suggestion_uses_spot_prices(cat: Catalog) -> None:
    w = _rules(cat, _spec("c3-standard-4", spot=True))[0]
    assert w.suggestion is not None and "/h spot in us-central1" in w.suggestion


@pytest.mark.parametrize(("name", "words"), [
    ("e2-standard-4", ("no vmx", "pulumi/pulumi-gcp#715")),
    ("n2d-standard-4", ("AMD",)),
    ("t2a-standard-4", ("Arm",)),
])
def test_refused_types_say_why_on_gcp_and_core_suggests(cat: Catalog, name: str,
                                                       words: tuple[str, ...]) -> None:
    found = _rules(cat, _spec(name))
    assert [(f.rule, f.severity) for f in found] == [("gcp-nesting", "error")]
    assert found[0].message.startswith(f"{name}: ")
    for w in words:
        assert w in found[0].message
    every = _check(cat, _spec(name))
    assert refused(every)
    # The core's refusal carries the suggestion: the cheapest nested type of at least this
    # size in the region, with its price and date.
    t = cat.get("gcp", name)
    assert t is not None
    hit = cat.cheapest_nested("gcp", min_vcpus=t.vcpus, min_memory_gib=t.memory_gib,
                              region="us-central1")
    assert hit is not None
    sugg = [f.suggestion for f in every if f.severity == "error" and f.suggestion]
    assert len(sugg) == 1
    assert sugg[0].startswith(f"use {hit[0].name} ")
    assert f"${hit[1]:.4f}/h on-demand in us-central1" in sugg[0]
    assert f"(price date: {cat.source_date('gcp-prices')})" in sugg[0]


def test_unknown_type_gets_no_gcp_finding(cat: Catalog) -> None:
    assert rules(_spec("n9-standard-4"), cat, None) == []


# -- the L1: KVM on Linux only ---------------------------------------------------------------


def test_windows_with_hyperv_is_refused_with_the_reason(cat: Catalog) -> None:
    found = _rules(cat, _spec(os="windows-2022", hypervisor="hyperv"))
    assert [(f.rule, f.severity) for f in found] == [("gcp-l1", "error")]
    f = found[0]
    assert "Hyper-V" in f.message and "only Linux KVM" in f.message
    assert "Windows Server images cannot be used" in f.message
    assert f.suggestion is not None
    assert "--os ubuntu-24.04 --hypervisor kvm" in f.suggestion
    assert "--provider aws" in f.suggestion and "--provider azure" in f.suggestion
    # The core's own rules would let this through: the refusal is GCP's, and check runs it.
    spec = _spec(os="windows-2022", hypervisor="hyperv")
    assert not refused([f for rule in RULES for f in rule(spec, cat, cat.get("gcp", spec.type))])
    assert refused(run_checks(spec, cat))
    assert refused(_check(cat, spec))


@pytest.mark.parametrize(("os_", "hv", "word"), [
    ("windows-2025", "wsl2", "WSL2"),
    ("windows-2022", "none", "Windows Server 2022"),
    ("ubuntu-24.04", "hyperv", "Hyper-V"),
    ("debian-12", "wsl2", "WSL2"),
])
def test_every_windows_l1_or_windows_hypervisor_is_refused(cat: Catalog, os_: str, hv: str,
                                                          word: str) -> None:
    found = _by_rule(_rules(cat, _spec(os=os_, hypervisor=hv)), "gcp-l1")
    assert len(found) == 1 and found[0].severity == "error"
    assert word in found[0].message and "only Linux KVM" in found[0].message


@pytest.mark.parametrize(("os_", "hv"), [("ubuntu-24.04", "firecracker"), ("debian-12", "kvm"),
                                         ("rhel-9", "none")])
def test_linux_kvm_firecracker_and_none_pass(cat: Catalog, os_: str, hv: str) -> None:
    assert _rules(cat, _spec(os=os_, hypervisor=hv)) == []


def test_an_os_with_no_gcp_image_is_refused_unless_an_image_is_given(cat: Catalog) -> None:
    found = _rules(cat, _spec(os="al2023", hypervisor="firecracker"))
    assert [(f.rule, f.severity) for f in found] == [("gcp-image", "error")]
    assert "Amazon Linux 2023" in found[0].message
    assert found[0].suggestion == "use --os " + ", ".join(gcp_rules.IMAGES) + \
        ", or --image with an image of your own"
    assert _rules(cat, _spec(os="al2023", hypervisor="firecracker",
                             image="projects/p/global/images/mine")) == []


def test_images_are_the_ones_facts_names() -> None:
    facts = Path("/work/shared/FACTS.md")
    if not facts.is_file():
        pytest.skip("shared FACTS.md not on this machine")
    text = facts.read_text()
    for image in gcp_rules.IMAGES.values():
        assert f"`{image}`" in text


# -- wiring --------------------------------------------------------------------------------


def test_unconfirmed_source_is_the_generators_key(cat: Catalog) -> None:
    assert gen_catalog().SRC_GCP_NESTING_UNCONFIRMED == UNCONFIRMED_SOURCE
    assert UNCONFIRMED_SOURCE in cat.sources


@pytest.mark.parametrize("module", ["providers.gcp.rules", "providers.gcp.pricing",
                                    "providers.gcp.iam"])
def test_modules_import_no_cloud_sdk(module: str) -> None:
    code = (f"import sys, {module}; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('google', 'googleapiclient', 'grpc', 'boto3', 'azure')); "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


def test_instance_type_entry_is_what_rules_reads(cat: Catalog) -> None:
    # rules() takes the catalog entry the core resolved (case-insensitively): same answer.
    t: InstanceType | None = cat.get("gcp", "e2-standard-4")
    spec = _spec("E2-STANDARD-4")
    assert [f.rule for f in rules(spec, cat, t)] == ["gcp-nesting"]
