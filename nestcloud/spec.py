"""What a user asks for: one launch (LaunchSpec). Built by the CLI, lab files or Python calls."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, ValidationError,
                      field_validator)

from nestcloud.errors import InputError, SpecError
from nestcloud.oses import OSES, Hypervisor

# IAM's instanceProfileNameType (botocore iam service model): 1-128 of [\w+=,.@-].
INSTANCE_PROFILE_RE = re.compile(r"[\w+=,.@-]{1,128}", re.ASCII)  # whole names: fullmatch
# A group name, as a whole: \A and \Z, because `$` also matches before a trailing newline
# (a group created as "lab\n" could never be found again). `.match` and `.fullmatch` agree.
NAME_RE = re.compile(r"\A[a-z](?:[a-z0-9-]{0,38}[a-z0-9])?\Z")
NAME_RULE = ("names are 1-40 characters: lowercase letters, digits and '-', starting with a "
             "letter and not ending with '-'")
# A region's shape on every cloud (botocore's own check of region names, which it applies
# only without a custom endpoint): letters, digits and inner '-'. Whether the region exists
# is the catalog's business (checks.py, and the CLI's --region check).
REGION_RE = re.compile(r"\A[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?\Z")
# The longest TTL, --hours or wait a duration may say: a year. It keeps expiry timestamps and
# costs far from overflowing, and nothing nestcloud launches is meant to live longer.
MAX_DURATION_S = 366 * 86400
TAG_PREFIX = "nestcloud:"
TAG_NAME = "nestcloud:name"
TAG_OWNER = "nestcloud:owner"
TAG_EXPIRES = "nestcloud:expires"
TAG_SEAT = "nestcloud:seat"
TAG_LAB = "nestcloud:lab"
# Where a Windows L1 writes its readiness JSON (the same payload as the console marker).
TAG_L1 = "nestcloud:l1"

SECURITY_TYPES = ("Standard", "TrustedLaunch", "ConfidentialVM")
# How hosts reach the internet (Azure: a NAT gateway on the subnet, a public IP per VM, or
# nothing); None: the provider's default.
EGRESS_MODES = ("nat", "public-ip", "none")
IMAGE_GENERATIONS = ("V1", "V2")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def parse_cidr(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An SSH source network (host bits allowed, e.g. 203.0.113.7/24); ValueError otherwise.
    The one syntax rule for ``ssh_cidr``: the schema and ``launcher.check_ssh_cidr`` use it."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError("not an IPv4 or IPv6 network (use e.g. 203.0.113.7/32)") from None


def _tags_rule(v: dict[str, str]) -> dict[str, str]:
    if "" in v:  # no cloud takes an empty key (EC2, ARM)
        raise ValueError("tag keys may not be empty")
    for k in v:  # the first reserved key only
        if k.lower().startswith(TAG_PREFIX):
            raise ValueError(f"tag {k!r}: the 'nestcloud:' prefix is reserved")
        if k.lower().startswith("aws:"):
            raise ValueError(f"tag {k!r}: the 'aws:' prefix is reserved by AWS")
    return v


def _known_os(alias: str) -> str:
    if alias not in OSES:
        raise ValueError(f"unknown OS (one of {', '.join(OSES)})")
    return alias


# An OS alias nestcloud knows (nestcloud.oses); the planner's requests use it too.
OsAlias = Annotated[str, AfterValidator(_known_os)]

# A time to live as users write it (lab files, ``nestcloud.launch(ttl=...)``, ``Lab(ttl=...)``,
# `--ttl`): a duration ("90m", "4h", "2d") or a number of hours; duration_seconds() reads it.
Duration = str | Annotated[float, Field(gt=0, le=MAX_DURATION_S // 3600, allow_inf_nan=False,
                                        strict=True)]


def duration_seconds(ttl: str | float) -> int:
    """A Duration in seconds; ValueError (naming the bad text) unless within the bounds."""
    if isinstance(ttl, str):
        return parse_duration(ttl)
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise ValueError(f"a duration (90m, 4h, 2d) or a number of hours (got {ttl!r})")
    return hours_to_seconds(float(ttl))


class LaunchOptions(_Strict):
    """What a user may say about the hosts of any launch: the CLI's `launch` flags, a lab
    file's keys, ``nestcloud.launch()``'s and ``Lab()``'s keywords all include these fields
    (tests/test_schema.py keeps every entry point accepting each of them)."""

    # Built on first use: only its subclasses (LaunchSpec, LabFile) validate anything, and
    # building a model's schema is most of what defining it costs (bench/README.md).
    model_config = ConfigDict(extra="forbid", defer_build=True)

    os: OsAlias = "ubuntu-24.04"
    hypervisor: Hypervisor = "kvm"
    # The level of the guests the user will run (L2 = 2).
    depth: int = Field(default=2, ge=1, le=9)
    spot: bool = False
    security_type: Literal["Standard", "TrustedLaunch", "ConfidentialVM"] = "Standard"
    image_generation: Literal["V1", "V2"] | None = None
    image: str | None = Field(default=None, min_length=1)
    disk_gib: int = Field(default=30, ge=8, le=16384)
    # AWS: an EC2 key-pair name; Azure: an SSH public key file or the key text.
    key_name: str | None = Field(default=None, min_length=1)
    ssh_cidr: str | None = None
    allow_world_ssh: bool = False
    public_ip: bool = False
    # How hosts reach the internet (Azure: a NAT gateway on the subnet, a public IP per VM,
    # or nothing); None: the provider's default.
    egress: Literal["nat", "public-ip", "none"] | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    user_data: str | None = None
    l2_smoke: bool = False
    # AWS: the IAM instance profile (by name) the instances run with.
    instance_profile: str | None = None

    @field_validator("ssh_cidr")
    @classmethod
    def _ssh_cidr(cls, v: str | None) -> str | None:
        # Syntax only; whether the network is too wide is launcher.check_ssh_cidr's rule,
        # applied before anything is sent (it knows --allow-world-ssh and says how to fix it).
        return None if v is None else str(parse_cidr(v))

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: dict[str, str]) -> dict[str, str]:
        return _tags_rule(v)

    @field_validator("instance_profile")
    @classmethod
    def _instance_profile(cls, v: str | None) -> str | None:
        if v is not None and not INSTANCE_PROFILE_RE.fullmatch(v):
            raise ValueError("an IAM instance profile name is 1-128 characters: letters, "
                             "digits and + = , . @ _ -")
        return v


class LaunchSpec(LaunchOptions):
    """One launch request: a named group of ``count`` identical L1 hosts.

    Built with keywords (``LaunchSpec(provider=..., type=...)``), it raises SpecError (an
    InputError) naming every bad, missing or unknown field; ``model_validate`` raises
    pydantic's ValidationError, for callers that format it themselves."""

    provider: str = Field(min_length=1)
    type: str = Field(min_length=1)
    region: str | None = None
    name: str | None = None
    count: int = Field(default=1, ge=1, le=1000)
    ttl_seconds: int | None = Field(default=None, gt=0, le=MAX_DURATION_S)

    def __init__(self, **fields: Any) -> None:
        try:
            super().__init__(**fields)
        except ValidationError as exc:
            raise SpecError(exc.errors(include_url=False)) from None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not NAME_RE.fullmatch(v):
            raise ValueError(NAME_RULE)
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        if v is not None and not REGION_RE.fullmatch(v):
            raise ValueError("a region name is letters, digits and '-' (e.g. us-east-1, eastus)")
        return v

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


