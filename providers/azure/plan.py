"""The Azure provider's requests as data: names, images, ARM request bodies, SKU facts.

Nothing here does I/O or imports the Azure SDK: every function takes data and returns data, so
the request bodies the provider sends (and ``--dry-run`` shows) are built and tested in one place.
Bodies are ARM JSON (camelCase, ``properties`` nesting) exactly as they go on the wire.
"""

from __future__ import annotations

import base64
import datetime as dt
import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nestcloud.errors import InputError, UnsupportedError
from nestcloud.launcher import WORLD_CIDRS, check_ssh_cidr  # the one SSH source rule
from nestcloud.spec import TAG_EXPIRES, TAG_NAME, TAG_OWNER, TAG_SEAT

PROVIDER = "azure"
ADMIN_USER = "nestcloud"
VNET_CIDR = "10.42.0.0/16"
SUBNET_CIDR = "10.42.0.0/20"
SUBNET_NAME = "default"
SCHEDULE_API_VERSION = "2018-09-15"  # FACTS.md: Microsoft.DevTestLab/schedules api 2018-09-15
EXTENSION_NAME = "nestcloud-bootstrap"
# FACTS.md: OSProfile.custom_data is at most 65,535 bytes once decoded.
CUSTOM_DATA_MAX = 65535
# Windows Server marketplace images carry a 127 GiB OS disk; a smaller diskSizeGB is rejected.
WINDOWS_MIN_DISK_GIB = 127
# The hosts' outbound paths (--egress), the default first: a NAT gateway, Azure's recommended
# way. Not chosen by seat count, although per-VM public IPs are cheaper below ten seats: a group
# keeps one layout however it grows, and no VM gets an address of its own. `--egress public-ip`
# is one flag away, and the plan says what it saves (pricing.egress_cost).
EGRESS_MODES = ("nat", "public-ip", "none")

# OS alias -> Hyper-V generation -> image URN (publisher:offer:sku:version).
# ubuntu-24.04, debian-12, windows-2022: FACTS.md (Azure, Images).
# rhel-9: the RedHat "RHEL" offer's 9-lvm-gen2 / 9-lvm SKUs, as used by public deployment code
#   (e.g. az CLI image alias lists and terraform samples) (unconfirmed: re-check with
#   `az vm image list -p RedHat -f RHEL --all`).
# windows-2025: GoogleCloudPlatform/PerfKitBenchmarker providers/azure/azure_virtual_machine.py
#   (Windows2025DesktopAzureVirtualMachine GEN2_IMAGE_URN / GEN1_IMAGE_URN), the same scheme
#   FACTS.md confirms for 2022 (unconfirmed).
IMAGES: dict[str, dict[str, str]] = {
    "ubuntu-24.04": {"V2": "Canonical:ubuntu-24_04-lts:server:latest",
                     "V1": "Canonical:ubuntu-24_04-lts:server-gen1:latest"},
    "debian-12": {"V2": "Debian:debian-12:12-gen2:latest",
                  "V1": "Debian:debian-12:12:latest"},
    "rhel-9": {"V2": "RedHat:RHEL:9-lvm-gen2:latest",
               "V1": "RedHat:RHEL:9-lvm:latest"},
    "windows-2022": {"V2": "MicrosoftWindowsServer:WindowsServer:2022-datacenter-g2:latest",
                     "V1": "MicrosoftWindowsServer:WindowsServer:2022-datacenter:latest"},
    "windows-2025": {"V2": "MicrosoftWindowsServer:WindowsServer:2025-datacenter-g2:latest",
                     "V1": "MicrosoftWindowsServer:WindowsServer:2025-datacenter:latest"},
}


# -- names -------------------------------------------------------------------------------------


def group_name(name: str, region: str) -> str:
    return f"nestcloud-{name}-{region}"


