"""Azure's own pre-launch rules, contributed through the ``rules`` class hook (pure: no SDK,
no network): the core runs them after its own for every Azure check, plan and launch."""

from __future__ import annotations

from typing import Any

import pytest

from nestcloud.catalog import Catalog, parse_catalog
from nestcloud.checks import Finding
from nestcloud.spec import LaunchSpec
from nestcloud.provider import load_factory

CATALOG_YAML = """
schema_version: 1
sources:
  facts: {description: "test facts"}
types:
  - {provider: azure, name: Standard_D2s_v5, family: Dsv5, vcpus: 2, memory_gib: 8,
     arch: x86_64, cpu_vendor: intel, nesting: nested, nesting_source: facts,
     verified: 2026-01-01, hyperv_generations: [V1, V2], security_type: Standard,
     regions: [eastus]}
"""


@pytest.fixture
def cat() -> Catalog:
    return parse_catalog(CATALOG_YAML, "test-catalog.yaml")


def rules(cat: Catalog, **kw: Any) -> list[Finding]:
    spec = LaunchSpec(**{"provider": "azure", "type": "Standard_D2s_v5", "region": "eastus",
                         **kw})
    found: list[Finding] = load_factory("azure").rules(spec, cat,
                                                       cat.get("azure", "Standard_D2s_v5"))
    return found


def test_a_standard_launch_has_no_azure_findings(cat: Catalog) -> None:
    assert rules(cat) == []
    assert rules(cat, security_type="Standard", os="windows-2022", hypervisor="hyperv") == []


@pytest.mark.parametrize("security", ["TrustedLaunch", "ConfidentialVM"])
def test_trusted_launch_is_refused(cat: Catalog, security: str) -> None:
    assert rules(cat, security_type=security) == [Finding(
        rule="trusted-launch", severity="error",
        message=f"security type {security} blocks nesting on Azure: Hyper-V and WSL2 in the "
                "L1 report that virtualization is not enabled in the BIOS",
        suggestion="use security type Standard (nestcloud's default)")]


def test_the_rule_needs_no_catalog_entry(cat: Catalog) -> None:
    spec = LaunchSpec(provider="azure", type="Standard_Unknown", security_type="TrustedLaunch")
    [f] = load_factory("azure").rules(spec, cat, None)
    assert f.rule == "trusted-launch"
