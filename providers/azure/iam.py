"""The least privilege the Azure provider needs: a custom role, as data.

The role lists only what ``providers.azure.provider`` calls; ``tests/azure/test_azure_iam.py``
runs every provider verb against the local ARM fake, records each request, maps it to its RBAC
action (``azure_actions_for_request``) and asserts the recorded set is inside the role, and that
every action in the role is either recorded or listed in ``AZURE_IMPLIED`` with the reason no
request names it. Pure data and pure functions: no SDK import.

Sources (nothing here is invented): the action names follow the ARM operation scheme
``{Namespace}/{type}[/{type}]/{read|write|delete|<name>/action}``; the join/action
linked-access checks and ``Microsoft.Compute/locations/*`` / ``Microsoft.Network/locations/*``
async-operation reads are the ones the built-in "Virtual Machine Contributor" role
(9980e02c-c2be-4d73-94e8-173b1dc7cf3c, MicrosoftDocs azure-docs built-in-roles/compute.md)
grants for the same VM/NIC/disk work. A subnet that uses a NAT gateway needs
``Microsoft.Network/natGateways/join/action``, the same linked-access check as for NSGs and
public IPs (the action names follow the scheme above).
"""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import urlsplit

from nestcloud.errors import InputError
from nestcloud.provider import AccessPolicy

__all__ = ["AZURE_IMPLIED", "EXPLAIN", "access_policy", "azure_action",
           "azure_actions_for_request", "azure_role_definition", "role_actions"]


_AZURE_ROLE: dict[str, Any] = {
    "Name": "nestcloud operator",
    "IsCustom": True,
    "Description": "What nestcloud needs to launch, list, read the console of and remove its "
                   "own nested-virtualization VMs (one resource group per launch).",
    "Actions": [
        # resource groups: one per launch, found by tags, deleted whole
        "Microsoft.Resources/subscriptions/resourceGroups/read",
        "Microsoft.Resources/subscriptions/resourceGroups/resources/read",  # what `down` removes
        "Microsoft.Resources/subscriptions/resourceGroups/write",
        "Microsoft.Resources/subscriptions/resourceGroups/delete",
        "Microsoft.Resources/subscriptions/operationresults/read",
        # VM sizes: vCPUs, memory, generations, restrictions
        "Microsoft.Compute/skus/read",
        # marketplace images: the versions behind `latest` and the image's OS disk size
        "Microsoft.Compute/locations/publishers/artifacttypes/offers/skus/versions/read",
        # vCPU usage against quota, checked before any write (Compute usages API)
        "Microsoft.Compute/locations/usages/read",
        # VMs and the bootstrap extension (Windows)
        "Microsoft.Compute/virtualMachines/read",
        "Microsoft.Compute/virtualMachines/write",
        "Microsoft.Compute/virtualMachines/delete",
        "Microsoft.Compute/virtualMachines/retrieveBootDiagnosticsData/action",
        # Windows readiness: a read-only Run Command script prints the L1's marker file
        "Microsoft.Compute/virtualMachines/runCommand/action",
        "Microsoft.Compute/virtualMachines/extensions/read",
        "Microsoft.Compute/virtualMachines/extensions/write",
        # the OS disk the VM create makes; removed by id when the group is the user's
        "Microsoft.Compute/disks/write",
        "Microsoft.Compute/disks/delete",
        # polling long-running compute operations
        "Microsoft.Compute/locations/operations/read",
        # network: NSG (no inbound but --ssh-cidr), VNet/subnet, the outbound path (a NAT
        # gateway with its public IP, or a public IP per VM), NIC
        "Microsoft.Network/networkSecurityGroups/read",
        "Microsoft.Network/networkSecurityGroups/write",
        "Microsoft.Network/networkSecurityGroups/delete",
        "Microsoft.Network/networkSecurityGroups/join/action",
        "Microsoft.Network/virtualNetworks/read",
        "Microsoft.Network/virtualNetworks/write",
        "Microsoft.Network/virtualNetworks/delete",
        "Microsoft.Network/virtualNetworks/subnets/join/action",
        "Microsoft.Network/publicIPAddresses/read",
        "Microsoft.Network/publicIPAddresses/write",
        "Microsoft.Network/publicIPAddresses/delete",
        "Microsoft.Network/publicIPAddresses/join/action",
        "Microsoft.Network/natGateways/read",
        "Microsoft.Network/natGateways/write",
        "Microsoft.Network/natGateways/delete",
        "Microsoft.Network/natGateways/join/action",
        "Microsoft.Network/networkInterfaces/read",
        "Microsoft.Network/networkInterfaces/write",
        "Microsoft.Network/networkInterfaces/delete",
        "Microsoft.Network/networkInterfaces/join/action",
        "Microsoft.Network/locations/operations/read",
        # auto-shutdown at the TTL
        "Microsoft.DevTestLab/schedules/read",
        "Microsoft.DevTestLab/schedules/write",
        "Microsoft.DevTestLab/schedules/delete",
    ],
    "NotActions": [],
    "DataActions": [],
    "NotDataActions": [],
    "AssignableScopes": ["/subscriptions/{subscription-id}"],
}

