"""Big AWS launches through EC2 Fleet (CreateFleet, type instant) and a launch template.

One CreateFleet call asks for every missing seat with one override per (equivalent type,
default-VPC subnet), so EC2 looks for capacity across all zones and types at once instead of
nestcloud trying them one RunInstances at a time. ``OnDemandOptions.MinTargetCapacity`` with
``SingleInstanceType`` makes EC2 itself launch either every seat (of one type) or none (API
doc of OnDemandOptionsRequest: "If this minimum capacity isn't reached, no instances are
launched"); nestcloud still checks the count and removes a short answer itself.

The launch template (one per name, ``nestcloud-NAME``) is also the name's launch lock across
machines (:class:`TemplateLock`): it is tagged like every other resource and deleted once the
launch is read back; if the process dies in between, ``down``/``reap`` find it by its
``nestcloud:name`` tag, and the next launch takes it over.
The request builders are pure; :func:`launch_fleet` does the I/O.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nestcloud.errors import CapacityError, ProviderError, QuotaError
from nestcloud.failover import Attempt, classify
from nestcloud.spec import TAG_NAME
from providers._aws_errors import aws_errors, error_code, translate

if TYPE_CHECKING:
    from providers.aws import AwsProvider, LaunchPlan

TEMPLATE_PREFIX = "nestcloud-"
# The tag naming who holds a launch template (host:pid), see TemplateLock.
TAG_LOCK = "nestcloud:lock"
# A launch template older than this is a dead run's leftover: no launch holds it that long.
LOCK_STALE_S = 30 * 60.0


@dataclass(frozen=True)
class Subnet:
    id: str
    zone: str


def template_name(name: str) -> str:
    """One launch template per name at a time: creating it is taking the name's launch lock
    (see TemplateLock)."""
    return f"{TEMPLATE_PREFIX}{name}"


def fleet_client_token(name: str, region: str, digest: str, seats: list[int],
                       types: tuple[str, ...], template_id: str) -> str:
    """Deterministic CreateFleet ClientToken for one run's request, so botocore's retry of
    a request whose answer was lost gets the same fleet back from EC2 instead of a second.

    The template id is part of it: the template is deleted after every fleet call, so a
    later run (after a fleet that launched nothing) gets a new token rather than EC2's
    cached answer for the old one; across runs the tag search is what prevents doubling."""
    raw = f"fleet|{name}|{region}|{digest}|{','.join(map(str, seats))}|{','.join(types)}|" \
          f"{template_id}"
    return "ncf-" + hashlib.sha256(raw.encode()).hexdigest()[:48]


def launch_template_data(plan: LaunchPlan, sg_id: str, now: dt.datetime) -> dict[str, Any]:
    """LaunchTemplateData: the same settings RunInstances sends, minus the seat tag."""
    from providers.aws import instance_settings

    data = instance_settings(plan, None, sg_id, now)
    if plan.user_data:
        # Unlike RunInstances, boto3 does not encode launch-template user data itself.
        data["UserData"] = base64.b64encode(plan.user_data).decode("ascii")
    return data


def create_template_params(plan: LaunchPlan, sg_id: str, now: dt.datetime) -> dict[str, Any]:
    from providers.aws import _tags, resource_tags

    tags = _tags(resource_tags(plan.spec, plan.name, plan.owner, None, now))
    tags.append({"Key": TAG_LOCK, "Value": lock_holder()})
    return {"LaunchTemplateName": template_name(plan.name),
            "VersionDescription": f"nestcloud {plan.name}",
            "LaunchTemplateData": launch_template_data(plan, sg_id, now),
            "TagSpecifications": [{"ResourceType": "launch-template", "Tags": tags}]}


def overrides(types: tuple[str, ...], subnets: list[Subnet]) -> list[dict[str, Any]]:
    """Every (type, zone); the planned type first, with priority 0.

    The EC2 API reference (FleetLaunchTemplateOverridesRequest.Priority): "Valid values are
    whole numbers starting at 0. The lower the number, the higher the priority." So the
    planned (cheapest) type gets 0 and each equivalent the next number, in the order the
    planner ranked them; every zone of a type shares its type's number."""
    out: list[dict[str, Any]] = []
    for n, t in enumerate(types):
        for s in subnets:
            out.append({"InstanceType": t, "SubnetId": s.id, "Priority": float(n)})
    return out