@dataclass(frozen=True)
class Names:
    """The names of everything one launch creates inside its resource group."""

    name: str
    region: str
    group: str

    @property
    def vnet(self) -> str:
        return f"nestcloud-{self.name}-vnet"

    @property
    def nsg(self) -> str:
        return f"nestcloud-{self.name}-nsg"

    def vm(self, seat: int) -> str:
        return f"{self.name}-{seat}"

    def nic(self, seat: int) -> str:
        return f"{self.vm(seat)}-nic"

    def pip(self, seat: int) -> str:
        return f"{self.vm(seat)}-pip"

    @property
    def nat(self) -> str:
        return f"nestcloud-{self.name}-natgw"

    @property
    def nat_ip(self) -> str:
        return f"nestcloud-{self.name}-natgw-ip"

    def disk(self, seat: int) -> str:
        return f"{self.vm(seat)}-osdisk"

    def schedule(self, seat: int) -> str:
        # FACTS.md: the auto-shutdown schedule of a VM is named shutdown-computevm-<vm>.
        return f"shutdown-computevm-{self.vm(seat)}"

    def computer_name(self, seat: int, windows: bool) -> str:
        if not windows:
            return self.vm(seat)
        # Windows computer names are at most 15 characters.
        suffix = f"-{seat}"
        return (self.name[: 15 - len(suffix)].rstrip("-") + suffix)


class Ids:
    """ARM resource ids under one subscription and group."""

    def __init__(self, subscription: str, group: str) -> None:
        self.sub = subscription
        self.group = group

    @property
    def group_id(self) -> str:
        return f"/subscriptions/{self.sub}/resourceGroups/{self.group}"

    def of(self, provider_type: str, name: str) -> str:
        return f"{self.group_id}/providers/{provider_type}/{name}"

    def subnet(self, vnet: str) -> str:
        return f"{self.of('Microsoft.Network/virtualNetworks', vnet)}/subnets/{SUBNET_NAME}"


def parse_id(resource_id: str) -> dict[str, str]:
    """'/subscriptions/s/resourceGroups/g/providers/P/T/n' -> {subscription, group, type, name}."""
    parts = [p for p in resource_id.split("/") if p]
    low = [p.lower() for p in parts]
    try:
        sub = parts[low.index("subscriptions") + 1]
        group = parts[low.index("resourcegroups") + 1]
        pi = low.index("providers")
        rtype = f"{parts[pi + 1]}/{parts[pi + 2]}"
        name = parts[pi + 3]
    except (ValueError, IndexError):
        raise InputError(f"not an Azure resource id: {resource_id!r}") from None
    return {"subscription": sub, "group": group, "type": rtype, "name": name}


# -- tags --------------------------------------------------------------------------------------


def expiry(now: dt.datetime, ttl_seconds: int | None) -> dt.datetime | None:
    if ttl_seconds is None:
        return None
    return (now + dt.timedelta(seconds=ttl_seconds)).replace(microsecond=0)


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def base_tags(name: str, owner: str, expires: dt.datetime | None,
              user: dict[str, str]) -> dict[str, str]:
    tags = dict(user)
    tags[TAG_NAME] = name
    tags[TAG_OWNER] = owner
    if expires is not None:
        tags[TAG_EXPIRES] = iso(expires)
    return tags


def seat_tags(tags: dict[str, str], seat: int) -> dict[str, str]:
    return {**tags, TAG_SEAT: str(seat)}


# -- images and generations --------------------------------------------------------------------


def parse_urn(text: str) -> dict[str, str]:
    """'publisher:offer:sku:version' -> an ARM imageReference; InputError naming the value."""
    parts = text.split(":")
    if len(parts) != 4 or not all(p.strip() for p in parts):
        raise InputError(f"--image {text!r}: expected publisher:offer:sku:version "
                         "(e.g. Canonical:ubuntu-24_04-lts:server:latest)")
    publisher, offer, sku, version = (p.strip() for p in parts)
    return {"publisher": publisher, "offer": offer, "sku": sku, "version": version}


def choose_generation(size: str, size_generations: Sequence[str] | None, forced: str | None
                      ) -> str:
    """The Hyper-V generation to boot: the forced one if the size takes it, else Gen2 when
    the size supports it (the newer default), else Gen1."""
    gens = [g.upper() for g in (size_generations or [])]
    if forced is not None:
        if gens and forced not in gens:
            only = "/".join(gens)
            raise InputError(f"--image-generation {forced}: {size} boots {only} images only",
                             hint=f"use --image-generation {gens[0]} or leave it out")
        return forced
    if not gens or "V2" in gens:
        return "V2"
    return "V1"


