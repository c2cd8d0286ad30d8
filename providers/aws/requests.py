"""AWS requests as data: what every EC2 call nestcloud makes carries, built from a plan.

Pure functions and dataclasses, no SDK and no I/O: the provider (provider.py) reads the cloud
into a :class:`LaunchPlan`, and everything it then sends (RunInstances, the launch
template's data, the security group) is built here from that plan, so a dry run prints exactly
what a launch sends and tests check requests without an endpoint. Also here: reading EC2's
answers back (instances, nesting, the catalog's types) into nestcloud's shapes.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nestcloud.errors import InputError, RefusedError, UnsupportedError
from nestcloud.spec import TAG_EXPIRES, TAG_L1, TAG_NAME, TAG_OWNER, TAG_SEAT

if TYPE_CHECKING:  # annotations only: importing the provider builds no result model
    from nestcloud.catalog import Catalog, InstanceType
    from nestcloud.models import CatalogDiff, Instance, PlannedRequest
    from nestcloud.spec import LaunchSpec

NESTED_FEATURE = "nested-virtualization"
NESTED_CPU_OPTIONS = {"NestedVirtualization": "enabled"}

# FACTS.md (AWS): public SSM parameters per OS alias. windows-2025 follows the same published
# naming as windows-2022 (it is not in FACTS.md; the API says so if a region lacks it).
SSM_IMAGE_PARAMETERS: dict[str, str] = {
    "ubuntu-24.04": "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/"
                    "ebs-gp3/ami-id",
    "debian-12": "/aws/service/debian/release/12/latest/amd64",
    "al2023": "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
    "windows-2022": "/aws/service/ami-windows-latest/Windows_Server-2022-English-Full-Base",
    "windows-2025": "/aws/service/ami-windows-latest/Windows_Server-2025-English-Full-Base",
}
RHEL_OWNER = "309956199498"  # Red Hat (FACTS.md): RHEL has no SSM alias
RHEL_NAME = {"rhel-9": "RHEL-9.*"}

LIVE_STATES = ("pending", "running")
FOUND_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")
ALL_STATES = ("pending", "running", "stopping", "stopped", "shutting-down", "terminated")
# The states of an instance that is still there (not on its way out).
KEPT_STATES = ("pending", "running", "stopping", "stopped")
SG_PREFIX = "nestcloud-"
# EC2: a Windows L1 reports by tagging itself, which needs an instance profile (FACTS.md, AWS).
NO_INSTANCE_PROFILE = ("launched without an instance profile: this Windows L1 cannot tag "
                       "itself, so its readiness cannot be reported (launch with "
                       "--instance-profile; see nestcloud iam-policy -p aws --l1-role)")


def tag_list(d: dict[str, str]) -> list[dict[str, str]]:
    """Tags as EC2 takes them: [{"Key": k, "Value": v}, ...]."""
    return [{"Key": k, "Value": v} for k, v in d.items()]


def tag_dict(tags: Iterable[dict[str, str]] | None) -> dict[str, str]:
    """EC2's tag list as a dict."""
    return {t["Key"]: t["Value"] for t in (tags or [])}


def _ceil_minute(t: dt.datetime) -> dt.datetime:
    """``t`` rounded up to the minute. The expiry tag is part of every create request: two
    runs of the same launch within a minute (another machine, a retried pipeline) then send
    the same parameters under the same ClientToken, which EC2 answers with the first run's
    instance instead of IdempotentParameterMismatch; a TTL is never shortened."""
    floor = t.replace(second=0, microsecond=0)
    return floor if floor == t else floor + dt.timedelta(minutes=1)


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00",
                                                                                    "Z")


@dataclass(frozen=True)
class NestingDecision:
    """What the launch sends for nesting, after the catalog and the live API were compared."""

    cpu_options: dict[str, str] | None
    mode: str  # "nested" | "native"
    notes: tuple[str, ...] = ()


