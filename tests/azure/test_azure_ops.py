"""Azure down/list/console/verify, user-supplied groups, credentials, subscription, endpoint."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import SSH_KEY, FakeCredential
from fakes.arm_fake import SUB, ArmFake, vm_sku

from nestcloud.provider import LaunchRequest
from nestcloud.catalog import Catalog
from nestcloud.errors import InputError
from nestcloud.models import CatalogDiff
from nestcloud.spec import LaunchSpec


def spec(**kw: Any) -> LaunchSpec:
    base: dict[str, Any] = {"provider": "azure", "type": "Standard_D2s_v5", "region": "eastus",
                            "name": "demo", "key_name": SSH_KEY}
    base.update(kw)
    return LaunchSpec(**base)


# -- down ----------------------------------------------------------------------------------------


def test_down_deletes_the_group_and_waits(provider: Any, arm: ArmFake, catalog: Catalog) -> None:
    arm.polls = 2
    res = provider.launch(LaunchRequest(spec(count=2, public_ip=True, ttl_seconds=600), catalog)).result
    other = provider.launch(LaunchRequest(spec(name="keep"), catalog)).result
    gone = provider.down("demo")
    assert sorted(gone.terminated) == sorted(res.created)
    assert gone.deleted == [f"/subscriptions/{SUB}/resourceGroups/nestcloud-demo-eastus"]
    # down returned only after the delete operation reported done.
    polls = [r for r in arm.requests if "/operations/" in r.path]
    assert arm.requests[-1] in polls
    assert "nestcloud-demo-eastus" not in arm.groups
    assert all("/nestcloud-demo-eastus/" not in i for i in arm.ids())
    assert [i.id for i in provider.list()] == other.created
    again = provider.down("demo")
    assert (again.terminated, again.deleted) == ([], [])
    assert again.notes == [f"nothing named 'demo' is left in eastus in subscription {SUB}"]


def test_down_finds_the_name_in_every_region(make_provider: Callable[..., Any], arm: ArmFake,
                                             catalog: Catalog, rendered: Any) -> None:
    make_provider(region="eastus").launch(LaunchRequest(spec(), catalog)).result
    make_provider(region="westeurope").launch(LaunchRequest(spec(region="westeurope"), catalog)).result
    make_provider(region="westeurope").launch(LaunchRequest(spec(region="westeurope", name="other"), catalog)).result
    assert sorted(arm.groups) == ["nestcloud-demo-eastus", "nestcloud-demo-westeurope",
                                  "nestcloud-other-westeurope"]
    anywhere = make_provider(region=None)
    assert sorted((i.name, i.region) for i in anywhere.list()) == [
        ("demo", "eastus"), ("demo", "westeurope"), ("other", "westeurope")]
    assert [i.region for i in make_provider(region="eastus").list()] == ["eastus"]
    # A provider with a region removes the name there only.
    west = make_provider(region="westeurope").down("demo")
    assert [d.rsplit("/", 1)[-1] for d in west.deleted] == ["nestcloud-demo-westeurope"]
    gone = anywhere.down("demo")
    assert [d.rsplit("/", 1)[-1] for d in gone.deleted] == ["nestcloud-demo-eastus"]
    assert sorted(arm.groups) == ["nestcloud-other-westeurope"]
    assert anywhere.down("demo").notes == [f"nothing named 'demo' is left in subscription {SUB}"]


def test_user_group_is_checked_never_created_nor_deleted(make_provider: Callable[..., Any],
                                                         arm: ArmFake, catalog: Catalog,
                                                         rendered: Any) -> None:
    p = make_provider(resource_group="team-rg")
    with pytest.raises(InputError) as err:
        p.launch(LaunchRequest(spec(), catalog)).result
    assert str(err.value) == (
        f"resource group 'team-rg' does not exist in subscription {SUB}\n  hint: create it "
        "first, or leave out --resource-group and nestcloud creates (and later deletes) its "
        "own group")
    assert arm.writes() == []

    p.resources.resource_groups.create_or_update("team-rg", {"location": "eastus"})
    theirs = p.network.network_security_groups.begin_create_or_update(
        "team-rg", "their-nsg", {"location": "eastus", "tags": {"owner": "them"}}).result()
    arm.requests.clear()
    res = p.launch(LaunchRequest(spec(count=2, public_ip=True, ttl_seconds=600), catalog)).result
    assert not [r for r in arm.writes() if r.path.lower().endswith("/resourcegroups/team-rg")]
    assert arm.writes("PUT")[0].path.endswith("/networkSecurityGroups/nestcloud-demo-nsg")

    arm.requests.clear()
    gone = p.down("demo")
    assert sorted(gone.terminated) == sorted(res.created)
    assert "team-rg" in arm.groups
    assert arm.ids() == [theirs.id]
    kinds = [r.path.split("/")[-2] for r in arm.writes("DELETE")]
    # Dependency order: schedules, VMs (their NICs, IPs and disks go with them), then the
    # network the NICs used, then the NSG the subnet used.
    assert kinds[:2] == ["schedules", "schedules"]
    assert kinds.index("virtualMachines") < kinds.index("virtualNetworks") < \
        kinds.index("networkSecurityGroups")
    assert not [r for r in arm.writes("DELETE") if r.path.lower().endswith("/team-rg")]
    again = p.down("demo")
    assert again.notes == ["nothing named 'demo' is left in resource group team-rg"]


def test_user_group_vm_name_clash_is_refused(make_provider: Callable[..., Any], arm: ArmFake,
                                             catalog: Catalog, rendered: Any) -> None:
    p = make_provider(resource_group="team-rg")
    p.resources.resource_groups.create_or_update("team-rg", {"location": "eastus"})
    p.launch(LaunchRequest(spec(name="lab"), catalog)).result
    arm.resources = {k: ({**v, "tags": {}} if k.endswith("/virtualmachines/lab-0") else v)
                     for k, v in arm.resources.items()}
    with pytest.raises(InputError, match="already has a VM named 'lab-0' that nestcloud did "
                                         "not create for 'lab'"):
        p.launch(LaunchRequest(spec(name="lab"), catalog)).result


def test_down_failure_is_a_cleanup_error_naming_the_group(provider: Any, arm: ArmFake,
                                                          catalog: Catalog) -> None:
    provider.launch(LaunchRequest(spec(), catalog)).result
    arm.fault("DELETE", r"/resourcegroups/nestcloud-demo-eastus$", 409, "ScopeLocked",
              message="The scope is locked.", times=None)
    with pytest.raises(Exception) as err:
        provider.down("demo")
    assert type(err.value).__name__ == "CleanupError"
    assert err.value.leftovers == [f"/subscriptions/{SUB}/resourceGroups/nestcloud-demo-eastus"]
    assert "The scope is locked. (ScopeLocked)" in str(err.value)


# -- list / console --------------------------------------------------------------------------


def test_list_reads_tags_state_and_addresses(provider: Any, arm: ArmFake, catalog: Catalog
                                             ) -> None:
    provider.launch(LaunchRequest(spec(count=2, public_ip=True, ttl_seconds=3600, tags={"team": "x"}),
                    catalog)).result
    provider.launch(LaunchRequest(spec(name="other"), catalog)).result
    arm.fail_vm("broken-0", "AllocationFailed")
    with pytest.raises(Exception):
        provider.launch(LaunchRequest(spec(name="broken"), catalog)).result
    demo = provider.list("demo")
    assert [(i.name, i.seat, i.state, i.type, i.region) for i in demo] == [
        ("demo", 0, "running", "Standard_D2s_v5", "eastus"),
        ("demo", 1, "running", "Standard_D2s_v5", "eastus")]
    assert all(i.private_ip and i.public_ip for i in demo)
    assert demo[0].tags["team"] == "x" and demo[0].expires == demo[0].tags["nestcloud:expires"]
    assert sorted({i.name for i in provider.list()}) == ["demo", "other"]


def test_list_ignores_vms_nestcloud_did_not_tag(provider: Any, arm: ArmFake, catalog: Catalog
                                               ) -> None:
    provider.launch(LaunchRequest(spec(), catalog)).result
    for v in arm.resources.values():
        if v["type"] == "Microsoft.Compute/virtualMachines":
            v["tags"] = {"owner": "someone"}
    assert provider.list() == []


def test_console_reads_the_serial_log_blob(provider: Any, arm: ArmFake, catalog: Catalog
                                           ) -> None:
    arm.console_text = "boot...\nNESTCLOUD-READY kvm=ok\n"
    inst = provider.launch(LaunchRequest(spec(), catalog)).result.instances[0]
    assert provider.console(inst) == "boot...\nNESTCLOUD-READY kvm=ok\n"
    blob_gets = [r for r in arm.requests if r.path.startswith("/blobs/")]
    assert blob_gets[-1].headers.get("Authorization") is None  # the SAS URI is the credential
    arm.blobs.clear()
    assert provider.console(inst) == ""


# -- catalog verify ----------------------------------------------------------------------------


def test_verify_catalog_against_resource_skus(provider: Any, arm: ArmFake, catalog: Catalog
                                              ) -> None:
    arm.skus = [s for s in arm.skus if s["name"] != "Standard_D2s_v6"]
    arm.skus.append(vm_sku("Standard_D2s_v6", vcpus=2, memory=8, gens="V1,V2",
                           locations=("westeurope",)))
    for s in arm.skus:
        if s["name"] == "Standard_D4s_v5":
            s["capabilities"] = [c if c["name"] != "MemoryGB" else {"name": "MemoryGB",
                                                                    "value": "32"}
                                 for c in s["capabilities"]]
    res = provider.verify_catalog(catalog, "eastus")
    assert res.checked == 6
    assert res.missing_live == ["Standard_D2s_v6"]
    assert res.diffs == [
        CatalogDiff(type="Standard_D4s_v5", field="memory_gib", catalog=16.0, live=32.0),
        CatalogDiff(type="Standard_E2s_v5", field="restrictions", catalog=None,
                    live="NotAvailableForSubscription in eastus"),
    ]
    assert not res.ok
    assert arm.writes() == []
    west = provider.verify_catalog(catalog, "westeurope")
    assert CatalogDiff(type="Standard_D2s_v6", field="regions", catalog=["eastus"],
                       live="also offered in westeurope") in west.diffs
    assert CatalogDiff(type="Standard_D2s_v6", field="hyperv_generations", catalog=["V2"],
                       live=["V1", "V2"]) in west.diffs


# -- construction: subscription, endpoint, credentials -------------------------------------


def test_subscription_from_the_azure_cli_default(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    from providers.azure import AzureProvider

    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(tmp_path))
    profile = {"subscriptions": [{"id": "sub-a", "isDefault": False},
                                 {"id": "sub-b", "isDefault": True}]}
    # The Azure CLI writes a byte-order mark.
    (tmp_path / "azureProfile.json").write_text(json.dumps(profile), encoding="utf-8-sig")
    assert AzureProvider().subscription_id == "sub-b"
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "sub-env")
    assert AzureProvider().subscription_id == "sub-env"
    assert AzureProvider(subscription_id="sub-arg").subscription_id == "sub-arg"


def test_no_subscription_is_an_input_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path
                                           ) -> None:
    from nestcloud.provider import get_provider

    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
    monkeypatch.setenv("AZURE_CONFIG_DIR", str(tmp_path))
    with pytest.raises(InputError) as err:
        get_provider("azure", region="eastus", subscription_id=None, arm_endpoint=None,
                     resource_group=None, credential=None)
    assert str(err.value) == (
        "no Azure subscription: pass --subscription, set AZURE_SUBSCRIPTION_ID, or choose a "
        "default with `az account set --subscription <id>`")


def test_endpoint_from_env_sets_base_url_and_token_scope(monkeypatch: pytest.MonkeyPatch,
                                                         arm: ArmFake) -> None:
    from providers.azure import AzureProvider

    monkeypatch.setenv("NESTCLOUD_AZURE_ARM_ENDPOINT", arm.url + "/")
    cred = FakeCredential()
    p = AzureProvider(subscription_id=SUB, credential=cred)
    assert p.list() == []
    assert arm.requests[0].path == f"/subscriptions/{SUB}/providers/Microsoft.Compute/" \
                                   "virtualMachines"
    assert arm.requests[0].headers["Authorization"] == "Bearer fake-token"
    assert cred.scopes == [(f"{arm.url}/.default",)]


def test_loopback_endpoint_needs_no_login(arm: ArmFake, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    """What the CLI does with --arm-endpoint http://127.0.0.1:PORT: no credential chain."""
    import azure.identity

    from nestcloud.provider import get_provider

    def boom(*a: Any, **k: Any) -> None:
        raise AssertionError("DefaultAzureCredential must not be built for a loopback endpoint")

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", boom)
    p = get_provider("azure", region="eastus", subscription_id=SUB, arm_endpoint=arm.url,
                     resource_group=None, credential=None)
    assert p.list() == []
    assert arm.requests[0].headers["Authorization"] == "Bearer nestcloud-loopback"


def test_remote_endpoint_uses_default_credential_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    import azure.identity

    from providers.azure import AzureProvider

    built: list[int] = []

    class Recorder:
        def __init__(self) -> None:
            built.append(1)

    monkeypatch.setattr(azure.identity, "DefaultAzureCredential", Recorder)
    p = AzureProvider(subscription_id=SUB, arm_endpoint="https://management.chinacloudapi.cn")
    assert built == []  # nothing probed at construction
    client = p.compute
    assert built == [1]
    assert client._config.credential_scopes == ["https://management.chinacloudapi.cn/.default"]
