"""A small local Compute Engine (REST v1) that the real google-cloud-compute client talks to.

No official emulator exists (shared/FACTS.md "GCP"), so this fake stands in for
``compute.googleapis.com``. Paths, query parameters and JSON field names are the ones the
installed client sends and parses: they were read from
``google/cloud/compute_v1/services/*/transports/rest_base.py`` (URIs) and the message
descriptors in ``google/cloud/compute_v1/types/compute.py`` (camelCase JSON names), and the
fake's own tests parse every answer strictly against those messages
(tests/gcp/test_gce_fake.py), so a misspelt field fails a test instead of being dropped by the
client's ``ignore_unknown_fields=True``.

Point a client at it with ``client_options={"api_endpoint": fake.url}`` and
``AnonymousCredentials()``. Use the ``*_unary`` methods and wait with Zone/Region/Global
OperationsClient built with the same client_options: the ExtendedOperation that ``insert()``
returns polls compute.googleapis.com whatever endpoint the client was given (FACTS; the fake's
tests show it with a loopback guard).

Endpoints (all under ``/compute/v1/projects/{project}``):

- instances: insert, get, list, delete (zonal), aggregatedList, getGuestAttributes,
  getSerialPortOutput (``.../serialPort``), bulkInsert (zonal);
- regionInstances.bulkInsert;
- zoneOperations / regionOperations / globalOperations: get and wait;
- networks, subnetworks, firewalls, routers (with ``nats``), addresses: insert, get, list,
  delete;
- regions get/list (with ``quotas``), zones get/list, machineTypes get/list/aggregatedList.

Behaviour:

- Every write answers an Operation with ``status: PENDING``; each later get/wait of it moves
  it on: RUNNING for ``pending_polls`` observations, then DONE (the work is applied then).
  ``wait`` returns at once rather than blocking up to two minutes as the real one can.
  ``settle()`` finishes every open operation.
- An inserted instance is visible at once as PROVISIONING and RUNNING when its operation is
  DONE; a failed insert removes it at DONE. A delete shows STOPPING, then the instance is gone.
- Quotas: ``regions.get`` lists ``quotas`` (metric, limit, usage); usage is computed from the
  instances that exist (CPUs per series metric, ``INSTANCES``). Which metric a family uses is
  the table ``CPU_METRIC`` (FACTS names CPUS, N2_CPUS, C2_CPUS, C3_CPUS, PREEMPTIBLE_CPUS,
  INSTANCES; N2D_CPUS, N4_CPUS, T2A_CPUS follow the same naming and are modelled; N1 and E2
  count against CPUS, modelled). Spot/preemptible VMs count against PREEMPTIBLE_CPUS only when
  the region has that metric (modelled). Default limits are test values, not Google's.
- Machine types come from data/prices-gcp.csv (vCPUs, memory, architecture and the zones
  each type is offered in) unless a test passes its own rows; regions and zones are derived
  from the same rows.
- A ``default`` network exists with ``default-allow-ssh`` (tcp:22) and ``default-allow-rdp``
  (tcp:3389) from 0.0.0.0/0 (FACTS); the real default network's other rules are left out.
- bulkInsert (regional or zonal): ``count``, ``minCount`` (default count), ``namePattern``
  (numbering continues after the biggest existing number: proto doc) or
  ``perInstanceProperties``, ``locationPolicy.locations`` (``DENY`` excludes a zone) and
  ``targetShape`` (ANY_SINGLE_ZONE puts all in one zone, ANY/BALANCED spread round-robin).
  All-or-nothing: if fewer than minCount can be made, none are; VMs that were made are
  deleted at DONE (``deletedVmCount``). Quota and capacity shortfalls are found up front
  (nothing is created), per the "upfront validation" of Google's bulk-creation page; that they
  surface as an operation error rather than an HTTP error is modelled. The operation carries
  ``instancesBulkInsertOperationMetadata.perLocationStatus`` keyed ``zones/ZONE`` (key form
  modelled).
- Guest attributes: ``set_guest_attribute(instance, "ns/key", value)`` plays the guest's PUT;
  the API returns it only while the instance is RUNNING with metadata
  ``enable-guest-attributes=TRUE``; otherwise, or when absent, 404 (daisy treats 404 as "not
  yet": GoogleCloudPlatform/compute-image-tools). Serial port output is settable text per
  port with the documented ``start``/``next`` semantics (1 MiB buffer, negative start).
- ``requestId`` makes a write idempotent: the same id again returns the same operation.
- Fields are stored as sent (labels, metadata, advancedMachineFeatures, scheduling,
  networkInterfaces, disks, ...); the server adds id, kind, selfLink, creationTimestamp,
  full URLs for zone/machineType/network/subnetwork, ``networkIP``, ``natIP`` for access
  configs, disk ``source``/``deviceName``/``index``, and fingerprints. Images are not checked;
  disks are not separate resources; ``cpuPlatform`` is only echoed from ``minCpuPlatform``.
- ``list``/``aggregatedList`` support ``maxResults``/``pageToken`` (default page 500) and a
  subset of ``filter``: ``FIELD = "v"``, ``!=``, ``FIELD:*`` (present), ``eq``/``ne`` (RE2
  full match) joined by AND or ``(a) (b)``; OR and other forms answer 400 naming the fake.

Errors look like GCE's: HTTP errors are
``{"error": {"code", "message", "errors": [{"message", "domain", "reason"}]}}`` (reasons
notFound, alreadyExists, invalid, conditionNotMet, resourceInUseByAnotherResource,
rateLimitExceeded); operation errors are ``{"error": {"errors": [{"code", "message"}]}}`` in a
DONE operation. Confirmed shapes: ZONE_RESOURCE_POOL_EXHAUSTED's message; QUOTA_EXCEEDED with
``errorDetails[].quotaInfo`` and ``httpErrorStatusCode: 403``; 412 conditionNotMet "Constraint
constraints/compute.vmExternalIpAccess violated for project N" — the nested-virtualization org
policy error is modelled on that one (its exact text was not found). Messages of the 400s are
modelled on GCE's "Invalid value for field 'resource.X': 'V'. ..." form.

Fault knobs: ``stockout(zone, machine_type=None)``, ``zone_capacity(zone, n)``,
``set_quota(region, metric, limit)``, ``fail_at(seat, code)`` (the Nth instance made after the
call fails, in insert or bulkInsert), ``rate_limit(every=3, status=429)``, ``fault(...)`` for
any HTTP error, ``disable_nested_by_org_policy()``. The E2 trap of FACTS is kept: an E2 (or any)
type accepts ``enableNestedVirtualization`` and reads it back true.

Time-to-live: ``expire_due(now)`` applies ``scheduling.terminationTime`` / ``maxRunDuration``
with ``instanceTerminationAction`` (DELETE removes the instance, STOP leaves it TERMINATED);
nothing expires on its own.

Every request is recorded in ``requests`` (method, path, query, JSON body, headers, the route,
and the status and JSON the fake answered); ``calls(route)`` and ``sent_instances()`` read it.
``make_client(cls, url)`` and ``wait_done(ops_client, op, ...)`` are the client-side helpers.
"""

from __future__ import annotations

import copy
import csv
import itertools
import re
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from . import http_fake
from .http_fake import JsonHandler, LoopbackFake

PROJECT = "nestcloud-test"
PROJECT_NUMBER = "123456789012"
# What GCE puts in selfLinks; only ever text here, never a host the fake or a client calls.
LINK_BASE = "https://www.googleapis.com/compute/v1"
PRICES_CSV = Path(__file__).resolve().parents[2] / "data" / "prices-gcp.csv"
PAGE_SIZE = 500  # GCE's default and maximum maxResults

# Quota metric a machine family's vCPUs count against (see the module docstring).
CPU_METRIC = {
    "n1": "CPUS", "e2": "CPUS", "n2": "N2_CPUS", "n2d": "N2D_CPUS", "c2": "C2_CPUS",
    "c3": "C3_CPUS", "n4": "N4_CPUS", "t2a": "T2A_CPUS",
}
# Test values, not Google's defaults.
DEFAULT_QUOTAS = {
    "CPUS": 24.0, "N2_CPUS": 24.0, "N2D_CPUS": 24.0, "C2_CPUS": 24.0, "C3_CPUS": 24.0,
    "N4_CPUS": 24.0, "T2A_CPUS": 24.0, "INSTANCES": 100.0,
}

NAME_RE = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")
LABEL_KEY_RE = re.compile(r"[a-z][a-z0-9_-]{0,62}")
LABEL_VALUE_RE = re.compile(r"[a-z0-9_-]{0,63}")
METADATA_VALUE_MAX = 256 * 1024  # FACTS: one value <= 256 KiB
METADATA_TOTAL_MAX = 512 * 1024  # FACTS: all metadata < 512 KB
SERIAL_BUFFER = 1024 * 1024  # getSerialPortOutput returns the last 1 MB

