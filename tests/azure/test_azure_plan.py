"""The pure half of the Azure provider: generations, images, ids, SKU facts, quota, errors."""

from __future__ import annotations

import pytest
from fakes.arm_fake import vm_sku

from nestcloud.errors import (CapacityError, CredentialsError, InputError, ProviderError,
                              QuotaError, ThrottledError)
from providers.azure import errors, plan


@pytest.mark.parametrize(("gens", "forced", "want"), [
    (["V1", "V2"], None, "V2"), (["V1"], None, "V1"), (["V2"], None, "V2"),
    (None, None, "V2"), (["V1", "V2"], "V1", "V1"), (None, "V1", "V1"),
])
def test_choose_generation(gens: list[str] | None, forced: str | None, want: str) -> None:
    assert plan.choose_generation("Standard_X", gens, forced) == want


def test_every_os_alias_has_both_generations() -> None:
    from nestcloud.oses import OSES

    azure_oses = [a for a in OSES if a != "al2023"]  # Amazon Linux is AWS-only
    assert sorted(plan.IMAGES) == sorted(azure_oses)
    for alias in azure_oses:
        for gen in ("V1", "V2"):
            assert set(plan.image_reference(alias, None, gen)) == {"publisher", "offer", "sku",
                                                                    "version"}
    with pytest.raises(InputError, match="no Azure image known for --os 'al2023'"):
        plan.image_reference("al2023", None, "V2")


def test_parse_id_round_trip_and_garbage() -> None:
    ids = plan.Ids("sub", "grp")
    vm = ids.of("Microsoft.Compute/virtualMachines", "a-0")
    assert plan.parse_id(vm) == {"subscription": "sub", "group": "grp",
                                 "type": "Microsoft.Compute/virtualMachines", "name": "a-0"}
    assert ids.subnet("v").endswith("/virtualNetworks/v/subnets/default")
    with pytest.raises(InputError, match="not an Azure resource id: 'i-123'"):
        plan.parse_id("i-123")


def test_sku_facts_read_capabilities_and_region_restrictions() -> None:
    f = plan.sku_facts(vm_sku("Standard_E2s_v5", vcpus=2, memory=16, gens="V1,V2",
                              restricted_in=("eastus",)), "EastUS")
    assert (f.vcpus, f.memory_gib, f.arch, f.generations, f.restricted, f.family) == (
        2, 16.0, "x86_64", ["V1", "V2"], "NotAvailableForSubscription", "standardESv5Family")
    assert plan.sku_facts(vm_sku("Standard_E2s_v5", restricted_in=("eastus",)),
                          "westus").restricted is None


def test_quota_shortfall_skips_names_it_does_not_see() -> None:
    def u(n: str, c: int, lim: int) -> dict[str, object]:
        return {"name": {"value": n}, "currentValue": c, "limit": lim}

    assert plan.quota_shortfall([], "standardDSv5Family", 1000, False) is None
    assert plan.quota_shortfall([u("cores", 98, 100)], "fam", 2, False) is None
    assert plan.quota_shortfall([u("cores", 98, 100)], "fam", 3, False) == ("cores", 98, 100)
    assert plan.quota_shortfall([u("cores", 0, 100), u("lowPriorityCores", 0, 2)], "fam", 4,
                                True) == ("lowPriorityCores", 0, 2)


@pytest.mark.parametrize(("code", "status", "cls"), [
    ("AllocationFailed", 200, CapacityError), ("ZonalAllocationFailed", 200, CapacityError),
    ("OperationNotAllowed", 409, QuotaError), ("QuotaExceeded", 409, QuotaError),
    ("AuthorizationFailed", 403, CredentialsError), (None, 401, CredentialsError),
    ("TooManyRequests", 429, ThrottledError), ("Conflict", 409, ProviderError),
])
def test_translate_classifies_by_scope(code: str | None, status: int, cls: type) -> None:
    err = errors.translate_code(code, "boom", status, "doing x")
    assert type(err) is cls
    assert err.message == "doing x: boom" + (f" ({code})" if code else "")
    assert err.provider == "azure"


def test_windows_computer_names() -> None:
    n = plan.Names(name="lab", region="eastus", group="g")
    assert n.computer_name(3, windows=True) == "lab-3"
    long = plan.Names(name="abcdefghijklmnop-x", region="eastus", group="g")
    assert long.computer_name(12, windows=True) == "abcdefghijkl-12"
    assert long.computer_name(12, windows=False) == "abcdefghijklmnop-x-12"
