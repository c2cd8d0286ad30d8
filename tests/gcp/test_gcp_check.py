"""Issue 13's acceptance for `nestcloud check --provider gcp`, through the CLI, on the shipped
catalog: n2-standard-4 (Ubuntu, KVM) exits 0; e2-standard-4, n2d-standard-4, t2a-standard-4 and
a Windows/Hyper-V L1 exit 3 with reasons and suggestions.

Each case runs twice:

- ``registered``: provider ``gcp`` registered in-process with only its class hooks
  (capabilities.rules -> providers.gcp.rules.rules), the way `check` reads a provider;
- ``entry-point``: as installed, through the ``gcp`` entry point the provider class registers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from nestcloud import provider as registry
from nestcloud.catalog import Catalog, InstanceType, load_catalog
from nestcloud.checks import Finding
from nestcloud.cli import app
from nestcloud.provider import Capabilities, ProviderOption
from nestcloud.spec import LaunchSpec
from providers.gcp import rules as gcp_rules

REGION = "us-central1"


class _GcpHooks:
    """Provider ``gcp`` as `check` sees it: class attributes and the rules hook only."""

    name: ClassVar[str] = "gcp"
    capabilities: ClassVar[Capabilities] = Capabilities(rules=True)
    options: ClassVar[tuple[ProviderOption, ...]] = ()

    @classmethod
    def rules(cls, spec: LaunchSpec, catalog: Catalog, entry: InstanceType | None
              ) -> list[Finding]:
        return gcp_rules.rules(spec, catalog, entry)


@pytest.fixture
def check(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    monkeypatch.delenv("NESTCLOUD_CATALOG", raising=False)  # the shipped catalog
    runner = CliRunner()

    def run(type_: str, *extra: str) -> Any:
        return runner.invoke(app, ["check", "--provider", "gcp", "--type", type_, "--region",
                                   REGION, *extra])
    return run


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return load_catalog()


def _cheapest(cat: Catalog, name: str) -> tuple[InstanceType, float]:
    t = cat.get("gcp", name)
    assert t is not None
    hit = cat.cheapest_nested("gcp", min_vcpus=t.vcpus, min_memory_gib=t.memory_gib,
                              region=REGION)
    assert hit is not None and hit[1] is not None
    return hit[0], hit[1]


CATALOG_CASES = [pytest.param("registered", id="registered"),
                 pytest.param("entry-point", id="entry-point")]
RULES_CASES = CATALOG_CASES


@pytest.fixture
def variant(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    name: str = request.param
    if name == "registered":
        monkeypatch.setitem(registry._extra, "gcp", _GcpHooks)
    else:
        monkeypatch.delitem(registry._extra, "gcp", raising=False)
    return name


# -- decided by the catalog (and the core's rules) -------------------------------------------


@pytest.mark.parametrize("variant", CATALOG_CASES, indirect=True)
def test_n2_with_ubuntu_and_kvm_is_launchable(variant: str, check: Callable[..., Any]) -> None:
    res = check("n2-standard-4", "--os", "ubuntu-24.04", "--hypervisor", "kvm")
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0] == f"gcp/n2-standard-4 in {REGION}: launchable"
    assert "[error]" not in res.output


@pytest.mark.parametrize("variant", CATALOG_CASES, indirect=True)
@pytest.mark.parametrize("name", ["e2-standard-4", "n2d-standard-4", "t2a-standard-4"])
def test_refused_types_exit_3_with_the_cheapest_nested_alternative(
        variant: str, check: Callable[..., Any], cat: Catalog, name: str) -> None:
    res = check(name, "--os", "ubuntu-24.04", "--hypervisor", "kvm")
    assert res.exit_code == 3, res.output
    assert res.output.splitlines()[0] == f"gcp/{name} in {REGION}: refused"
    best, usd = _cheapest(cat, name)
    assert (f"      -> use {best.name} ({best.vcpus} vCPU, {best.memory_gib:g} GiB, nesting "
            "nested): the cheapest gcp type able to run a hypervisor") in res.output
    assert (f"${usd:.4f}/h on-demand in {REGION} (price date: "
            f"{cat.source_date('gcp-prices')})") in res.output


@pytest.mark.parametrize("variant", CATALOG_CASES, indirect=True)
def test_json_says_refused_with_the_suggestion(variant: str, check: Callable[..., Any],
                                               cat: Catalog) -> None:
    res = check("e2-standard-4", "--json")
    assert res.exit_code == 3, res.output
    doc = json.loads(res.stdout)
    assert (doc["ok"], doc["provider"], doc["type"]) == (False, "gcp", "e2-standard-4")
    errors = [f for f in doc["findings"] if f["severity"] == "error"]
    best, _ = _cheapest(cat, "e2-standard-4")
    assert any((f["suggestion"] or "").startswith(f"use {best.name} ") for f in errors)


# -- needing GCP's own rules ------------------------------------------------------------------


@pytest.mark.parametrize("variant", RULES_CASES, indirect=True)
@pytest.mark.parametrize(("name", "reason"), [
    ("e2-standard-4", "the API accepts enableNestedVirtualization on E2 and the VM boots with "
                      "no vmx"),
    ("n2d-standard-4", "N2D is AMD"),
    ("t2a-standard-4", "T2A is Arm"),
])
def test_refusals_name_the_gcp_reason(variant: str, check: Callable[..., Any], name: str,
                                      reason: str) -> None:
    res = check(name)
    assert res.exit_code == 3, res.output
    assert f"  [error] gcp-nesting: {name}: " in res.output and reason in res.output


@pytest.mark.parametrize("variant", RULES_CASES, indirect=True)
def test_windows_with_hyperv_exits_3_with_reason_and_suggestion(
        variant: str, check: Callable[..., Any]) -> None:
    res = check("n2-standard-4", "--os", "windows-2022", "--hypervisor", "hyperv")
    assert res.exit_code == 3, res.output
    assert res.output.splitlines()[0] == f"gcp/n2-standard-4 in {REGION}: refused"
    assert "  [error] gcp-l1: Hyper-V cannot be the L1 hypervisor on GCP" in res.output
    assert "Windows Server images cannot be used for nested virtualization" in res.output
    assert "      -> use a Linux L1 with KVM (--os ubuntu-24.04 --hypervisor kvm)" in res.output


@pytest.mark.parametrize("variant", RULES_CASES, indirect=True)
def test_unconfirmed_series_launch_with_a_warning(variant: str, check: Callable[..., Any]
                                                  ) -> None:
    res = check("c3-standard-4")
    assert res.exit_code == 0, res.output
    assert ("  [warning] unconfirmed-nesting: nested virtualization on c3-standard-4 is "
            "expected but unconfirmed") in res.output
    assert "      -> use n2-standard-4 " in res.output