_REF_RE = re.compile(
    r"^(?:https?://[^/]+/compute/v1/)?(?:projects/(?P<project>[^/]+)/)?"
    r"(?P<scope>global|regions/(?P<region>[^/]+)|zones/(?P<zone>[^/]+))/"
    r"(?P<coll>[A-Za-z]+)/(?P<name>[^/]+)$")


@dataclass(frozen=True)
class MachineTypeRow:
    """One machine type as the fake offers it: where, and its size."""

    name: str
    vcpus: int
    memory_gib: float
    arch: str  # "x86_64" or "arm64" as in the price file
    zones: tuple[str, ...]


def load_machine_types(path: Path = PRICES_CSV) -> list[MachineTypeRow]:
    """Machine types from the vendored price file: one row per (type, region) there."""
    with path.open(newline="") as f:
        return [MachineTypeRow(r["instance_type"], int(r["vcpus"]), float(r["memory_gib"]),
                               r["arch"], tuple(z for z in r["zones"].split(";") if z))
                for r in csv.DictReader(f)]


def family_of(machine_type: str) -> str:
    return machine_type.split("-", 1)[0]


def region_of(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


@dataclass
class Request(http_fake.Request):
    route: str = ""  # e.g. "instances.insert"
    status: int = 0  # what the fake answered
    response: Any = None


@dataclass
class Fault(http_fake.Fault):
    reason: str = ""
    domain: str = "global"


@dataclass
class _Op:
    body: dict[str, Any]
    remaining: int
    finish: Callable[[], dict[str, Any] | None]  # -> extra fields (e.g. "error") or None
    running: Callable[[], dict[str, Any] | None] | None = None  # fields while RUNNING


@dataclass
class _Serial:
    data: bytearray = field(default_factory=bytearray)
    dropped: int = 0  # bytes that fell out of the 1 MiB buffer


class GceError(Exception):
    """An HTTP error in GCE's JSON form (raised inside handlers)."""

    def __init__(self, status: int, reason: str, message: str, domain: str = "global",
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.domain = status, reason, message, domain
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.status, "message": self.message,
                               "errors": [{"message": self.message, "domain": self.domain,
                                           "reason": self.reason}]}
        err.update(self.extra)
        return {"error": err}


def _invalid(field_: str, value: Any, why: str) -> GceError:
    return GceError(400, "invalid", f"Invalid value for field '{field_}': '{value}'. {why}")


class GceFake(LoopbackFake):
    """State, knobs and the HTTP server. ``start()`` it, use ``url``, ``stop()`` it."""

    thread_name = "gce-fake"

    def __init__(self, *, project: str = PROJECT, project_number: str = PROJECT_NUMBER,
                 machine_types: Iterable[MachineTypeRow] | None = None,
                 quotas: dict[str, float] | None = None, pending_polls: int = 1,
                 default_network: bool = True) -> None:
        self.project = project
        self.project_number = project_number
        self._lock = threading.RLock()
        self._init_machine_types = list(machine_types) if machine_types is not None else None
        self._init_quotas = dict(quotas) if quotas is not None else None
        self._init_pending_polls = pending_polls
        self._init_default_network = default_network
        self.reset()

    # -- lifecycle -------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the state of a new fake (knobs cleared); the server keeps running."""
        with self._lock:
            rows = (self._init_machine_types if self._init_machine_types is not None
                    else load_machine_types())
            self.pending_polls = self._init_pending_polls
            self.machine_types: dict[tuple[str, str], MachineTypeRow] = {}
            self.zones: dict[str, str] = {}  # zone -> region
            for row in rows:
                for z in row.zones:
                    self.machine_types[(z, row.name)] = row
                    self.zones[z] = region_of(z)
            self.regions: dict[str, list[str]] = {}
            for z in sorted(self.zones):
                self.regions.setdefault(self.zones[z], []).append(z)
            base = self._init_quotas if self._init_quotas is not None else DEFAULT_QUOTAS
            self.quota_limits: dict[str, dict[str, float]] = {
                r: dict(base) for r in self.regions}
            self.instances: dict[tuple[str, str], dict[str, Any]] = {}
            self.networks: dict[str, dict[str, Any]] = {}
            self.subnetworks: dict[tuple[str, str], dict[str, Any]] = {}
            self.firewalls: dict[str, dict[str, Any]] = {}
            self.routers: dict[tuple[str, str], dict[str, Any]] = {}
            self.addresses: dict[tuple[str, str], dict[str, Any]] = {}
            self.ops: dict[tuple[str, str], _Op] = {}  # (scope path, op name)
            self.request_ids: dict[str, tuple[str, str]] = {}
            self.guest_attributes: dict[tuple[str, str], dict[str, tuple[str, int]]] = {}
            self.guest_reads: dict[tuple[str, str], int] = {}
            self.serial: dict[tuple[str, str, int], _Serial] = {}
            self.requests: list[Request] = []
            self.faults: list[Fault] = []
            self.crashes: list[str] = []
            self.stockouts: set[tuple[str, str | None]] = set()
            self.capacity: dict[str, int] = {}
            self.seat_failures: dict[int, str] = {}
            self.seats_made = 0
            self.nested_disabled_by_org_policy = False
            self._ids = itertools.count(1000000000000000001)
            self._ips = itertools.count(2)
            if self._init_default_network:
                self._make_default_network()

    def _handler(self) -> type[JsonHandler]:
        return type("Handler", (_Handler,), {"gce": self})

    # -- fault knobs -----------------------------------------------------------------------

    def stockout(self, zone: str, machine_type: str | None = None) -> None:
        """Inserts in ``zone`` (of ``machine_type`` or any type) end ZONE_RESOURCE_POOL_EXHAUSTED;
        bulkInsert skips the zone."""
        with self._lock:
            self.stockouts.add((zone, machine_type))

    def zone_capacity(self, zone: str, n: int) -> None:
        """Only ``n`` more instances can be made in ``zone``; then it is stocked out."""
        with self._lock:
            self.capacity[zone] = n

    def set_quota(self, region: str, metric: str, limit: float) -> None:
        with self._lock:
            self.quota_limits.setdefault(region, {})[metric] = float(limit)

    def fail_at(self, seat: int, code: str = "ZONE_RESOURCE_POOL_EXHAUSTED") -> None:
        """The ``seat``-th instance made from now on (1-based, inserts and bulk VMs alike)
        fails with operation error ``code``."""
        with self._lock:
            self.seat_failures[self.seats_made + seat] = code

    def disable_nested_by_org_policy(self, on: bool = True) -> None:
        """Enforce ``constraints/compute.disableNestedVirtualization`` for the project."""
        with self._lock:
            self.nested_disabled_by_org_policy = on

    def fault(self, method: str = "*", path_regex: str = ".*", status: int = 503, *,
              reason: str = "backendError", message: str = "injected fault",
              times: int | None = 1, every: int = 1, domain: str = "global") -> Fault:
        """Answer matching requests with an HTTP error: ``times`` of them (None: all), only
        every ``every``-th match."""
        f = Fault(method.upper(), re.compile(path_regex), status, message, times, every,
                  reason=reason, domain=domain)
        with self._lock:
            self.faults.append(f)
        return f

    def rate_limit(self, every: int = 3, status: int = 429, *, method: str = "*",
                   path_regex: str = ".*", times: int | None = None) -> Fault:
        """Every ``every``-th matching call is refused as rate-limited (GCE has answered both
        403 and 429 for this; the message is its per-minute quota text)."""
        msg = ("Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of "
               "service 'compute.googleapis.com' for consumer "
               f"'project_number:{self.project_number}'.")
        return self.fault(method, path_regex, status, reason="rateLimitExceeded", message=msg,
                          times=times, every=every, domain="usageLimits")

    # -- guest-side knobs ------------------------------------------------------------------

    def set_guest_attribute(self, instance: str, path: str, value: str, *,
                            zone: str | None = None, after_reads: int = 0) -> None:
        """What the guest's PUT to the metadata server would store (``path`` is "ns/key").
        The API shows it once the instance runs with guest attributes enabled, and only after
        ``after_reads`` getGuestAttributes calls on that instance."""
        if path.count("/") != 1:
            raise ValueError("guest attribute path is NAMESPACE/KEY")
        with self._lock:
            key = self._find_instance(instance, zone)
            reads = self.guest_reads.get(key, 0)
            self.guest_attributes.setdefault(key, {})[path] = (value, reads + after_reads)

    def append_serial_output(self, instance: str, text: str, *, port: int = 1,
                             zone: str | None = None) -> None:
        with self._lock:
            key = self._find_instance(instance, zone)
            buf = self.serial.setdefault((*key, port), _Serial())
            buf.data += text.encode()
            if len(buf.data) > SERIAL_BUFFER:
                cut = len(buf.data) - SERIAL_BUFFER
                del buf.data[:cut]
                buf.dropped += cut

    def settle(self) -> None:
        """Finish every open operation now (as if each had been polled to DONE)."""
        with self._lock:
            for op in list(self.ops.values()):
                while op.body["status"] != "DONE":
                    self._advance(op)

    def expire_due(self, now: datetime) -> list[str]:
        """Apply ``scheduling`` TTLs at ``now``: instances whose terminationTime or
        creation + maxRunDuration has passed are deleted (instanceTerminationAction DELETE)
        or stopped (STOP -> TERMINATED). Returns the affected names."""
        out = []
        with self._lock:
            for key, inst in list(self.instances.items()):
                sched = inst.get("scheduling") or {}
                due: datetime | None = None
                if sched.get("terminationTime"):
                    due = _parse_time(sched["terminationTime"])
                elif sched.get("maxRunDuration"):
                    d = sched["maxRunDuration"]
                    due = _parse_time(inst["creationTimestamp"]) + timedelta(
                        seconds=int(d.get("seconds", 0)), microseconds=int(d.get("nanos", 0))
                        // 1000)
                if due is None or due > now or inst["status"] not in ("RUNNING", "STAGING"):
                    continue
                if sched.get("instanceTerminationAction") == "DELETE":
                    self._drop_instance(key)
                else:
                    inst["status"] = "TERMINATED"
                out.append(key[1])
        return out

    # -- assertions helpers ----------------------------------------------------------------

    def calls(self, route: str | None = None, method: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if (route is None or r.route == route)
                    and (method is None or r.method == method)]

    def sent_instances(self) -> list[dict[str, Any]]:
        """Instance bodies as the client sent them in instances.insert, in order."""
        return [r.body for r in self.calls("instances.insert")]

    def instance(self, name: str, zone: str | None = None) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self.instances[self._find_instance(name, zone)])

    def usage(self, region: str) -> dict[str, float]:
        with self._lock:
            return self._usage(region)

    # -- internals: state ------------------------------------------------------------------

    def link(self, *parts: str) -> str:
        return "/".join((LINK_BASE, "projects", self.project, *parts))

    def _now(self) -> str:
        return datetime.now(timezone.utc).isoformat(timespec="milliseconds")

    def _new_id(self) -> str:
        return str(next(self._ids))

    def _find_instance(self, name: str, zone: str | None) -> tuple[str, str]:
        keys = [k for k in self.instances if k[1] == name and (zone is None or k[0] == zone)]
        if len(keys) != 1:
            raise KeyError(f"{len(keys)} instances named {name!r} (zone {zone})")
        return keys[0]

    def _make_default_network(self) -> None:
        self.networks["default"] = self._network_view({"name": "default",
                                                       "autoCreateSubnetworks": True})
        for name, port in (("default-allow-ssh", "22"), ("default-allow-rdp", "3389")):
            self.firewalls[name] = self._firewall_view({
                "name": name, "network": self.link("global", "networks", "default"),
                "direction": "INGRESS", "priority": 65534, "sourceRanges": ["0.0.0.0/0"],
                "allowed": [{"IPProtocol": "tcp", "ports": [port]}]})

    def _network_view(self, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "kind": "compute#network", "id": self._new_id(),
                "creationTimestamp": self._now(),
                "subnetworks": list(body.get("subnetworks") or []),
                "selfLink": self.link("global", "networks", body["name"])}

    def _firewall_view(self, body: dict[str, Any]) -> dict[str, Any]:
        out = {"direction": "INGRESS", "priority": 1000, **body}  # proto-documented defaults
        out.update({"kind": "compute#firewall", "id": self._new_id(),
                    "creationTimestamp": self._now(),
                    "selfLink": self.link("global", "firewalls", body["name"])})
        return out

    def _usage(self, region: str) -> dict[str, float]:
        use: dict[str, float] = {m: 0.0 for m in self.quota_limits.get(region, {})}
        for (zone, _), inst in self.instances.items():
            if self.zones.get(zone) != region or inst["status"] in ("TERMINATED", "STOPPED"):
                continue
            for metric, n in self._needs(region, inst).items():
                use[metric] = use.get(metric, 0.0) + n
        return use

    def _needs(self, region: str, inst: dict[str, Any]) -> dict[str, float]:
        """Quota an instance takes: its vCPUs against its family's metric, and one INSTANCES."""
        mt = inst["machineType"].rsplit("/", 1)[-1]
        row = self.machine_types.get((inst["zone"].rsplit("/", 1)[-1], mt))
        cpus = float(row.vcpus if row else 0)
        sched = inst.get("scheduling") or {}
        spot = sched.get("provisioningModel") == "SPOT" or sched.get("preemptible") is True
        metric = CPU_METRIC.get(family_of(mt), "CPUS")
        if spot and "PREEMPTIBLE_CPUS" in self.quota_limits.get(region, {}):
            metric = "PREEMPTIBLE_CPUS"
        return {metric: cpus, "INSTANCES": 1.0}

    def _quota_error(self, region: str, metric: str) -> dict[str, Any]:
        limit = self.quota_limits[region][metric]
        return {"errors": [{
            "code": "QUOTA_EXCEEDED",
            "message": f"Quota '{metric}' exceeded.  Limit: {limit:.1f} in region {region}.",
            "errorDetails": [{"quotaInfo": {
                "metricName": f"compute.googleapis.com/{metric.lower()}",
                "limitName": f"{metric.replace('_', '-')}-per-project-region",
                "dimensions": {"region": region}, "limit": limit}}]}]}

    def _stockout_error(self, zone: str) -> dict[str, Any]:
        return {"errors": [{"code": "ZONE_RESOURCE_POOL_EXHAUSTED", "message": (
            f"The zone 'projects/{self.project}/zones/{zone}' does not have enough resources "
            "available to fulfill the request.  Try a different zone, or try again later.")}]}

    def _seat_error(self, code: str, zone: str, name: str) -> dict[str, Any]:
        if code == "ZONE_RESOURCE_POOL_EXHAUSTED":
            return self._stockout_error(zone)
        return {"errors": [{"code": code, "message": f"injected failure creating {name}"}]}

    def _room(self, zone: str, machine_type: str) -> int | None:
        """How many more instances ``zone`` can make (None: no limit)."""
        if (zone, None) in self.stockouts or (zone, machine_type) in self.stockouts:
            return 0
        return self.capacity.get(zone)

    def _take_seat(self) -> str | None:
        self.seats_made += 1
        return self.seat_failures.pop(self.seats_made, None)

    def _drop_instance(self, key: tuple[str, str]) -> None:
        self.instances.pop(key, None)
        self.guest_attributes.pop(key, None)
        self.guest_reads.pop(key, None)
        for k in [k for k in self.serial if k[:2] == key]:
            self.serial.pop(k)

    # -- internals: operations -------------------------------------------------------------

    def _new_op(self, scope: tuple[str, ...], op_type: str, target: str, target_id: str | None,
                finish: Callable[[], dict[str, Any] | None],
                running: Callable[[], dict[str, Any] | None] | None = None) -> dict[str, Any]:
        name = f"operation-{int(time.time() * 1000)}-{uuid.uuid4().hex[:12]}"
        body: dict[str, Any] = {
            "kind": "compute#operation", "id": self._new_id(), "name": name,
            "operationType": op_type, "targetLink": target, "status": "PENDING",
            "user": "anonymous@nestcloud.test", "progress": 0, "insertTime": self._now(),
            "selfLink": self.link(*scope, "operations", name)}
        if target_id:
            body["targetId"] = target_id
        if scope[0] == "zones":
            body["zone"] = self.link(*scope)
        elif scope[0] == "regions":
            body["region"] = self.link(*scope)
        self.ops[("/".join(scope), name)] = _Op(body, self.pending_polls, finish, running)
        return copy.deepcopy(body)

    def _advance(self, op: _Op) -> None:
        b = op.body
        if b["status"] == "DONE":
            return
        if op.remaining > 0:
            op.remaining -= 1
            if b["status"] == "PENDING":
                b["status"], b["startTime"], b["progress"] = "RUNNING", self._now(), 0
            if op.running:
                b.update(op.running() or {})
            return
        extra = op.finish() or {}
        b.update(extra)
        b.setdefault("startTime", self._now())
        b["status"], b["progress"], b["endTime"] = "DONE", 100, self._now()


def _parse_time(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def _items(meta: dict[str, Any] | None) -> dict[str, str]:
    return {i.get("key", ""): i.get("value", "") for i in (meta or {}).get("items") or []}


class _Handler(JsonHandler):
    gce: GceFake
    json_content_type = "application/json; charset=UTF-8"

    # -- plumbing --------------------------------------------------------------------------

    def _dispatch(self) -> None:
        gce = self.gce
        req = self._read_request(Request)
        with gce._lock:
            gce.requests.append(req)
            status, answer = self._answer(req)
            req.status, req.response = status, copy.deepcopy(answer)
        self._send(status, answer)

    def _answer(self, req: Request) -> tuple[int, Any]:
        gce = self.gce
        try:
            route, handler, args = self._match(req)
            req.route = route
            f = http_fake.firing(gce.faults, req.method, req.path)
            if f is not None:
                err = GceError(f.status, f.reason, f.message, f.domain,
                               {"status": "RESOURCE_EXHAUSTED"} if f.status == 429 else None)
                return err.status, err.body()
            rid = req.query.get("requestId")
            seen = gce.request_ids.get(rid) if rid and req.method in ("POST", "DELETE") else None
            if seen and seen in gce.ops:  # the same write again: the same operation
                return 200, copy.deepcopy(gce.ops[seen].body)
            return 200, handler(req, *args)
        except GceError as e:
            return e.status, e.body()
        except Exception as exc:  # a fake bug: answer 500 and keep it visible
            import traceback
            gce.crashes.append(traceback.format_exc())
            return 500, GceError(500, "backendError", f"fake crashed: {exc!r}").body()

    # -- routing ---------------------------------------------------------------------------

    def _routes(self) -> list[tuple[str, str, str, Callable[..., Any]]]:
        z, r = r"zones/(?P<zone>[^/]+)", r"regions/(?P<region>[^/]+)"
        n = r"(?P<name>[^/]+)"
        return [
            ("GET", "aggregated/instances", "instances.aggregatedList", self._instances_agg),
            ("GET", "aggregated/machineTypes", "machineTypes.aggregatedList",
             self._machine_types_agg),
            ("POST", f"{z}/instances/bulkInsert", "instances.bulkInsert", self._bulk_zonal),
            ("POST", f"{z}/instances", "instances.insert", self._instance_insert),
            ("GET", f"{z}/instances", "instances.list", self._instance_list),
            ("GET", f"{z}/instances/{n}/getGuestAttributes", "instances.getGuestAttributes",
             self._guest_attributes),
            ("GET", f"{z}/instances/{n}/serialPort", "instances.getSerialPortOutput",
             self._serial_port),
            ("GET", f"{z}/instances/{n}", "instances.get", self._instance_get),
            ("DELETE", f"{z}/instances/{n}", "instances.delete", self._instance_delete),
            ("GET", f"{z}/operations/{n}", "zoneOperations.get", self._op_get),
            ("POST", f"{z}/operations/{n}/wait", "zoneOperations.wait", self._op_get),
            ("GET", f"{z}/machineTypes/{n}", "machineTypes.get", self._machine_type_get),
            ("GET", f"{z}/machineTypes", "machineTypes.list", self._machine_type_list),
            ("GET", z, "zones.get", self._zone_get),
            ("GET", "zones", "zones.list", self._zone_list),
            ("POST", f"{r}/instances/bulkInsert", "regionInstances.bulkInsert",
             self._bulk_regional),
            ("GET", f"{r}/operations/{n}", "regionOperations.get", self._op_get),
            ("POST", f"{r}/operations/{n}/wait", "regionOperations.wait", self._op_get),
            ("GET", r, "regions.get", self._region_get),
            ("GET", "regions", "regions.list", self._region_list),
            ("GET", f"global/operations/{n}", "globalOperations.get", self._op_get),
            ("POST", f"global/operations/{n}/wait", "globalOperations.wait", self._op_get),
            *self._crud("networks", "global/networks", self._network_insert,
                        self.gce.networks, None, self._network_delete),
            *self._crud("firewalls", "global/firewalls", self._firewall_insert,
                        self.gce.firewalls, None, None),
            *self._crud("subnetworks", f"{r}/subnetworks", self._subnetwork_insert,
                        self.gce.subnetworks, "region", self._subnetwork_delete),
            *self._crud("routers", f"{r}/routers", self._router_insert,
                        self.gce.routers, "region", None),
            *self._crud("addresses", f"{r}/addresses", self._address_insert,
                        self.gce.addresses, "region", self._address_delete),
        ]

    def _crud(self, kind: str, base: str, insert: Callable[..., Any], store: dict[Any, Any],
              scope: str | None, check_delete: Callable[..., None] | None
              ) -> list[tuple[str, str, str, Callable[..., Any]]]:
        gce = self.gce

        def key(scope_v: str | None, name: str) -> Any:
            return (scope_v, name) if scope else name

        def where(scope_v: str | None) -> tuple[str, ...]:
            return ("regions", scope_v) if scope and scope_v else ("global",)

        def get(req: Request, name: str, scope_v: str | None = None) -> Any:
            self._check_scope(scope_v)
            res = store.get(key(scope_v, name))
            if res is None:
                raise self._not_found(*where(scope_v), kind, name)
            return self._view(kind, res)

        def lst(req: Request, scope_v: str | None = None) -> Any:
            self._check_scope(scope_v)
            items = [self._view(kind, v) for k, v in sorted(store.items(), key=lambda kv:
                     str(kv[0])) if not scope or k[0] == scope_v]
            return self._page(req, items, f"compute#{_singular(kind)}List",
                              self.gce.link(*where(scope_v), kind))

        def ins(req: Request, scope_v: str | None = None) -> Any:
            self._check_scope(scope_v)
            body = self._body(req)
            name = self._check_name(body)
            if key(scope_v, name) in store:
                raise GceError(409, "alreadyExists", f"The resource 'projects/{gce.project}/"
                               f"{'/'.join(where(scope_v))}/{kind}/{name}' already exists")
            res = insert(body, scope_v) if scope else insert(body)
            store[key(scope_v, name)] = res  # visible (and its name taken) at once
            return self._write(req, where(scope_v), "insert", res["selfLink"], res["id"],
                               lambda: None)

        def dele(req: Request, name: str, scope_v: str | None = None) -> Any:
            self._check_scope(scope_v)
            res = store.get(key(scope_v, name))
            if res is None:
                raise self._not_found(*where(scope_v), kind, name)
            if check_delete:
                check_delete(res)
            return self._write(req, where(scope_v), "delete", res["selfLink"], res["id"],
                               lambda: store.pop(key(scope_v, name), None) and None)

        def adapt(f: Callable[..., Any]) -> Callable[..., Any]:
            def call(req: Request, **kw: str) -> Any:
                if scope:
                    kw["scope_v"] = kw.pop(scope)
                return f(req, **kw)
            return call

        n = r"(?P<name>[^/]+)"
        return [("POST", base, f"{kind}.insert", adapt(ins)),
                ("GET", base, f"{kind}.list", adapt(lst)),
                ("GET", f"{base}/{n}", f"{kind}.get", adapt(get)),
                ("DELETE", f"{base}/{n}", f"{kind}.delete", adapt(dele))]

    def _match(self, req: Request) -> tuple[str, Callable[..., Any], tuple[Any, ...]]:
        gce = self.gce
        m = re.match(r"^/compute/v1/projects/([^/]+)/(.*)$", req.path)
        if not m:
            raise GceError(404, "notFound", f"fake GCE has no route for {req.method} {req.path}")
        if m.group(1) not in (gce.project, gce.project_number):
            raise GceError(404, "notFound", f"The resource 'projects/{m.group(1)}' was not found")
        rest = m.group(2)
        for method, pattern, route, handler in self._routes():
            mm = re.fullmatch(pattern, rest)
            if mm and method == req.method:
                return route, (lambda r, h=handler, kw=mm.groupdict(): h(r, **kw)), ()
        raise GceError(404, "notFound", f"fake GCE has no route for {req.method} {req.path}")

    # -- shared pieces ---------------------------------------------------------------------

    def _body(self, req: Request) -> dict[str, Any]:
        if not isinstance(req.body, dict):
            raise GceError(400, "parseError", "This API does not support parsing form-encoded "
                           "input." if req.body else "Required field 'resource' not specified")
        return copy.deepcopy(req.body)

    def _check_name(self, body: dict[str, Any], field_: str = "resource.name") -> str:
        name = body.get("name")
        if not name:
            raise GceError(400, "required", f"Required field '{field_}' not specified")
        if not NAME_RE.fullmatch(name):
            raise _invalid(field_, name, "Must be a match of regex "
                           "'(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'")
        return str(name)

    def _check_scope(self, region: str | None = None, zone: str | None = None) -> None:
        gce = self.gce
        if region is not None and region not in gce.regions:
            raise GceError(404, "notFound", f"The resource 'projects/{gce.project}/regions/"
                           f"{region}' was not found")
        if zone is not None and zone not in gce.zones:
            raise GceError(404, "notFound", f"The resource 'projects/{gce.project}/zones/"
                           f"{zone}' was not found")

    def _not_found(self, *parts: str) -> GceError:
        return GceError(404, "notFound", f"The resource 'projects/{self.gce.project}/"
                        f"{'/'.join(parts)}' was not found")

    def _ref(self, value: Any, coll: str, field_: str) -> re.Match[str]:
        """A full or partial resource URL of collection ``coll`` in this project."""
        m = _REF_RE.match(str(value or ""))
        if not m or m.group("coll") != coll or (
                m.group("project") not in (None, self.gce.project)):
            raise _invalid(field_, value, "The URL is malformed.")
        return m

    def _write(self, req: Request, scope: tuple[str, ...], op_type: str, target: str,
               target_id: str | None, finish: Callable[[], dict[str, Any] | None],
               running: Callable[[], dict[str, Any] | None] | None = None) -> dict[str, Any]:
        gce = self.gce
        rid = req.query.get("requestId")
        op = gce._new_op(scope, op_type, target, target_id, finish, running)
        if rid:
            gce.request_ids[rid] = ("/".join(scope), op["name"])
        return op

    def _page(self, req: Request, items: list[Any], kind: str, link: str) -> dict[str, Any]:
        items = self._filter(req, items)
        start, size = self._paging(req)
        out: dict[str, Any] = {"kind": kind, "id": link.split("/compute/v1/", 1)[-1],
                               "items": items[start:start + size], "selfLink": link}
        if start + size < len(items):
            out["nextPageToken"] = str(start + size)
        return out

    def _paging(self, req: Request) -> tuple[int, int]:
        try:
            start = int(req.query.get("pageToken") or 0)
            size = int(req.query.get("maxResults") or PAGE_SIZE)
        except ValueError as exc:
            raise GceError(400, "invalid", f"Invalid page token or maxResults: {exc}") from exc
        return start, max(1, min(size, PAGE_SIZE))

    def _filter(self, req: Request, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        expr = (req.query.get("filter") or "").strip()
        if not expr:
            return items
        terms = _parse_filter(expr)
        return [i for i in items if all(t(i) for t in terms)]

    def _view(self, kind: str, res: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(res)
        if kind == "addresses":
            users = self._address_users(res)
            out["status"] = "IN_USE" if users else "RESERVED"
            if users:
                out["users"] = users
        return out

    # -- instances -------------------------------------------------------------------------

    def _instance(self, zone: str, name: str) -> dict[str, Any]:
        """The stored instance, or GCE's 404 (for the zone first, then the instance)."""
        self._check_scope(zone=zone)
        inst = self.gce.instances.get((zone, name))
        if inst is None:
            raise self._not_found("zones", zone, "instances", name)
        return inst

    def _instance_view(self, key: tuple[str, str]) -> dict[str, Any]:
        return copy.deepcopy(self.gce.instances[key])

    def _instance_get(self, req: Request, zone: str, name: str) -> Any:
        self._instance(zone, name)
        return self._instance_view((zone, name))

    def _instance_list(self, req: Request, zone: str) -> Any:
        self._check_scope(zone=zone)
        items = [self._instance_view(k) for k in sorted(self.gce.instances) if k[0] == zone]
        return self._page(req, items, "compute#instanceList",
                          self.gce.link("zones", zone, "instances"))

    def _instances_agg(self, req: Request) -> Any:
        gce = self.gce
        flat = [(k[0], self._instance_view(k)) for k in sorted(gce.instances)]
        keep = {id(v) for v in self._filter(req, [v for _, v in flat])}
        flat = [(z, v) for z, v in flat if id(v) in keep]
        return self._aggregate(req, flat, "instances", "compute#instanceAggregatedList",
                               "aggregated/instances")

    def _aggregate(self, req: Request, flat: list[tuple[str, Any]], key: str, kind: str,
                   what: str) -> dict[str, Any]:
        start, size = self._paging(req)
        page = flat[start:start + size]
        items: dict[str, Any] = {}
        for zone in sorted(self.gce.zones):
            got = [v for z, v in page if z == zone]
            scope = f"zones/{zone}"
            items[scope] = {key: got} if got else {"warning": {
                "code": "NO_RESULTS_ON_PAGE",
                "message": f"There are no results for scope '{scope}' on this page.",
                "data": [{"key": "scope", "value": scope}]}}
        out: dict[str, Any] = {"kind": kind, "id": f"projects/{self.gce.project}/{what}",
                               "items": items, "selfLink": self.gce.link(what)}
        if start + size < len(flat):
            out["nextPageToken"] = str(start + size)
        return out

    def _instance_insert(self, req: Request, zone: str) -> Any:
        gce = self.gce
        self._check_scope(zone=zone)
        body = self._body(req)
        name = self._check_name(body)
        if (zone, name) in gce.instances:
            raise GceError(409, "alreadyExists", f"The resource 'projects/{gce.project}/zones/"
                           f"{zone}/instances/{name}' already exists")
        mt = self._ref(body.get("machineType"), "machineTypes", "resource.machineType")
        if mt.group("zone") != zone:
            raise _invalid("resource.machineType", body.get("machineType"),
                           f"Machine type must be in zone '{zone}'.")
        inst = self._build_instance(zone, name, mt.group("name"), body, "resource")
        region = gce.zones[zone]
        key = (zone, name)
        need = gce._needs(region, inst)
        usage = gce._usage(region)
        for metric, n in need.items():
            limit = gce.quota_limits.get(region, {}).get(metric)
            if limit is not None and usage.get(metric, 0.0) + n > limit:
                err = gce._quota_error(region, metric)
                return self._write(req, ("zones", zone), "insert", inst["selfLink"], inst["id"],
                                   lambda e=err: {"error": e, "httpErrorStatusCode": 403,
                                                  "httpErrorMessage": "FORBIDDEN"})
        failure: dict[str, Any] | None = None
        room = gce._room(zone, mt.group("name"))
        if room is not None and room <= 0:
            failure = gce._stockout_error(zone)
        else:
            if room is not None:
                gce.capacity[zone] = room - 1
            code = gce._take_seat()
            if code:
                failure = gce._seat_error(code, zone, name)
        gce.instances[key] = inst

        def finish() -> dict[str, Any] | None:
            if failure:
                gce._drop_instance(key)
                return {"error": failure}
            if key in gce.instances:
                gce.instances[key]["status"] = "RUNNING"
                gce.instances[key]["lastStartTimestamp"] = gce._now()
            return None

        def running() -> None:
            if key in gce.instances and not failure:
                gce.instances[key]["status"] = "STAGING"
        return self._write(req, ("zones", zone), "insert", inst["selfLink"], inst["id"], finish,
                           running)

    def _build_instance(self, zone: str, name: str, machine_type: str, body: dict[str, Any],
                        where: str) -> dict[str, Any]:
        """Validate an Instance/InstanceProperties body and make the stored instance."""
        gce = self.gce
        region = gce.zones[zone]
        if (zone, machine_type) not in gce.machine_types:
            raise _invalid(f"{where}.machineType", machine_type, f"Machine type with name "
                           f"'{machine_type}' does not exist in zone '{zone}'.")
        amf = body.get("advancedMachineFeatures") or {}
        if amf.get("enableNestedVirtualization") and gce.nested_disabled_by_org_policy:
            raise GceError(412, "conditionNotMet", "Constraint "
                           "constraints/compute.disableNestedVirtualization violated for project "
                           f"{gce.project_number}.")
        for k, v in (body.get("labels") or {}).items():
            if not LABEL_KEY_RE.fullmatch(k) or not LABEL_VALUE_RE.fullmatch(str(v)):
                raise _invalid(f"{where}.labels", f"{k}={v}", "Label keys must start with a "
                               "lowercase letter and contain only lowercase letters, digits, "
                               "'_' and '-' (1-63 characters); values only lowercase letters, "
                               "digits, '_' and '-' (0-63 characters).")
        meta = body.get("metadata") or {}
        total = 0
        for item in meta.get("items") or []:
            size = len(str(item.get("value", "")).encode())
            total += size + len(str(item.get("key", "")).encode())
            if size > METADATA_VALUE_MAX:
                raise _invalid(f"{where}.metadata", item.get("key"), "Metadata value is too "
                               f"large: {size} bytes, the limit is {METADATA_VALUE_MAX}.")
        if total > METADATA_TOTAL_MAX:
            raise _invalid(f"{where}.metadata", "", f"Metadata is too large: {total} bytes, the "
                           f"limit is {METADATA_TOTAL_MAX}.")
        disks = body.get("disks") or []
        if not any(d.get("boot") for d in disks):
            raise _invalid(f"{where}.disks", "", "A boot disk is required.")
        nics = body.get("networkInterfaces") or []
        if not nics:
            raise _invalid(f"{where}.networkInterfaces", "", "At least one network interface "
                           "is required.")
        inst = copy.deepcopy(body)
        inst.update({
            "kind": "compute#instance", "id": gce._new_id(), "name": name,
            "zone": gce.link("zones", zone),
            "machineType": gce.link("zones", zone, "machineTypes", machine_type),
            "status": "PROVISIONING", "creationTimestamp": gce._now(),
            "selfLink": gce.link("zones", zone, "instances", name),
            "labelFingerprint": uuid.uuid4().hex[:12], "fingerprint": uuid.uuid4().hex[:12]})
        if body.get("minCpuPlatform"):
            inst["cpuPlatform"] = body["minCpuPlatform"]
        if "metadata" in inst:
            inst["metadata"] = {**inst["metadata"], "kind": "compute#metadata",
                                "fingerprint": uuid.uuid4().hex[:12]}
        for i, nic in enumerate(inst["networkInterfaces"]):
            f = f"{where}.networkInterfaces[{i}]"
            net_name: str
            if nic.get("subnetwork"):
                sm = self._ref(nic["subnetwork"], "subnetworks", f"{f}.subnetwork")
                sub = gce.subnetworks.get((sm.group("region") or "", sm.group("name")))
                if sub is None:
                    raise _invalid(f"{f}.subnetwork", nic["subnetwork"],
                                   "The referenced subnetwork resource cannot be found.")
                if sm.group("region") != region:
                    raise _invalid(f"{f}.subnetwork", nic["subnetwork"], "Subnetwork must be "
                                   f"in region '{region}'.")
                net_name = sub["network"].rsplit("/", 1)[-1]
                if nic.get("network") and self._ref(nic["network"], "networks",
                                                    f"{f}.network").group("name") != net_name:
                    raise _invalid(f"{f}.network", nic["network"], "The subnetwork does not "
                                   "belong to this network.")
                nic["subnetwork"] = sub["selfLink"]
            else:
                nm = self._ref(nic.get("network") or "global/networks/default", "networks",
                               f"{f}.network")
                net_name = nm.group("name")
                net = gce.networks.get(net_name)
                if net is None:
                    raise _invalid(f"{f}.network", nic.get("network"),
                                   "The referenced network resource cannot be found.")
                if not net.get("autoCreateSubnetworks"):
                    raise _invalid(f"{f}", "", "Subnetwork should be specified for custom "
                                   "subnetmode network")
            if net_name not in gce.networks:
                raise _invalid(f"{f}.network", net_name,
                               "The referenced network resource cannot be found.")
            nic["network"] = gce.networks[net_name]["selfLink"]
            nic.setdefault("name", f"nic{i}")
            nic["kind"] = "compute#networkInterface"
            nic["networkIP"] = f"10.128.0.{next(gce._ips)}"
            for ac in nic.get("accessConfigs") or []:
                if ac.get("natIP"):
                    if not any(a["address"] == ac["natIP"] and a["region"].endswith(
                            f"/{region}") for a in gce.addresses.values()):
                        raise _invalid(f"{f}.accessConfigs[0].natIP", ac["natIP"],
                                       "The specified external IP address was not found in "
                                       f"region '{region}'.")
                else:
                    ac["natIP"] = f"34.1.0.{next(gce._ips)}"
                ac.setdefault("type", "ONE_TO_ONE_NAT")
                ac.setdefault("name", "External NAT")
                ac["kind"] = "compute#accessConfig"
        for i, d in enumerate(inst["disks"]):
            d.setdefault("deviceName", name if d.get("boot") else f"persistent-disk-{i}")
            d.setdefault("source", gce.link("zones", zone, "disks",
                                            (d.get("initializeParams") or {}).get("diskName")
                                            or (name if d.get("boot") else f"{name}-{i}")))
            d["index"] = i
            d["kind"] = "compute#attachedDisk"
        return inst

    def _instance_delete(self, req: Request, zone: str, name: str) -> Any:
        gce = self.gce
        key = (zone, name)
        inst = self._instance(zone, name)
        inst["status"] = "STOPPING"
        return self._write(req, ("zones", zone), "delete", inst["selfLink"], inst["id"],
                           lambda: gce._drop_instance(key))

    # -- bulkInsert ------------------------------------------------------------------------

    def _bulk_zonal(self, req: Request, zone: str) -> Any:
        self._check_scope(zone=zone)
        return self._bulk(req, ("zones", zone), [zone])

    def _bulk_regional(self, req: Request, region: str) -> Any:
        self._check_scope(region=region)
        return self._bulk(req, ("regions", region), list(self.gce.regions[region]))

    def _bulk(self, req: Request, scope: tuple[str, ...], zones: list[str]) -> Any:
        gce = self.gce
        body = self._body(req)
        count = int(body.get("count") or 0)
        min_count = int(body.get("minCount") or count)
        if count < 1:
            raise GceError(400, "required", "Required field 'resource.count' not specified")
        if not 1 <= min_count <= count:
            raise _invalid("resource.minCount", min_count, "minCount must be between 1 and "
                           "count.")
        props = body.get("instanceProperties")
        if not isinstance(props, dict):
            raise GceError(400, "required",
                           "Required field 'resource.instanceProperties' not specified")
        mt = str(props.get("machineType") or "")
        if "/" in mt:
            raise _invalid("resource.instanceProperties.machineType", mt, "In bulkInsert the "
                           "machine type is a name, not a URL.")
        policy = body.get("locationPolicy") or {}
        denied = {k.rsplit("/", 1)[-1] for k, v in (policy.get("locations") or {}).items()
                  if (v or {}).get("preference") == "DENY"}
        zones = [z for z in zones if z not in denied and (z, mt) in gce.machine_types]
        if not zones:
            raise _invalid("resource.instanceProperties.machineType", mt, "Machine type is not "
                           f"available in any allowed zone of {'/'.join(scope)}.")
        names = self._bulk_names(body, zones, count)
        # Validate the properties once, as they would be for every VM.
        probe = self._build_instance(zones[0], names[0], mt, props,
                                     "resource.instanceProperties")
        region = gce.zones[zones[0]]
        usage = gce._usage(region)
        quota_room = count
        binding_metric = None
        for metric, n in gce._needs(region, probe).items():
            limit = gce.quota_limits.get(region, {}).get(metric)
            if limit is None or n <= 0:
                continue
            fits = int((limit - usage.get(metric, 0.0)) // n)
            if fits < quota_room:
                quota_room, binding_metric = max(fits, 0), metric
        rooms = {z: gce._room(z, mt) for z in zones}
        single = policy.get("targetShape") == "ANY_SINGLE_ZONE"
        target = min(count, quota_room)
        plan: list[str] = []  # zone of each VM to make
        if single:
            for z in zones:
                cap = rooms[z]
                n = target if cap is None else min(target, cap)
                if n >= min_count:
                    plan = [z] * n
                    break
        else:
            left = {z: rooms[z] for z in zones}
            while len(plan) < target:
                progressed = False
                for z in zones:
                    if len(plan) >= target:
                        break
                    if left[z] is None or left[z] > 0:  # type: ignore[operator]
                        plan.append(z)
                        if left[z] is not None:
                            left[z] -= 1  # type: ignore[operator]
                        progressed = True
                if not progressed:
                    break
        per_zone: dict[str, dict[str, int]] = {}
        if len(plan) < min_count:
            # Found up front: nothing is made.
            if quota_room < min_count and binding_metric:
                error = gce._quota_error(region, binding_metric)
                extra = {"httpErrorStatusCode": 403, "httpErrorMessage": "FORBIDDEN"}
            else:
                error = gce._stockout_error(zones[0] if len(zones) == 1 else
                                            next((z for z in zones if rooms[z] == 0), zones[0]))
                extra = {}
            return self._write(req, scope, "bulkInsert", gce.link(*scope), None,
                               lambda: {"error": error, **extra})
        made: list[tuple[str, str]] = []
        failed: list[tuple[str, str, str]] = []  # zone, name, code
        for name, z in zip(names, plan):
            if rooms[z] is not None:
                gce.capacity[z] = gce._room(z, mt) - 1  # type: ignore[operator]
            code = gce._take_seat()
            per = per_zone.setdefault(z, {"targetVmCount": 0, "createdVmCount": 0,
                                          "failedToCreateVmCount": 0, "deletedVmCount": 0})
            per["targetVmCount"] += 1
            if code:
                failed.append((z, name, code))
                per["failedToCreateVmCount"] += 1
                continue
            inst = self._build_instance(z, name, mt, props, "resource.instanceProperties")
            hostname = ((body.get("perInstanceProperties") or {}).get(name) or {}).get(
                "hostname")
            if hostname:
                inst["hostname"] = hostname
            gce.instances[(z, name)] = inst
            made.append((z, name))
            per["createdVmCount"] += 1
        rollback = len(made) < min_count

        def meta(status: str) -> dict[str, Any]:
            return {"instancesBulkInsertOperationMetadata": {"perLocationStatus": {
                f"zones/{z}": {**v, "status": status} for z, v in per_zone.items()}}}

        def finish() -> dict[str, Any]:
            if rollback:
                for key in made:
                    gce._drop_instance(key)
                    per_zone[key[0]]["deletedVmCount"] += 1
                z, n, code = failed[0]
                return {"error": gce._seat_error(code, z, n), **meta("DONE")}
            for key in made:
                if key in gce.instances:
                    gce.instances[key]["status"] = "RUNNING"
            return meta("DONE")

        def running() -> dict[str, Any]:
            for key in made:
                if key in gce.instances:
                    gce.instances[key]["status"] = "STAGING"
            return meta("ROLLING_BACK" if rollback else "CREATING")
        return self._write(req, scope, "bulkInsert", gce.link(*scope), None, finish, running)

    def _bulk_names(self, body: dict[str, Any], zones: list[str], count: int) -> list[str]:
        gce = self.gce
        per = body.get("perInstanceProperties") or {}
        pattern = body.get("namePattern")
        if per:
            names = list(per)
            if len(names) < count and not pattern:
                raise _invalid("resource.count", count, "count is larger than the number of "
                               "names in perInstanceProperties.")
            for n in names:
                if not NAME_RE.fullmatch(n):
                    raise _invalid("resource.perInstanceProperties", n, "Must be a match of "
                                   "regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'")
                if any((z, n) in gce.instances for z in zones):
                    # Modelled: a named VM that exists refuses the whole request.
                    raise GceError(409, "alreadyExists", f"The resource 'projects/{gce.project}"
                                   f"/zones/{next(z for z in zones if (z, n) in gce.instances)}"
                                   f"/instances/{n}' already exists")
            names = names[:count]
        else:
            names = []
        if len(names) < count:
            m = re.fullmatch(r"([^#]*)(#+)([^#]*)", pattern or "")
            if not m or len(m.group(2)) > 18:
                raise _invalid("resource.namePattern", pattern, "The pattern must contain one "
                               "continuous sequence of '#' (at most 18).")
            pre, hashes, post = m.groups()
            rx = re.compile(re.escape(pre) + r"(\d{%d})" % len(hashes) + re.escape(post))
            used = [int(mm.group(1)) for (z, n) in gce.instances if z in zones
                    for mm in [rx.fullmatch(n)] if mm]
            nxt = max(used, default=0) + 1
            while len(names) < count:
                cand = f"{pre}{nxt:0{len(hashes)}d}{post}"
                nxt += 1
                if cand not in names:
                    names.append(cand)
            for n in names:
                if not NAME_RE.fullmatch(n):
                    raise _invalid("resource.namePattern", pattern, f"Generated name '{n}' is "
                                   "not a valid instance name.")
        return names

    # -- guest attributes and serial port --------------------------------------------------

    def _guest_attributes(self, req: Request, zone: str, name: str) -> Any:
        gce = self.gce
        key = (zone, name)
        inst = self._instance(zone, name)
        gce.guest_reads[key] = gce.guest_reads.get(key, 0) + 1
        reads = gce.guest_reads[key]
        enabled = _items(inst.get("metadata")).get("enable-guest-attributes", "").upper() \
            == "TRUE"
        visible = {p: v for p, (v, after) in gce.guest_attributes.get(key, {}).items()
                   if reads > after} if enabled and inst["status"] == "RUNNING" else {}
        link = gce.link("zones", zone, "instances", name, "getGuestAttributes")
        var = req.query.get("variableKey")
        if var:
            if var not in visible:
                raise GceError(404, "notFound", f"The resource 'projects/{gce.project}/zones/"
                               f"{zone}/instances/{name}/guestAttributes/{var}' was not found")
            return {"kind": "compute#guestAttributes", "variableKey": var,
                    "variableValue": visible[var], "selfLink": link}
        qp = req.query.get("queryPath", "")
        found = [p for p in sorted(visible) if p.startswith(qp)]
        if not found:
            raise GceError(404, "notFound", f"The resource 'projects/{gce.project}/zones/{zone}/"
                           f"instances/{name}/guestAttributes/{qp}' was not found")
        return {"kind": "compute#guestAttributes", "queryPath": qp, "selfLink": link,
                "queryValue": {"items": [
                    {"namespace": p.split("/", 1)[0], "key": p.split("/", 1)[1],
                     "value": visible[p]} for p in found]}}

    def _serial_port(self, req: Request, zone: str, name: str) -> Any:
        gce = self.gce
        self._instance(zone, name)
        try:
            port = int(req.query.get("port") or 1)
            start = int(req.query.get("start") or 0)
        except ValueError as exc:
            raise GceError(400, "invalid", f"Invalid port or start: {exc}") from exc
        if not 1 <= port <= 4:
            raise _invalid("port", port, "Must be between 1 and 4.")
        buf = gce.serial.get((zone, name, port), _Serial())
        end = buf.dropped + len(buf.data)
        if start < 0:
            start = max(end + start, buf.dropped)
        start = min(max(start, buf.dropped), end)
        contents = bytes(buf.data[start - buf.dropped:]).decode(errors="replace")
        return {"kind": "compute#serialPortOutput", "contents": contents, "start": str(start),
                "next": str(end), "selfLink": gce.link("zones", zone, "instances", name,
                                                       "serialPort")}

    # -- operations ------------------------------------------------------------------------

    def _op_get(self, req: Request, name: str, zone: str | None = None,
                region: str | None = None) -> Any:
        gce = self.gce
        scope = f"zones/{zone}" if zone else f"regions/{region}" if region else "global"
        op = gce.ops.get((scope, name))
        if op is None:
            raise self._not_found(scope, "operations", name)
        gce._advance(op)
        return copy.deepcopy(op.body)

    # -- regions, zones, machine types -----------------------------------------------------

    def _region_view(self, region: str) -> dict[str, Any]:
        gce = self.gce
        usage = gce._usage(region)
        return {"kind": "compute#region", "id": str(zlib.crc32(region.encode())),
                "name": region, "description": region, "status": "UP",
                "zones": [gce.link("zones", z) for z in gce.regions[region]],
                "quotas": [{"metric": m, "limit": lim, "usage": usage.get(m, 0.0)}
                           for m, lim in sorted(gce.quota_limits.get(region, {}).items())],
                "selfLink": gce.link("regions", region)}

    def _region_get(self, req: Request, region: str) -> Any:
        self._check_scope(region=region)
        return self._region_view(region)

    def _region_list(self, req: Request) -> Any:
        return self._page(req, [self._region_view(r) for r in sorted(self.gce.regions)],
                          "compute#regionList", self.gce.link("regions"))

    def _zone_view(self, zone: str) -> dict[str, Any]:
        gce = self.gce
        return {"kind": "compute#zone", "id": str(zlib.crc32(zone.encode())), "name": zone,
                "description": zone, "status": "UP",
                "region": gce.link("regions", gce.zones[zone]),
                "selfLink": gce.link("zones", zone)}

    def _zone_get(self, req: Request, zone: str) -> Any:
        self._check_scope(zone=zone)
        return self._zone_view(zone)

    def _zone_list(self, req: Request) -> Any:
        return self._page(req, [self._zone_view(z) for z in sorted(self.gce.zones)],
                          "compute#zoneList", self.gce.link("zones"))

    def _machine_type_view(self, zone: str, row: MachineTypeRow) -> dict[str, Any]:
        return {"kind": "compute#machineType", "id": str(zlib.crc32(row.name.encode())),
                "name": row.name, "guestCpus": row.vcpus,
                "memoryMb": int(round(row.memory_gib * 1024)), "zone": zone,
                "architecture": "ARM64" if row.arch == "arm64" else "X86_64",
                "selfLink": self.gce.link("zones", zone, "machineTypes", row.name)}

    def _machine_type_get(self, req: Request, zone: str, name: str) -> Any:
        self._check_scope(zone=zone)
        row = self.gce.machine_types.get((zone, name))
        if row is None:
            raise self._not_found("zones", zone, "machineTypes", name)
        return self._machine_type_view(zone, row)

    def _machine_type_list(self, req: Request, zone: str) -> Any:
        self._check_scope(zone=zone)
        rows = [self._machine_type_view(z, r) for (z, _), r in
                sorted(self.gce.machine_types.items()) if z == zone]
        return self._page(req, rows, "compute#machineTypeList",
                          self.gce.link("zones", zone, "machineTypes"))

    def _machine_types_agg(self, req: Request) -> Any:
        flat = [(z, self._machine_type_view(z, r))
                for (z, _), r in sorted(self.gce.machine_types.items())]
        keep = {id(v) for v in self._filter(req, [v for _, v in flat])}
        flat = [(z, v) for z, v in flat if id(v) in keep]
        return self._aggregate(req, flat, "machineTypes", "compute#machineTypeAggregatedList",
                               "aggregated/machineTypes")

    # -- networking ------------------------------------------------------------------------

    def _network_insert(self, body: dict[str, Any]) -> dict[str, Any]:
        if "autoCreateSubnetworks" not in body:
            # Real GCE makes a legacy network then; nestcloud must never want one.
            raise _invalid("resource.autoCreateSubnetworks", "", "The fake does not model "
                           "legacy networks: set autoCreateSubnetworks.")
        return self.gce._network_view(body)

    def _network_delete(self, res: dict[str, Any]) -> None:
        gce = self.gce
        link = res["selfLink"]
        users = [s["selfLink"] for s in gce.subnetworks.values() if s["network"] == link]
        users += [f["selfLink"] for f in gce.firewalls.values() if f["network"] == link]
        users += [r["selfLink"] for r in gce.routers.values() if r["network"] == link]
        users += [i["selfLink"] for i in gce.instances.values()
                  if any(n.get("network") == link for n in i.get("networkInterfaces", []))]
        if users:
            raise self._in_use("network", link, users[0])

    def _in_use(self, what: str, link: str, user: str) -> GceError:
        short = link.split("/compute/v1/", 1)[-1]
        return GceError(400, "resourceInUseByAnotherResource", f"The {what} resource '{short}' "
                        f"is already being used by '{user.split('/compute/v1/', 1)[-1]}'")

    def _subnetwork_insert(self, body: dict[str, Any], region: str) -> dict[str, Any]:
        gce = self.gce
        nm = self._ref(body.get("network"), "networks", "resource.network")
        net = gce.networks.get(nm.group("name"))
        if net is None:
            raise _invalid("resource.network", body.get("network"),
                           "The referenced network resource cannot be found.")
        if not body.get("ipCidrRange"):
            raise GceError(400, "required", "Required field 'resource.ipCidrRange' not "
                           "specified")
        res = {**body, "kind": "compute#subnetwork", "id": gce._new_id(),
               "network": net["selfLink"], "region": gce.link("regions", region),
               "creationTimestamp": gce._now(), "fingerprint": uuid.uuid4().hex[:12],
               "selfLink": gce.link("regions", region, "subnetworks", body["name"])}
        net.setdefault("subnetworks", []).append(res["selfLink"])
        return res

    def _subnetwork_delete(self, res: dict[str, Any]) -> None:
        gce = self.gce
        for i in gce.instances.values():
            if any(n.get("subnetwork") == res["selfLink"] for n in i.get("networkInterfaces",
                                                                          [])):
                raise self._in_use("subnetwork", res["selfLink"], i["selfLink"])
        net = gce.networks.get(res["network"].rsplit("/", 1)[-1])
        if net and res["selfLink"] in net.get("subnetworks", []):
            net["subnetworks"].remove(res["selfLink"])

    def _firewall_insert(self, body: dict[str, Any]) -> dict[str, Any]:
        gce = self.gce
        # Proto doc: without a network the rule goes on global/networks/default.
        nm = self._ref(body.get("network") or "global/networks/default", "networks",
                       "resource.network")
        if nm.group("name") not in gce.networks:
            raise _invalid("resource.network", body.get("network"),
                           "The referenced network resource cannot be found.")
        if not body.get("allowed") and not body.get("denied"):
            raise GceError(400, "required", "Required field 'resource.allowed' not specified")
        return gce._firewall_view({**body, "network":
                                   gce.networks[nm.group("name")]["selfLink"]})

    def _router_insert(self, body: dict[str, Any], region: str) -> dict[str, Any]:
        gce = self.gce
        nm = self._ref(body.get("network"), "networks", "resource.network")
        if nm.group("name") not in gce.networks:
            raise _invalid("resource.network", body.get("network"),
                           "The referenced network resource cannot be found.")
        for i, nat in enumerate(body.get("nats") or []):
            if not nat.get("name"):
                raise GceError(400, "required", f"Required field 'resource.nats[{i}].name' not "
                               "specified")
        return {**body, "kind": "compute#router", "id": gce._new_id(),
                "network": gce.networks[nm.group("name")]["selfLink"],
                "region": gce.link("regions", region), "creationTimestamp": gce._now(),
                "selfLink": gce.link("regions", region, "routers", body["name"])}

    def _address_insert(self, body: dict[str, Any], region: str) -> dict[str, Any]:
        gce = self.gce
        internal = body.get("addressType") == "INTERNAL"
        return {**body, "kind": "compute#address", "id": gce._new_id(),
                "address": body.get("address") or (f"10.128.1.{next(gce._ips)}" if internal
                                                   else f"34.2.0.{next(gce._ips)}"),
                "addressType": body.get("addressType", "EXTERNAL"), "status": "RESERVED",
                "region": gce.link("regions", region), "creationTimestamp": gce._now(),
                "selfLink": gce.link("regions", region, "addresses", body["name"])}

    def _address_users(self, res: dict[str, Any]) -> list[str]:
        region = res["region"].rsplit("/", 1)[-1]
        return [i["selfLink"] for (z, _), i in sorted(self.gce.instances.items())
                if self.gce.zones.get(z) == region and any(
                    ac.get("natIP") == res["address"] for n in i.get("networkInterfaces", [])
                    for ac in n.get("accessConfigs") or [])]

    def _address_delete(self, res: dict[str, Any]) -> None:
        users = self._address_users(res)
        if users:
            raise self._in_use("address", res["selfLink"], users[0])


# -- client helpers (import google-cloud-compute lazily: the fake itself is stdlib only) -----

def make_client(cls: Any, url: str) -> Any:
    """A google-cloud-compute client (e.g. ``compute_v1.InstancesClient``) aimed at the fake:
    anonymous credentials and the fake's plain-http endpoint, nothing read from the machine."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials

    return cls(credentials=AnonymousCredentials(), client_options=ClientOptions(api_endpoint=url))


def wait_done(ops_client: Any, op: Any, *, limit: int = 20, retry: Any = None,
              **scope: Any) -> Any:
    """Wait on an operation with the Zone/Region/Global OperationsClient built for the same
    endpoint, until DONE (the way FACTS says to wait; never ExtendedOperation.result()).
    ``retry`` (a google.api_core Retry) is passed to each wait."""
    from google.cloud import compute_v1

    extra = {"retry": retry} if retry is not None else {}
    for _ in range(limit):
        if op.status == compute_v1.Operation.Status.DONE:
            return op
        op = ops_client.wait(operation=op.name, **scope, **extra)
    raise AssertionError(f"operation {op.name} not DONE after {limit} waits")


def _singular(kind: str) -> str:
    return {"addresses": "address", "networks": "network", "subnetworks": "subnetwork",
            "firewalls": "firewall", "routers": "router"}[kind]




# -- list filters ---------------------------------------------------------------------------

_TERM_RE = re.compile(r'^\s*([A-Za-z][\w.\-]*)\s*(!=|=|:|\beq\b|\bne\b)\s*(.*?)\s*$')


def _parse_filter(expr: str) -> list[Callable[[dict[str, Any]], bool]]:
    """The subset of GCE list filters described in the module docstring."""
    if re.search(r"\bOR\b", expr):
        raise GceError(400, "invalid", f"fake GCE: OR in filter is not modelled: {expr!r}")
    parts: list[str]
    if expr.lstrip().startswith("("):
        parts = re.findall(r"\(([^()]*)\)", expr)
        if re.sub(r"\([^()]*\)|\bAND\b|\s", "", expr):
            raise GceError(400, "invalid", f"fake GCE: filter form not modelled: {expr!r}")
    else:
        parts = re.split(r"\s+AND\s+", expr)
    terms = []
    for p in parts:
        m = _TERM_RE.match(p)
        if not m:
            raise GceError(400, "invalid", f"Invalid list filter expression: {p!r}")
        terms.append(_term(m.group(1), m.group(2), m.group(3)))
    return terms


def _term(path: str, op: str, raw: str) -> Callable[[dict[str, Any]], bool]:
    value = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw

    def get(item: dict[str, Any]) -> Any:
        cur: Any = item
        for part in path.split("."):
            if not isinstance(cur, dict) or part not in cur:
                return None
            cur = cur[part]
        return cur

    def text(v: Any) -> str:
        return str(v).lower() if isinstance(v, bool) else str(v)

    if op == ":":
        return (lambda i: get(i) is not None) if value == "*" else (
            lambda i: get(i) is not None and value in text(get(i)))
    if op in ("eq", "ne"):
        rx = re.compile(value)
        want = op == "eq"
        return lambda i: (get(i) is not None and rx.fullmatch(text(get(i))) is not None) == want
    if op == "=":
        return lambda i: get(i) is not None and text(get(i)) == value
    return lambda i: get(i) is None or text(get(i)) != value
