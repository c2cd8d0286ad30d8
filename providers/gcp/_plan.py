"""Pure pieces of the GCP provider: names, labels, request bodies, error scopes, egress.

Nothing here talks to Google or imports google-cloud-compute: bodies are the REST JSON
(camelCase, int64 as strings) that ``compute_v1.<Message>.from_json`` turns into the request the
client sends, so what ``--dry-run`` shows is byte for byte what a launch sends. Facts with
sources: shared/FACTS.md "GCP".
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nestcloud.errors import (CapacityError, CredentialsError, InputError, NestcloudError,
                              ProviderError, QuotaError, ThrottledError, UnsupportedError)
from nestcloud.provider import NO_EGRESS_WARNING, EgressCost
from nestcloud.spec import TAG_EXPIRES, TAG_LAB, TAG_NAME, TAG_OWNER, TAG_SEAT

PROVIDER = "gcp"

# The one network every nestcloud group of a project shares (never the project's `default`
# network, whose default-allow-ssh/-rdp rules open 22 and 3389 to the world: FACTS). It has
# no ingress rule; a group's --ssh-cidr is a firewall rule of its own on the group's network
# tag. The network, its per-region subnetworks and Cloud NAT routers stay after `down`.
NETWORK = "nestcloud"
NAT_NAME = "nestcloud-nat"
# Where per-region subnetworks are carved from: /20 blocks of 10.64.0.0/10 (a private range
# GCE's auto-mode networks do not use, so a peering with a default network never overlaps).
SUBNET_POOL = ipaddress.IPv4Network("10.64.0.0/10")
SUBNET_PREFIX = 20

# FACTS, "Images (project/family)". The only OS aliases Compute Engine has images for here.
IMAGES: dict[str, str] = {
    "ubuntu-24.04": "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64",
    "debian-12": "projects/debian-cloud/global/images/family/debian-12",
    "rhel-9": "projects/rhel-cloud/global/images/family/rhel-9",
}
# FACTS: cloud-init reads metadata `user-data` on Ubuntu images; official Debian (and RHEL)
# images ship no cloud-init, so they bootstrap through metadata `startup-script`.
CLOUD_INIT_OSES = frozenset({"ubuntu-24.04"})
# FACTS: one metadata value <= 256 KiB, all metadata < 512 KB.
METADATA_VALUE_MAX = 256 * 1024
# FACTS: minCpuPlatform pins the CPU generation for N1; the issue asks for Haswell or later.
N1_MIN_CPU_PLATFORM = "Intel Haswell"
DISK_TYPE = "pd-balanced"

# Labels, not tags (FACTS): keys 1-63 of lowercase letters, digits, '_' and '-', starting with
# a letter; values 0-63 of the same characters.
LABEL_KEY_RE = re.compile(r"\A[a-z][a-z0-9_-]{0,62}\Z")
LABEL_VALUE_RE = re.compile(r"\A[a-z0-9_-]{0,63}\Z")
LABEL_RULE = ("GCP labels: keys 1-63 lowercase letters, digits, '_' or '-' starting with a "
              "letter; values up to 63 of the same characters")
# nestcloud's tags as labels (':' is not allowed in a label key).
LABEL_OF: dict[str, str] = {TAG_NAME: "nestcloud-name", TAG_OWNER: "nestcloud-owner",
                            TAG_EXPIRES: "nestcloud-expires", TAG_SEAT: "nestcloud-seat",
                            TAG_LAB: "nestcloud-lab"}
TAG_OF: dict[str, str] = {v: k for k, v in LABEL_OF.items()}
# The expiry as a label value (no ':' or upper case allowed): 20261129t140500z. list() turns
# it back into ISO 8601 for `reap` and `ls`.
EXPIRY_LABEL_FORMAT = "%Y%m%dt%H%M%Sz"

# GCE instance status -> the states nestcloud reports (wait.py and reap read these words).
STATES: dict[str, str] = {
    "PROVISIONING": "pending", "STAGING": "pending", "RUNNING": "running",
    "STOPPING": "stopping", "STOPPED": "stopped", "TERMINATED": "stopped",
    "SUSPENDING": "suspending", "SUSPENDED": "suspended", "REPAIRING": "repairing",
}
LIVE_STATUSES = frozenset({"PROVISIONING", "STAGING", "RUNNING"})

ORG_POLICY = "constraints/compute.disableNestedVirtualization"

# Egress: the outbound path a group's hosts use for the bootstrap's package installs. The
# default first (Capabilities.egress): an ephemeral external IPv4 per VM, no ingress rule.
EGRESS_MODES = ("public-ip", "nat", "none")
# FACTS "Network": "An external IPv4 on a running VM is billed (about $0.005 per hour;
# unconfirmed, date it)". No date is known.
EXTERNAL_IP_USD_H = 0.005
EGRESS_SOURCE = "shared/FACTS.md (GCP, Network)"


# -- names ---------------------------------------------------------------------------------------


def vm_name(name: str, seat: int) -> str:
    """Deterministic instance names: a re-run finds the seat, "already exists" means reuse."""
    return f"{name}-{seat}"


def seat_of(vm: str, name: str) -> int | None:
    m = re.fullmatch(re.escape(name) + r"-(\d+)", vm)
    return int(m.group(1)) if m else None


def network_tag(name: str) -> str:
    """The network tag the group's instances carry; its SSH rule (if any) targets it."""
    return f"nestcloud-{name}"


