"""EC2's own pre-launch rules, through the provider's ``rules`` hook (on the class)."""

from __future__ import annotations

from typing import Any

import pytest

from nestcloud.catalog import Catalog, parse_catalog
from nestcloud.checks import Finding
from nestcloud.spec import LaunchSpec
from providers.aws import AwsProvider

CATALOG_YAML = """
schema_version: 1
sources:
  facts: {description: "test facts"}
types:
  - {provider: aws, name: c8i.large, family: c8i, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-01-01,
     regions: [us-east-1]}
  - {provider: aws, name: c8i.48xlarge, family: c8i, vcpus: 192, memory_gib: 384,
     arch: x86_64, cpu_vendor: intel, nesting: nested, nesting_source: facts,
     verified: 2026-01-01, regions: [us-east-1]}
  - {provider: aws, name: c8i.96xlarge, family: c8i, vcpus: 384, memory_gib: 768, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-01-01,
     regions: [us-east-1]}
  - {provider: aws, name: c8i.metal-96xl, family: c8i, vcpus: 384, memory_gib: 768,
     arch: x86_64, cpu_vendor: intel, nesting: native, bare_metal: true, nesting_source: facts,
     verified: 2026-01-01, regions: [us-east-1]}
"""


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return parse_catalog(CATALOG_YAML, "test-catalog.yaml")


def rules(cat: Catalog, **kw: Any) -> list[Finding]:
    base: dict[str, Any] = {"provider": "aws", "type": "c8i.large", "region": "us-east-1"}
    base.update(kw)
    spec = LaunchSpec(**base)
    return AwsProvider.rules(spec, cat, cat.get("aws", spec.type))


def test_the_provider_declares_its_rules() -> None:
    assert AwsProvider.capabilities.rules is True


def test_a_nested_windows_l1_above_192_vcpus_is_refused(cat: Catalog) -> None:
    assert rules(cat, type="c8i.96xlarge", os="windows-2022", hypervisor="hyperv") == [
        Finding(rule="windows-vcpus", severity="error",
                message="c8i.96xlarge has 384 vCPUs: AWS supports a nested Windows L1 only up "
                        "to 192 vCPUs",
                suggestion="pick a size with at most 192 vCPUs, or a Linux L1")]
    assert [f.rule for f in rules(cat, type="c8i.96xlarge", os="windows-2025",
                                  hypervisor="wsl2")] == ["windows-vcpus"]


@pytest.mark.parametrize("kw", [
    {},                                                                  # a plain Linux L1
    {"type": "c8i.96xlarge"},                                           # Linux: no limit
    {"type": "c8i.48xlarge", "os": "windows-2022", "hypervisor": "hyperv"},  # exactly 192
    {"type": "c8i.metal-96xl", "os": "windows-2022", "hypervisor": "hyperv"},  # bare metal
])
def test_what_the_limit_does_not_cover(cat: Catalog, kw: dict[str, Any]) -> None:
    assert rules(cat, **kw) == []


def test_a_type_missing_from_the_catalog_is_the_core_s_to_report(cat: Catalog) -> None:
    spec = LaunchSpec(provider="aws", type="x9.large", os="windows-2022", hypervisor="hyperv")
    assert AwsProvider.rules(spec, cat, None) == []
