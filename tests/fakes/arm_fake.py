"""A small local Azure Resource Manager that the real Azure SDK clients talk to.

It keeps resources in memory by id and speaks the parts of ARM nestcloud uses: resource groups
(with tag filters), generic resources by id, VNets, NSGs, public IPs, NICs, VMs (+ instance view
and boot diagnostics), VM extensions, DevTestLab schedules, disks and Resource SKUs. Writes are
long-running operations: a PUT answers 201 + ``Azure-AsyncOperation``, a DELETE 202 +
``Location``; the operation finishes after ``polls`` polls. It enforces the dependencies real ARM
enforces (an NSG used by a subnet, a subnet used by a NIC, a NIC used by a VM cannot be deleted)
and honours ``deleteOption: Delete`` cascades, so delete ordering bugs show up here.

Run Command (``POST .../virtualMachines/{vm}/runCommand``) answers 202 with
``Azure-AsyncOperation`` (the status) and ``Location`` (the RunCommandResult once done), as ARM
does for this POST; the script's stdout is ``run_command_stdout[vm name]`` (default: nothing,
as when the file the script reads does not exist yet). The fake runs no PowerShell.

Egress, as Azure has it since the network API versions after 2026-03-31 (FACTS.md, Azure,
"Egress"): a subnet of a VNet PUT with api-version 2025-07-01 or later is private unless it says
``defaultOutboundAccess: true``. A VM on a private subnet reaches the internet only through a
public IP on its NIC or a NAT gateway (with at least one public IP) on its subnet;
``has_egress(vm)`` answers that, and a Linux VM that boots without a path writes a serial log
in which cloud-init's package installs fail and no readiness marker ever appears (its
``boot_egress[vm]`` is False). NAT gateways need existing Standard public IPs, a subnet needs an
existing NAT gateway, and neither can be deleted while in use.

Marketplace images: ``GET .../publishers/P/artifacttypes/vmimage/offers/O/skus/S/versions``
lists versions and ``.../versions/V`` answers the image with ``osDiskImage.sizeInGb`` and
``sizeInBytes`` (the size ARM reports for many images, outside the SDK's model). Images are
registered with ``add_image``; any other URN lists one version ``1.0.0`` and answers for any
version with ``default_image_gib`` (None: no size reported), unless ``strict_images``. A VM
whose OS disk is smaller than its registered image's is refused as Azure does
(OperationNotAllowed, target osDisk.diskSizeGB).

Faults: ``fault(method, path_regex, status, code, times, retry_after)`` answers matching requests
with an ARM error; ``fail_vm(name, *codes)`` makes the next PUTs of that VM end ``Failed``.
Every request is recorded (method, path, query, JSON body, headers) for assertions.
"""

from __future__ import annotations

import itertools
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from . import http_fake
from .http_fake import JsonHandler, LoopbackFake, Request

SUB = "00000000-0000-0000-0000-000000000000"


def vm_sku(name: str, *, vcpus: int = 2, memory: float = 8, gens: str = "V1,V2",
           arch: str = "x64", locations: tuple[str, ...] = ("eastus",),
           restricted_in: tuple[str, ...] = (), low_priority: bool = True,
           family: str | None = None) -> dict[str, Any]:
    """A Resource SKU entry shaped like the live API's."""
    restrictions = []
    if restricted_in:
        restrictions.append({"type": "Location", "values": list(restricted_in),
                             "restrictionInfo": {"locations": list(restricted_in)},
                             "reasonCode": "NotAvailableForSubscription"})
    return {
        "resourceType": "virtualMachines", "name": name, "tier": "Standard",
        "family": family or _family(name),
        "size": name.removeprefix("Standard_"), "locations": list(locations),
        "locationInfo": [{"location": loc, "zones": ["1", "2", "3"]} for loc in locations],
        "capabilities": [
            {"name": "vCPUs", "value": str(vcpus)},
            {"name": "MemoryGB", "value": f"{memory:g}"},
            {"name": "HyperVGenerations", "value": gens},
            {"name": "CpuArchitectureType", "value": arch},
            {"name": "LowPriorityCapable", "value": "True" if low_priority else "False"},
        ],
        "restrictions": restrictions,
    }


def _family(name: str) -> str:
    """Standard_D2s_v5 -> standardDSv5Family, the scheme of the live family names."""
    m = re.match(r"Standard_([A-Z]+)\d+([a-z]*)_v(\d+)$", name)
    if not m:
        return "standard" + name.removeprefix("Standard_") + "Family"
    return f"standard{m.group(1)}{m.group(2).upper()}v{m.group(3)}Family"