def firewall_name(name: str) -> str:
    return f"nestcloud-{name}-ssh"


FIREWALL_RE = re.compile(r"\Anestcloud-(?P<name>[a-z](?:[a-z0-9-]*[a-z0-9])?)-ssh\Z")
FIREWALL_MARK = "nestcloud:name="


def subnet_name(region: str) -> str:
    return f"nestcloud-{region}"


def router_name(region: str) -> str:
    return f"nestcloud-nat-{region}"


def instance_id(project: str, zone: str, vm: str) -> str:
    return f"projects/{project}/zones/{zone}/instances/{vm}"


_ID_RE = re.compile(r"\Aprojects/(?P<project>[^/]+)/zones/(?P<zone>[^/]+)/instances/"
                    r"(?P<vm>[^/]+)\Z")


def parse_instance_id(iid: str) -> tuple[str, str, str]:
    """(project, zone, instance name) of an id made by :func:`instance_id`."""
    m = _ID_RE.match(iid)
    if not m:
        raise InputError(f"not a Compute Engine instance id: {iid!r} (expected "
                         "projects/P/zones/Z/instances/NAME)")
    return m.group("project"), m.group("zone"), m.group("vm")


def last(url: str) -> str:
    """The last path segment of a resource URL (zone, machine type, region names)."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def region_of_zone(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


def family_of(machine_type: str) -> str:
    return machine_type.split("-", 1)[0].lower()


# -- labels --------------------------------------------------------------------------------------


def expiry_label(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime(EXPIRY_LABEL_FORMAT)


def expiry_iso(label: str) -> str | None:
    try:
        when = dt.datetime.strptime(label, EXPIRY_LABEL_FORMAT)
    except ValueError:
        return None
    return when.replace(tzinfo=dt.timezone.utc).isoformat().replace("+00:00", "Z")


def ceil_minute(t: dt.datetime) -> dt.datetime:
    floor = t.replace(second=0, microsecond=0)
    return floor if floor == t else floor + dt.timedelta(minutes=1)


def owner_label(owner: str) -> str:
    """Who launched, as a label value: lower case, other characters as '_' (an e-mail's '@'
    and '.' included), at most 63."""
    out = re.sub(r"[^a-z0-9_-]", "_", owner.lower())[:63]
    return out or "unknown"


def check_user_labels(tags: Mapping[str, str]) -> None:
    """InputError naming every user tag that is not a valid GCP label, or that would take the
    place of one of nestcloud's (values are never echoed)."""
    problems = []
    for k, v in tags.items():
        if k == TAG_LAB:  # a lab's own tag: its name, always a valid label value
            continue
        if not LABEL_KEY_RE.match(k):
            problems.append(f"tag {k[:40]!r}: not a GCP label key")
        elif k.startswith("nestcloud"):
            problems.append(f"tag {k!r}: keys starting with 'nestcloud' are nestcloud's own")
        if not LABEL_VALUE_RE.match(v):
            problems.append(f"tag {k[:40]!r}: its value is not a GCP label value")
    if problems:
        raise InputError("; ".join(problems), hint=LABEL_RULE)