def image_reference(os_alias: str, image: str | None, generation: str) -> dict[str, str]:
    if image:
        return parse_urn(image)
    by_gen = IMAGES.get(os_alias)
    if by_gen is None:
        raise InputError(f"no Azure image known for --os {os_alias!r}",
                         hint="pass --image publisher:offer:sku:version")
    urn = by_gen.get(generation)
    if urn is None:
        gen = "Gen1" if generation == "V1" else "Gen2"
        raise InputError(f"no {gen} Azure image known for --os {os_alias!r}",
                         hint="pass --image publisher:offer:sku:version")
    return parse_urn(urn)


def image_os_disk_gib(image: Mapping[str, Any]) -> int | None:
    """The OS disk size (GiB) a marketplace image (VirtualMachineImage as ARM JSON) reports.

    Not in the service model: azure-mgmt-compute 39's OSDiskImage has only operatingSystem,
    and the REST reference shows no size. Public deployment code reads
    ``osDiskImage.sizeInGb`` from this answer (`az vm image show`), and others report it
    missing for some images (unconfirmed; no Microsoft document found). The SDK's models keep
    such fields in their raw JSON, so it is read when present and never assumed; without it
    the caller says so and sends --disk-gib as given.
    """
    disk = (image.get("properties") or {}).get("osDiskImage") or {}
    for key in ("sizeInGb", "sizeInGB"):
        gib = disk.get(key)
        if isinstance(gib, int) and not isinstance(gib, bool) and gib > 0:
            return gib
    size = disk.get("sizeInBytes")
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return math.ceil(size / 2**30)  # Azure's "GB" for disks is GiB
    return None


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in version.split("."))


def newest_version(versions: list[str]) -> str:
    """What ``latest`` means: the highest version by number (9.10 after 9.5), as ARM picks."""
    return max(versions, key=lambda v: (_version_key(v), v))


# -- network security --------------------------------------------------------------------------


def ssh_rules(ssh_cidr: str | None, allow_world: bool) -> list[dict[str, Any]]:
    """NSG rules: none by default; SSH from one CIDR; the whole world only when allowed."""
    cidr = check_ssh_cidr(ssh_cidr, allow_world)  # the one rule (syntax, world-open)
    if cidr is None:
        return []
    source = "*" if cidr in WORLD_CIDRS else cidr  # NSG's own word for "any source"
    return [{
        "name": "nestcloud-ssh",
        "properties": {
            "priority": 1000, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
            "sourceAddressPrefix": source, "sourcePortRange": "*",
            "destinationAddressPrefix": "*", "destinationPortRange": "22",
        },
    }]


# -- request bodies ----------------------------------------------------------------------------


def group_body(region: str, tags: dict[str, str]) -> dict[str, Any]:
    return {"location": region, "tags": tags}


def nsg_body(region: str, tags: dict[str, str], rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"location": region, "tags": tags, "properties": {"securityRules": rules}}


def vnet_body(region: str, tags: dict[str, str], nsg_id: str, nat_id: str | None = None
              ) -> dict[str, Any]:
    # defaultOutboundAccess false: private on every API version (FACTS.md, Azure, "Egress"),
    # so the hosts' way out is only the one chosen (the NAT gateway, or public IPs).
    subnet: dict[str, Any] = {"addressPrefix": SUBNET_CIDR,
                              "networkSecurityGroup": {"id": nsg_id},
                              "defaultOutboundAccess": False}
    if nat_id is not None:
        subnet["natGateway"] = {"id": nat_id}
    return {"location": region, "tags": tags, "properties": {
        "addressSpace": {"addressPrefixes": [VNET_CIDR]},
        "subnets": [{"name": SUBNET_NAME, "properties": subnet}],
    }}


def subnet_nat_id(vnet: Mapping[str, Any]) -> str | None:
    """The NAT gateway on our subnet of an ARM VNet (as JSON), if any."""
    for sn in (vnet.get("properties") or {}).get("subnets") or []:
        if str(sn.get("name", "")).lower() == SUBNET_NAME:
            nat = ((sn.get("properties") or {}).get("natGateway") or {}).get("id")
            return str(nat) if nat else None
    return None


