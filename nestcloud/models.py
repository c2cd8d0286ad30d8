"""Results that providers return and the CLI renders: plain pydantic models.

Each declares what it shows (``nestcloud.render.Rendered``); ``nestcloud.render`` turns that
into the terminal table, the --json document and the notebook HTML.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from nestcloud.render import Block, Rendered, Table, yes_no


class Result(Rendered, BaseModel):
    """The base of result models: strict, ``to_dict()`` is plain JSON data, and it renders
    through nestcloud.render from what the subclass declares."""

    model_config = ConfigDict(extra="forbid")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# The instance table of `launch`, `ls` and `down` (labs show theirs by seat: nestcloud.lab).
INSTANCE_COLUMNS = ("provider", "name", "seat", "id", "type", "region", "zone", "state",
                    "nested", "public ip", "expires")


class Instance(Result):
    """One L1 host as the cloud reports it (found by its nestcloud tags)."""

    columns: ClassVar[tuple[str, ...]] = INSTANCE_COLUMNS

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

    def row(self) -> list[str]:
        return [self.provider, self.name, "-" if self.seat is None else str(self.seat),
                self.id, self.type, self.region, self.zone or "-", self.state,
                yes_no(self.nested), self.public_ip or "-", self.expires or "-"]

    def rows(self) -> list[list[str]]:
        return [self.row()]

    def caption(self) -> str:
        return f"{self.name} {self.id}"


class PlannedRequest(Result):
    """One API request a launch would send (shown by --dry-run)."""

    service: str
    operation: str
    params: dict[str, Any]

    def line(self) -> str:
        """The request for a terminal: long user data is elided (--json has it whole)."""
        params = dict(self.params)
        if isinstance(params.get("UserData"), str) and len(params["UserData"]) > 80:
            params["UserData"] = (f"<{len(params['UserData'])} base64 chars; "
                                  "--json shows them>")
        return f"{self.service} {self.operation} {json.dumps(params, indent=2)}"


class LaunchResult(Result):
    columns: ClassVar[tuple[str, ...]] = INSTANCE_COLUMNS

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

    def rows(self) -> list[list[str]]:
        return [i.row() for i in self.instances]

    def caption(self) -> str:
        if self.dry_run:
            return (f"dry run: {len(self.requests)} request(s) would be sent "
                    f"({self.provider}, {self.region}); nothing was created")
        where = " (sandbox)" if self.sandbox else ""
        return (f"{self.name}: {len(self.instances)} instance(s) of {self.type} in "
                f"{self.region}{where}: {len(self.instances) - len(self.reused)} new, "
                f"{len(self.reused)} reused")

    def text(self, **options: Any) -> list[Block]:
        if self.dry_run:
            return [self.caption(), *(r.line() for r in self.requests)]
        return super().text()


class Listing(Result):
    """What `ls` found: the instances, and names that have no instance but still have
    resources (``leftovers``: provider, name, region, kind, id)."""

    columns: ClassVar[tuple[str, ...]] = INSTANCE_COLUMNS
    leftover_columns: ClassVar[tuple[str, ...]] = ("provider", "name", "region", "kind", "id")

    instances: list[Instance] = Field(default_factory=list)
    leftovers: list[dict[str, str]] = Field(default_factory=list)

    def rows(self) -> list[list[str]]:
        return [i.row() for i in self.instances]

    def caption(self) -> str:
        return f"{len(self.instances)} instance(s)"

    def text(self, **options: Any) -> list[Block]:
        out: list[Block] = [self.table()] if self.instances else []
        if self.leftovers:
            out.append(("\n" if self.instances else "") + "leftovers (a name without "
                       "instances; `nestcloud down NAME` removes them):")
            out.append(Table(self.leftover_columns,
                             [[x[h] for h in self.leftover_columns] for x in self.leftovers]))
        return out


class DownResult(Result):
    columns: ClassVar[tuple[str, ...]] = ("provider", "name", "terminated", "deleted")

    provider: str
    name: str
    terminated: list[str] = Field(default_factory=list)
    deleted: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    def row(self) -> list[str]:
        return [self.provider, self.name, ", ".join(self.terminated) or "-",
                ", ".join(self.deleted) or "-"]

    def rows(self) -> list[list[str]]:
        return [self.row()]

    def line(self) -> str:
        if not (self.terminated or self.deleted):
            return f"{self.provider}: {self.name}: nothing to remove"
        return (f"{self.provider}: {self.name}: terminated {len(self.terminated)} instance(s)"
                + (f" ({', '.join(self.terminated)})" if self.terminated else "")
                + (f"; deleted {', '.join(self.deleted)}" if self.deleted else ""))

    def caption(self) -> str:
        return self.line()

    def text(self, **options: Any) -> list[Block]:
        return [self.line()]


class DownResults(Result):
    """What `down NAME` did, one result per provider asked."""

    columns: ClassVar[tuple[str, ...]] = DownResult.columns

    results: list[DownResult] = Field(default_factory=list)

    def rows(self) -> list[list[str]]:
        return [r.row() for r in self.results]

    def caption(self) -> str:
        names = sorted({r.name for r in self.results})
        return f"{', '.join(names) or 'nothing'} removed"

    def text(self, **options: Any) -> list[Block]:
        return [r.line() for r in self.results]


class CatalogDiff(Result):
    """One disagreement between catalog.yaml and the live API."""

    columns: ClassVar[tuple[str, ...]] = ("type", "field", "catalog", "live")

    type: str
    field: str
    catalog: Any
    live: Any

    def row(self) -> list[str]:
        return [self.type, self.field, json.dumps(self.catalog), json.dumps(self.live)]

    def rows(self) -> list[list[str]]:
        return [self.row()]


class VerifyResult(Result):
    columns: ClassVar[tuple[str, ...]] = CatalogDiff.columns

    provider: str
    region: str
    checked: int
    diffs: list[CatalogDiff] = Field(default_factory=list)
    missing_live: list[str] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.diffs and not self.missing_live

    def rows(self) -> list[list[str]]:
        return [d.row() for d in self.diffs]

    def caption(self) -> str:
        verdict = "agrees with" if self.ok else "DISAGREES with"
        return (f"catalog {verdict} the live {self.provider} API in {self.region}: "
                f"{self.checked} type(s) checked, {len(self.diffs)} difference(s), "
                f"{len(self.missing_live)} missing")

    def text(self, **options: Any) -> list[Block]:
        out: list[Block] = [self.table()] if self.diffs else []
        out += [f"{m}: in the catalog for {self.region} but the live API does not offer it "
                "there" for m in self.missing_live]
        return [*out, self.caption()]

    def json_doc(self, **options: Any) -> Any:
        return {**self.to_dict(), "ok": self.ok}