def create_fleet_params(plan: LaunchPlan, template_id: str, types: tuple[str, ...],
                        subnets: list[Subnet], now: dt.datetime) -> dict[str, Any]:
    from providers.aws import _tags, resource_tags

    n = len(plan.missing_seats)
    tags = _tags(resource_tags(plan.spec, plan.name, plan.owner, None, now))
    ovr = overrides(types, subnets)
    capacity_type = "spot" if plan.spec.spot else "on-demand"
    all_or_none = {"SingleInstanceType": True, "MinTargetCapacity": n}
    params: dict[str, Any] = {
        "Type": "instant",
        "ClientToken": fleet_client_token(plan.name, plan.region, plan.digest,
                                          plan.missing_seats, types, template_id),
        "LaunchTemplateConfigs": [{"LaunchTemplateSpecification": {
            "LaunchTemplateId": template_id, "Version": "$Latest"}, "Overrides": ovr}],
        "TargetCapacitySpecification": {"TotalTargetCapacity": n,
                                        "DefaultTargetCapacityType": capacity_type},
        "TagSpecifications": [{"ResourceType": "fleet", "Tags": tags}],
    }
    if plan.spec.spot:
        params["SpotOptions"] = {"AllocationStrategy": "capacity-optimized-prioritized",
                                 **all_or_none}
    else:
        params["OnDemandOptions"] = {"AllocationStrategy": "prioritized", **all_or_none}
    return params


def error_attempts(errors: list[dict[str, Any]], region: str, zone_of: dict[str, str]
                   ) -> list[Attempt]:
    """CreateFleet ``Errors`` -> attempt rows (one per distinct type/zone/code), scoped."""
    from botocore.exceptions import ClientError

    seen: set[tuple[str, str | None, str]] = set()
    rows: list[Attempt] = []
    for e in errors:
        o = (e.get("LaunchTemplateAndOverrides") or {}).get("Overrides") or {}
        t = str(o.get("InstanceType") or "?")
        zone = zone_of.get(str(o.get("SubnetId"))) or o.get("AvailabilityZone")
        code = str(e.get("ErrorCode") or "Unknown")
        key = (t, zone, code)
        if key in seen:
            continue
        seen.add(key)
        exc = translate(ClientError({"Error": {"Code": code,
                                               "Message": e.get("ErrorMessage", "")}},
                                    "CreateFleet"),
                        action="launch through EC2 Fleet", region=region, type_name=t)
        rows.append(Attempt("aws", region, t, zone, "failed", classify(exc), code,
                            str(e.get("ErrorMessage") or code)))
    return rows


def default_subnets(plan: LaunchPlan) -> list[Subnet]:
    """The default subnets the plan found (one DescribeSubnets, see AwsProvider.plan)."""
    if not plan.subnets:
        raise ProviderError(f"no default subnet in the default VPC of {plan.region}",
                            hint=f"`aws ec2 create-default-subnet --availability-zone ZONE "
                                 f"--region {plan.region}`", provider="aws")
    return list(plan.subnets)


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


