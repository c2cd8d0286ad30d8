"""Results that providers return and the CLI renders: plain pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Result(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Instance(_Result):
    """One L1 host as the cloud reports it (found by its nestcloud tags)."""

    provider: str
    id: str
    name: str
    region: str
    type: str
    state: str
    zone: str | None = None
    seat: int | None = None
    nested: bool | None = None
    private_ip: str | None = None
    public_ip: str | None = None
    launched_at: str | None = None
    expires: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class PlannedRequest(_Result):
    """One API request a launch would send (shown by --dry-run)."""

    service: str
    operation: str
    params: dict[str, Any]


class LaunchResult(_Result):
    provider: str
    name: str
    region: str
    type: str
    instances: list[Instance] = Field(default_factory=list)
    created: list[str] = Field(default_factory=list)
    reused: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    dry_run: bool = False
    requests: list[PlannedRequest] = Field(default_factory=list)
    sandbox: bool = False


class DownResult(_Result):
    provider: str
    name: str
    terminated: list[str] = Field(default_factory=list)
    deleted: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class CatalogDiff(_Result):
    """One disagreement between catalog.yaml and the live API."""

    type: str
    field: str
    catalog: Any
    live: Any


class VerifyResult(_Result):
    provider: str
    region: str
    checked: int
    diffs: list[CatalogDiff] = Field(default_factory=list)
    missing_live: list[str] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.diffs and not self.missing_live
