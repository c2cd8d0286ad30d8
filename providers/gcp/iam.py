"""The least privilege nestcloud's GCP provider needs: a custom IAM role, as data. Pure.

``access_policy()`` gives the role file ``gcloud iam roles create nestcloud --project PROJECT
--file role.json`` takes (title, description, stage, includedPermissions). It is derived, not
written by hand: :data:`CALLS` lists every Compute Engine REST method the provider calls and
why, :data:`METHOD_PERMISSIONS` the permissions each method checks, and :data:`IMPLIED` the
ones Compute Engine checks because of what nestcloud's request bodies set.
``permissions_for_request(method, body)`` gives one request's permissions, so a test can
record the provider's calls against tests/fakes/gce_fake.py and check each is inside the role.

Where the mappings come from (:data:`BASES`; nothing here is invented, and what was not
checked page by page says so):

- ``reference``: the method's page in the Compute Engine REST reference, "IAM Permissions"
  (compute/docs/reference/rest/v1/zoneOperations/get: ``compute.zoneOperations.get``).
- ``convention``: the reference's naming scheme, ``compute.<collection>.<verb>`` with insert ->
  create, list and aggregatedList -> list, get/delete as is, custom methods by their name (e.g.
  getGuestAttributes, getSerialPortOutput). Every reference page seen follows it; these were
  not each checked.
- ``wait``: ``*Operations.wait`` returns the operation as ``get`` does; that it checks the same
  permission is assumed, unconfirmed.
- ``create-vm``: "Required permissions" to create a VM (compute/docs/access/
  create-enable-service-accounts-for-instances): compute.instances.create on the project,
  compute.subnetworks.use and .useExternalIp for a subnet and an external IP,
  compute.addresses.use for a static address, compute.instances.setMetadata / setTags /
  setLabels for metadata, network tags and labels, compute.disks.create for a new disk
  (compute.disks.use for an existing one), compute.instances.setServiceAccount and
  iam.serviceAccounts.actAs to attach a service account.
- ``firewall``: VPC firewall rules: creating, updating or deleting a rule also needs
  compute.networks.updatePolicy on its network.

Not covered on purpose: public images (ubuntu-os-cloud, debian-cloud, rhel-cloud) are used
from their own projects, where this project-level role has no say; ``catalog refresh-prices``
uses a Cloud Billing Catalog API key, not IAM.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from nestcloud.errors import InputError
from nestcloud.provider import AccessPolicy

ROLE_ID = "nestcloud"
BASES = {"reference", "convention", "wait", "create-vm", "firewall"}

# A service account's email: user-managed NAME@PROJECT.iam.gserviceaccount.com, or a
# Google-made one such as NUMBER-compute@developer.gserviceaccount.com.
SERVICE_ACCOUNT_RE = re.compile(
    r"[a-z0-9][-a-z0-9]{0,62}@[a-z0-9][-a-z0-9.]{0,100}\.gserviceaccount\.com")


@dataclass(frozen=True)
class MethodPermissions:
    """What one REST method checks, and where that mapping comes from."""

    permissions: tuple[str, ...]
    basis: str


def _m(basis: str, *permissions: str) -> MethodPermissions:
    return MethodPermissions(permissions, basis)


# Every Compute Engine method the provider calls or the fake serves (resource.method, the
# route names of tests/fakes/gce_fake.py).
METHOD_PERMISSIONS: dict[str, MethodPermissions] = {
    "instances.insert": _m("create-vm", "compute.instances.create"),
    "instances.bulkInsert": _m("create-vm", "compute.instances.create"),
    "regionInstances.bulkInsert": _m("create-vm", "compute.instances.create"),
    "instances.get": _m("convention", "compute.instances.get"),
    "instances.list": _m("convention", "compute.instances.list"),
    "instances.aggregatedList": _m("convention", "compute.instances.list"),
    "instances.delete": _m("convention", "compute.instances.delete"),
    "instances.getGuestAttributes": _m("convention", "compute.instances.getGuestAttributes"),
    "instances.getSerialPortOutput": _m("convention",
                                        "compute.instances.getSerialPortOutput"),
    "zoneOperations.get": _m("reference", "compute.zoneOperations.get"),
    "zoneOperations.wait": _m("wait", "compute.zoneOperations.get"),
    "regionOperations.get": _m("convention", "compute.regionOperations.get"),
    "regionOperations.wait": _m("wait", "compute.regionOperations.get"),
    "globalOperations.get": _m("convention", "compute.globalOperations.get"),
    "globalOperations.wait": _m("wait", "compute.globalOperations.get"),
    "regions.get": _m("convention", "compute.regions.get"),
    "regions.list": _m("convention", "compute.regions.list"),
    "zones.get": _m("convention", "compute.zones.get"),
    "zones.list": _m("convention", "compute.zones.list"),
    "machineTypes.get": _m("convention", "compute.machineTypes.get"),
    "machineTypes.list": _m("convention", "compute.machineTypes.list"),
    "machineTypes.aggregatedList": _m("convention", "compute.machineTypes.list"),
    "networks.insert": _m("convention", "compute.networks.create"),
    "networks.get": _m("convention", "compute.networks.get"),
    "networks.list": _m("convention", "compute.networks.list"),
    "networks.delete": _m("convention", "compute.networks.delete"),
    "subnetworks.insert": _m("convention", "compute.subnetworks.create"),
    "subnetworks.get": _m("convention", "compute.subnetworks.get"),
    "subnetworks.list": _m("convention", "compute.subnetworks.list"),
    "subnetworks.delete": _m("convention", "compute.subnetworks.delete"),
    "firewalls.insert": _m("firewall", "compute.firewalls.create",
                           "compute.networks.updatePolicy"),
    "firewalls.get": _m("convention", "compute.firewalls.get"),
    "firewalls.list": _m("convention", "compute.firewalls.list"),
    "firewalls.delete": _m("firewall", "compute.firewalls.delete",
                           "compute.networks.updatePolicy"),
    "routers.insert": _m("convention", "compute.routers.create"),
    "routers.get": _m("convention", "compute.routers.get"),
    "routers.list": _m("convention", "compute.routers.list"),
    "routers.delete": _m("convention", "compute.routers.delete"),
    "addresses.insert": _m("convention", "compute.addresses.create"),
    "addresses.get": _m("convention", "compute.addresses.get"),
    "addresses.list": _m("convention", "compute.addresses.list"),
    "addresses.delete": _m("convention", "compute.addresses.delete"),
}

# What the provider calls (issue 13's Launch, Bootstrap, ls/down/console, catalog verify),
# and why. networks.delete and subnetworks.delete are not here: `down` leaves nestcloud's
# network for the next launch.
CALLS: dict[str, str] = {
    "instances.insert": "one host per seat (small launches)",
    "regionInstances.bulkInsert": "big labs in one all-or-nothing call (minCount = count)",
    "instances.get": "read back the nested flag after creation; reuse what a name has",
    "instances.list": "the seats of a name in a zone",
    "instances.aggregatedList": "ls and reap: every instance nestcloud labelled",
    "instances.delete": "down; deleting a VM that reports nesting off",
    "instances.getGuestAttributes": "readiness: the L1 writes nestcloud/l1",
    "instances.getSerialPortOutput": "console, and readiness when guest attributes are off",
    "zoneOperations.get": "wait for zonal writes (instances)",
    "zoneOperations.wait": "wait for zonal writes (instances)",
    "regionOperations.get": "wait for regional writes (bulkInsert, subnets, routers, addresses)",
    "regionOperations.wait": "wait for regional writes",
    "globalOperations.get": "wait for global writes (network, firewall rules)",
    "globalOperations.wait": "wait for global writes",
    "regions.get": "quotas before a region is tried",
    "zones.list": "the zones of a region",
    "machineTypes.get": "the type exists in the zone",
    "machineTypes.aggregatedList": "catalog verify --provider gcp",
    "networks.insert": "nestcloud's own network (never the project's default)",
    "networks.get": "find nestcloud's network",
    "subnetworks.insert": "nestcloud's subnet in the region",
    "subnetworks.get": "find nestcloud's subnet",
    "firewalls.insert": "--ssh-cidr as a per-name rule on a network tag",
    "firewalls.list": "the rules of a name (down, ls leftovers)",
    "firewalls.delete": "down",
    "routers.insert": "--egress nat: a Cloud Router with a NAT config",
    "routers.get": "find the region's NAT router",
    "routers.delete": "down",
    "addresses.insert": "reserved addresses of a name",
    "addresses.list": "the addresses of a name (down, ls leftovers)",
    "addresses.delete": "down",
}

# Permissions Compute Engine checks because of what nestcloud's own bodies set (create-vm).
IMPLIED: dict[str, str] = {
    "compute.instances.setMetadata": "user-data / startup-script, enable-guest-attributes",
    "compute.instances.setLabels": "nestcloud's labels on every instance",
    "compute.instances.setTags": "the network tag --ssh-cidr's firewall rule targets",
    "compute.disks.create": "the boot disk made with the instance (initializeParams)",
    "compute.subnetworks.use": "the instance's interface on nestcloud's subnet",
    "compute.subnetworks.useExternalIp": "an external IP for egress (no ingress rule)",
    "compute.addresses.use": "a reserved address of the name on an instance or the NAT",
}

_ATTACH_SA = ("compute.instances.setServiceAccount", "iam.serviceAccounts.actAs")


def _instance_body_permissions(props: dict[str, Any]) -> set[str]:
    """What an instance's properties make Compute Engine check (create-vm)."""
    out: set[str] = set()
    if props.get("metadata"):
        out.add("compute.instances.setMetadata")
    if props.get("labels"):
        out.add("compute.instances.setLabels")
    if (props.get("tags") or {}).get("items"):
        out.add("compute.instances.setTags")
    for disk in props.get("disks") or []:
        if isinstance(disk, dict):
            out.add("compute.disks.create" if disk.get("initializeParams")
                    else "compute.disks.use")
    for nic in props.get("networkInterfaces") or []:
        if not isinstance(nic, dict):
            continue
        if nic.get("subnetwork"):
            out.add("compute.subnetworks.use")
        for ac in nic.get("accessConfigs") or []:
            out.add("compute.subnetworks.useExternalIp")
            if isinstance(ac, dict) and ac.get("natIP"):
                out.add("compute.addresses.use")
    if props.get("serviceAccounts"):
        out.update(_ATTACH_SA)
    return out