def decide_nesting(t: InstanceType, live: dict[str, Any] | None, region: str) -> NestingDecision:
    """Catalog vs DescribeInstanceTypes: the live answer wins, and the user is told."""
    if live is None:
        raise UnsupportedError(f"{t.name} is not offered in {region} (DescribeInstanceTypes "
                               "does not know it there)",
                               hint=f"pick a region that offers it, or run `nestcloud catalog "
                                    f"verify --provider aws --region {region}`", provider="aws")
    features = live.get("ProcessorInfo", {}).get("SupportedFeatures") or []
    metal = bool(live.get("BareMetal"))
    if metal:
        notes = () if t.nesting == "native" else (
            f"catalog says {t.name} is {t.nesting!r} but the live API reports bare metal: "
            "launching without the nested switch (the API wins)",)
        return NestingDecision(cpu_options=None, mode="native", notes=notes)
    if NESTED_FEATURE in features:
        notes = () if t.nesting == "nested" else (
            f"catalog says {t.name} is {t.nesting!r} but the live API reports "
            f"{NESTED_FEATURE}: sending the nested switch (the API wins)",)
        return NestingDecision(cpu_options=dict(NESTED_CPU_OPTIONS), mode="nested", notes=notes)
    raise RefusedError(
        f"catalog says {t.name} is {t.nesting!r}, but DescribeInstanceTypes in {region} reports "
        f"neither bare metal nor {NESTED_FEATURE} for it: it cannot run a hypervisor there "
        "(the live API wins; nothing was created)",
        hint=f"run `nestcloud catalog verify --provider aws --region {region}` and pick another "
             "type")


def confirmed_equivalents(planned: str, types: Iterable[str],
                          live: dict[str, dict[str, Any] | None], nesting: NestingDecision,
                          catalog: Catalog, region: str, arch: str
                          ) -> tuple[tuple[str, ...], list[str]]:
    """(the planned type and the equivalents the live API confirms, a note per one left
    out). A fleet's launch template carries the planned type's nested switch to every
    override, so an equivalent must run a hypervisor the same way (nested, or bare metal)
    by DescribeInstanceTypes, not by the catalog's word, and take the image's architecture."""
    kept = [planned]
    notes: list[str] = []
    for n in dict.fromkeys(types):
        if n == planned:
            continue
        it = live.get(n)
        why = None
        if it is None:
            why = f"DescribeInstanceTypes does not know it in {region}"
        else:
            mode = live_nesting(it)
            archs = (it.get("ProcessorInfo") or {}).get("SupportedArchitectures") or []
            if mode != nesting.mode:
                said = {"native": "reports bare metal",
                        "nested": f"reports {NESTED_FEATURE}",
                        "none": f"reports neither bare metal nor {NESTED_FEATURE}"}[mode]
                cat = catalog.get("aws", n)
                claim = (f"the catalog says {cat.nesting!r} but " if cat is not None
                         else "")
                why = f"{claim}DescribeInstanceTypes in {region} {said} for it"
                if mode in ("native", "nested"):
                    why += f" (this launch is {nesting.mode})"
            elif arch not in archs:
                why = (f"DescribeInstanceTypes in {region} reports {', '.join(archs) or 'no'} "
                       f"architecture for it, the image is {arch}")
        if why is None:
            kept.append(n)
        else:
            notes.append(f"equivalent type {n} left out of the fleet: {why}")
    return tuple(kept), notes