# Above this many missing seats a launch goes through one CreateFleet call with every
# equivalent type and zone (capabilities.fleet_above). At 4 or fewer, separate RunInstances
# calls (each with its own deterministic ClientToken and seat tag) cost no more round trips
# than template + fleet + template delete, and keep per-seat idempotency.
FLEET_THRESHOLD = 4


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

    def __init__(self, prov: AwsProvider, plan: LaunchPlan, notes: list[str],
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
            holder = _tag_value(held, TAG_LOCK)
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
    holder = _tag_value(held, TAG_LOCK)
    if _holder_gone(holder, name, taking):
        return f"its holder {holder} is gone"
    created = held.get("CreateTime")
    age = ((dt.datetime.now(dt.timezone.utc) - created).total_seconds()
           if isinstance(created, dt.datetime) else 0.0)
    if age > LOCK_STALE_S:
        return f"it is {age / 60:.0f} minutes old"
    return None




def _tag_value(resource: dict[str, Any], key: str) -> str:
    return next((str(t.get("Value")) for t in resource.get("Tags") or []
                 if t.get("Key") == key), "")


def describe_template(prov: AwsProvider, name: str, region: str) -> dict[str, Any] | None:
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


def find_templates(prov: AwsProvider, name: str, region: str) -> list[str]:
    ec2 = prov.client("ec2", region)
    with aws_errors("find launch templates", region=region):
        got = ec2.describe_launch_templates(
            Filters=[{"Name": f"tag:{TAG_NAME}", "Values": [name]}])["LaunchTemplates"]
    return [str(t["LaunchTemplateId"]) for t in got]


def delete_template(prov: AwsProvider, template_id: str, region: str) -> None:
    ec2 = prov.client("ec2", region)
    try:
        with aws_errors(f"delete launch template {template_id}", region=region):
            ec2.delete_launch_template(LaunchTemplateId=template_id)
    except ProviderError as exc:
        if error_code(exc) not in ("InvalidLaunchTemplateId.NotFound",
                                   "InvalidLaunchTemplateName.NotFoundException",
                                   "InvalidLaunchTemplateId.Malformed"):
            raise


def launch_fleet(prov: AwsProvider, plan: LaunchPlan, lock: TemplateLock, now: dt.datetime,
                 types: tuple[str, ...], run: LaunchRun) -> list[dict[str, Any]]:
    """CreateFleet for every missing seat from the template ``lock`` holds: the launched
    instances (the per-override rows go to ``run.attempts``). The caller reads them back, then releases the lock: by
    then the new seats are visible to DescribeInstances, so a run that takes the lock next
    finds them.

    When the fleet comes back short, the error (CapacityError, or QuotaError when a quota
    code is among the errors) follows the rows; the instances it did launch stay tagged for
    the caller's rollback (``down`` finds them).
    """
    ec2 = prov.client("ec2", plan.region)
    subnets = default_subnets(plan)
    zone_of = {s.id: s.zone for s in subnets}
    params = create_fleet_params(plan, lock.template_id, types, subnets, now)
    with aws_errors(f"launch {len(plan.missing_seats)} seat(s) of {plan.name!r} through "
                    "EC2 Fleet", region=plan.region, type_name=plan.spec.type):
        resp = ec2.create_fleet(**params)
    ids = [i for inst in resp.get("Instances") or [] for i in inst.get("InstanceIds") or []]
    rows = error_attempts(resp.get("Errors") or [], plan.region, zone_of)
    run.attempts = rows
    if len(ids) < len(plan.missing_seats):
        scopes = {r.scope for r in rows}
        cls = QuotaError if "region" in scopes else CapacityError
        codes = sorted({r.code or "?" for r in rows}) or ["no error reported"]
        err = cls(f"EC2 Fleet launched {len(ids)} of {len(plan.missing_seats)} seat(s) of "
                  f"{plan.name!r} in {plan.region} ({', '.join(codes)})",
                  hint="no capacity for the whole launch at once: retry later, or allow "
                       "other types, zones or regions", code=codes[0] if rows else None,
                  provider="aws")
        raise err
    return instances_from_response(resp, plan, zone_of, now)


def _delete_template_noting(prov: AwsProvider, template_id: str, plan: LaunchPlan,
                            notes: list[str]) -> None:
    try:
        delete_template(prov, template_id, plan.region)
    except ProviderError as exc:
        # Never mask the launch's own outcome: the template is tagged, `down` removes it.
        notes.append(f"launch template {template_id} was not deleted ({exc.message}); "
                     f"`nestcloud down {plan.name}` removes it")


def instances_from_response(resp: dict[str, Any], plan: LaunchPlan, zone_of: dict[str, str],
                            now: dt.datetime) -> list[dict[str, Any]]:
    """Instance records from CreateFleet's answer (id, type, zone, the template's tags), in
    the shape DescribeInstances uses, so read-back describes only what it must (it probes
    one instance for the nested switch, and describes the rest only where the API reports
    it) instead of every seat of a big lab."""
    from providers.aws import resource_tags

    tags = [{"Key": k, "Value": v}
            for k, v in resource_tags(plan.spec, plan.name, plan.owner, None, now).items()]
    out: list[dict[str, Any]] = []
    for group in resp.get("Instances") or []:
        zone = group.get("AvailabilityZone") or zone_of.get(str(group.get("SubnetId")))
        if zone is None:
            o = (group.get("LaunchTemplateAndOverrides") or {}).get("Overrides") or {}
            zone = zone_of.get(str(o.get("SubnetId")))
        for iid in group.get("InstanceIds") or []:
            out.append({"InstanceId": iid, "InstanceType": group.get("InstanceType"),
                        "State": {"Name": "pending"}, "LaunchTime": now,
                        "Placement": {"AvailabilityZone": zone} if zone else {},
                        "Tags": list(tags)})
    return out