DEFAULT_SKUS = [
    vm_sku("Standard_D2s_v5", vcpus=2, memory=8, gens="V1,V2"),
    vm_sku("Standard_D4s_v5", vcpus=4, memory=16, gens="V1,V2"),
    vm_sku("Standard_D2_v3", vcpus=2, memory=8, gens="V1"),
    vm_sku("Standard_D2s_v6", vcpus=2, memory=8, gens="V2"),
    vm_sku("Standard_D2ps_v5", vcpus=2, memory=8, gens="V2", arch="Arm64"),
    vm_sku("Standard_E2s_v5", vcpus=2, memory=16, restricted_in=("eastus",)),
    vm_sku("Standard_B2s", vcpus=2, memory=4, low_priority=False),
    vm_sku("Standard_D2s_v5", vcpus=2, memory=8, locations=("westeurope",)),
]


@dataclass
class Fault(http_fake.Fault):
    code: str = ""
    retry_after: str | None = None


@dataclass
class _Op:
    kind: str  # "async" (PUT) or "location" (DELETE)
    remaining: int
    finish: Any  # callable -> None | (code, message) for a failure
    done: bool = False
    error: tuple[str, str] | None = None
    result: Any = None  # the body the Location URL answers once done (Run Command)


@dataclass
class ArmFake(LoopbackFake):
    skus: list[dict[str, Any]] = field(default_factory=lambda: [dict(s) for s in DEFAULT_SKUS])
    polls: int = 1
    console_text: str = "cloud-init: nestcloud boot\nNESTCLOUD-READY kvm ok\n"
    # What a Linux VM without an outbound path prints: the bootstrap cannot install anything.
    no_egress_console_text: str = (
        "cloud-init: nestcloud boot\n"
        "cloud-init[977]: E: Failed to fetch packages: no route to the internet "
        "(private subnet: no public IP, no NAT gateway)\n"
        "cloud-init[977]: package_update_upgrade_install failed\n")
    default_image_gib: int | None = 30
    strict_images: bool = False

    def __post_init__(self) -> None:
        self.groups: dict[str, dict[str, Any]] = {}
        self.resources: dict[str, dict[str, Any]] = {}
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.vm_failures: dict[str, list[str]] = {}
        self.blobs: dict[str, bytes] = {}
        self.crashes: list[str] = []
        self.max_in_flight = 0  # most long-running operations pending at once
        # Compute usages per region (name.value, currentValue, limit), as the usages API.
        self.usages: dict[str, list[dict[str, Any]]] = {}
        # Run Command: what the script prints, per VM name (lower case).
        self.run_command_stdout: dict[str, str] = {}
        self.run_command_stderr: dict[str, str] = {}
        # Marketplace images: (publisher, offer, sku) lower case -> {version: (os, GiB | None)}.
        self.images: dict[tuple[str, str, str], dict[str, tuple[str, int | None]]] = {}
        # VM name (lower case) -> whether it had an outbound path when it booted.
        self.boot_egress: dict[str, bool] = {}
        self._ops: dict[str, _Op] = {}
        self._lock = threading.RLock()
        self._ips = itertools.count(4)

    # -- lifecycle (start, stop, url: LoopbackFake) ----------------------------------------

    thread_name = "arm-fake"

    def _handler(self) -> type[JsonHandler]:
        return type("Handler", (_Handler,), {"arm": self})

    # -- test helpers ----------------------------------------------------------------------

    def fault(self, method: str, path_regex: str, status: int, code: str, *,
              message: str = "injected fault", times: int | None = 1,
              retry_after: str | None = None, every: int = 1) -> Fault:
        """Answer matching requests with an ARM error: ``times`` of them (None: all), only
        every ``every``-th match (e.g. 3: a third of the calls)."""
        f = Fault(method.upper(), re.compile(path_regex, re.I), status, message, times, every,
                  code=code, retry_after=retry_after)
        self.faults.append(f)
        return f

    def fail_vm(self, name: str, *codes: str) -> None:
        """The next len(codes) PUTs of VM ``name`` end Failed with these error codes."""
        self.vm_failures.setdefault(name.lower(), []).extend(codes)

    def add_image(self, urn: str, versions: dict[str, int | None], os_type: str = "Linux"
                  ) -> None:
        """Register a marketplace image 'publisher:offer:sku' with {version: OS disk GiB}."""
        pub, offer, sku = (x.lower() for x in urn.split(":")[:3])
        self.images.setdefault((pub, offer, sku), {}).update(
            {v: (os_type, gib) for v, gib in versions.items()})

    def has_egress(self, vm_name: str) -> bool:
        """Whether this VM (by name) can reach the internet now, by Azure's rules."""
        with self._lock:
            vm = next((r for r in self.resources.values()
                       if r["type"] == "Microsoft.Compute/virtualMachines"
                       and r["name"].lower() == vm_name.lower()), None)
            if vm is None:
                raise KeyError(vm_name)
            return _vm_has_egress(self, vm)

    def writes(self, method: str | None = None, type_: str | None = None) -> list[Request]:
        out = []
        for r in self.requests:
            if r.method not in ("PUT", "DELETE", "PATCH", "POST") or "/operations/" in r.path:
                continue
            if r.method == "POST" and "retrievebootdiagnosticsdata" in r.path.lower():
                continue
            if method and r.method != method:
                continue
            if type_ and r.path.lower().rstrip("/").split("/")[-2] != type_.lower():
                continue
            out.append(r)
        return out

    def bodies(self, type_: str) -> dict[str, Any]:
        """Last PUT body per resource name of one type (the path segment, e.g. 'extensions')."""
        return {r.path.rstrip("/").rsplit("/", 1)[-1]: r.body for r in self.writes("PUT", type_)}

    def ids(self) -> list[str]:
        with self._lock:
            return sorted(r["id"] for r in self.resources.values())

    # -- state -----------------------------------------------------------------------------

    def _group_of(self, rid: str) -> str:
        return rid.split("/")[4].lower()

    def _new_op(self, kind: str, finish: Any) -> str:
        op_id = uuid.uuid4().hex
        self._ops[op_id] = _Op(kind, self.polls, finish)
        pending = sum(1 for op in self._ops.values() if not op.done)
        self.max_in_flight = max(self.max_in_flight, pending)
        return op_id

    def _run_op(self, op: _Op) -> None:
        if not op.done:
            op.error = op.finish()
            op.done = True


