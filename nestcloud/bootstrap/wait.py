"""Waiting for L1s to prove they are ready: poll console (Linux) or tag (Windows), parse the marker.

Exit codes (``WaitReport.exit_code()``): 0 every instance ready (or, in the sandbox, nothing
can be verified); 1 at least one reported ``failed`` (a definite answer wins over waiting);
4 at least one timed out and none failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from nestcloud.bootstrap.marker import Marker, parse_marker, parse_payload
from nestcloud.bootstrap.profiles import TAG_L1, not_verifiable_reason
from nestcloud.errors import CredentialsError, MissingDependencyError, ProviderError
from nestcloud.models import Instance
from nestcloud.render import Block, Rendered

if TYPE_CHECKING:
    from nestcloud.provider import Provider

Status = Literal["ready", "failed", "timeout", "not-verifiable"]
SANDBOX_MESSAGE = "sandbox: no guest boots, readiness cannot be shown"
# States from which an instance will never print a marker (EC2 and Azure power states).
_GONE = frozenset({"terminated", "shutting-down", "stopping", "stopped", "deallocated",
                   "deallocating", "deleted"})
# Errors that will not go away by polling again.
_FATAL = (CredentialsError, MissingDependencyError)


class InstanceReadiness(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    status: Status
    source: Literal["console", "tag"] | None = None   # where the marker was read
    failed_checks: list[str] = Field(default_factory=list)
    checks: dict[str, Any] = Field(default_factory=dict)
    message: str = ""
    waited_s: float = 0.0


class WaitReport(Rendered, BaseModel):
    model_config = ConfigDict(extra="forbid")
    columns: ClassVar[tuple[str, ...]] = ("name", "id", "status", "from", "detail")

    provider: str
    instances: list[InstanceReadiness] = Field(default_factory=list)
    sandbox: bool = False
    timeout_s: float
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code() == 0

    def exit_code(self) -> int:
        """0 ready (or sandbox), 1 any failed, 4 any timed out (and none failed)."""
        statuses = {i.status for i in self.instances}
        if "failed" in statuses:
            return 1
        if "timeout" in statuses:
            return 4
        return 0

    def to_dict(self) -> dict[str, Any]:
        return {**self.model_dump(mode="json"), "exit_code": self.exit_code()}

    def rows(self) -> list[list[str]]:
        return [[r.name, r.id, r.status, r.source or "-", r.message] for r in self.instances]

    def caption(self) -> str:
        return f"{self.provider}: {self.message}" if self.message else self.provider

    def text(self, **options: Any) -> list[Block]:
        return [self.table()]

    def summary(self) -> str:
        """One line per instance, for people (stderr)."""
        lines = [f"{i.name} {i.id}: {i.status}" + (f" - {i.message}" if i.message else "")
                 for i in self.instances]
        return "\n".join(lines) or self.message


def _provider_name(provider: Provider) -> str:
    return provider.name


def _from_marker(inst: Instance, marker: Marker, source: Literal["console", "tag"],
                 waited: float) -> InstanceReadiness:
    failed = marker.failed_checks() if marker.status == "failed" else []
    msg = ("L1 hypervisor ready" if marker.ready
           else "L1 reported failed: " + "; ".join(failed))
    return InstanceReadiness(id=inst.id, name=inst.name, status=marker.status, source=source,
                             failed_checks=failed, checks=dict(marker.checks), message=msg,
                             waited_s=round(waited, 1))


def wait_for_ready(provider: Provider, instances: Sequence[Instance], *, timeout_s: float,
                   interval_s: float = 10.0, sandbox: bool = False,
                   clock: Callable[[], float] | None = None,
                   sleep: Callable[[float], None] | None = None,
                   on_progress: Callable[[str], None] | None = None) -> WaitReport:
    """Poll until every instance reported or ``timeout_s`` passed; never raises on a timeout.

    ``provider`` follows nestcloud.provider.Provider (``console`` and ``list`` are used).
    Linux L1s print the marker on the serial console; Windows L1s set the ``TAG_L1`` tag,
    which is read back through ``provider.list(name)`` (EC2), or the provider's console reads
    their marker file (Azure, Run Command). An L1 whose ``TAG_L1`` the provider set to a
    ``not_verifiable_tag`` at launch (it cannot write the tag) is reported "not-verifiable"
    with that reason, after its console was checked once, instead of timing out.
    """
    clock = clock or time.monotonic
    sleep = sleep or time.sleep
    name = _provider_name(provider)
    if sandbox:
        return WaitReport(provider=name, sandbox=True, timeout_s=timeout_s,
                          message=SANDBOX_MESSAGE,
                          instances=[InstanceReadiness(id=i.id, name=i.name,
                                                       status="not-verifiable",
                                                       message=SANDBOX_MESSAGE)
                                     for i in instances])
    start = clock()
    deadline = start + timeout_s
    pending: dict[str, Instance] = {i.id: i for i in instances}
    done: dict[str, InstanceReadiness] = {}
    notes: dict[str, str] = {}
    while True:
        # Tags: one list() per group name per round (Windows L1s report there).
        names = sorted({i.name for i in pending.values()})
        fresh: dict[str, Instance] = {}
        for group in names:
            try:
                for inst in provider.list(group):
                    fresh[inst.id] = inst
            except _FATAL:
                raise
            except ProviderError as exc:  # transient (throttling, a flaky call): poll again
                for i in pending.values():
                    if i.name == group:
                        notes[i.id] = f"listing {group}: {exc.message}"
        now = clock()
        for iid, inst in list(pending.items()):
            cur = fresh.get(iid, inst)
            tag = cur.tags.get(TAG_L1)
            marker = parse_payload(tag) if tag else None
            source: Literal["console", "tag"] = "tag"
            if marker is None:
                try:
                    marker = parse_marker(provider.console(cur))
                    source = "console"
                except _FATAL:
                    raise
                except ProviderError as exc:
                    notes[iid] = f"console: {exc.message}"
            reason = not_verifiable_reason(tag) if marker is None else None
            if marker is not None:
                done[iid] = _from_marker(cur, marker, source, now - start)
                del pending[iid]
                if on_progress:
                    on_progress(f"{cur.name} {iid}: {done[iid].message}")
            elif reason is not None:
                done[iid] = InstanceReadiness(id=iid, name=cur.name, status="not-verifiable",
                                              source="tag", message=reason,
                                              waited_s=round(now - start, 1))
                del pending[iid]
                if on_progress:
                    on_progress(f"{cur.name} {iid}: not verifiable - {reason}")
            elif cur.state in _GONE:
                done[iid] = InstanceReadiness(
                    id=iid, name=cur.name, status="failed", failed_checks=["instance_state"],
                    message=f"instance is {cur.state} before reporting readiness",
                    waited_s=round(now - start, 1))
                del pending[iid]
        if not pending:
            break
        if now >= deadline:
            for iid, inst in pending.items():
                extra = f" (last problem: {notes[iid]})" if iid in notes else ""
                done[iid] = InstanceReadiness(
                    id=iid, name=inst.name, status="timeout",
                    message=f"no readiness marker within {timeout_s:g}s{extra}",
                    waited_s=round(now - start, 1))
            break
        if on_progress:
            on_progress(f"waiting for {len(pending)} instance(s) "
                        f"({int(now - start)}s of {timeout_s:g}s)")
        sleep(max(0.0, min(interval_s, deadline - now)))
    ordered = [done[i.id] for i in instances]
    counts: dict[str, int] = {}
    for r in ordered:
        counts[r.status] = counts.get(r.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return WaitReport(provider=name, instances=ordered, timeout_s=timeout_s, message=summary)
