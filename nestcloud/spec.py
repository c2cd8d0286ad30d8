"""What a user asks for: one launch (LaunchSpec). Built by the CLI, lab files or Python calls."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nestcloud.oses import Hypervisor

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$|^[a-z]$")
TAG_PREFIX = "nestcloud:"
TAG_NAME = "nestcloud:name"
TAG_OWNER = "nestcloud:owner"
TAG_EXPIRES = "nestcloud:expires"
TAG_SEAT = "nestcloud:seat"
TAG_LAB = "nestcloud:lab"


class LaunchSpec(BaseModel):
    """One launch request: a named group of ``count`` identical L1 hosts."""

    model_config = ConfigDict(extra="forbid")

    provider: str = Field(min_length=1)
    type: str = Field(min_length=1)
    region: str | None = None
    os: str = "ubuntu-24.04"
    hypervisor: Hypervisor = "kvm"
    depth: int = Field(default=2, ge=1, le=9)
    name: str | None = None
    count: int = Field(default=1, ge=1, le=1000)
    image: str | None = None
    spot: bool = False
    security_type: Literal["Standard", "TrustedLaunch", "ConfidentialVM"] = "Standard"
    image_generation: Literal["V1", "V2"] | None = None
    ssh_cidr: str | None = None
    allow_world_ssh: bool = False
    key_name: str | None = None
    disk_gib: int = Field(default=30, ge=8, le=16384)
    ttl_seconds: int | None = Field(default=None, gt=0)
    tags: dict[str, str] = Field(default_factory=dict)
    user_data: str | None = None
    public_ip: bool = False
    l2_smoke: bool = False

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str | None) -> str | None:
        if v is not None and not NAME_RE.match(v):
            raise ValueError("names are 1-40 characters: lowercase letters, digits and '-', "
                             "starting with a letter and not ending with '-'")
        return v

    @field_validator("tags")
    @classmethod
    def _tags_ok(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if k.lower().startswith(TAG_PREFIX):
                raise ValueError(f"tag {k!r}: the 'nestcloud:' prefix is reserved")
            if k.lower().startswith("aws:"):
                raise ValueError(f"tag {k!r}: the 'aws:' prefix is reserved by AWS")
        return v


_UNIT = {"": 3600, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> int:
    """'90m', '4h', '2d', '3600s', or '4h30m' -> seconds. A bare number means hours."""
    total = 0
    parts = re.findall(r"(\d+)\s*([smhdw]?)", text.strip().lower())
    joined = "".join(n + u for n, u in parts)
    if not parts or joined != re.sub(r"\s+", "", text.strip().lower()):
        raise ValueError(f"not a duration: {text!r} (use e.g. 90m, 4h, 2d, 4h30m)")
    for n, u in parts:
        total += int(n) * _UNIT[u]
    if total <= 0:
        raise ValueError(f"duration must be positive: {text!r}")
    return total


def parse_tags(pairs: list[str]) -> dict[str, str]:
    """['k=v', ...] -> {k: v}; ValueError naming the bad pair."""
    out: dict[str, str] = {}
    for pair in pairs:
        if "=" not in pair or pair.startswith("="):
            raise ValueError(f"--tag {pair!r}: expected KEY=VALUE")
        k, v = pair.split("=", 1)
        out[k.strip()] = v
    return out
