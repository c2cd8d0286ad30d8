"""Big AWS launches through EC2 Fleet (CreateFleet, type instant) and a launch template.

One CreateFleet call asks for every missing seat with one override per (equivalent type,
default-VPC subnet), so EC2 looks for capacity across all zones and types at once instead of
nestcloud trying them one RunInstances at a time. ``OnDemandOptions.MinTargetCapacity`` with
``SingleInstanceType`` makes EC2 itself launch either every seat (of one type) or none (API
doc of OnDemandOptionsRequest: "If this minimum capacity isn't reached, no instances are
launched"); nestcloud still checks the count and removes a short answer itself.

The fleet launches from the name's launch template, which is also the name's launch lock across
machines (lock.py, :class:`~providers.aws.lock.TemplateLock`): the caller holds it, and
deletes it once the launch is read back. The request builders are pure; :func:`launch_fleet`
does the I/O.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from nestcloud.errors import CapacityError, ProviderError, QuotaError
from nestcloud.failover import Attempt, classify
from providers.aws.errors import aws_errors, translate
from providers.aws.lock import Ec2Access, LaunchRun, TemplateLock
from providers.aws.requests import LaunchPlan, Subnet, resource_tags, tag_list

# Above this many missing seats a launch goes through one CreateFleet call with every
# equivalent type and zone (capabilities.fleet_above). At 4 or fewer, separate RunInstances
# calls (each with its own deterministic ClientToken and seat tag) cost no more round trips
# than template + fleet + template delete, and keep per-seat idempotency.
FLEET_THRESHOLD = 4


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
    """CreateFleet (type instant) for every missing seat from the template, all or none."""
    n = len(plan.missing_seats)
    tags = tag_list(resource_tags(plan.spec, plan.name, plan.owner, None, now))
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


def launch_fleet(prov: Ec2Access, plan: LaunchPlan, lock: TemplateLock, now: dt.datetime,
                 types: tuple[str, ...], run: LaunchRun) -> list[dict[str, Any]]:
    """CreateFleet for every missing seat from the template ``lock`` holds: the launched
    instances (the per-override rows go to ``run.attempts``). The caller reads them back,
    then releases the lock: by then the new seats are visible to DescribeInstances, so a run
    that takes the lock next finds them.

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


def instances_from_response(resp: dict[str, Any], plan: LaunchPlan, zone_of: dict[str, str],
                            now: dt.datetime) -> list[dict[str, Any]]:
    """Instance records from CreateFleet's answer (id, type, zone, the template's tags), in
    the shape DescribeInstances uses, so read-back describes only what it must (it probes
    one instance for the nested switch, and describes the rest only where the API reports
    it) instead of every seat of a big lab."""
    tags = tag_list(resource_tags(plan.spec, plan.name, plan.owner, None, now))
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