def spec_digest(spec: LaunchSpec, image_id: str, user_data: bytes | None) -> str:
    """What makes two launches "the same request" (not the expiry time, which moves)."""
    doc = {"type": spec.type, "region": spec.region, "image": image_id, "os": spec.os,
           "hypervisor": spec.hypervisor, "disk": spec.disk_gib, "spot": spec.spot,
           "key": spec.key_name, "ssh": spec.ssh_cidr, "public_ip": spec.public_ip,
           "ttl": spec.ttl_seconds, "tags": sorted(spec.tags.items()),
           "user_data": hashlib.sha256(user_data or b"").hexdigest()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def client_token(name: str, seat: int, type_name: str, region: str, digest: str,
                 generation: int = 0, *, group: str = "") -> str:
    """Deterministic RunInstances ClientToken (max 64 ASCII): same launch, same token.

    EC2 keeps a token bound to its instance for at least 24 hours after that instance is
    terminated, and answers the same token with other parameters (a later expiry tag, another
    security group) with IdempotentParameterMismatch. So the token names the seat's
    *incarnation*, read from the cloud: ``group`` is the id of the name's security group,
    which every run of the same launch shares (a second run finds the first one's group) and
    which ``down`` deletes, so a launch after ``down`` makes a new group and gets new tokens,
    while two concurrent runs send the same token and EC2 gives both the same instance.
    ``generation`` moves on only when EC2 says the token is still bound to an instance that
    no longer runs (see AwsProvider.run_seat).
    """
    raw = f"{name}|{seat}|{type_name}|{region}|{digest}|{generation}"
    if group:
        raw += f"|{group}"
    return "nc-" + hashlib.sha256(raw.encode()).hexdigest()[:48]


def resource_tags(spec: LaunchSpec, name: str, owner: str, seat: int | None,
                  now: dt.datetime) -> dict[str, str]:
    tags = dict(spec.tags)
    tags["Name"] = tags.get("Name", name if seat is None else f"{name}-{seat}")
    tags[TAG_NAME] = name
    tags[TAG_OWNER] = owner
    if spec.ttl_seconds:
        tags[TAG_EXPIRES] = _iso(_ceil_minute(now + dt.timedelta(seconds=spec.ttl_seconds)))
    if seat is not None:
        tags[TAG_SEAT] = str(seat)
    return tags


def security_group_name(name: str) -> str:
    return SG_PREFIX + name


def ec2_readiness_note(os_alias: str, instance_profile: str | None) -> dict[str, str]:
    """The instance tags an EC2 launch adds so the waiter knows the L1 cannot report: for a
    Windows L1 without an instance profile, ``{TAG_L1: not_verifiable_tag(...)}``; else {}."""
    from nestcloud.bootstrap.profiles import TAG_L1 as tag, not_verifiable_tag
    from nestcloud.oses import OSES

    info = OSES.get(os_alias)
    if info is None or info.family != "windows" or instance_profile:
        return {}
    return {tag: not_verifiable_tag(NO_INSTANCE_PROFILE)}


def ssh_permission(cidr: str) -> dict[str, Any]:
    ranges: dict[str, Any] = ({"Ipv6Ranges": [{"CidrIpv6": cidr, "Description": "nestcloud ssh"}]}
                              if ":" in cidr else
                              {"IpRanges": [{"CidrIp": cidr, "Description": "nestcloud ssh"}]})
    return {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, **ranges}


@dataclass(frozen=True)
class Subnet:
    id: str
    zone: str


@dataclass
class LaunchPlan:
    """Everything a launch resolved by reading (no writes yet)."""

    spec: LaunchSpec
    name: str
    region: str
    nesting: NestingDecision
    image_id: str
    root_device: str
    disk_gib: int
    user_data: bytes | None
    user_data_kind: str
    owner: str
    vpc_id: str
    sg_id: str | None
    existing: list[dict[str, Any]]
    missing_seats: list[int]
    digest: str
    notes: list[str] = field(default_factory=list)
    # The default VPC's default subnet per zone (what a fleet's overrides name), by zone.
    subnets: list[Subnet] = field(default_factory=list)
    # The types a fleet may use: the planned one first, then the equivalents the live API
    # confirmed run a hypervisor the same way (see confirmed_equivalents).
    types: tuple[str, ...] = ()
    # The name's launch template as the plan found it (a lock some run holds, or one a
    # killed run left), or None.
    template: dict[str, Any] | None = None


def reconcile(spec: LaunchSpec, name: str, region: str, types: tuple[str, ...],
              existing: list[dict[str, Any]]) -> tuple[list[int], list[str]]:
    """(the seats to launch, notes) given the name's instances as DescribeInstances lists
    them. Running seats of another type than ``spec.type`` or ``types`` are refused."""
    notes: list[str] = []
    live_seats: set[int] = set()
    unnumbered = 0
    for raw in existing:
        inst = to_instance(raw, region)
        if inst.state not in LIVE_STATES:
            continue
        if inst.type != spec.type and inst.type not in types:
            raise InputError(f"{name!r} already runs {inst.type} ({inst.id}); this launch "
                             f"asks for {spec.type}",
                             hint=f"use another --name, or `nestcloud down {name}` first")
        if inst.seat is not None:
            live_seats.add(inst.seat)
        else:
            unnumbered += 1  # a fleet seat: fleet instances carry no seat tag
    missing = [s for s in range(spec.count) if s not in live_seats][unnumbered:]
    extra = sorted(s for s in live_seats if s >= spec.count)
    if extra:
        notes.append(f"seats {extra} of {name!r} run beyond --count {spec.count}; left as "
                     f"they are (`nestcloud down {name}` removes every seat)")
    stopped = [to_instance(r, region).id for r in existing
               if r.get("State", {}).get("Name") in ("stopping", "stopped")]
    if stopped:
        notes.append(f"stopped instances of {name!r} are not reused: {', '.join(stopped)}")
    return missing, notes


def seats_group(existing: list[dict[str, Any]], name: str, vpc: str) -> str | None:
    """The group of the name as its running seats (DescribeInstances) report it, if any."""
    want = security_group_name(name)
    for raw in existing:
        if raw.get("State", {}).get("Name") not in LIVE_STATES or raw.get("VpcId") != vpc:
            continue
        for g in raw.get("SecurityGroups") or []:
            if g.get("GroupName") == want and g.get("GroupId"):
                return str(g["GroupId"])
    return None


def instance_settings(plan: LaunchPlan, seat: int | None, sg_id: str, now: dt.datetime
                      ) -> dict[str, Any]:
    """What every host gets, by RunInstances or by a fleet's launch template: image, type,
    IMDSv2, encrypted gp3 root, tags on instance and volume, the nested switch (nested types
    only), the group, key, instance profile, and terminate-on-shutdown with a TTL."""
    spec = plan.spec
    tags = tag_list(resource_tags(spec, plan.name, plan.owner, seat, now))
    # A Windows L1 without an instance profile cannot report: say so on the instance itself.
    instance_tags = tags + tag_list(ec2_readiness_note(spec.os, spec.instance_profile))
    params: dict[str, Any] = {
        "ImageId": plan.image_id,
        "InstanceType": spec.type,
        # IMDSv2 only; hop limit 1 keeps L2 guests behind the L1 away from its credentials.
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled",
                            "HttpPutResponseHopLimit": 1},
        "BlockDeviceMappings": [{"DeviceName": plan.root_device,
                                 "Ebs": {"VolumeSize": plan.disk_gib, "VolumeType": "gp3",
                                         "Encrypted": True, "DeleteOnTermination": True}}],
        "TagSpecifications": [{"ResourceType": "instance", "Tags": instance_tags},
                              {"ResourceType": "volume", "Tags": tags}],
    }
    if plan.nesting.cpu_options is not None:
        params["CpuOptions"] = dict(plan.nesting.cpu_options)
    if spec.public_ip:
        params["NetworkInterfaces"] = [{"DeviceIndex": 0, "AssociatePublicIpAddress": True,
                                        "Groups": [sg_id], "DeleteOnTermination": True}]
    else:
        params["SecurityGroupIds"] = [sg_id]
    if spec.key_name:
        params["KeyName"] = spec.key_name
    if spec.instance_profile:
        params["IamInstanceProfile"] = {"Name": spec.instance_profile}
    if spec.ttl_seconds:
        params["InstanceInitiatedShutdownBehavior"] = "terminate"
    return params