def nat_body(region: str, tags: dict[str, str], pip_id: str) -> dict[str, Any]:
    # Standard SKU, regional (no zones), default idle timeout; its address must be a Standard
    # public IP (FACTS.md, Azure, "Egress").
    return {"location": region, "tags": tags, "sku": {"name": "Standard"},
            "properties": {"publicIpAddresses": [{"id": pip_id}]}}


def egress_mode(egress: str | None, public_ip: bool, default: str) -> str:
    """The outbound path: the one asked for; else a public IP per VM when --public-ip gives
    one anyway (a NAT gateway would only add cost); else ``default`` (the provider's declared
    ``Capabilities.egress[0]``)."""
    if egress == "none" and public_ip:
        raise InputError("--egress none with --public-ip: a public IP on a VM is a way out to "
                         "the internet", hint="drop one of them (--public-ip alone gives each "
                                              "VM its own address for SSH and egress)")
    if egress is not None:
        return egress
    return "public-ip" if public_ip else default


def pip_body(region: str, tags: dict[str, str]) -> dict[str, Any]:
    # Standard SKU: Basic public IPs are retired, and Standard requires static allocation.
    return {"location": region, "tags": tags, "sku": {"name": "Standard"},
            "properties": {"publicIPAllocationMethod": "Static"}}


def nic_body(region: str, tags: dict[str, str], subnet_id: str, pip_id: str | None
             ) -> dict[str, Any]:
    ipconf: dict[str, Any] = {"subnet": {"id": subnet_id}, "privateIPAllocationMethod": "Dynamic"}
    if pip_id is not None:
        ipconf["publicIPAddress"] = {"id": pip_id, "properties": {"deleteOption": "Delete"}}
    return {"location": region, "tags": tags,
            "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": ipconf}]}}


@dataclass(frozen=True)
class GuestData:
    """What the guest runs at first boot, as the provider sends it."""

    custom_data: bytes | None  # raw bytes before base64 (cloud-init or the PowerShell script)
    windows: bool
    kind: str


def vm_body(*, region: str, tags: dict[str, str], size: str, image: dict[str, str],
            nic_id: str, disk_name: str, disk_gib: int, computer_name: str, guest: GuestData,
            ssh_public_key: str | None, admin_password: str | None, spot: bool
            ) -> dict[str, Any]:
    os_profile: dict[str, Any] = {"computerName": computer_name, "adminUsername": ADMIN_USER}
    if guest.custom_data:
        os_profile["customData"] = base64.b64encode(guest.custom_data).decode("ascii")
    if guest.windows:
        os_profile["adminPassword"] = admin_password
        os_profile["windowsConfiguration"] = {"provisionVMAgent": True}
    else:
        os_profile["linuxConfiguration"] = {
            "disablePasswordAuthentication": True,
            "ssh": {"publicKeys": [{"path": f"/home/{ADMIN_USER}/.ssh/authorized_keys",
                                    "keyData": ssh_public_key}]},
        }
    props: dict[str, Any] = {
        "hardwareProfile": {"vmSize": size},
        "storageProfile": {
            "imageReference": image,
            "osDisk": {"name": disk_name, "createOption": "FromImage", "deleteOption": "Delete",
                       "diskSizeGB": max(disk_gib, WINDOWS_MIN_DISK_GIB) if guest.windows
                       else disk_gib,
                       "managedDisk": {"storageAccountType": "StandardSSD_LRS"}},
        },
        "osProfile": os_profile,
        "networkProfile": {"networkInterfaces": [
            {"id": nic_id, "properties": {"primary": True, "deleteOption": "Delete"}}]},
        # Trusted Launch blocks Hyper-V/WSL2 in the L1 (FACTS.md): always Standard.
        "securityProfile": {"securityType": "Standard"},
        # No storageUri: managed boot-diagnostics storage, readable by retrieveBootDiagnosticsData.
        "diagnosticsProfile": {"bootDiagnostics": {"enabled": True}},
    }
    if spot:
        props["priority"] = "Spot"
        props["evictionPolicy"] = "Delete"
        props["billingProfile"] = {"maxPrice": -1}
    return {"location": region, "tags": tags, "properties": props}


