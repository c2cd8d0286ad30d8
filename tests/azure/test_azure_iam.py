"""Azure's least privilege from its own package: the custom role as data, the RBAC action
every ARM request needs, the ``access_policy`` hook, and a recording of every verb against
the local ARM fake that must stay inside the role (and use all of it)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.arm_fake import SUB, ArmFake

from nestcloud.catalog import parse_catalog
from nestcloud.errors import InputError
from nestcloud.provider import AccessPolicy, UserDataEnvelope, load_factory
from providers.azure import iam

EXPLAIN = ("nestcloud: Azure custom role for the Azure provider (replace {subscription-id}, "
           "then `az role definition create --role-definition @role.json`)")


def test_role_definition_shape() -> None:
    role = iam.azure_role_definition()
    assert role["IsCustom"] is True and role["Name"] == "nestcloud operator"
    assert role["AssignableScopes"] == ["/subscriptions/{subscription-id}"]
    assert role["NotActions"] == [] and role["DataActions"] == []
    assert all("*" not in a for a in role["Actions"])
    assert len(role["Actions"]) == len({a.lower() for a in role["Actions"]})
    for action in role["Actions"]:
        ns, *_rest, verb = action.split("/")
        assert ns in {"Microsoft.Resources", "Microsoft.Compute", "Microsoft.Network",
                      "Microsoft.DevTestLab"}, action
        assert verb in {"read", "write", "delete", "action"}, action
    assert set(iam.AZURE_IMPLIED) <= set(role["Actions"])
    assert iam.role_actions(role) == role["Actions"]


def test_role_definition_is_a_fresh_copy_each_time() -> None:
    role = iam.azure_role_definition()
    role["Actions"].clear()
    assert iam.azure_role_definition()["Actions"]


# -- the hook --------------------------------------------------------------------------------


def test_access_policy_is_the_role_and_how_to_create_it() -> None:
    got = load_factory("azure").access_policy()
    assert isinstance(got, AccessPolicy)
    assert got.document == iam.azure_role_definition()
    assert got.explain == EXPLAIN
    got.document["Actions"].clear()  # the caller's copy
    assert load_factory("azure").access_policy().document["Actions"]


@pytest.mark.parametrize("kw", [{"instance_role": "r"}, {"l1": True},
                                {"instance_role": "r", "l1": True}])
def test_access_policy_refuses_an_identity_for_the_hosts(kw: dict[str, Any]) -> None:
    with pytest.raises(InputError) as err:
        load_factory("azure").access_policy(**kw)
    assert err.value.exit_code == 2
    assert err.value.message == ("--instance-role and --l1-role are not for --provider azure: "
                                 "Azure VMs need no identity for readiness")


# -- mapping calls to actions ----------------------------------------------------------------


SUBP = "/subscriptions/0000/resourceGroups/g/providers"


@pytest.mark.parametrize("method,path,want", [
    ("PUT", f"{SUBP}/Microsoft.Compute/virtualMachines/vm-0?api-version=2024-07-01",
     "Microsoft.Compute/virtualMachines/write"),
    ("GET", f"{SUBP}/Microsoft.Compute/virtualMachines/vm-0",
     "Microsoft.Compute/virtualMachines/read"),
    ("GET", f"{SUBP}/Microsoft.Compute/virtualMachines",
     "Microsoft.Compute/virtualMachines/read"),
    ("GET", f"{SUBP}/Microsoft.Compute/virtualMachines/vm-0/instanceView",
     "Microsoft.Compute/virtualMachines/instanceView/read"),
    ("DELETE", f"{SUBP}/Microsoft.Compute/virtualMachines/vm-0",
     "Microsoft.Compute/virtualMachines/delete"),
    ("POST", f"{SUBP}/Microsoft.Compute/virtualMachines/vm-0/retrieveBootDiagnosticsData",
     "Microsoft.Compute/virtualMachines/retrieveBootDiagnosticsData/action"),
    ("POST", f"{SUBP}/Microsoft.Compute/virtualMachines/vm-0/deallocate",
     "Microsoft.Compute/virtualMachines/deallocate/action"),
    ("PUT", f"{SUBP}/Microsoft.Compute/virtualMachines/vm-0/extensions/boot",
     "Microsoft.Compute/virtualMachines/extensions/write"),
    ("PUT", f"{SUBP}/Microsoft.Network/virtualNetworks/v/subnets/default",
     "Microsoft.Network/virtualNetworks/subnets/write"),
    ("PUT", f"{SUBP}/Microsoft.DevTestLab/schedules/shutdown-computevm-vm-0",
     "Microsoft.DevTestLab/schedules/write"),
    ("GET", "/subscriptions/0000/providers/Microsoft.Compute/skus?$filter=location eq 'eastus'",
     "Microsoft.Compute/skus/read"),
    ("GET", "/subscriptions/0000/providers/Microsoft.Compute/locations/eastus/operations/ab12",
     "Microsoft.Compute/locations/operations/read"),
    ("GET", "/subscriptions/0000/providers/Microsoft.Compute/locations/eastus/usages",
     "Microsoft.Compute/locations/usages/read"),
    ("PUT", "/subscriptions/0000/resourcegroups/nestcloud-x-eastus",
     "Microsoft.Resources/subscriptions/resourceGroups/write"),
    ("HEAD", "/subscriptions/0000/resourcegroups/nestcloud-x-eastus",
     "Microsoft.Resources/subscriptions/resourceGroups/read"),
    ("GET", "/subscriptions/0000/resourcegroups?$filter=tagName eq 'nestcloud:name'",
     "Microsoft.Resources/subscriptions/resourceGroups/read"),
    ("DELETE", "/subscriptions/0000/resourceGroups/g",
     "Microsoft.Resources/subscriptions/resourceGroups/delete"),
    ("GET", "/subscriptions/0000/resourceGroups/g/resources",
     "Microsoft.Resources/subscriptions/resourceGroups/resources/read"),
    ("GET", "/subscriptions/0000/operationresults/eyJqb2I",
     "Microsoft.Resources/subscriptions/operationresults/read"),
    ("GET", "/subscriptions/0000", "Microsoft.Resources/subscriptions/read"),
])
def test_azure_action_from_method_and_path(method: str, path: str, want: str) -> None:
    assert iam.azure_action(method, path) == want
    assert iam.azure_action(method, "http://127.0.0.1:5000" + path) == want


@pytest.mark.parametrize("method,path", [("GET", "/providers/Microsoft.Compute/operations"),
                                         ("GET", "/"), ("TRACE", f"{SUBP}/Microsoft.X/y/z")])
def test_azure_action_rejects_what_it_cannot_map(method: str, path: str) -> None:
    with pytest.raises(ValueError):
        iam.azure_action(method, path)


def test_azure_join_actions_come_from_what_the_body_references() -> None:
    nic = {"location": "eastus", "properties": {"ipConfigurations": [{"name": "c", "properties": {
        "subnet": {"id": f"{SUBP}/Microsoft.Network/virtualNetworks/v/subnets/default"},
        "publicIPAddress": {"id": f"{SUBP}/Microsoft.Network/publicIPAddresses/p"}}}]}}
    assert iam.azure_actions_for_request(
        "PUT", f"{SUBP}/Microsoft.Network/networkInterfaces/n", json.dumps(nic)) == [
        "Microsoft.Network/networkInterfaces/write",
        "Microsoft.Network/virtualNetworks/subnets/join/action",
        "Microsoft.Network/publicIPAddresses/join/action"]
    vm = {"id": f"{SUBP}/Microsoft.Compute/virtualMachines/vm-0",  # its own id: no join
          "properties": {"networkProfile": {"networkInterfaces": [
              {"id": f"{SUBP}/Microsoft.Network/networkInterfaces/n"}]}}}
    assert iam.azure_actions_for_request(
        "PUT", f"{SUBP}/Microsoft.Compute/virtualMachines/vm-0", vm) == [
        "Microsoft.Compute/virtualMachines/write", "Microsoft.Network/networkInterfaces/join/action"]
    vnet = {"properties": {"subnets": [{"name": "default", "properties": {
        "networkSecurityGroup": {"id": f"{SUBP}/Microsoft.Network/networkSecurityGroups/s"}}}]}}
    assert iam.azure_actions_for_request(
        "PUT", f"{SUBP}/Microsoft.Network/virtualNetworks/v", vnet)[1:] == [
        "Microsoft.Network/networkSecurityGroups/join/action"]
    # A GET's body is not a write; a schedule's targetResourceId is not a join.
    assert iam.azure_actions_for_request("GET", f"{SUBP}/Microsoft.Network/virtualNetworks/v",
                                         vnet) == ["Microsoft.Network/virtualNetworks/read"]
    sched = {"properties": {"targetResourceId": f"{SUBP}/Microsoft.Compute/virtualMachines/x"}}
    assert iam.azure_actions_for_request(
        "PUT", f"{SUBP}/Microsoft.DevTestLab/schedules/s", sched) == [
        "Microsoft.DevTestLab/schedules/write"]


# -- every verb at the local ARM fake stays inside the role ----------------------------------

AZURE_CATALOG = """
schema_version: 1
sources:
  facts: {description: "shared/FACTS.md"}
