"""Fixtures for the Azure provider tests: a local ARM fake and providers wired to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import sys
from pathlib import Path

import pytest
from azure.core.credentials import AccessToken

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fakes.arm_fake import SUB, ArmFake  # noqa: E402

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


class FakeCredential:
    """Hands out a fixed token and counts requests for it (never reaches Entra ID)."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("fake-token", 2**31 - 1)


@pytest.fixture
def arm() -> Iterator[ArmFake]:
    fake = ArmFake().start()
    yield fake
    fake.stop()


@pytest.fixture
def catalog() -> Catalog:
    return parse_catalog(CATALOG_YAML, "test-catalog")


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