def labels(name: str, owner: str, expires: dt.datetime | None, user: Mapping[str, str],
           seat: int | None = None) -> dict[str, str]:
    """The labels every resource of the group carries: the user's, then nestcloud's."""
    out = dict(user)
    lab = out.pop(TAG_LAB, None)  # a lab adds its name as the nestcloud:lab tag
    out[LABEL_OF[TAG_NAME]] = name
    out[LABEL_OF[TAG_OWNER]] = owner_label(owner)
    if expires is not None:
        out[LABEL_OF[TAG_EXPIRES]] = expiry_label(expires)
    if seat is not None:
        out[LABEL_OF[TAG_SEAT]] = str(seat)
    if lab is not None:
        out[LABEL_OF[TAG_LAB]] = lab
    return out


def tags_of(lbls: Mapping[str, str]) -> dict[str, str]:
    """Labels back as nestcloud tags (``nestcloud-name`` -> ``nestcloud:name``; the expiry
    as ISO 8601)."""
    out: dict[str, str] = {}
    for k, v in lbls.items():
        tag = TAG_OF.get(k, k)
        if tag == TAG_EXPIRES:
            v = expiry_iso(v) or v
        out[tag] = v
    return out


# -- bodies --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Guest:
    """What the guest gets in metadata: the key and its text (None: nothing)."""

    key: str | None  # "user-data" or "startup-script"
    value: str | None
    kind: str        # for notes: "cloud-config", "mime", "startup-script", "none"


@dataclass(frozen=True)
class HostSettings:
    """Everything a seat's body needs besides its name and zone."""

    machine_type: str
    image: str
    disk_gib: int
    labels: dict[str, str]
    network_tag: str
    subnet: str  # "regions/R/subnetworks/nestcloud-R"
    external_ip: bool
    spot: bool
    termination_time: dt.datetime | None
    guest: Guest
    ssh_keys: str | None = None


def _metadata(h: HostSettings) -> dict[str, Any]:
    # FACTS: guest attributes are off unless enable-guest-attributes=TRUE; the L1 publishes
    # its readiness report there (nestcloud/l1).
    items = [{"key": "enable-guest-attributes", "value": "TRUE"}]
    if h.guest.key and h.guest.value is not None:
        items.append({"key": h.guest.key, "value": h.guest.value})
    if h.ssh_keys:
        items.append({"key": "ssh-keys", "value": h.ssh_keys})
    return {"items": items}


def _scheduling(h: HostSettings) -> dict[str, Any]:
    sched: dict[str, Any] = {"provisioningModel": "SPOT" if h.spot else "STANDARD"}
    if h.termination_time is not None:
        # FACTS: the cloud deletes the VM itself at terminationTime with action DELETE.
        sched["terminationTime"] = iso_z(h.termination_time)
    if h.termination_time is not None or h.spot:
        # A reclaimed spot VM is deleted rather than left stopped (its name free for a re-run).
        sched["instanceTerminationAction"] = "DELETE"
    return sched