types:
  - {provider: azure, name: Standard_D2s_v5, family: Dsv5, vcpus: 2, memory_gib: 8,
     arch: x86_64, cpu_vendor: intel, nesting: nested, nesting_source: facts,
     verified: 2026-11-29, regions: [eastus], hyperv_generations: [V1, V2],
     security_type: Standard}
"""
SSH_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTestsOnly nestcloud-iam-test"


@pytest.fixture(scope="module")
def azure_run() -> Iterator[tuple[list[Any], dict[str, list[Any]]]]:
    """Every Azure verb once; yields the fake's request log and the requests per phase."""
    from nestcloud.bootstrap import RenderedUserData
    from nestcloud.errors import NestcloudError
    from nestcloud.launcher import launch
    from nestcloud.spec import LaunchSpec
    from providers.azure import AzureProvider

    sub = SUB
    arm = ArmFake().start()

    def render(envelope: UserDataEnvelope, os_alias: str, hypervisor: str, *,
               provider_name: str = "", extra: str | None = None,
               l2_smoke: bool = False) -> RenderedUserData:
        if os_alias.startswith("windows"):
            return RenderedUserData("powershell", b"Install-WindowsFeature Hyper-V", False)
        return RenderedUserData("cloud-config", b"#cloud-config\nruncmd: [true]\n", False)

    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("nestcloud.bootstrap.render_user_data", render)
            prov = AzureProvider(region="eastus", subscription_id=sub, arm_endpoint=arm.url,
                                 client_options={"retry_backoff_factor": 0,
                                                 "polling_interval": 0},
                                 seat_attempts=1)
            cat = parse_catalog(AZURE_CATALOG, "iam-azure-catalog")
            name = "iam" + uuid.uuid4().hex[:8]
            linux = LaunchSpec(provider="azure", type="Standard_D2s_v5", region="eastus",
                               name=name, count=2, key_name=SSH_PUBLIC_KEY,
                               ssh_cidr="203.0.113.7/32", ttl_seconds=3600, public_ip=True,
                               egress="nat", tags={"team": "lab"})
            windows = linux.model_copy(update={"name": name + "-w", "os": "windows-2022",
                                               "hypervisor": "hyperv", "count": 1,
                                               "key_name": None})
            broken = linux.model_copy(update={"name": name + "-x", "count": 1})
            phases: dict[str, list[Any]] = {}

            def phase(label: str, fn: Any) -> Any:
                start = len(arm.requests)
                out = fn()
                phases[label] = list(arm.requests[start:])
                return out

            phase("dry-run", lambda: launch(linux, cat, prov, dry_run=True))
            phase("launch", lambda: launch(linux, cat, prov))
            phase("relaunch", lambda: launch(linux, cat, prov))
            phase("launch-windows", lambda: launch(windows, cat, prov))
            listed = phase("list", lambda: prov.list(name))
            assert {i.seat for i in listed} == {0, 1}
            phase("list-all", lambda: prov.list(None))
            phase("console", lambda: prov.console(listed[0]))
            # A Windows L1's console reads its marker file through Run Command.
            [win] = prov.list(windows.name)
            phase("console-windows", lambda: prov.console(win))
            phase("verify", lambda: prov.verify_catalog(cat, "eastus"))
            arm.fail_vm(f"{broken.name}-0", "AllocationFailed")

            def rollback() -> None:
                with pytest.raises(NestcloudError):
                    launch(broken, cat, prov)

            phase("rollback", rollback)
            phase("down", lambda: (prov.down(name), prov.down(windows.name or "")))
            phase("down-again", lambda: prov.down(name))

            # Into a group the user owns: `down` then removes resource by resource.
            _put_group(arm.url, sub, "shared-rg")
            shared = AzureProvider(region="eastus", subscription_id=sub, arm_endpoint=arm.url,
                                   resource_group="shared-rg",
                                   client_options={"retry_backoff_factor": 0,
                                                   "polling_interval": 0})
            in_group = linux.model_copy(update={"name": name + "-g", "count": 1})
            phase("launch-in-group", lambda: launch(in_group, cat, shared))
            phase("list-in-group", lambda: shared.list(in_group.name))
            phase("down-in-group", lambda: shared.down(in_group.name or ""))
            yield [r for rs in phases.values() for r in rs], phases
    finally:
        arm.stop()