#: Role actions no request names directly, and why ARM still checks them.
AZURE_IMPLIED: dict[str, str] = {
    "Microsoft.Compute/locations/operations/read": "polling a long-running compute operation "
                                                   "(the Azure-AsyncOperation URL ARM returns)",
    "Microsoft.Network/locations/operations/read": "polling a long-running network operation",
    "Microsoft.Resources/subscriptions/operationresults/read": "polling a resource-group delete "
                                                               "(the Location URL ARM returns; "
                                                               "\"Get the subscription operation "
                                                               "results\" in the built-in roles)",
    "Microsoft.Compute/disks/write": "the VM create makes its OS disk; the built-in Virtual "
                                     "Machine Contributor role grants this for the same work "
                                     "(whether ARM checks it for an implicit OS disk is "
                                     "unconfirmed)",
}


def azure_role_definition() -> dict[str, Any]:
    """The custom role (``az role definition create --role-definition @file.json``)."""
    return copy.deepcopy(_AZURE_ROLE)


def role_actions(role: dict[str, Any]) -> list[str]:
    return list(role.get("Actions", []))


_VERBS = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}
# Canonical casing of the Microsoft.Resources types (ARM paths are case-insensitive).
_RESOURCES_TYPES = {"resourcegroups": "resourceGroups", "resources": "resources",
                    "operationresults": "operationresults", "locations": "locations",
                    "providers": "providers", "tagnames": "tagNames"}
# Referenced resource type -> the linked-access check ARM makes when another resource uses it.
_JOIN: dict[str, str] = {
    "microsoft.network/virtualnetworks/subnets": "Microsoft.Network/virtualNetworks/subnets/join/action",
    "microsoft.network/networksecuritygroups": "Microsoft.Network/networkSecurityGroups/join/action",
    "microsoft.network/publicipaddresses": "Microsoft.Network/publicIPAddresses/join/action",
    "microsoft.network/networkinterfaces": "Microsoft.Network/networkInterfaces/join/action",
    "microsoft.network/natgateways": "Microsoft.Network/natGateways/join/action",
}


def azure_action(method: str, url: str) -> str:
    """The RBAC action an ARM request needs, from its method and path.

    ``PUT .../providers/Microsoft.Compute/virtualMachines/vm1`` ->
    ``Microsoft.Compute/virtualMachines/write``; ``POST .../virtualMachines/vm1/deallocate`` ->
    ``Microsoft.Compute/virtualMachines/deallocate/action``; ``GET
    /subscriptions/s/resourcegroups`` -> ``Microsoft.Resources/subscriptions/resourceGroups/read``.
    """
    method = method.upper()
    segs = [s for s in urlsplit(url).path.split("/") if s]
    low = [s.lower() for s in segs]
    if not low or low[0] != "subscriptions" or len(segs) < 2:
        raise ValueError(f"not a subscription-scoped ARM path: {url!r}")
    if "providers" in low[2:]:
        p = len(low) - 1 - low[::-1].index("providers")
        namespace, rest = segs[p + 1], segs[p + 2:]
    else:
        namespace = "Microsoft.Resources"
        rest = ["subscriptions", segs[1], *segs[2:]]
        rest = [_RESOURCES_TYPES.get(s.lower(), s) if i % 2 == 0 else s
                for i, s in enumerate(rest)]
    if not rest:
        raise ValueError(f"no resource type in ARM path: {url!r}")
    if method == "POST":
        # .../type/name/<action>: the last segment names the action.
        if len(rest) % 2 == 1 and len(rest) >= 3:
            types, verb = rest[:-1][0::2], f"{rest[-1]}/action"
        else:
            types, verb = rest[0::2], "action"
    elif method in _VERBS:
        types, verb = rest[0::2], _VERBS[method]
    else:
        raise ValueError(f"unsupported HTTP method {method!r}")
    return "/".join([namespace, *types, verb])


def _resource_type_of(resource_id: str) -> str | None:
    segs = [s for s in resource_id.split("/") if s]
    low = [s.lower() for s in segs]
    if "providers" not in low:
        return None
    p = len(low) - 1 - low[::-1].index("providers")
    rest = low[p + 2:]
    return "/".join([low[p + 1], *rest[0::2]])


def _referenced_ids(body: Any) -> list[str]:
    """ARM ids this body points at through ``{"id": ...}`` references (not its own id)."""
    found: list[str] = []

    def walk(node: Any, top: bool) -> None:
        if isinstance(node, dict):
            ref = node.get("id")
            if not top and isinstance(ref, str) and ref.startswith("/subscriptions/"):
                found.append(ref)
            for value in node.values():
                walk(value, False)
        elif isinstance(node, list):
            for value in node:
                walk(value, False)

    walk(body, True)
    return found


def azure_actions_for_request(method: str, url: str, body: Any = None) -> list[str]:
    """The request's own action plus the join checks ARM makes for what its body references."""
    actions = [azure_action(method, url)]
    if isinstance(body, (bytes, str)) and body:
        try:
            body = json.loads(body)
        except ValueError:
            body = None
    if method.upper() in ("PUT", "PATCH") and isinstance(body, (dict, list)):
        for ref in _referenced_ids(body):
            join = _JOIN.get(_resource_type_of(ref) or "")
            if join and join not in actions:
                actions.append(join)
    return actions


EXPLAIN = ("nestcloud: Azure custom role for the Azure provider (replace {subscription-id}, "
           "then `az role definition create --role-definition @role.json`)")


def access_policy(instance_role: str | None = None, l1: bool = False) -> AccessPolicy:
    """The custom role and how to create it. Azure hosts get no identity from nestcloud (a
    Windows L1's readiness is read through Run Command), so there is no role to hand them."""
    if instance_role is not None or l1:
        raise InputError("--instance-role and --l1-role are not for --provider azure: "
                         "Azure VMs need no identity for readiness")
    return AccessPolicy(document=azure_role_definition(), explain=EXPLAIN)
