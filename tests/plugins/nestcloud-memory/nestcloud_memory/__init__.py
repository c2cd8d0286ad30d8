"""An in-memory nestcloud provider: the smallest complete implementation of the contract.

It is what a third-party provider looks like, minus the cloud: one class registered under the
entry-point group ``nestcloud.providers`` (``memory = "nestcloud_memory:MemoryProvider"``),
implementing only the required verbs of ``nestcloud.provider.Provider`` and declaring no
optional capability (``Capabilities()``, no construction options). It imports nothing from
``providers/``: everything it needs is nestcloud's public contract.

Its "cloud" is :data:`WORLD`, module-level memory, so every command run in one process (typer's
CliRunner) sees the same instances. Tests steer it through :data:`WORLD` (``faults``, ``now``,
``reset()``) or, for a subprocess, the environment variables below.

Fault injection (so labs exercise failover and the all-or-nothing rollback):

    NESTCLOUD_MEMORY_FAIL_AFTER=N        every launch call creates N seats, then raises a
                                         zone-scoped CapacityError (N=0: fails before any)
    NESTCLOUD_MEMORY_FAIL_REGIONS=a,b    ...only in these regions (default: every region)
    NESTCLOUD_MEMORY_CONSOLE=ready|failed|silent   what the L1s print on their console
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

from nestcloud.errors import CapacityError, InputError
from nestcloud.models import (CatalogDiff, DownResult, Instance, LaunchResult, PlannedRequest,
                              VerifyResult)
from nestcloud.provider import Capabilities, LaunchOutcome, LaunchRequest, ProviderOption
from nestcloud.spec import TAG_EXPIRES, TAG_NAME, TAG_OWNER, TAG_SEAT

if TYPE_CHECKING:
    from nestcloud.catalog import Catalog

NAME = "memory"
DEFAULT_REGION = "mem-east-1"
OWNER = "memory-user"
MARKER = "NESTCLOUD-L1"  # nestcloud/bootstrap/marker.py reads `NESTCLOUD-L1 {json}` lines

@dataclass(frozen=True)
class LiveType:
    """One type as the memory cloud's "live API" reports it."""

    vcpus: int
    memory_gib: float
    regions: tuple[str, ...]


REGIONS = ("mem-east-1", "mem-west-1")
# What the "live API" offers: the catalog entries (../catalog.yaml) must agree with it, and
# `nestcloud catalog verify -p memory` compares the two.
LIVE_TYPES: dict[str, LiveType] = {
    "m1.small": LiveType(vcpus=2, memory_gib=4.0, regions=REGIONS),
    "m1.large": LiveType(vcpus=4, memory_gib=16.0, regions=REGIONS),
    "m1.flat": LiveType(vcpus=2, memory_gib=4.0, regions=REGIONS),  # no nesting
}

ConsoleMode = Literal["ready", "failed", "silent"]


@dataclass
class Faults:
    """What the world does wrong on purpose (module knobs; the environment overrides them)."""

    capacity_after: int | None = None         # seats a launch call creates before failing
    regions: frozenset[str] = frozenset()     # where launches fail (empty: everywhere)
    console: ConsoleMode = "ready"

    def effective(self) -> Faults:
        env = os.environ
        after = env.get("NESTCLOUD_MEMORY_FAIL_AFTER")
        regions = env.get("NESTCLOUD_MEMORY_FAIL_REGIONS")
        console = env.get("NESTCLOUD_MEMORY_CONSOLE")
        mode: ConsoleMode = self.console
        if console in ("ready", "failed", "silent"):
            mode = console  # type: ignore[assignment]
        return Faults(
            capacity_after=int(after) if after else self.capacity_after,
            regions=frozenset(r for r in regions.split(",") if r) if regions else self.regions,
            console=mode)

    def fails_in(self, region: str) -> bool:
        return self.capacity_after is not None and (not self.regions or region in self.regions)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class World:
    """The memory cloud: instances by id, shared by every provider object in the process."""

    instances: dict[str, Instance] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    now: Callable[[], dt.datetime] = _utcnow   # the cloud's clock (tests move it)
    calls: list[str] = field(default_factory=list)  # verbs called, for tests to read
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self._lock:
            self.instances.clear()
            self.calls.clear()
            self.faults = Faults()
            self.now = _utcnow
            self._ids = itertools.count(1)

    def new_id(self) -> str:
        return f"mem-{next(self._ids):08x}"


WORLD = World()


def _stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat().replace(
        "+00:00", "Z")


