"""What a user asks for: one launch (LaunchSpec). Built by the CLI, lab files or Python calls."""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

from nestcloud.errors import InputError, SpecError
from nestcloud.oses import HYPERVISORS, Hypervisor

# IAM's instanceProfileNameType (botocore iam service model): 1-128 of [\w+=,.@-].
INSTANCE_PROFILE_RE = re.compile(r"^[\w+=,.@-]{1,128}$", re.ASCII)
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

SECURITY_TYPES = ("Standard", "TrustedLaunch", "ConfidentialVM")
# How hosts reach the internet (Azure: a NAT gateway on the subnet, a public IP per VM, or
# nothing); None: the provider's default.
EGRESS_MODES = ("nat", "public-ip", "none")
IMAGE_GENERATIONS = ("V1", "V2")


# A stdlib dataclass that checks its fields by hand, not a pydantic model: `nestcloud check`
# builds one on every run, and defining a pydantic model costs ~45 ms (half of
# `import typer, pydantic, yaml`). The checks accept and reject what the pydantic model did,
# with its messages, and SpecError.errors() has the shape of pydantic's errors() for the callers
# that format them. `_CHECKS` below lists the rule of every field.
@dataclasses.dataclass(kw_only=True, init=False)
class LaunchSpec:
    """One launch request: a named group of ``count`` identical L1 hosts."""

    provider: str
    type: str
    region: str | None = None
    os: str = "ubuntu-24.04"
    hypervisor: Hypervisor = "kvm"
    depth: int = 2
    name: str | None = None
    count: int = 1
    image: str | None = None
    spot: bool = False
    security_type: Literal["Standard", "TrustedLaunch", "ConfidentialVM"] = "Standard"
    image_generation: Literal["V1", "V2"] | None = None
    ssh_cidr: str | None = None
    allow_world_ssh: bool = False
    key_name: str | None = None
    disk_gib: int = 30
    ttl_seconds: int | None = None
    tags: dict[str, str] = dataclasses.field(default_factory=dict)
    user_data: str | None = None
    public_ip: bool = False
    l2_smoke: bool = False
    # AWS: the IAM instance profile (by name) the instances run with.
    instance_profile: str | None = None
    egress: Literal["nat", "public-ip", "none"] | None = None

    def __init__(self, **fields: Any) -> None:
        """Check ``fields``; raises SpecError naming every bad, missing or unknown field."""
        errors: list[dict[str, Any]] = []
        values: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in fields:
                try:
                    values[f.name] = _CHECKS[f.name](fields[f.name])
                except _Invalid as bad:
                    errors.extend({**e, "loc": (f.name, *e["loc"])} for e in bad.errors)
            elif f.default is not dataclasses.MISSING:
                values[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                values[f.name] = f.default_factory()
            else:
                errors.append({"type": "missing", "loc": (f.name,), "msg": "Field required",
                               "input": dict(fields)})
        errors.extend({"type": "unexpected_keyword_argument", "loc": (k,),
                       "msg": "Unexpected keyword argument", "input": v}
                      for k, v in fields.items() if k not in _CHECKS)
        if errors:
            raise SpecError(errors)
        self.__dict__.update(values)

    def model_copy(self, *, update: dict[str, Any] | None = None) -> LaunchSpec:
        """A copy with ``update`` applied, not validated: pydantic's model_copy, kept by name
        and meaning because launch, lab and provider code call it."""
        new = copy.copy(self)
        new.__dict__.update(update or {})
        return new

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# -- field checks ----------------------------------------------------------------------------
# Each takes the given value and returns the stored one (coerced as pydantic's lax mode did:
# "3" -> 3, "yes" -> True, b"x" -> "x"), or raises _Invalid with pydantic's error type and
# message. Values pydantic rejected are rejected.


class _Invalid(Exception):
    """What is wrong with one field: pydantic-shaped errors, ``loc`` relative to the field."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors


def _invalid(kind: str, msg: str, value: Any) -> _Invalid:
    return _Invalid([{"type": kind, "loc": (), "msg": msg, "input": value}])


def _str(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (bytes, bytearray)):
        try:
            return v.decode()
        except UnicodeDecodeError:
            raise _invalid("string_unicode", "Input should be a valid string, unable to parse "
                           "raw data as a unicode string", v) from None
    raise _invalid("string_type", "Input should be a valid string", v)


def _non_empty_str(v: Any) -> str:
    s = _str(v)
    if not s:
        raise _invalid("string_too_short", "String should have at least 1 character", v)
    return s


_INT_TEXT = re.compile(r"\s*([+-]?\d+(?:_\d+)*)(?:\.0+)?\s*", re.ASCII)


def _int(v: Any) -> int:
    if isinstance(v, int):  # bool included, as pydantic's lax mode: True -> 1
        return int(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise _invalid("finite_number", "Input should be a finite number", v)
        if not v.is_integer():
            raise _invalid("int_from_float", "Input should be a valid integer, got a number "
                           "with a fractional part", v)
        return int(v)
    if isinstance(v, (str, bytes)):
        m = _INT_TEXT.fullmatch(v.decode("ascii", "replace") if isinstance(v, bytes) else v)
        if m is None:
            raise _invalid("int_parsing", "Input should be a valid integer, unable to parse "
                           "string as an integer", v)
        return int(m.group(1))
    raise _invalid("int_type", "Input should be a valid integer", v)


def _int_between(lo: int, hi: int) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        n = _int(v)
        if n < lo:
            raise _invalid("greater_than_equal", f"Input should be greater than or equal to {lo}",
                           v)
        if n > hi:
            raise _invalid("less_than_equal", f"Input should be less than or equal to {hi}", v)
        return n
    return check


def _positive_int(v: Any) -> int:
    n = _int(v)
    if n <= 0:
        raise _invalid("greater_than", "Input should be greater than 0", v)
    return n


_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    # A whole float counts as that int: 1.0 is True, 2.0 is "unable to interpret", 0.5 no boolean.
    n = int(v) if isinstance(v, float) and v.is_integer() else v
    if isinstance(n, int) and n in (0, 1):
        return bool(n)
    if isinstance(v, (str, bytes)):
        text = (v.decode("ascii", "replace") if isinstance(v, bytes) else v).lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
    if isinstance(n, (int, str, bytes)):
        raise _invalid("bool_parsing", "Input should be a valid boolean, unable to interpret "
                       "input", v)
    raise _invalid("bool_type", "Input should be a valid boolean", v)


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str]:
    shown = (f"{', '.join(map(repr, choices[:-1]))} or " if len(choices) > 1 else "") + repr(
        choices[-1])

    def check(v: Any) -> str:
        if isinstance(v, str) and v in choices:
            return v
        raise _invalid("literal_error", f"Input should be {shown}", v)
    return check


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else check(v)


def _name(v: Any) -> str:
    s = _str(v)
    if not NAME_RE.fullmatch(s):
        raise _invalid("value_error", f"Value error, {NAME_RULE}", v)
    return s


def _region(v: Any) -> str:
    s = _str(v)
    if not REGION_RE.fullmatch(s):
        raise _invalid("value_error", "Value error, a region name is letters, digits and '-' "
                       "(e.g. us-east-1, eastus)", v)
    return s


def _ttl(v: Any) -> int:
    n = _positive_int(v)
    if n > MAX_DURATION_S:
        raise _invalid("less_than_equal",
                       f"Input should be less than or equal to {MAX_DURATION_S}", v)
    return n


def _instance_profile(v: Any) -> str:
    s = _str(v)
    if not INSTANCE_PROFILE_RE.match(s):
        raise _invalid("value_error", "Value error, an IAM instance profile name is 1-128 "
                       "characters: letters, digits and + = , . @ _ -", v)
    return s


def _tags(v: Any) -> dict[str, str]:
    if not isinstance(v, Mapping):
        raise _invalid("dict_type", "Input should be a valid dictionary", v)
    out: dict[str, str] = {}
    errors: list[dict[str, Any]] = []
    for key, value in v.items():
        k = v_ = None
        try:
            k = _str(key)
        except _Invalid as bad:
            errors.extend({**e, "loc": (key, "[key]")} for e in bad.errors)
        try:
            v_ = _str(value)
        except _Invalid as bad:
            errors.extend({**e, "loc": (key,)} for e in bad.errors)
        if k is not None and v_ is not None:
            out[k] = v_
    if errors:
        raise _Invalid(errors)
    if "" in out:  # no cloud takes an empty key (EC2, ARM)
        raise _invalid("value_error", "Value error, tag keys may not be empty", v)
    for k in out:  # the first reserved key only, as the pydantic validator reported it
        if k.lower().startswith(TAG_PREFIX):
            raise _invalid("value_error", f"Value error, tag {k!r}: the 'nestcloud:' prefix "
                           "is reserved", v)
        if k.lower().startswith("aws:"):
            raise _invalid("value_error", f"Value error, tag {k!r}: the 'aws:' prefix is "
                           "reserved by AWS", v)
    return out


# In field order (a test keeps it equal to LaunchSpec's fields).
_CHECKS: dict[str, Callable[[Any], Any]] = {
    "provider": _non_empty_str,
    "type": _non_empty_str,
    "region": _optional(_region),
    "os": _str,
    "hypervisor": _one_of(HYPERVISORS),
    "depth": _int_between(1, 9),
    "name": _optional(_name),
    "count": _int_between(1, 1000),
    "image": _optional(_non_empty_str),
    "spot": _bool,
    "security_type": _one_of(SECURITY_TYPES),
    "image_generation": _optional(_one_of(IMAGE_GENERATIONS)),
    "ssh_cidr": _optional(_str),
    "allow_world_ssh": _bool,
    "key_name": _optional(_non_empty_str),
    "disk_gib": _int_between(8, 16384),
    "ttl_seconds": _optional(_ttl),
    "tags": _tags,
    "user_data": _optional(_str),
    "public_ip": _bool,
    "l2_smoke": _bool,
    "instance_profile": _optional(_instance_profile),
    "egress": _optional(_one_of(EGRESS_MODES)),
}

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