class FakeCredential:
    """A credential for clients of the fake: a fixed token, and the scopes asked for (nothing
    reaches Entra ID). azure-core is imported lazily: the fake itself is stdlib only."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.scopes.append(scopes)
        return AccessToken("fake-token", 2**31 - 1)


class _Handler(JsonHandler):
    arm: ArmFake
    arm_api_version = ""  # the api-version of the request being handled

    do_HEAD = JsonHandler.do_GET

    def _parse_query(self, query: str) -> dict[str, str]:
        """The first value of each key; keys without a value left out."""
        return {k: v[0] for k, v in parse_qs(query).items()}

    def _error(self, status: int, code: str, message: str,
               headers: dict[str, str] | None = None) -> None:
        self._send(status, {"error": {"code": code, "message": message}}, headers)

    def _dispatch(self) -> None:
        arm = self.arm
        req = self._read_request(Request)
        path, query, body = req.path, req.query, req.body
        self.arm_api_version = query.get("api-version", "")
        with arm._lock:
            arm.requests.append(req)
            f = http_fake.firing(arm.faults, self.command, path)
            if f is not None:
                headers = {"Retry-After": f.retry_after} if f.retry_after is not None else {}
                return self._error(f.status, f.code, f.message, headers)
            try:
                self._route(path, query, body)
            except _Reply as r:
                self._send(r.status, r.body, r.headers)
            except Exception as exc:  # a fake bug: answer 500 and keep it visible
                import traceback
                arm.crashes.append(traceback.format_exc())
                self._error(500, "FakeCrashed", f"{type(exc).__name__}: {exc}")

    # -- routes ----------------------------------------------------------------------------

    def _route(self, path: str, query: dict[str, str], body: Any) -> None:
        arm = self.arm
        low = path.lower()
        parts = path.split("/")
        lparts = low.split("/")
        if low.startswith("/operations/"):
            if len(parts) > 3 and parts[3] == "result":
                return self._op_result(parts[2])
            return self._poll(parts[2])
        if low.startswith("/blobs/"):
            blob = arm.blobs.get(parts[2])
            if blob is None:
                raise _Reply(404, {"error": {"code": "BlobNotFound", "message": "no blob"}})
            return self._send(200, raw=blob, headers={"Content-Type": "text/plain"})
        if len(lparts) < 3 or lparts[1] != "subscriptions" or lparts[2] != SUB:
            raise _Reply(404, {"error": {"code": "SubscriptionNotFound",
                                         "message": f"no subscription in {path}"}})
        rest = lparts[3:]
        if rest == ["resourcegroups"] and self.command == "GET":
            groups = [g for g in arm.groups.values() if _tag_match(g, query.get("$filter"))]
            return self._send(200, {"value": groups})
        if len(rest) == 5 and rest[:3] == ["providers", "microsoft.compute", "locations"] \
                and rest[4] == "usages":
            return self._send(200, {"value": arm.usages.get(rest[3], [])})
        if rest == ["providers", "microsoft.compute", "skus"]:
            loc = re.search(r"location eq '([^']+)'", query.get("$filter", ""))
            skus = [s for s in arm.skus if loc is None or loc.group(1).lower() in
                    [x.lower() for x in s["locations"]]]
            return self._send(200, {"value": skus})
        if len(rest) >= 13 and rest[:3] == ["providers", "microsoft.compute", "locations"] \
                and rest[4] == "publishers" and rest[6:8] == ["artifacttypes", "vmimage"] \
                and rest[8] == "offers" and rest[10] == "skus" and rest[12] == "versions" \
                and self.command == "GET":
            return self._image(parts[3:], rest)
        expand = query.get("$expand", "").lower() == "instanceview"
        if rest == ["providers", "microsoft.compute", "virtualmachines"]:
            vms = self._of_type("microsoft.compute/virtualmachines")
            return self._send(200, {"value": [_viewed(v, expand) for v in vms]})
        if len(rest) >= 2 and rest[0] == "resourcegroups":
            group = rest[1]
            if len(rest) == 2:
                return self._group(parts[4], body)
            if group not in arm.groups:
                raise _Reply(404, {"error": {"code": "ResourceGroupNotFound",
                                             "message": f"Resource group '{parts[4]}' could not "
                                                        "be found."}})
            if rest[2:] == ["resources"]:
                found = [r for r in arm.resources.values() if arm._group_of(r["id"]) == group
                         and _tag_match(r, query.get("$filter"))]
                return self._send(200, {"value": [_generic(r) for r in found]})
            if len(rest) == 5 and rest[2] == "providers":
                rtype = f"{rest[3]}/{rest[4]}"
                return self._send(200, {"value": [
                    _viewed(r, expand) for r in self._of_type(rtype)
                    if arm._group_of(r["id"]) == group]})
            if len(rest) >= 6 and rest[2] == "providers":
                return self._resource(path, rest, body)
        raise _Reply(404, {"error": {"code": "NotFound", "message": f"no route {path}"}})

    def _image(self, parts: list[str], rest: list[str]) -> None:
        """Marketplace image versions (a JSON array) or one version."""
        arm = self.arm
        loc, pub, offer, sku = rest[3], parts[5], parts[9], parts[11]
        known = arm.images.get((pub.lower(), offer.lower(), sku.lower()))
        if known is None:
            if arm.strict_images:
                raise _Reply(404, {"error": {"code": "NotFound", "message": "Artifact: "
                                             f"VMImage was not found ({pub}:{offer}:{sku})"}})
            known = {"1.0.0": ("Linux", arm.default_image_gib)}
            if len(rest) == 14:  # any version of an image the test did not register
                known[parts[13]] = known["1.0.0"]
        base = (f"/Subscriptions/{SUB}/Providers/Microsoft.Compute/Locations/{loc}/Publishers/"
                f"{pub}/ArtifactTypes/VMImage/Offers/{offer}/Skus/{sku}/Versions")
        if len(rest) == 13:
            return self._send(200, [{"name": v, "location": loc, "id": f"{base}/{v}"}
                                    for v in known])
        if len(rest) == 14:
            version = parts[13]
            if version not in known:
                raise _Reply(404, {"error": {"code": "NotFound", "message": "Artifact: "
                                             f"VMImage was not found (version {version})"}})
            os_type, gib = known[version]
            disk: dict[str, Any] = {"operatingSystem": os_type}
            if gib is not None:
                disk.update(sizeInGb=gib, sizeInBytes=gib * 2**30)
            return self._send(200, {"name": version, "location": loc, "id": f"{base}/{version}",
                                    "properties": {"osDiskImage": disk, "dataDiskImages": [],
                                                   "hyperVGeneration": "V2"}})
        raise _Reply(404, {"error": {"code": "NotFound", "message": "no such image route"}})

    def _of_type(self, rtype: str) -> list[dict[str, Any]]:
        return [r for r in self.arm.resources.values() if r["type"].lower() == rtype]

    def _poll(self, op_id: str) -> None:
        op = self.arm._ops.get(op_id)
        if op is None:
            raise _Reply(404, {"error": {"code": "NotFound", "message": "no such operation"}})
        if op.remaining > 0:
            op.remaining -= 1
            if op.kind == "async":
                return self._send(200, {"status": "InProgress"})
            return self._send(202, None, {"Location": f"{self._base()}/operations/{op_id}"})
        self.arm._run_op(op)
        if op.kind == "async":
            if op.error:
                code, message = op.error
                return self._send(200, {"status": "Failed",
                                        "error": {"code": code, "message": message}})
            return self._send(200, {"status": "Succeeded"})
        if op.error:
            code, message = op.error
            return self._error(400, code, message)
        return self._send(204)

    def _op_result(self, op_id: str) -> None:
        """The Location URL of a POST with a result: 202 until done, then the result."""
        op = self.arm._ops.get(op_id)
        if op is None:
            raise _Reply(404, {"error": {"code": "NotFound", "message": "no such operation"}})
        if not op.done:
            return self._send(202, None, {"Location": f"{self._base()}/operations/{op_id}/result"})
        return self._send(200, op.result)

    def _base(self) -> str:
        return f"http://{self.headers.get('Host')}"

    def _lro(self, kind: str, finish: Any, status: int, body: Any) -> None:
        op_id = self.arm._new_op(kind, finish)
        header = "Azure-AsyncOperation" if kind == "async" else "Location"
        self._send(status, body, {header: f"{self._base()}/operations/{op_id}"})

    # -- resource groups -------------------------------------------------------------------

    def _group(self, name: str, body: Any) -> None:
        arm = self.arm
        key = name.lower()
        gid = f"/subscriptions/{SUB}/resourceGroups/{name}"
        if self.command == "HEAD":
            return self._send(204 if key in arm.groups else 404)
        if self.command == "GET":
            if key not in arm.groups:
                raise _Reply(404, {"error": {"code": "ResourceGroupNotFound",
                                             "message": f"Resource group '{name}' could not be "
                                                        "found."}})
            return self._send(200, arm.groups[key])
        if self.command == "PUT":
            existed = key in arm.groups
            arm.groups[key] = {"id": gid, "name": name, "type": "Microsoft.Resources/"
                               "resourceGroups", "location": body["location"],
                               "tags": body.get("tags") or {},
                               "properties": {"provisioningState": "Succeeded"}}
            return self._send(200 if existed else 201, arm.groups[key])
        if self.command == "DELETE":
            if key not in arm.groups:
                raise _Reply(404, {"error": {"code": "ResourceGroupNotFound",
                                             "message": f"Resource group '{name}' could not be "
                                                        "found."}})

            def finish() -> None:
                arm.groups.pop(key, None)
                for rid in [k for k, r in arm.resources.items() if arm._group_of(r["id"]) == key]:
                    arm.resources.pop(rid, None)
            return self._lro("location", finish, 202, None)
        raise _Reply(405, {"error": {"code": "MethodNotAllowed", "message": self.command}})

    # -- resources -------------------------------------------------------------------------

    def _resource(self, path: str, rest: list[str], body: Any) -> None:
        arm = self.arm
        rid = path  # as the client spelled it
        key = rid.lower()
        rtype = f"{rest[3]}/{rest[4]}"
        if len(rest) == 8:
            rtype = f"{rtype}/{rest[6]}"
        action = rest[6] if len(rest) == 7 else None
        if action is not None:
            return self._action(key[: -len(action) - 1], action)
        if self.command == "GET":
            if key not in arm.resources:
                raise _Reply(404, {"error": {"code": "ResourceNotFound",
                                             "message": f"The Resource '{rid}' was not found."}})
            return self._send(200, arm.resources[key])
        if self.command == "PUT":
            return self._put(rid, rtype, body)
        if self.command == "DELETE":
            return self._delete(key, rtype)
        raise _Reply(405, {"error": {"code": "MethodNotAllowed", "message": self.command}})

    def _action(self, vm_key: str, action: str) -> None:
        arm = self.arm
        vm = arm.resources.get(vm_key)
        if vm is None:
            raise _Reply(404, {"error": {"code": "ResourceNotFound", "message": vm_key}})
        if action == "instanceview" and self.command == "GET":
            return self._send(200, _instance_view(vm))
        if action == "retrievebootdiagnosticsdata" and self.command == "POST":
            blob = f"{vm['name']}.serialconsole.log"
            return self._send(200, {
                "consoleScreenshotBlobUri": f"{self._base()}/blobs/{vm['name']}.bmp?sv=x",
                "serialConsoleLogBlobUri": f"{self._base()}/blobs/{blob}?sv=x&sig=fake"})
        if action == "runcommand" and self.command == "POST":
            return self._run_command(vm)
        raise _Reply(404, {"error": {"code": "NotFound", "message": action}})

    def _run_command(self, vm: dict[str, Any]) -> None:
        arm = self.arm
        key = vm["name"].lower()
        holder: dict[str, _Op] = {}

        def finish() -> None:
            # The shape of RunCommandResult: a list of InstanceViewStatus, stdout and stderr.
            holder["op"].result = {"value": [
                {"code": "ComponentStatus/StdOut/succeeded", "level": "Info",
                 "displayStatus": "Provisioning succeeded",
                 "message": arm.run_command_stdout.get(key, "")},
                {"code": "ComponentStatus/StdErr/succeeded", "level": "Info",
                 "displayStatus": "Provisioning succeeded",
                 "message": arm.run_command_stderr.get(key, "")},
            ]}
        op_id = arm._new_op("async", finish)
        holder["op"] = arm._ops[op_id]
        status = f"{self._base()}/operations/{op_id}"
        self._send(202, None, {"Azure-AsyncOperation": status, "Location": status + "/result"})

    def _put(self, rid: str, rtype: str, body: dict[str, Any]) -> None:
        arm = self.arm
        key = rid.lower()
        props = dict(body.get("properties") or {})
        name = rid.rsplit("/", 1)[-1]
        res = {"id": rid, "name": name, "type": _canon_type(rtype),
               "location": body.get("location"), "tags": body.get("tags") or {},
               "properties": props}
        if "sku" in body:
            res["sku"] = body["sku"]
        finish: Any = lambda: None  # noqa: E731
        if rtype == "microsoft.network/virtualnetworks":
            # Private subnets by default from network API 2025-07-01 on (FACTS.md, Egress).
            private = self.arm_api_version >= "2025-07-01"
            for sn in props.get("subnets") or []:
                sn["id"] = f"{rid}/subnets/{sn['name']}"
                sp = sn.setdefault("properties", {})
                sp.setdefault("defaultOutboundAccess", not private)
                nat = (sp.get("natGateway") or {}).get("id")
                if nat and nat.lower() not in arm.resources:
                    raise _Reply(400, {"error": {"code": "InvalidResourceReference",
                                                 "message": f"NAT gateway {nat} not found"}})
        elif rtype == "microsoft.network/natgateways":
            for ref in props.get("publicIpAddresses") or []:
                pip = arm.resources.get(str(ref.get("id", "")).lower())
                if pip is None:
                    raise _Reply(400, {"error": {"code": "InvalidResourceReference",
                                                 "message": f"public IP {ref.get('id')} not "
                                                            "found"}})
                if (pip.get("sku") or {}).get("name") != "Standard":
                    raise _Reply(400, {"error": {"code": "BadRequest", "message": "a NAT "
                                                 "gateway needs Standard public IPs"}})
        elif rtype == "microsoft.network/publicipaddresses":
            props["ipAddress"] = f"20.1.0.{next(arm._ips)}"
        elif rtype == "microsoft.network/networkinterfaces":
            for conf in props.get("ipConfigurations") or []:
                cp = conf.setdefault("properties", {})
                subnet = cp.get("subnet", {}).get("id", "")
                vnet_key = subnet.lower().split("/subnets/")[0]
                vnet = arm.resources.get(vnet_key)
                if vnet is None or not any(s["id"].lower() == subnet.lower()
                                           for s in vnet["properties"].get("subnets", [])):
                    raise _Reply(400, {"error": {"code": "InvalidResourceReference",
                                                 "message": f"subnet {subnet} not found"}})
                pip = (cp.get("publicIPAddress") or {}).get("id")
                if pip and pip.lower() not in arm.resources:
                    raise _Reply(400, {"error": {"code": "InvalidResourceReference",
                                                 "message": f"public IP {pip} not found"}})
                cp["privateIPAddress"] = f"10.42.0.{next(arm._ips)}"
                conf["id"] = f"{rid}/ipConfigurations/{conf['name']}"
        elif rtype == "microsoft.compute/virtualmachines":
            finish = self._vm_put(rid, res, props)
        elif rtype == "microsoft.compute/virtualmachines/extensions":
            if key.rsplit("/extensions/", 1)[0] not in arm.resources:
                raise _Reply(404, {"error": {"code": "ParentResourceNotFound",
                                             "message": "no such VM"}})
        elif rtype == "microsoft.devtestlab/schedules":
            target = str(props.get("targetResourceId", "")).lower()
            if target not in arm.resources:
                raise _Reply(400, {"error": {"code": "InvalidResourceReference",
                                             "message": f"target {target} not found"}})
        existed = key in arm.resources
        props["provisioningState"] = "Updating" if existed else "Creating"
        arm.resources[key] = res

        def done() -> tuple[str, str] | None:
            err = finish()
            if key in arm.resources:
                arm.resources[key]["properties"]["provisioningState"] = (
                    "Failed" if err else "Succeeded")
            return err
        self._lro("async", done, 200 if existed else 201, res)

    def _vm_put(self, rid: str, res: dict[str, Any], props: dict[str, Any]) -> Any:
        arm = self.arm
        size = props.get("hardwareProfile", {}).get("vmSize", "")
        loc = str(res["location"]).lower()
        if not any(s["name"].lower() == size.lower() and loc in [x.lower() for x in s["locations"]]
                   for s in arm.skus):
            raise _Reply(409, {"error": {"code": "SkuNotAvailable",
                                         "message": f"The requested size {size} is not "
                                                    f"available in location '{loc}'."}})
        for ref in props.get("networkProfile", {}).get("networkInterfaces", []):
            if ref["id"].lower() not in arm.resources:
                raise _Reply(400, {"error": {"code": "InvalidResourceReference",
                                             "message": f"NIC {ref['id']} not found"}})
        too_small = _image_refuses(arm, props.get("storageProfile") or {})
        if too_small:
            raise _Reply(409, {"error": {"code": "OperationNotAllowed",
                                         "target": "osDisk.diskSizeGB", "message": too_small}})
        props["vmId"] = str(uuid.uuid4())
        props["timeCreated"] = "2026-11-29T20:00:00+00:00"
        failures = arm.vm_failures.get(res["name"].lower())
        group_id = "/".join(rid.split("/")[:5])

        def finish() -> tuple[str, str] | None:
            disk = props.get("storageProfile", {}).get("osDisk", {})
            dname = disk.get("name") or f"{res['name']}_OsDisk"
            did = f"{group_id}/providers/Microsoft.Compute/disks/{dname}"
            arm.resources[did.lower()] = {"id": did, "name": dname,
                                          "type": "Microsoft.Compute/disks",
                                          "location": res["location"], "tags": {},
                                          "properties": {"provisioningState": "Succeeded"}}
            if failures:
                code = failures.pop(0)
                return (code, f"injected provisioning failure of {res['name']}")
            online = _vm_has_egress(arm, res)
            arm.boot_egress[res["name"].lower()] = online
            text = arm.console_text if online else arm.no_egress_console_text
            arm.blobs[f"{res['name']}.serialconsole.log"] = text.encode()
            return None
        return finish

    def _delete(self, key: str, rtype: str) -> None:
        arm = self.arm
        res = arm.resources.get(key)
        if res is None:
            return self._send(204)  # ARM answers 204 for a resource that is already gone
        users = _users_of(arm, key, rtype)
        if users:
            code = {"microsoft.network/networksecuritygroups": "InUseNetworkSecurityGroup",
                    "microsoft.network/virtualnetworks": "InUseSubnetCannotBeDeleted",
                    "microsoft.network/networkinterfaces": "NicInUse",
                    "microsoft.network/publicipaddresses": "PublicIPAddressInUse",
                    "microsoft.network/natgateways": "InUseNatGatewayCannotBeDeleted"}.get(
                        rtype, "InUse")
            raise _Reply(400, {"error": {"code": code,
                                         "message": f"{res['name']} is in use by {users[0]}"}})

        def finish() -> None:
            _remove(arm, key)
        return self._lro("location", finish, 202, None)


class _Reply(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers


_CANON = {
    "microsoft.network/virtualnetworks": "Microsoft.Network/virtualNetworks",
    "microsoft.network/networksecuritygroups": "Microsoft.Network/networkSecurityGroups",
    "microsoft.network/publicipaddresses": "Microsoft.Network/publicIPAddresses",
    "microsoft.network/networkinterfaces": "Microsoft.Network/networkInterfaces",
    "microsoft.network/natgateways": "Microsoft.Network/natGateways",
    "microsoft.compute/virtualmachines": "Microsoft.Compute/virtualMachines",
    "microsoft.compute/virtualmachines/extensions": "Microsoft.Compute/virtualMachines/extensions",
    "microsoft.compute/disks": "Microsoft.Compute/disks",
    "microsoft.devtestlab/schedules": "Microsoft.DevTestLab/schedules",
}


def _instance_view(vm: dict[str, Any]) -> dict[str, Any]:
    state = vm["properties"].get("provisioningState", "Succeeded")
    statuses = [{"code": f"ProvisioningState/{state.lower()}"}]
    if state == "Succeeded":
        statuses.append({"code": vm.get("_power", "PowerState/running")})
    return {"statuses": statuses}


def _viewed(res: dict[str, Any], expand: bool) -> dict[str, Any]:
    """A VM as a list with $expand=instanceView returns it."""
    if not expand or res["type"] != "Microsoft.Compute/virtualMachines":
        return res
    return {**res, "properties": {**res["properties"], "instanceView": _instance_view(res)}}


def _canon_type(rtype: str) -> str:
    return _CANON.get(rtype, rtype)


def _generic(r: dict[str, Any]) -> dict[str, Any]:
    return {k: r[k] for k in ("id", "name", "type", "location", "tags") if k in r}


def _tag_match(res: dict[str, Any], flt: str | None) -> bool:
    if not flt:
        return True
    name = re.search(r"tagName eq '([^']*)'", flt)
    value = re.search(r"tagValue eq '([^']*)'", flt)
    tags = res.get("tags") or {}
    if name and name.group(1) not in tags:
        return False
    if name and value and tags.get(name.group(1)) != value.group(1):
        return False
    return True


def _users_of(arm: ArmFake, key: str, rtype: str) -> list[str]:
    """Ids of resources that still reference ``key`` (which ARM would refuse to delete)."""
    users = []
    for r in arm.resources.values():
        p = r.get("properties") or {}
        t = r["type"].lower()
        if rtype == "microsoft.network/networksecuritygroups" and t.endswith("virtualnetworks"):
            if any((s.get("properties", {}).get("networkSecurityGroup") or {}).get("id", "")
                   .lower() == key for s in p.get("subnets", [])):
                users.append(r["id"])
        if rtype == "microsoft.network/virtualnetworks" and t.endswith("networkinterfaces"):
            if any(c.get("properties", {}).get("subnet", {}).get("id", "").lower()
                   .startswith(key + "/subnets/") for c in p.get("ipConfigurations", [])):
                users.append(r["id"])
        if rtype == "microsoft.network/networkinterfaces" and t.endswith("virtualmachines"):
            if any(n["id"].lower() == key
                   for n in p.get("networkProfile", {}).get("networkInterfaces", [])):
                users.append(r["id"])
        if rtype == "microsoft.network/publicipaddresses" and t.endswith("networkinterfaces"):
            if any((c.get("properties", {}).get("publicIPAddress") or {}).get("id", "").lower()
                   == key for c in p.get("ipConfigurations", [])):
                users.append(r["id"])
        if rtype == "microsoft.network/publicipaddresses" and t.endswith("natgateways"):
            if any(str(ref.get("id", "")).lower() == key
                   for ref in p.get("publicIpAddresses") or []):
                users.append(r["id"])
        if rtype == "microsoft.network/natgateways" and t.endswith("virtualnetworks"):
            if any(str(((s.get("properties") or {}).get("natGateway") or {}).get("id", ""))
                   .lower() == key for s in p.get("subnets", [])):
                users.append(r["id"])
    return users


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) if x.isdigit() else -1 for x in v.split("."))


def _image_refuses(arm: ArmFake, storage: dict[str, Any]) -> str | None:
    """Azure's answer to an OS disk smaller than a registered image's own, else None."""
    ref = storage.get("imageReference") or {}
    asked = (storage.get("osDisk") or {}).get("diskSizeGB")
    known = arm.images.get(tuple(str(ref.get(k, "")).lower()  # type: ignore[arg-type]
                                 for k in ("publisher", "offer", "sku")))
    if not known or asked is None:
        return None
    version = str(ref.get("version", ""))
    if version.lower() == "latest":
        version = max(known, key=_version_key)
    gib = known.get(version, ("", None))[1]
    if gib is not None and int(asked) < gib:
        return (f"The specified disk size {asked} GB is smaller than the size of the "
                f"corresponding disk in the VM image: {gib} GB. This is not allowed. Please "
                "choose equal or greater size or do not specify an explicit size.")
    return None


def _vm_has_egress(arm: ArmFake, vm: dict[str, Any]) -> bool:
    """Azure's outbound rule for one VM: a public IP on its NIC, or a NAT gateway with a public
    IP on its subnet, or a subnet that still has default outbound access."""
    for ref in (vm.get("properties") or {}).get("networkProfile", {}).get(
            "networkInterfaces", []):
        nic = arm.resources.get(str(ref.get("id", "")).lower())
        for conf in ((nic or {}).get("properties") or {}).get("ipConfigurations", []):
            cp = conf.get("properties") or {}
            pip = (cp.get("publicIPAddress") or {}).get("id")
            if pip and pip.lower() in arm.resources:
                return True
            subnet_id = str((cp.get("subnet") or {}).get("id", "")).lower()
            vnet = arm.resources.get(subnet_id.split("/subnets/")[0])
            for sn in ((vnet or {}).get("properties") or {}).get("subnets", []):
                if str(sn.get("id", "")).lower() != subnet_id:
                    continue
                sp = sn.get("properties") or {}
                if sp.get("defaultOutboundAccess") is True:
                    return True
                nat = arm.resources.get(str((sp.get("natGateway") or {}).get("id", "")).lower())
                if nat is not None and any(
                        str(r.get("id", "")).lower() in arm.resources
                        for r in (nat.get("properties") or {}).get("publicIpAddresses") or []):
                    return True
    return False


def _remove(arm: ArmFake, key: str) -> None:
    """Delete one resource with its children and the deleteOption=Delete cascade."""
    res = arm.resources.pop(key, None)
    if res is None:
        return
    for child in [k for k in arm.resources if k.startswith(key + "/")]:
        arm.resources.pop(child, None)
    p = res.get("properties") or {}
    t = res["type"].lower()
    if t == "microsoft.compute/virtualmachines":
        disk = p.get("storageProfile", {}).get("osDisk", {})
        if disk.get("deleteOption") == "Delete" and disk.get("name"):
            group_id = "/".join(res["id"].split("/")[:5])
            _remove(arm, f"{group_id}/providers/Microsoft.Compute/disks/{disk['name']}".lower())
        for ref in p.get("networkProfile", {}).get("networkInterfaces", []):
            if (ref.get("properties") or {}).get("deleteOption") == "Delete":
                _remove(arm, ref["id"].lower())
    if t == "microsoft.network/networkinterfaces":
        for conf in p.get("ipConfigurations", []):
            pip = conf.get("properties", {}).get("publicIPAddress") or {}
            if (pip.get("properties") or {}).get("deleteOption") == "Delete":
                _remove(arm, pip["id"].lower())