def permissions_for_request(method: str, body: Any = None) -> set[str]:
    """The permissions one call checks: its method's, plus what its body sets.

    ``method`` is ``resource.method`` (``instances.insert``); KeyError for one this module
    does not know (a new call must be added here, not silently allowed)."""
    if method not in METHOD_PERMISSIONS:
        raise KeyError(f"no permission mapping for Compute Engine method {method!r}")
    out = set(METHOD_PERMISSIONS[method].permissions)
    if not isinstance(body, dict):
        return out
    if method == "instances.insert":
        out |= _instance_body_permissions(body)
    elif method in ("instances.bulkInsert", "regionInstances.bulkInsert"):
        out |= _instance_body_permissions(body.get("instanceProperties") or {})
    elif method == "routers.insert":
        if any(isinstance(n, dict) and n.get("natIps") for n in body.get("nats") or []):
            out.add("compute.addresses.use")
    return out


def _role(instance_role: str | None) -> dict[str, Any]:
    perms = {p for m in CALLS for p in METHOD_PERMISSIONS[m].permissions} | set(IMPLIED)
    description = "nestcloud's GCP provider (nested-virtualization hosts)"
    if instance_role is not None:
        perms.update(_ATTACH_SA)
        description += f"; may attach {instance_role}"
    return {"title": "nestcloud", "description": description, "stage": "GA",
            "includedPermissions": sorted(perms)}


