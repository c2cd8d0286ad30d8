"""The name's launch lock across machines: its launch template (``nestcloud-NAME``).

CreateLaunchTemplate of one name succeeds once, in any account-wide sense: while one run holds
the template, another run of the same name (this machine or any other) waits, then reads the
name's seats again and launches only what is missing. The template is tagged like every other
resource, so a holder that died leaves something `down` and `reap` find; a later launch takes
over a template whose holder is gone (this host) or that is older than any launch holds one.
The fleet path (fleet.py) also launches from the template itself.

This module needs of the provider only what :class:`Ec2Access` names, so it imports nothing
that imports it back.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from nestcloud.errors import ProviderError
from nestcloud.spec import TAG_NAME
from providers.aws.errors import aws_errors, error_code
from providers.aws.requests import LaunchPlan, launch_template_data, resource_tags, tag_list

if TYPE_CHECKING:
    from nestcloud.failover import Attempt

TEMPLATE_PREFIX = "nestcloud-"
# The tag naming who holds a launch template (host:pid), see TemplateLock.
TAG_LOCK = "nestcloud:lock"
# A launch template older than this is a dead run's leftover: no launch holds it that long.
LOCK_STALE_S = 30 * 60.0


class Ec2Access(Protocol):
    """What the lock and the fleet path use of the provider."""

    sleep: Callable[[float], None]
    waiter_delay: float
    lock_wait_s: float

    def client(self, service: str, region: str | None = None) -> Any: ...


def template_name(name: str) -> str:
    """One launch template per name at a time: creating it is taking the name's launch lock
    (see TemplateLock)."""
    return f"{TEMPLATE_PREFIX}{name}"


def create_template_params(plan: LaunchPlan, sg_id: str, now: dt.datetime) -> dict[str, Any]:
    """CreateLaunchTemplate: the name's template (the settings every seat gets), tagged with
    its holder: taking the lock."""
    tags = tag_list(resource_tags(plan.spec, plan.name, plan.owner, None, now))
    tags.append({"Key": TAG_LOCK, "Value": lock_holder()})
    return {"LaunchTemplateName": template_name(plan.name),
            "VersionDescription": f"nestcloud {plan.name}",
            "LaunchTemplateData": launch_template_data(plan, sg_id, now),
            "TagSpecifications": [{"ResourceType": "launch-template", "Tags": tags}]}


def lock_holder() -> str:
    """Who holds a launch lock: this host and process (a crashed local holder is seen)."""
    return f"{socket.gethostname()}:{os.getpid()}"


# Launch-template names this process is taking or holding, and by how many launches (a
# notebook may run several labs at once). A template of ours whose name no other launch of
# this process is at was left by an earlier launch of this process that died. By name, and
# counted from before the create call: the template exists before its id is known here.
_TAKING: dict[str, int] = {}
_TAKING_LOCK = threading.Lock()


def _taking(name: str, delta: int) -> int:
    with _TAKING_LOCK:
        n = _TAKING.get(name, 0) + delta
        if n > 0:
            _TAKING[name] = n
        else:
            _TAKING.pop(name, None)
        return n


def _holder_gone(holder: str, name: str, taking: bool = True) -> bool:
    """Whether the holder ran on this host and its process (or its launch) no longer exists;
    asked by a launch that is itself taking ``name`` (``taking``) or one that is not."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return _taking(name, 0) <= (1 if taking else 0)  # no launch but the one asking
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


@dataclass
class LaunchRun:
    """What one launch did so far, for the LaunchOutcome it returns or its error carries;
    local to the launch (labs launch from several threads on one provider)."""

    exclusive: bool = False          # hold the name's launch lock throughout (a lab)
    created_any: bool = False        # got as far as a create call
    other_holds: bool = False        # another run holds the lock: nothing here is ours
    found_live: list[str] = field(default_factory=list)  # seats another run launched
    attempts: list[Attempt] = field(default_factory=list)  # a fleet's per-override rows
    held: TemplateLock | None = None  # the lock a failed exclusive launch keeps for unlock()