def run_instances_params(plan: LaunchPlan, seat: int, sg_id: str, now: dt.datetime,
                         generation: int = 0) -> dict[str, Any]:
    """The exact RunInstances request for one seat."""
    spec = plan.spec
    params = instance_settings(plan, seat, sg_id, now)
    params.update(MinCount=1, MaxCount=1,
                  ClientToken=client_token(plan.name, seat, spec.type, plan.region,
                                           plan.digest, generation, group=sg_id))
    if plan.user_data:
        params["UserData"] = plan.user_data  # boto3 base64-encodes it
    if spec.spot:
        params["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {"SpotInstanceType": "one-time",
                            "InstanceInterruptionBehavior": "terminate"}}
    return params


def launch_template_data(plan: LaunchPlan, sg_id: str, now: dt.datetime) -> dict[str, Any]:
    """LaunchTemplateData: the same settings RunInstances sends, minus the seat tag."""
    data = instance_settings(plan, None, sg_id, now)
    if plan.user_data:
        # Unlike RunInstances, boto3 does not encode launch-template user data itself.
        data["UserData"] = base64.b64encode(plan.user_data).decode("ascii")
    return data


def security_group_requests(plan: LaunchPlan, now: dt.datetime) -> list[PlannedRequest]:
    """CreateSecurityGroup (+ one ingress rule when --ssh-cidr) for a new group."""
    from nestcloud.models import PlannedRequest

    tags = tag_list(resource_tags(plan.spec, plan.name, plan.owner, None, now))
    reqs = [PlannedRequest(service="ec2", operation="CreateSecurityGroup", params={
        "GroupName": security_group_name(plan.name),
        "Description": f"nestcloud {plan.name}: no inbound except SSH from --ssh-cidr",
        "VpcId": plan.vpc_id,
        "TagSpecifications": [{"ResourceType": "security-group", "Tags": tags}]})]
    if plan.spec.ssh_cidr:
        reqs.append(PlannedRequest(service="ec2", operation="AuthorizeSecurityGroupIngress",
                                   params={"GroupId": "<new group>",
                                           "IpPermissions": [ssh_permission(
                                               plan.spec.ssh_cidr)]}))
    return reqs


