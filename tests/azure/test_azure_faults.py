"""Faults at the ARM fake: throttling, failed provisioning, capacity/quota/auth, rollback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from conftest import SSH_KEY
from fakes.arm_fake import ArmFake

from nestcloud.provider import LaunchRequest
from nestcloud.catalog import Catalog
from nestcloud.errors import (CapacityError, CleanupError, CredentialsError, ProviderError,
                              QuotaError, UnsupportedError)
from nestcloud.spec import LaunchSpec


def spec(**kw: Any) -> LaunchSpec:
    base: dict[str, Any] = {"provider": "azure", "type": "Standard_D2s_v5", "region": "eastus",
                            "name": "demo", "key_name": SSH_KEY}
    base.update(kw)
    return LaunchSpec(**base)


def puts(arm: ArmFake, type_: str) -> int:
    return len(arm.writes("PUT", type_))


def test_429_with_retry_after_is_retried_by_the_sdk(provider: Any, arm: ArmFake,
                                                     catalog: Catalog) -> None:
    arm.fault("PUT", r"/networkInterfaces/", 429, "TooManyRequests", times=2, retry_after="0")
    arm.fault("GET", r"/skus$", 429, "TooManyRequests", times=1, retry_after="1")
    res = provider.launch(LaunchRequest(spec(count=2), catalog)).result
    assert len(res.created) == 2
    assert puts(arm, "networkInterfaces") == 4  # two throttled, then one each
    assert len([r for r in arm.requests if r.path.endswith("/skus")]) == 2


def test_endless_throttling_becomes_a_throttled_error(make_provider: Callable[..., Any],
                                                      arm: ArmFake, catalog: Catalog,
                                                      rendered: Any) -> None:
    arm.fault("GET", r"/skus$", 429, "TooManyRequests", times=None, retry_after="0")
    p = make_provider(client_options={"retry_total": 2})
    with pytest.raises(ProviderError) as err:
        p.launch(LaunchRequest(spec(), catalog)).result
    assert type(err.value).__name__ == "ThrottledError"
    assert "reading Resource SKUs for eastus" in err.value.message
    assert isinstance(err.value.__cause__, HttpResponseError)
    assert len(arm.requests) == 3  # the first try and retry_total=2 retries


def test_409_with_retry_after_is_retried(provider: Any, arm: ArmFake, catalog: Catalog) -> None:
    arm.fault("PUT", r"/virtualNetworks/", 409, "AnotherOperationInProgress", retry_after="0")
    provider.launch(LaunchRequest(spec(), catalog)).result
    assert puts(arm, "virtualNetworks") == 2


def test_409_group_being_deleted_says_what_to_do(provider: Any, arm: ArmFake,
                                                 catalog: Catalog) -> None:
    arm.fault("PUT", r"/resourcegroups/nestcloud-demo-eastus$", 409,
              "ResourceGroupBeingDeleted", message="The resource group is being deleted.")
    with pytest.raises(ProviderError) as err:
        provider.launch(LaunchRequest(spec(), catalog)).result
    assert str(err.value) == (
        "creating nestcloud-demo-eastus: The resource group is being deleted. "
        "(ResourceGroupBeingDeleted)\n  hint: a previous `nestcloud down` is still deleting "
        "this group: wait for it to finish, then launch again")
    assert arm.groups == {} and arm.resources == {}


def test_transient_provisioning_failure_is_retried(provider: Any, arm: ArmFake,
                                                   catalog: Catalog) -> None:
    arm.fail_vm("demo-1", "OSProvisioningInternalError")
    res = provider.launch(LaunchRequest(spec(count=2), catalog)).result
    assert len(res.created) == 2
    vm_puts = [r.path.rsplit("/", 1)[-1] for r in arm.writes("PUT", "virtualMachines")]
    assert sorted(vm_puts) == ["demo-0", "demo-1", "demo-1"]
    assert {i.state for i in res.instances} == {"running"}


def test_allocation_failure_rolls_back_everything_this_run_created(
        provider: Any, arm: ArmFake, catalog: Catalog) -> None:
    arm.fail_vm("demo-2", "AllocationFailed")
    with pytest.raises(CapacityError) as err:
        provider.launch(LaunchRequest(spec(count=3, public_ip=True, ttl_seconds=3600), catalog)).result
    e = err.value
    assert e.code == "AllocationFailed"
    assert e.message.startswith("seat 2: creating demo-2: injected provisioning failure of "
                                "demo-2 (AllocationFailed); rolled back what this run created")
    assert e.hint == ("Azure has no capacity for this size there now: try another region or "
                      "an equivalent size, or retry later")
    assert isinstance(e.__cause__, HttpResponseError)
    # The run created the group, so one group delete removed everything.
    assert arm.groups == {} and arm.resources == {}
    assert [r.path.rsplit("/", 1)[-1] for r in arm.writes("DELETE")] == ["nestcloud-demo-eastus"]
    assert provider.list("demo") == []


@pytest.mark.parametrize(("status", "code", "cls", "hint_start"), [
    (409, "OperationNotAllowed", QuotaError, "raise the vCPU quota"),
    (409, "QuotaExceeded", QuotaError, "raise the vCPU quota"),
    (409, "SkuNotAvailable", CapacityError, "Azure has no capacity"),
    (403, "AuthorizationFailed", CredentialsError, "sign in with `az login`"),
])
def test_vm_create_errors_become_nestcloud_errors(provider: Any, arm: ArmFake,
                                                  catalog: Catalog, status: int, code: str,
                                                  cls: type, hint_start: str) -> None:
    arm.fault("PUT", r"/virtualMachines/demo-0$", status, code,
              message="Operation could not be completed")
    with pytest.raises(cls) as err:
        provider.launch(LaunchRequest(spec(), catalog)).result
    assert err.value.message.startswith(
        f"seat 0: creating demo-0: Operation could not be completed ({code})")
    assert err.value.hint.startswith(hint_start)
    assert err.value.exit_code == 1
    assert arm.resources == {} and arm.groups == {}


def test_rollback_in_a_user_group_removes_only_this_runs_resources(
        make_provider: Callable[..., Any], arm: ArmFake, catalog: Catalog,
        rendered: Any) -> None:
    p = make_provider(resource_group="team-rg")
    p.resources.resource_groups.create_or_update("team-rg", {"location": "eastus"})
    p.network.network_security_groups.begin_create_or_update(
        "team-rg", "theirs", {"location": "eastus"}).result()
    first = p.launch(LaunchRequest(spec(count=1, public_ip=True), catalog)).result
    arm.fail_vm("demo-2", "AllocationFailed")
    before = set(arm.ids())
    with pytest.raises(CapacityError):
        p.launch(LaunchRequest(spec(count=3, public_ip=True), catalog)).result
    assert set(arm.ids()) == before  # seat 0 and the foreign NSG survive, seats 1-2 are gone
    assert "team-rg" in arm.groups
    assert [i.id for i in p.list("demo")] == first.created
    deleted = [r.path.rsplit("/", 2)[-2:] for r in arm.writes("DELETE")]
    # Reverse creation order: a seat's VM before its NIC before its public IP. Seat 2 failed
    # at its VM; seat 1 ran alongside and stopped wherever the failure found it.
    rank = {"virtualMachines": 0, "networkInterfaces": 1, "publicIPAddresses": 2}
    for seat in (1, 2):
        kinds = [d[0] for d in deleted if d[1].startswith(f"demo-{seat}")]
        assert kinds == sorted(kinds, key=rank.__getitem__)
    assert [d[0] for d in deleted if d[1].startswith("demo-2")] == [
        "virtualMachines", "networkInterfaces", "publicIPAddresses"]


def test_failed_rollback_lists_what_is_left(provider: Any, arm: ArmFake, catalog: Catalog
                                            ) -> None:
    arm.fail_vm("demo-0", "AllocationFailed")
    arm.fault("DELETE", r"/resourcegroups/nestcloud-demo-eastus$", 409, "Conflict",
              times=None)
    with pytest.raises(CleanupError) as err:
        provider.launch(LaunchRequest(spec(), catalog)).result
    gid = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/" \
          "nestcloud-demo-eastus"
    assert err.value.leftovers == [gid]
    assert str(err.value) == (
        f"the launch failed and removing what it created failed too; left: {gid}\n"
        "  hint: run `nestcloud down demo --provider azure` or "
        "`az group delete -n nestcloud-demo-eastus`")
    assert isinstance(err.value.__cause__, CapacityError)


def test_credential_failure_is_a_credentials_error(make_provider: Callable[..., Any],
                                                   arm: ArmFake, catalog: Catalog,
                                                   rendered: Any) -> None:
    class NoLogin:
        def get_token(self, *scopes: str, **kw: Any) -> Any:
            raise ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token")

    with pytest.raises(CredentialsError) as err:
        make_provider(credential=NoLogin()).launch(LaunchRequest(spec(), catalog)).result
    assert str(err.value) == (
        "reading Resource SKUs for eastus: no usable Azure credentials (DefaultAzureCredential "
        "failed to retrieve a token)\n  hint: run `az login`, or set AZURE_CLIENT_ID/"
        "AZURE_TENANT_ID/AZURE_CLIENT_SECRET for a service principal")
    assert arm.requests == []


def test_rejected_token_is_a_credentials_error(provider: Any, arm: ArmFake, catalog: Catalog
                                               ) -> None:
    arm.fault("GET", r"/skus$", 401, "InvalidAuthenticationToken",
              message="The access token is invalid.")
    with pytest.raises(CredentialsError, match=r"The access token is invalid\. "
                                               r"\(InvalidAuthenticationToken\)"):
        provider.launch(LaunchRequest(spec(), catalog)).result


@pytest.mark.parametrize(("kw", "message", "cls"), [
    ({"type": "Standard_D4s_v5", "region": "westeurope"},
     "Standard_D4s_v5 is not offered in westeurope (Resource SKUs)", UnsupportedError),
    ({"type": "Standard_E2s_v5"},
     "Standard_E2s_v5 is restricted for this subscription in eastus "
     "(NotAvailableForSubscription)", UnsupportedError),
    ({"type": "Standard_D2ps_v5"},
     "Standard_D2ps_v5 is arm64: Azure offers no nested virtualization on Arm",
     UnsupportedError),
    ({"type": "Standard_B2s", "spot": True},
     "Standard_B2s cannot run as Spot in eastus", UnsupportedError),
])
def test_preflight_from_resource_skus_refuses_before_any_write(
        provider: Any, arm: ArmFake, catalog: Catalog, kw: dict[str, Any], message: str,
        cls: type) -> None:
    with pytest.raises(cls) as err:
        provider.launch(LaunchRequest(spec(**kw), catalog)).result
    assert err.value.message == message
    assert arm.writes() == []


def test_not_offered_suggests_similar_sizes(provider: Any, arm: ArmFake, catalog: Catalog
                                            ) -> None:
    with pytest.raises(UnsupportedError) as err:
        provider.launch(LaunchRequest(spec(type="Standard_D8s_v5"), catalog)).result
    assert err.value.hint == "similar sizes there: Standard_D2s_v5, Standard_D4s_v5"


def test_unreachable_endpoint(make_provider: Callable[..., Any], catalog: Catalog,
                              rendered: Any) -> None:
    p = make_provider(arm_endpoint="http://127.0.0.1:9", client_options={"retry_total": 0})
    with pytest.raises(ProviderError) as err:
        p.launch(LaunchRequest(spec(), catalog)).result
    assert err.value.message.startswith("reading Resource SKUs for eastus: cannot reach Azure "
                                        "Resource Manager")


# -- issue 7: quota pre-check, big labs under throttling, all or nothing -----------------------


def usage(name: str, current: int, limit: int) -> dict[str, Any]:
    return {"name": {"value": name, "localizedValue": name}, "currentValue": current,
            "limit": limit, "unit": "Count"}


def test_quota_is_checked_before_any_write(provider: Any, arm: ArmFake, catalog: Catalog
                                           ) -> None:
    arm.usages["eastus"] = [usage("cores", 10, 100), usage("standardDSv5Family", 6, 10)]
    with pytest.raises(QuotaError) as err:
        provider.launch(LaunchRequest(spec(count=3), catalog)).result  # 3 x 2 vCPUs on top of 6 of 10
    assert str(err.value) == (
        "6 more vCPUs of Standard_D2s_v5 would exceed the standardDSv5Family quota in eastus "
        "(6 of 10 in use)\n  hint: request more standardDSv5Family quota in eastus (portal: "
        "Quotas > Compute), lower --count, or pick another region/size")
    assert arm.writes() == []
    assert len(provider.launch(LaunchRequest(spec(count=2), catalog)).result.created) == 2  # 4 more fit


def test_spot_counts_against_low_priority_cores(provider: Any, arm: ArmFake, catalog: Catalog
                                                ) -> None:
    arm.usages["eastus"] = [usage("cores", 0, 100), usage("standardDSv5Family", 0, 100),
                            usage("lowPriorityCores", 0, 3)]
    with pytest.raises(QuotaError, match="would exceed the lowPriorityCores quota"):
        provider.launch(LaunchRequest(spec(count=2, spot=True), catalog)).result
    assert arm.writes() == []
    provider.launch(LaunchRequest(spec(count=2), catalog)).result  # on-demand does not touch that pool


def test_unreadable_usage_does_not_block(provider: Any, arm: ArmFake, catalog: Catalog) -> None:
    arm.fault("GET", r"/usages$", 403, "AuthorizationFailed", message="no usage read")
    res = provider.launch(LaunchRequest(spec(), catalog)).result
    assert len(res.created) == 1
    assert "vCPU quota not checked in eastus: no usage read" in res.notes


def test_fifty_seats_under_throttling_land_whole(make_provider: Callable[..., Any],
                                                 arm: ArmFake, catalog: Catalog,
                                                 rendered: Any) -> None:
    arm.fault("*", r"/subscriptions/", 429, "TooManyRequests", times=None, every=3,
              retry_after="0")
    res = make_provider().launch(LaunchRequest(spec(count=50), catalog)).result
    assert len(res.created) == 50
    assert sorted(i.seat for i in res.instances) == list(range(50))
    throttled = arm.faults[0].hits
    assert throttled > 50  # a third of the ARM calls were answered 429, none failed the lab


def test_failure_at_seat_37_of_50_leaves_nothing(make_provider: Callable[..., Any],
                                                  arm: ArmFake, catalog: Catalog,
                                                  rendered: Any) -> None:
    arm.fault("*", r"/subscriptions/", 429, "TooManyRequests", times=None, every=3,
              retry_after="0")
    arm.fail_vm("demo-37", "AllocationFailed")
    p = make_provider()
    with pytest.raises(CapacityError) as err:
        p.launch(LaunchRequest(spec(count=50), catalog)).result
    assert err.value.message.startswith("seat 37: creating demo-37: ")
    assert "rolled back what this run created" in err.value.message
    assert arm.groups == {} and arm.resources == {}
    assert p.list() == []


def test_ctrl_c_during_a_launch_rolls_back(make_provider: Callable[..., Any], arm: ArmFake,
                                           catalog: Catalog, rendered: Any,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    p = make_provider()
    real = p._create_vm
    calls: list[str] = []

    def interrupted(group: str, vm_name: str, body: dict[str, Any]) -> None:
        calls.append(vm_name)
        real(group, vm_name, body)
        if vm_name == "demo-1":
            raise KeyboardInterrupt

    monkeypatch.setattr(p, "_create_vm", interrupted)
    with pytest.raises(KeyboardInterrupt):
        p.launch(LaunchRequest(spec(count=3), catalog)).result
    assert arm.groups == {} and arm.resources == {}


def test_concurrent_launches_of_one_name_do_not_double(make_provider: Callable[..., Any],
                                                       arm: ArmFake, catalog: Catalog,
                                                       rendered: Any) -> None:
    import threading

    arm.polls = 2
    out: list[Any] = []
    threads = [threading.Thread(target=lambda: out.append(
        make_provider().launch(LaunchRequest(spec(count=3), catalog)).result)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 2
    vms = [r for r in arm.resources.values() if r["type"] == "Microsoft.Compute/virtualMachines"]
    assert sorted(v["name"] for v in vms) == ["demo-0", "demo-1", "demo-2"]


def test_security_type_rejection_explains_why_standard_is_needed(
        provider: Any, arm: ArmFake, catalog: Catalog) -> None:
    arm.fault("PUT", r"/virtualMachines/demo-0$", 400, "BadRequest",
              message="Use of securityType Standard is not enabled for this subscription.")
    with pytest.raises(UnsupportedError) as err:
        provider.launch(LaunchRequest(spec(), catalog)).result
    assert err.value.hint.startswith("nesting needs security type Standard (Trusted Launch "
                                     "blocks it)")
    assert arm.resources == {}