class TemplateLock:
    """The name's launch template, held for the whole launch: a lock across machines.

    CreateLaunchTemplate of one name succeeds once; while another run of the same name
    (on this machine or any other) holds the template, this one waits until it is deleted,
    then reads the name's seats again (the other run launched them) and launches only what
    is still missing. A holder that died leaves the template behind: on this host a gone
    process is seen at once; elsewhere the template is taken over after LOCK_STALE_S (no
    launch holds it that long). The fleet path launches from the template itself; the seat
    path holds it only as the lock. Release deletes it (tagged: `down` removes a leftover).
    """

    def __init__(self, prov: Ec2Access, plan: LaunchPlan, notes: list[str],
                 run: LaunchRun) -> None:
        self.prov, self.plan, self.notes, self.run = prov, plan, notes, run
        self.template_id = ""
        self.name = ""
        self.waited = False
        self.contended = False

    def acquire(self, sg_id: str, now: dt.datetime) -> str:
        """Create the template (``sg_id`` in its data); ``contended`` says whether another
        run held it first (then what that run did or undid, its group too, is read again)."""
        self.contended = False
        prov, plan = self.prov, self.plan
        ec2 = prov.client("ec2", plan.region)
        params = create_template_params(plan, sg_id, now)
        name = params["LaunchTemplateName"]
        deadline = time.monotonic() + prov.lock_wait_s
        self.name = name
        _taking(name, +1)
        try:
            return self._take(ec2, params, name, deadline)
        except BaseException as exc:
            _taking(name, -1)
            if isinstance(exc, KeyboardInterrupt) and self.waited:
                # Interrupted while another run held the lock: not ours to undo.
                self.run.other_holds = True
            raise

    def _take(self, ec2: Any, params: dict[str, Any], name: str, deadline: float) -> str:
        prov, plan = self.prov, self.plan
        while True:
            try:
                with aws_errors("create the launch template", region=plan.region):
                    self.template_id = str(ec2.create_launch_template(**params)[
                        "LaunchTemplate"]["LaunchTemplateId"])
                return self.template_id
            except ProviderError as exc:
                if error_code(exc) != "InvalidLaunchTemplateName.AlreadyExistsException":
                    raise
            held = describe_template(prov, name, plan.region)
            if held is None:  # released between the two calls: try again
                if time.monotonic() > deadline:
                    raise self._held(ProviderError(
                        f"launch template {name} exists but cannot be read; waited "
                        f"{prov.lock_wait_s:g} s; nothing was launched",
                        hint=f"`nestcloud down {plan.name}` removes it", provider="aws"))
                prov.sleep(min(prov.waiter_delay, 1.0))
                continue
            holder = tag_value(held, TAG_LOCK)
            created = held.get("CreateTime")
            why = stale_lock(held, name)
            if why is not None:
                self.notes.append(f"took over launch template {held['LaunchTemplateId']} "
                                  f"({name}) left by an interrupted run: {why}")
                delete_template(prov, str(held["LaunchTemplateId"]), plan.region)
                continue
            if time.monotonic() > deadline:
                raise self._held(ProviderError(
                    f"another launch of {plan.name!r} is running (it holds launch template "
                    f"{held['LaunchTemplateId']} ({name}), held by {holder or 'unknown'} since "
                    f"{created}); waited {prov.lock_wait_s:g} s; nothing was launched",
                    hint=f"run the same command again when it is done (it finds that run's "
                         f"seats), or remove a stale lock with `nestcloud down {plan.name}`",
                    provider="aws"))
            self.contended = True
            if not self.waited:
                self.waited = True
                self.notes.append(f"waited for another launch of {plan.name!r} (launch "
                                  f"template {name}, held by {holder or 'unknown'}) to finish")
            prov.sleep(prov.waiter_delay)

    def _held(self, exc: ProviderError) -> ProviderError:
        """The lock is another run's: nothing of the name may be rolled back (the seats,
        group and template are that run's; the launch's outcome says so), and failover
        stops here (the error has no scope)."""
        self.run.other_holds = True
        return exc

    def forget(self) -> None:
        """The template is gone already (``down`` removed it): nothing left to release."""
        if self.template_id:
            _taking(self.name, -1)
        self.template_id = ""

    def release(self) -> None:
        """Delete the template (a failure is a note: the template is tagged, `down` finds
        it); harmless to repeat."""
        if self.template_id:
            _delete_template_noting(self.prov, self.template_id, self.plan, self.notes)
            _taking(self.name, -1)
        self.template_id = ""


def stale_lock(held: dict[str, Any], name: str, taking: bool = True) -> str | None:
    """Why the launch template ``held`` (DescribeLaunchTemplates, named ``name``; ``taking``:
    whether the caller is itself taking it) is a dead run's leftover
    rather than a lock some launch holds, or None: its holder was a process of this host
    that is gone, or it is older than any launch holds one (LOCK_STALE_S)."""
    holder = tag_value(held, TAG_LOCK)
    if _holder_gone(holder, name, taking):
        return f"its holder {holder} is gone"
    created = held.get("CreateTime")
    age = ((dt.datetime.now(dt.timezone.utc) - created).total_seconds()
           if isinstance(created, dt.datetime) else 0.0)
    if age > LOCK_STALE_S:
        return f"it is {age / 60:.0f} minutes old"
    return None


def tag_value(resource: dict[str, Any], key: str) -> str:
    return next((str(t.get("Value")) for t in resource.get("Tags") or []
                 if t.get("Key") == key), "")


def describe_template(prov: Ec2Access, name: str, region: str) -> dict[str, Any] | None:
    """The launch template of that name, or None."""
    ec2 = prov.client("ec2", region)
    try:
        with aws_errors("find the launch template", region=region):
            got = ec2.describe_launch_templates(LaunchTemplateNames=[name])["LaunchTemplates"]
    except ProviderError as exc:
        if error_code(exc) in ("InvalidLaunchTemplateName.NotFoundException",
                               "InvalidLaunchTemplateId.NotFound"):
            return None
        raise
    return got[0] if got else None


def find_templates(prov: Ec2Access, name: str, region: str) -> list[str]:
    ec2 = prov.client("ec2", region)
    with aws_errors("find launch templates", region=region):
        got = ec2.describe_launch_templates(
            Filters=[{"Name": f"tag:{TAG_NAME}", "Values": [name]}])["LaunchTemplates"]
    return [str(t["LaunchTemplateId"]) for t in got]


def delete_template(prov: Ec2Access, template_id: str, region: str) -> None:
    ec2 = prov.client("ec2", region)
    try:
        with aws_errors(f"delete launch template {template_id}", region=region):
            ec2.delete_launch_template(LaunchTemplateId=template_id)
    except ProviderError as exc:
        if error_code(exc) not in ("InvalidLaunchTemplateId.NotFound",
                                   "InvalidLaunchTemplateName.NotFoundException",
                                   "InvalidLaunchTemplateId.Malformed"):
            raise


def _delete_template_noting(prov: Ec2Access, template_id: str, plan: LaunchPlan,
                            notes: list[str]) -> None:
    try:
        delete_template(prov, template_id, plan.region)
    except ProviderError as exc:
        # Never mask the launch's own outcome: the template is tagged, `down` removes it.
        notes.append(f"launch template {template_id} was not deleted ({exc.message}); "
                     f"`nestcloud down {plan.name}` removes it")