def nested_field(raw: dict[str, Any]) -> str | None:
    return (raw.get("CpuOptions") or {}).get("NestedVirtualization")


def cpu_flag_proven(checks: dict[str, Any]) -> bool:
    """Whether an in-guest readiness report shows the CPU's virtualization flag (the
    l1check ``cpu_flag`` check: vmx or svm in /proc/cpuinfo)."""
    flag = checks.get("cpu_flag")
    return isinstance(flag, dict) and flag.get("ok") is True and flag.get("flag") in (
        "vmx", "svm")


def to_instance(raw: dict[str, Any], region: str) -> Instance:
    """One DescribeInstances (or RunInstances) record as nestcloud's Instance."""
    from nestcloud.models import Instance

    tags = tag_dict(raw.get("Tags"))
    seat = tags.get(TAG_SEAT)
    nv = (raw.get("CpuOptions") or {}).get("NestedVirtualization")
    launched = raw.get("LaunchTime")
    return Instance(
        provider="aws", id=raw["InstanceId"], name=tags.get(TAG_NAME, ""), region=region,
        type=raw.get("InstanceType", ""), state=raw.get("State", {}).get("Name", "unknown"),
        zone=(raw.get("Placement") or {}).get("AvailabilityZone"),
        seat=int(seat) if seat and seat.isdigit() else None,
        nested=None if nv is None else nv == "enabled",
        private_ip=raw.get("PrivateIpAddress"), public_ip=raw.get("PublicIpAddress"),
        launched_at=_iso(launched) if isinstance(launched, dt.datetime) else
        (str(launched) if launched else None),
        expires=tags.get(TAG_EXPIRES), tags=tags)


def listed(raws: Iterable[dict[str, Any]], region: str) -> list[Instance]:
    """Instances as `ls` shows them: by name, then seat (unnumbered fleet seats last)."""
    return sorted((to_instance(r, region) for r in raws),
                  key=lambda i: (i.name, i.seat if i.seat is not None else 1 << 30, i.id))


def printable(params: dict[str, Any]) -> dict[str, Any]:
    """Request params as JSON-safe data: UserData as the base64 text boto3 would send."""
    out = dict(params)
    if isinstance(out.get("UserData"), bytes):
        out["UserData"] = base64.b64encode(out["UserData"]).decode("ascii")
    return out


def live_nesting(it: dict[str, Any]) -> str:
    """How DescribeInstanceTypes says a type runs a hypervisor: native, nested or none."""
    if it.get("BareMetal"):
        return "native"
    feats = (it.get("ProcessorInfo") or {}).get("SupportedFeatures") or []
    return "nested" if NESTED_FEATURE in feats else "none"


def diff_type(t: InstanceType, it: dict[str, Any]) -> list[CatalogDiff]:
    """Catalog vs one DescribeInstanceTypes entry: nesting, metal, arch, vCPUs, memory."""
    from nestcloud.models import CatalogDiff

    out: list[CatalogDiff] = []

    def d(fieldname: str, cat: Any, lv: Any) -> None:
        if cat != lv:
            out.append(CatalogDiff(type=t.name, field=fieldname, catalog=cat, live=lv))

    d("nesting", t.nesting, live_nesting(it))
    d("bare_metal", t.bare_metal, bool(it.get("BareMetal")))
    archs = (it.get("ProcessorInfo") or {}).get("SupportedArchitectures") or []
    if t.arch not in archs:
        out.append(CatalogDiff(type=t.name, field="arch", catalog=t.arch, live=archs))
    d("vcpus", t.vcpus, (it.get("VCpuInfo") or {}).get("DefaultVCpus"))
    mib = (it.get("MemoryInfo") or {}).get("SizeInMiB")
    gib = round(mib / 1024, 3) if mib is not None else None
    if gib is None or abs(gib - t.memory_gib) > 0.01:
        out.append(CatalogDiff(type=t.name, field="memory_gib", catalog=t.memory_gib, live=gib))
    return out
