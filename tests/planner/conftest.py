"""Small hand-written catalogs for planner tests (prices are made up, not real ones)."""

from __future__ import annotations

import pytest

from nestcloud.catalog import Catalog, parse_catalog

CATALOG_YAML = """
schema_version: 1
sources:
  facts: {description: "test facts"}
  p2025: {description: "test prices", date: 2025-06-01}
  pnodate: {description: "undated test prices", date_note: "2025 or later, exact date unknown"}
types:
  - {provider: aws, name: c8i.large, family: c8i, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-11-29,
     regions: [us-east-1, us-west-2],
     prices: {us-east-1: {on_demand: 0.10, spot: 0.03, source: p2025},
              us-west-2: {on_demand: 0.11, source: p2025}}}
  - {provider: aws, name: c8i.xlarge, family: c8i, vcpus: 4, memory_gib: 8, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-11-29,
     regions: [us-east-1, us-west-2, eu-west-1],
     prices: {us-east-1: {on_demand: 0.20, spot: 0.06, source: p2025},
              us-west-2: {on_demand: 0.20, spot: 0.08, source: p2025}}}
  - {provider: aws, name: m8i.xlarge, family: m8i, vcpus: 4, memory_gib: 16, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-11-29,
     regions: [us-east-1],
     prices: {us-east-1: {on_demand: 0.25, spot: 0.07, source: p2025}}}
  - {provider: aws, name: c7g.xlarge, family: c7g, vcpus: 4, memory_gib: 8, arch: arm64,
     cpu_vendor: amazon, nesting: none, nesting_source: facts, verified: 2026-11-29,
     regions: [us-east-1], prices: {us-east-1: {on_demand: 0.05, source: p2025}}}
  - {provider: aws, name: c7i.metal-24xl, family: c7i, vcpus: 96, memory_gib: 192, arch: x86_64,
     cpu_vendor: intel, nesting: native, bare_metal: true, nesting_source: facts,
     verified: 2026-11-29, regions: [us-east-1],
     prices: {us-east-1: {on_demand: 4.00, source: p2025}}}
  - {provider: azure, name: Standard_D4s_v5, family: Dsv5, vcpus: 4, memory_gib: 16,
     arch: x86_64, cpu_vendor: intel, nesting: nested, nesting_source: facts,
     verified: 2026-11-29, regions: [eastus, westus2],
     prices: {eastus: {on_demand: 0.192, spot: 0.05, source: pnodate},
              westus2: {on_demand: 0.192, source: pnodate}}}
  - {provider: azure, name: Standard_D2as_v4, family: Dasv4, vcpus: 2, memory_gib: 8,
     arch: x86_64, cpu_vendor: amd, nesting: none, nesting_source: facts,
     verified: 2026-11-29, regions: [eastus], prices: {eastus: {on_demand: 0.01, source: pnodate}}}
"""


@pytest.fixture()
def cat() -> Catalog:
    return parse_catalog(CATALOG_YAML, "test-catalog.yaml")