_UNIT = {"": 3600, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> int:
    """'90m', '4h', '2d', '3600s', or '4h30m' -> seconds. A bare number means hours.

    ValueError unless 0 < seconds <= MAX_DURATION_S."""
    total = 0
    parts = re.findall(r"(\d+)\s*([smhdw]?)", text.strip().lower())
    joined = "".join(n + u for n, u in parts)
    if not parts or joined != re.sub(r"\s+", "", text.strip().lower()):
        raise ValueError(f"not a duration: {text!r} (use e.g. 90m, 4h, 2d, 4h30m)")
    for n, u in parts:
        # More digits than a year of seconds has is too long whatever the unit; checked
        # before int() so a huge number never meets Python's int-from-text digit limit.
        if len(n.lstrip("0")) > len(str(MAX_DURATION_S)):
            raise ValueError(f"too long: {text!r} (at most {MAX_DURATION_S // 86400} days)")
        total += int(n) * _UNIT[u]
    if total <= 0:
        raise ValueError(f"duration must be positive: {text!r}")
    if total > MAX_DURATION_S:
        raise ValueError(f"too long: {text!r} (at most {MAX_DURATION_S // 86400} days)")
    return total


def hours_to_seconds(hours: float) -> int:
    """A TTL given in hours (the Python API, lab files) -> seconds; ValueError when it is not
    a finite number of hours in (0, MAX_DURATION_S]."""
    if not math.isfinite(hours) or hours <= 0:
        raise ValueError(f"must be a positive, finite number of hours (got {hours!r})")
    if hours * 3600 > MAX_DURATION_S:
        raise ValueError(f"too long: {hours!r} hours (at most {MAX_DURATION_S // 3600})")
    return max(1, int(round(hours * 3600)))


def parse_tags(pairs: list[str]) -> dict[str, str]:
    """['k=v', ...] -> {k: v}; ValueError naming the bad pair."""
    out: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair or pair.startswith("="):
            raise ValueError(f"--tag {pair!r}: expected KEY=VALUE")
        k, v = pair.split("=", 1)
        if not k.strip():
            raise ValueError(f"--tag {pair!r}: the key is empty")
        out[k.strip()] = v
    return out


def check_name(name: object, what: str = "name") -> str:
    """``name`` if it is a group name (NAME_RULE, whole string); InputError otherwise.

    Every verb that acts on a named group calls this before anything reaches a cloud: EC2
    filters read ``*`` and ``?`` as wildcards, and an empty name would mean "every group"."""
    if isinstance(name, str) and NAME_RE.fullmatch(name):
        return name
    hint = ("NAME is the exact name of one group; nestcloud never reads it as a pattern"
            if isinstance(name, str) and ("*" in name or "?" in name) else None)
    raise InputError(f"{what} {name!r}: {NAME_RULE}", hint=hint)


@dataclasses.dataclass(frozen=True)
class TagLimits:
    """What one cloud accepts as tags on a resource. Providers declare theirs as the class
    attribute ``tag_limits``; :func:`check_tags` applies them before anything is created."""

    cloud: str                               # as messages name it, e.g. "AWS"
    max_tags: int                            # per resource, ours included
    key_max: int                             # characters
    value_max: int                           # characters
    added: tuple[str, ...] = ()              # keys the provider itself may add
    reserved_prefixes: tuple[str, ...] = ()  # no key or value may start with these (any case)
    key_forbidden: str = ""                  # characters no key may contain


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def check_tags(tags: Mapping[str, str], limits: TagLimits | None) -> None:
    """InputError naming every user tag ``limits`` would make the cloud reject (none when
    ``limits`` is None: a provider that declares nothing gets only LaunchSpec's checks).
    Values are never echoed: a tag value may be something the user did not mean to print."""
    if limits is None:
        return
    problems: list[str] = []
    for k, v in tags.items():
        key = repr(_short(k))
        if len(k) > limits.key_max:
            problems.append(f"tag {key}: the key is {len(k)} characters; {limits.cloud} "
                            f"allows at most {limits.key_max}")
        if len(v) > limits.value_max:
            problems.append(f"tag {key}: the value is {len(v)} characters; {limits.cloud} "
                            f"allows at most {limits.value_max}")
        bad = sorted({c for c in k if c in limits.key_forbidden})
        if bad:
            problems.append(f"tag {key}: {limits.cloud} tag names may not contain any of "
                            + " ".join(limits.key_forbidden))
        for prefix in limits.reserved_prefixes:
            if k.lower().startswith(prefix):
                problems.append(f"tag {key}: the key starts with {prefix!r}, which "
                                f"{limits.cloud} reserves")
            if v.lower().startswith(prefix):
                problems.append(f"tag {key}: the value starts with {prefix!r}, which "
                                f"{limits.cloud} reserves")
    total = len(set(tags) | set(limits.added))
    if total > limits.max_tags:
        mine = limits.max_tags - len(limits.added)
        own = [k for k in tags if not k.lower().startswith(TAG_PREFIX)]  # a lab adds its tag
        problems.append(f"{len(own)} tags of your own: {limits.cloud} allows "
                        f"{limits.max_tags} per resource and nestcloud adds up to "
                        f"{len(limits.added)} ({', '.join(limits.added)}), so at most {mine}")
    if problems:
        raise InputError("; ".join(problems))