def _put_group(base: str, sub: str, group: str) -> None:
    """Test setup outside the recorded phases: a resource group nestcloud did not make."""
    import urllib.request

    req = urllib.request.Request(
        f"{base}/subscriptions/{sub}/resourcegroups/{group}?api-version=2022-09-01",
        data=json.dumps({"location": "eastus"}).encode(), method="PUT",
        headers={"Content-Type": "application/json", "Authorization": "Bearer setup"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status in (200, 201)


def _arm_requests(requests: list[Any]) -> list[Any]:
    """ARM control-plane requests only. The fake polls long-running operations at its own
    /operations/<id> (real ARM: Microsoft.<ns>/locations/operations, in AZURE_IMPLIED) and
    serves the serial log at /blobs/ (a SAS URL: data plane, no RBAC action)."""
    out = []
    for r in requests:
        low = r.path.lower()
        if low.startswith(("/operations/", "/blobs/")):
            continue
        assert low.startswith("/subscriptions/"), r.path
        out.append(r)
    return out


def _azure_actions(requests: list[Any]) -> list[tuple[str, str, str]]:
    return [(action, r.method, r.path) for r in _arm_requests(requests)
            for action in iam.azure_actions_for_request(r.method, r.path, r.body)]


def test_azure_provider_calls_nothing_outside_the_role(
        azure_run: tuple[list[Any], dict[str, list[Any]]]) -> None:
    requests, phases = azure_run
    role = iam.role_actions(iam.azure_role_definition())
    seen = _azure_actions(requests)
    granted = {a.lower() for a in role}  # no wildcards in the role (its shape test)
    outside = sorted({(a, m, p) for a, m, p in seen if a.lower() not in granted})
    assert outside == [], f"the Azure provider needs actions the role lacks: {outside}"
    recorded = {a.lower() for a, _, _ in seen}
    unused = sorted(a for a in role if a.lower() not in recorded and a not in iam.AZURE_IMPLIED)
    assert unused == [], f"the role grants actions no verb uses: {unused}"
    # "Implied" must stay true: nothing listed there is in fact requested directly.
    direct = sorted(a for a in iam.AZURE_IMPLIED if a.lower() in recorded)
    assert direct == [], f"AZURE_IMPLIED lists actions that are requested directly: {direct}"
    # The run exercised creation, the Windows extension, the TTL schedule, console, teardown.
    for needed in ("Microsoft.Compute/virtualMachines/write",
                   "Microsoft.Compute/virtualMachines/extensions/write",
                   # the outbound path (NAT gateway on the subnet) and the image's disk size
                   "Microsoft.Network/natGateways/write",
                   "Microsoft.Network/natGateways/join/action",
                   "Microsoft.Compute/locations/publishers/artifacttypes/offers/skus/versions/"
                   "read",
                   "Microsoft.DevTestLab/schedules/write",
                   "Microsoft.Network/networkInterfaces/join/action",
                   "Microsoft.Compute/virtualMachines/retrieveBootDiagnosticsData/action",
                   "Microsoft.Compute/virtualMachines/runCommand/action",
                   "Microsoft.Resources/subscriptions/resourceGroups/delete"):
        assert needed.lower() in recorded, needed
    # A dry run only reads.
    dry = {a for a, _, _ in _azure_actions(phases["dry-run"])}
    assert all(a.endswith("/read") for a in dry), dry