def access_policy(instance_role: str | None = None, l1: bool = False) -> AccessPolicy:
    """The custom role (``iam-policy --provider gcp``); ``instance_role``: the email of a
    service account the operator may attach to hosts. ``l1``: InputError, the L1 needs none."""
    if l1:
        raise InputError("the GCP L1 needs no identity: it writes its readiness as guest "
                         "attributes from inside the VM through the metadata server, which "
                         "takes no IAM permission",
                         hint="run `nestcloud iam-policy --provider gcp` for the operator's role")
    if instance_role is not None and not SERVICE_ACCOUNT_RE.fullmatch(instance_role):
        raise InputError(f"--instance-role {instance_role!r}: on GCP this is a service "
                         "account's email (NAME@PROJECT.iam.gserviceaccount.com)")
    explain = ("nestcloud: custom role for the GCP provider: `gcloud iam roles create "
               f"{ROLE_ID} --project PROJECT --file role.json`, then `gcloud projects "
               "add-iam-policy-binding PROJECT --member=user:YOU "
               f"--role=projects/PROJECT/roles/{ROLE_ID}`. Public images are used from their "
               "own projects; `catalog refresh-prices` uses an API key, not this role")
    if instance_role is not None:
        explain += (f". The role may attach {instance_role} to hosts; iam.serviceAccounts.actAs "
                    "in a project binding reaches every service account of the project: to "
                    "limit it to this one, drop it from the role and run `gcloud iam "
                    f"service-accounts add-iam-policy-binding {instance_role} "
                    "--member=user:YOU --role=roles/iam.serviceAccountUser`")
    return AccessPolicy(document=copy.deepcopy(_role(instance_role)), explain=explain)