class MemoryProvider:
    """A provider whose cloud is this process's memory. Only the required verbs."""

    name: ClassVar[str] = NAME
    capabilities: ClassVar[Capabilities] = Capabilities()
    options: ClassVar[tuple[ProviderOption, ...]] = ()

    def __init__(self, region: str | None = None) -> None:
        if region is not None and region not in REGIONS:
            raise InputError(f"memory: unknown region {region!r}")
        self.region = region

    @classmethod
    def configured(cls) -> bool:
        """Usable without being named (`ls`/`down` without --provider): there are no
        credentials to find, installed is configured."""
        return True

    # -- required verbs --------------------------------------------------------------------

    def launch(self, request: LaunchRequest) -> LaunchOutcome:
        spec = request.spec
        WORLD.calls.append("launch")
        region = self.region or spec.region or DEFAULT_REGION
        name = spec.name
        if name is None:  # the core names every launch before it reaches a provider
            raise InputError("memory: a launch needs a group name")
        with WORLD._lock:
            live = [i for i in WORLD.instances.values()
                    if i.name == name and i.region == region]
        have = {i.seat for i in live}
        missing = [s for s in range(spec.count) if s not in have]
        now = WORLD.now()
        expires = _stamp(now + dt.timedelta(seconds=spec.ttl_seconds)) \
            if spec.ttl_seconds else None
        tags = {**spec.tags, TAG_NAME: name, TAG_OWNER: OWNER}
        if expires:
            tags[TAG_EXPIRES] = expires
        if request.dry_run:
            reqs = [PlannedRequest(service="memory", operation="CreateInstance",
                                   params={"region": region, "type": spec.type,
                                           "tags": {**tags, TAG_SEAT: str(s)}})
                    for s in missing]
            return LaunchOutcome(
                result=LaunchResult(provider=NAME, name=name, region=region, type=spec.type,
                                    reused=sorted(i.id for i in live), dry_run=True,
                                    requests=reqs),
                created_any=False)
        t = request.catalog.get(NAME, spec.type)
        nested = None if t is None else t.nesting != "none"
        faults = WORLD.faults.effective()
        created: list[Instance] = []
        for seat in missing:
            if faults.fails_in(region) and len(created) >= (faults.capacity_after or 0):
                raise CapacityError(
                    f"memory: no capacity for {spec.type} in {region}a (injected after "
                    f"{len(created)} seat(s))", code="NoCapacity", provider=NAME,
                    outcome=LaunchOutcome(created_any=bool(created)))
            with WORLD._lock:
                iid = WORLD.new_id()
                inst = Instance(provider=NAME, id=iid, name=name, region=region,
                                type=spec.type, state="running", zone=f"{region}a", seat=seat,
                                nested=nested, private_ip=f"10.0.0.{len(WORLD.instances) + 4}",
                                launched_at=_stamp(now), expires=expires,
                                tags={**tags, TAG_SEAT: str(seat)})
                WORLD.instances[iid] = inst
            created.append(inst)
        everything = sorted([*live, *created], key=lambda i: (i.seat or 0, i.id))
        return LaunchOutcome(
            result=LaunchResult(provider=NAME, name=name, region=region, type=spec.type,
                                instances=everything, created=[i.id for i in created],
                                reused=sorted(i.id for i in live)),
            created_any=bool(created))

    def list(self, name: str | None = None) -> list[Instance]:
        WORLD.calls.append("list")
        with WORLD._lock:
            found = [i for i in WORLD.instances.values()
                     if (name is None or i.name == name)
                     and (self.region is None or i.region == self.region)]
        return sorted(found, key=lambda i: (i.name, i.seat or 0, i.id))

    def down(self, name: str) -> DownResult:
        WORLD.calls.append("down")
        with WORLD._lock:
            gone = sorted(iid for iid, i in WORLD.instances.items()
                          if i.name == name and (self.region is None or i.region == self.region))
            for iid in gone:
                del WORLD.instances[iid]
        return DownResult(provider=NAME, name=name, terminated=gone)

    def console(self, instance: Instance) -> str:
        WORLD.calls.append("console")
        mode = WORLD.faults.effective().console
        boot = "[    0.000000] Linux version 6.8.0 (memory)\n[    1.200000] cloud-init[42]: booted\n"
        if mode == "silent":
            return boot
        ok = mode == "ready"
        payload = {"status": "ready" if ok else "failed", "profile": "kvm", "v": 1,
                   "checks": {"kvm_device": {"ok": ok, **({} if ok else
                                                           {"detail": "/dev/kvm missing"})}},
                   "failed": [] if ok else ["kvm_device"]}
        return boot + f"[   41.200000] cloud-init[977]: {MARKER} {json.dumps(payload)}\n"

    def verify_catalog(self, catalog: Catalog, region: str) -> VerifyResult:
        WORLD.calls.append("verify_catalog")
        diffs: list[CatalogDiff] = []
        missing: list[str] = []
        mine = [t for t in catalog.of(NAME) if region in t.regions]
        for t in mine:
            live = LIVE_TYPES.get(t.name)
            if live is None or region not in live.regions:
                missing.append(t.name)
                continue
            for fld, ours, theirs in (("vcpus", t.vcpus, live.vcpus),
                                      ("memory_gib", t.memory_gib, live.memory_gib)):
                if ours != theirs:
                    diffs.append(CatalogDiff(type=t.name, field=fld, catalog=ours, live=theirs))
        return VerifyResult(provider=NAME, region=region, checked=len(mine), diffs=diffs,
                            missing_live=missing)


__all__ = ["WORLD", "Faults", "MemoryProvider", "World"]
