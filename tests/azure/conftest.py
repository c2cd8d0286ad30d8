"""Fixtures for the Azure provider tests: a local ARM fake and providers wired to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fakes.arm_fake import SUB, ArmFake, FakeCredential  # noqa: E402

from nestcloud.provider import UserDataEnvelope  # noqa: E402
from nestcloud.bootstrap import RenderedUserData  # noqa: E402
from nestcloud.catalog import Catalog, parse_catalog  # noqa: E402

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTestsOnly nestcloud-test"

CATALOG_YAML = """
schema_version: 1
sources:
  facts: {description: "shared/FACTS.md"}
types:
  - {provider: azure, name: Standard_D2s_v5, family: Dsv5, vcpus: 2, memory_gib: 8, arch: x86_64, cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-11-29, regions: [eastus, westeurope], hyperv_generations: [V1, V2], security_type: Standard}
  - {provider: azure, name: Standard_D4s_v5, family: Dsv5, vcpus: 4, memory_gib: 16, arch: x86_64, cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-11-29, regions: [eastus], hyperv_generations: [V1, V2]}
  - {provider: azure, name: Standard_D2_v3, family: Dv3, vcpus: 2, memory_gib: 8, arch: x86_64, cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-11-29, regions: [eastus], hyperv_generations: [V1]}
  - {provider: azure, name: Standard_D2s_v6, family: Dsv6, vcpus: 2, memory_gib: 8, arch: x86_64, cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-11-29, regions: [eastus], hyperv_generations: [V2]}
  - {provider: azure, name: Standard_E2s_v5, family: Esv5, vcpus: 2, memory_gib: 16, arch: x86_64, cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-11-29, regions: [eastus]}
  - {provider: azure, name: Standard_B2s, family: Bsv1, vcpus: 2, memory_gib: 4, arch: x86_64, cpu_vendor: intel, nesting: none, nesting_source: facts, verified: 2026-11-29, regions: [eastus]}
"""

# Made-up prices (Standard_D2s_v5 $0.096/h in eastus, c8i.large $0.5/h in us-east-1), for tests
# of what is added to an instance's price (egress) and of budgets.
PRICED_CATALOG_YAML = """
schema_version: 1
sources:
  facts: {description: "test facts"}
  prices: {description: "made-up test prices", date: 2025-06-01}
types:
  - {provider: azure, name: Standard_D2s_v5, family: Dsv5, vcpus: 2, memory_gib: 8,
     arch: x86_64, cpu_vendor: intel, nesting: nested, nesting_source: facts,
     verified: 2026-11-29, regions: [eastus], hyperv_generations: [V1, V2],
     prices: {eastus: {on_demand: 0.096, source: prices}}}
  - {provider: aws, name: c8i.large, family: c8i, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-11-29,
     regions: [us-east-1], prices: {us-east-1: {on_demand: 0.5, source: prices}}}
"""


@pytest.fixture
def arm() -> Iterator[ArmFake]:
    with ArmFake() as fake:
        yield fake


@pytest.fixture
def catalog() -> Catalog:
    return parse_catalog(CATALOG_YAML, "test-catalog")


@pytest.fixture
def cli(arm: ArmFake, tmp_path: Path, rendered: Any) -> Callable[..., Any]:
    """``cli(*args)``: the nestcloud CLI as a user runs it, against the fake with
    CATALOG_YAML."""
    from nestcloud.cli import app

    cat = tmp_path / "catalog.yaml"
    cat.write_text(CATALOG_YAML, encoding="utf-8")
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(app, list(args), env={
            "NESTCLOUD_CATALOG": str(cat), "NESTCLOUD_AZURE_ARM_ENDPOINT": arm.url,
            "AZURE_SUBSCRIPTION_ID": SUB})

    return run


@pytest.fixture
def rendered(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """Stand in for the bootstrap renderer: records calls, returns recognisable bodies."""
    calls: list[tuple[str, str, str]] = []

    def fake_render(envelope: UserDataEnvelope, os_alias: str, hypervisor: str, *,
                    provider_name: str = "", extra: str | None = None,
                    l2_smoke: bool = False) -> RenderedUserData:
        calls.append((provider_name, os_alias, hypervisor))
        if os_alias.startswith("windows"):
            return RenderedUserData("powershell", b"Install-WindowsFeature Hyper-V # nc", False)
        return RenderedUserData("cloud-config", b"#cloud-config\nruncmd: [echo nc-ready]\n",
                                False)

    monkeypatch.setattr("nestcloud.bootstrap.render_user_data", fake_render)
    return calls


@pytest.fixture
def make_provider(arm: ArmFake) -> Callable[..., Any]:
    from providers.azure import AzureProvider

    def make(**kw: Any) -> AzureProvider:
        kw.setdefault("region", "eastus")
        kw.setdefault("subscription_id", SUB)
        kw.setdefault("arm_endpoint", arm.url)
        kw.setdefault("credential", FakeCredential())
        opts = {"retry_backoff_factor": 0, "polling_interval": 0}
        opts.update(kw.pop("client_options", {}))
        return AzureProvider(client_options=opts, **kw)

    return make


@pytest.fixture
def provider(make_provider: Callable[..., Any], rendered: Any) -> Any:
    return make_provider()