# Runs the script that custom data dropped on disk; custom data is never executed on Windows.
WINDOWS_COMMAND = (
    "powershell -ExecutionPolicy Bypass -NoProfile -Command \""
    "Copy-Item -Force $env:SystemDrive\\AzureData\\CustomData.bin "
    "$env:SystemDrive\\AzureData\\nestcloud-bootstrap.ps1; "
    "& $env:SystemDrive\\AzureData\\nestcloud-bootstrap.ps1\""
)


# -- Windows readiness through Run Command -----------------------------------------------------

RUN_COMMAND_ID = "RunPowerShellScript"  # FACTS.md: Run Command, output capped at 4,096 bytes
# The marker JSON is a handful of checks (~200 bytes); anything longer is not ours and would
# be cut by the 4,096-byte output cap, so it is reported as a plain line, never as a marker.
RUN_COMMAND_MAX_JSON = 3000


def read_marker_script(marker_word: str, relative_path: str) -> list[str]:
    """A read-only PowerShell that prints ``<marker_word> <file contents>`` when the file under
    %ProgramData% exists, and nothing otherwise (the bootstrap has not reported yet)."""
    def q(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"
    return [
        f"$f = Join-Path $env:ProgramData {q(relative_path)}",
        "if (Test-Path -LiteralPath $f) {",
        "  $t = ([string](Get-Content -Raw -LiteralPath $f) -replace '[\\r\\n]+', ' ').Trim()",
        f"  if ($t.Length -gt {RUN_COMMAND_MAX_JSON}) "
        "{ Write-Output \"nestcloud: $f holds $($t.Length) characters\" } "
        f"else {{ Write-Output ({q(marker_word + ' ')} + $t) }}",
        "}",
    ]


def run_command_body(script: list[str]) -> dict[str, Any]:
    """RunCommandInput as ARM JSON (POST .../virtualMachines/{vm}/runCommand)."""
    return {"commandId": RUN_COMMAND_ID, "script": list(script)}


def run_command_stdout(result: dict[str, Any] | None) -> str:
    """The script's standard output from a RunCommandResult (``{"value": [InstanceViewStatus]}``,
    stdout in the status whose code is ``ComponentStatus/StdOut/succeeded``)."""
    out = []
    for status in (result or {}).get("value") or []:
        if str(status.get("code") or "").lower().startswith("componentstatus/stdout/"):
            out.append(str(status.get("message") or ""))
    return "\n".join(out)


def extension_body(region: str, tags: dict[str, str]) -> dict[str, Any]:
    return {"location": region, "tags": tags, "properties": {
        "publisher": "Microsoft.Compute", "type": "CustomScriptExtension",
        "typeHandlerVersion": "1.10", "autoUpgradeMinorVersion": True,
        "protectedSettings": {"commandToExecute": WINDOWS_COMMAND},
    }}


def schedule_body(region: str, tags: dict[str, str], vm_id: str, at: dt.datetime
                  ) -> dict[str, Any]:
    at = at.astimezone(dt.timezone.utc)
    return {"location": region, "tags": tags, "properties": {
        "status": "Enabled", "taskType": "ComputeVmShutdownTask",
        "dailyRecurrence": {"time": at.strftime("%H%M")}, "timeZoneId": "UTC",
        "targetResourceId": vm_id, "notificationSettings": {"status": "Disabled"},
    }}


# -- Resource SKUs -----------------------------------------------------------------------------


@dataclass
class SkuFacts:
    """What Resource SKUs say about one VM size in one region."""

    name: str
    family: str | None = None
    vcpus: int | None = None
    memory_gib: float | None = None
    arch: str | None = None  # x86_64 | arm64
    generations: list[str] = field(default_factory=list)
    low_priority: bool | None = None
    restricted: str | None = None  # reason code of a whole-region restriction


def sku_facts(sku: dict[str, Any], region: str) -> SkuFacts:
    caps = {c.get("name"): c.get("value") for c in sku.get("capabilities") or []}
    facts = SkuFacts(name=str(sku.get("name")), family=sku.get("family") or None)
    if caps.get("vCPUs"):
        facts.vcpus = int(caps["vCPUs"])
    if caps.get("MemoryGB"):
        facts.memory_gib = float(caps["MemoryGB"])
    arch = caps.get("CpuArchitectureType")
    if arch:
        facts.arch = {"x64": "x86_64", "arm64": "arm64"}.get(arch.lower(), arch)
    if caps.get("HyperVGenerations"):
        facts.generations = sorted(g.strip().upper() for g in caps["HyperVGenerations"].split(",")
                                   if g.strip())
    if caps.get("LowPriorityCapable") is not None:
        facts.low_priority = str(caps["LowPriorityCapable"]).lower() == "true"
    for r in sku.get("restrictions") or []:
        locs = [v.lower() for v in r.get("values") or []]
        if r.get("type") == "Location" and region.lower() in locs:
            facts.restricted = r.get("reasonCode") or "Restricted"
    return facts


def vm_skus_in(skus: list[dict[str, Any]], region: str) -> dict[str, SkuFacts]:
    """Lower-cased size name -> facts, for VM sizes offered in ``region``."""
    out: dict[str, SkuFacts] = {}
    for s in skus:
        if str(s.get("resourceType", "")).lower() != "virtualmachines":
            continue
        if region.lower() not in [str(x).lower() for x in s.get("locations") or []]:
            continue
        out[str(s.get("name", "")).lower()] = sku_facts(s, region)
    return out


def preflight(size: str, region: str, facts: SkuFacts | None, *, spot: bool,
              offered: list[str]) -> None:
    """Refuse a launch the region cannot take, before anything is created."""
    if facts is None:
        version = size.lower().rsplit("_", 1)[-1]
        same = [o for o in offered if o.lower().rsplit("_", 1)[-1] == version]
        close = sorted(difflib.get_close_matches(size, same or offered, n=3, cutoff=0.6))
        raise UnsupportedError(
            f"{size} is not offered in {region} (Resource SKUs)",
            hint=("similar sizes there: " + ", ".join(close)) if close else
                 "pick another region or size (`nestcloud catalog list --provider azure`)",
            code="SkuNotAvailable", provider=PROVIDER)
    if facts.restricted:
        raise UnsupportedError(
            f"{size} is restricted for this subscription in {region} ({facts.restricted})",
            hint="pick another region or size, or ask Azure support to lift the restriction "
                 "(a quota/region access request)",
            code=facts.restricted, provider=PROVIDER)
    if facts.arch and facts.arch != "x86_64":
        raise UnsupportedError(f"{size} is {facts.arch}: Azure offers no nested "
                               "virtualization on Arm", code="Arm64", provider=PROVIDER)
    if spot and facts.low_priority is False:
        raise UnsupportedError(f"{size} cannot run as Spot in {region}",
                               hint="launch it without --spot", code="SpotNotCapable",
                               provider=PROVIDER)


def quota_shortfall(usages: list[dict[str, Any]], family: str | None, need: int, spot: bool
                    ) -> tuple[str, int, int] | None:
    """The first vCPU quota that ``need`` more vCPUs would exceed: (name, current, limit).

    Names as the Compute usages API reports them: ``cores`` (total regional vCPUs), the size's
    family (``standardDSv5Family``, the Resource SKU ``family``) for regular VMs, and
    ``lowPriorityCores`` for Spot, which counts against that pool instead of the family.
    A name the API does not report is skipped, never guessed.
    """
    by_name = {str((u.get("name") or {}).get("value", "")).lower(): u for u in usages}
    names = ["lowPriorityCores"] if spot else ["cores"] + ([family] if family else [])
    for n in names:
        u = by_name.get(n.lower())
        if u is None:
            continue
        current, limit = int(u.get("currentValue", 0)), int(u.get("limit", 0))
        if current + need > limit:
            return (str(u["name"].get("value", n)), current, limit)
    return None


def custom_data_ok(data: bytes) -> None:
    if len(data) > CUSTOM_DATA_MAX:
        raise InputError(f"user data is {len(data)} bytes: Azure custom data takes at most "
                         f"{CUSTOM_DATA_MAX} bytes",
                         hint="shorten --user-data or fetch the rest from the guest")