def iso_z(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat().replace(
        "+00:00", "Z")


def _nic(h: HostSettings) -> dict[str, Any]:
    nic: dict[str, Any] = {"network": f"global/networks/{NETWORK}", "subnetwork": h.subnet}
    if h.external_ip:
        nic["accessConfigs"] = [{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}]
    return nic


def properties(h: HostSettings, *, disk_type: str, seat: int | None = None) -> dict[str, Any]:
    """The instance fields every seat shares (a bulkInsert's ``instanceProperties`` with a
    bare machine type and disk type; zonal inserts add name and zone)."""
    lbls = dict(h.labels)
    if seat is not None:
        lbls[LABEL_OF[TAG_SEAT]] = str(seat)
    body: dict[str, Any] = {
        "machineType": h.machine_type,
        # FACTS: off unless asked for at creation; read back after every launch.
        "advancedMachineFeatures": {"enableNestedVirtualization": True},
        "labels": lbls,
        "tags": {"items": [h.network_tag]},
        "metadata": _metadata(h),
        "scheduling": _scheduling(h),
        "networkInterfaces": [_nic(h)],
        "disks": [{"boot": True, "autoDelete": True, "initializeParams": {
            "sourceImage": h.image, "diskType": disk_type, "diskSizeGb": str(h.disk_gib),
            "labels": lbls}}],
    }
    if family_of(h.machine_type) == "n1":
        body["minCpuPlatform"] = N1_MIN_CPU_PLATFORM
    return body


def instance_body(h: HostSettings, name: str, seat: int, zone: str) -> dict[str, Any]:
    """instances.insert for one seat."""
    body = properties(h, disk_type=f"zones/{zone}/diskTypes/{DISK_TYPE}", seat=seat)
    body["machineType"] = f"zones/{zone}/machineTypes/{h.machine_type}"
    return {"name": vm_name(name, seat), **body}


def bulk_body(h: HostSettings, name: str, seats: Iterable[int], deny: Iterable[str]
              ) -> dict[str, Any]:
    """regionInstances.bulkInsert for the missing seats: all or nothing (minCount = count),
    named NAME-SEAT, spread over the region's zones that offer the type (FACTS: metadata and
    labels cannot differ per VM, so seats carry no seat label: list() reads it from the name).
    """
    names = [vm_name(name, s) for s in seats]
    body: dict[str, Any] = {
        "count": str(len(names)),
        "minCount": str(len(names)),
        "perInstanceProperties": {n: {"name": n} for n in names},
        "instanceProperties": properties(h, disk_type=DISK_TYPE),
        "locationPolicy": {"targetShape": "ANY"},
    }
    denied = sorted(deny)
    if denied:
        body["locationPolicy"]["locations"] = {f"zones/{z}": {"preference": "DENY"}
                                               for z in denied}
    return body


def network_body() -> dict[str, Any]:
    return {"name": NETWORK, "autoCreateSubnetworks": False,
            "description": "nestcloud: shared by every nestcloud group of this project; no "
                           "ingress rule (a group's --ssh-cidr is its own firewall rule)"}


def subnet_body(region: str, cidr: str) -> dict[str, Any]:
    return {"name": subnet_name(region), "network": f"global/networks/{NETWORK}",
            "ipCidrRange": cidr, "description": "nestcloud: shared by every nestcloud group "
                                                "in this region"}


def router_body(region: str) -> dict[str, Any]:
    return {"name": router_name(region), "network": f"global/networks/{NETWORK}",
            "description": "nestcloud: Cloud NAT for --egress nat in this region",
            "nats": [{"name": NAT_NAME, "natIpAllocateOption": "AUTO_ONLY",
                      "sourceSubnetworkIpRangesToNat": "ALL_SUBNETWORKS_ALL_IP_RANGES"}]}


def firewall_body(name: str, cidr: str) -> dict[str, Any]:
    return {"name": firewall_name(name), "network": f"global/networks/{NETWORK}",
            "direction": "INGRESS", "priority": 1000, "sourceRanges": [cidr],
            "targetTags": [network_tag(name)],
            "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}],
            "description": f"{FIREWALL_MARK}{name}: SSH from --ssh-cidr only"}


def free_subnet(region: str, used: Iterable[str]) -> str:
    """A /20 of SUBNET_POOL that overlaps none of ``used``, starting at a place derived from
    the region's name (so regions rarely race for the same block)."""
    taken = [ipaddress.IPv4Network(u, strict=False) for u in used]
    blocks = list(SUBNET_POOL.subnets(new_prefix=SUBNET_PREFIX))
    start = int(hashlib.sha256(region.encode()).hexdigest(), 16) % len(blocks)
    for i in range(len(blocks)):
        b = blocks[(start + i) % len(blocks)]
        if not any(b.overlaps(t) for t in taken):
            return str(b)
    raise ProviderError(f"no free /{SUBNET_PREFIX} left in {SUBNET_POOL} for the nestcloud "
                        f"network's subnetwork in {region}", provider=PROVIDER)


# -- egress --------------------------------------------------------------------------------------


def egress_mode(egress: str | None) -> str:
    mode = egress or EGRESS_MODES[0]
    if mode not in EGRESS_MODES:
        raise InputError(f"--egress {mode!r}: GCP offers {', '.join(EGRESS_MODES)}")
    return mode


def egress_cost(mode: str | None, instances: int) -> EgressCost:
    """What the group's outbound path costs per hour (only FACTS' figures; unknown prices are
    said, never guessed)."""
    mode = egress_mode(mode)
    if mode == "none":
        return EgressCost(mode, 0.0, f"egress: {NO_EGRESS_WARNING}", None)
    if mode == "nat":
        return EgressCost(mode, 0.0, "egress: Cloud NAT on the region's nestcloud network "
                          "(no external IP per VM); Cloud NAT bills per VM hour plus per GB "
                          "processed, and nestcloud knows no confirmed figure for either "
                          f"({EGRESS_SOURCE}): not in the total", None)
    usd = EXTERNAL_IP_USD_H * instances
    return EgressCost(mode, usd, f"egress: an ephemeral external IPv4 per VM, no ingress rule "
                      f"unless --ssh-cidr: about ${EXTERNAL_IP_USD_H:.3f}/h each "
                      f"(${usd:.4f}/h for {instances}; approximate and unconfirmed, no price "
                      f"date: {EGRESS_SOURCE})", None)


# -- errors --------------------------------------------------------------------------------------

ZONE_CODES = frozenset({"ZONE_RESOURCE_POOL_EXHAUSTED",
                        "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"})
QUOTA_CODES = frozenset({"QUOTA_EXCEEDED"})
RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
CREDENTIALS_HINT = ("sign in with `gcloud auth application-default login` (or set "
                    "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file); "
                    "`nestcloud iam-policy -p gcp` lists the permissions nestcloud needs")


def translate(*, doing: str, code: str | None, message: str, status: int | None = None,
              reason: str | None = None, region: str | None = None,
              zone: str | None = None, type_name: str | None = None,
              project: str | None = None) -> NestcloudError:
    """The nestcloud error for a Compute Engine error: an HTTP error (``status``, the
    ``reason`` of its first error) or an operation's error (its ``code``). The scope says what
    it rules out: failover reads that, never the code."""
    said = f"{doing}: {message}" if message else doing
    cite = code or reason or (str(status) if status else None)
    if ORG_POLICY in message:
        return ProviderError(
            f"{doing}: the organization policy {ORG_POLICY} forbids nested virtualization in "
            "this project (Compute Engine refused the nested flag)",
            hint="ask an organization policy administrator to allow it for the project "
                 "(`gcloud resource-manager org-policies describe "
                 f"compute.disableNestedVirtualization --project {project or 'PROJECT'} "
                 "--effective`), or use another project", code=ORG_POLICY, provider=PROVIDER, scope="account")
    if code in ZONE_CODES:
        return CapacityError(said, hint=f"Compute Engine has no capacity for {type_name or 'it'}"
                             f" in {zone or 'that zone'} now: another zone, type or region may "
                             "work, or retry later", code=code, provider=PROVIDER)
    if code in QUOTA_CODES:
        return QuotaError(said, hint=f"request more quota in {region or 'the region'} "
                          "(console: IAM & Admin > Quotas), lower --count, or pick another "
                          "region or type", code=code, provider=PROVIDER)
    if status == 429 or reason in RATE_REASONS:
        return ThrottledError(said + " (still rate limited after retries)",
                              hint="Compute Engine's API rate limit: retry in a minute, or "
                                   "launch fewer seats at a time", code=cite, provider=PROVIDER)
    if status == 401:
        return CredentialsError(said, hint=CREDENTIALS_HINT, code=cite, provider=PROVIDER)
    if status == 403:
        return CredentialsError(f"{said} (permission denied)", hint=CREDENTIALS_HINT,
                                code=cite, provider=PROVIDER)
    if status == 400 and "machineType" in message and "does not exist" in message:
        return UnsupportedError(said, hint="the type is not offered there; run `nestcloud "
                                "catalog verify --provider gcp --region "
                                f"{region or 'REGION'}`", code=cite,
                                provider=PROVIDER)
    if status is not None and 400 <= status < 500:
        return ProviderError(said, code=cite, provider=PROVIDER, scope="request")
    return ProviderError(said, code=cite, provider=PROVIDER)
