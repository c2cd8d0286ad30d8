"""Reaping: remove every nestcloud group whose time-to-live has passed. Safe for cron.

Selection is a pure function over the instances the providers list (they list only what
carries nestcloud's tags). A group is removed only when every live instance in it is expired,
has nestcloud's name tag and an expiry nestcloud can read: anything else is left alone and said
so. Removal goes through ``provider.down(name)``, the same path as ``nestcloud down``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from pydantic import Field

from nestcloud.errors import NestcloudError
from nestcloud.models import DownResult, Instance, Result
from nestcloud.render import Block
from nestcloud.spec import TAG_EXPIRES, TAG_NAME

GONE_STATES = frozenset({"terminated", "shutting-down", "deleting", "deleted"})


def parse_expiry(text: str) -> dt.datetime | None:
    """An ISO 8601 timestamp (``Z`` or offset; naive means UTC) or None when unreadable."""
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when


class Group(Result):
    """One named group in one place, with what reaping decided about it."""

    provider: str
    region: str
    name: str
    instances: list[str]
    expires: str | None
    expired: bool
    reason: str


def _expiry_of(inst: Instance) -> str | None:
    return inst.tags.get(TAG_EXPIRES) or inst.expires


def select_expired(instances: Iterable[Instance], now: dt.datetime
                   ) -> tuple[list[Group], list[Group]]:
    """Split groups into (expired: to remove, kept: with the reason). Pure; ``now`` is UTC."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.timezone.utc)
    groups: dict[tuple[str, str, str], list[Instance]] = {}
    kept: list[Group] = []
    for inst in instances:
        if inst.state in GONE_STATES:
            continue
        name = inst.tags.get(TAG_NAME)
        if not name:
            # The providers list only nestcloud's resources; this is a second lock.
            kept.append(Group(provider=inst.provider, region=inst.region, name=inst.name,
                              instances=[inst.id], expires=_expiry_of(inst), expired=False,
                              reason=f"no {TAG_NAME} tag: not nestcloud's"))
            continue
        groups.setdefault((inst.provider, inst.region, name), []).append(inst)
    expired: list[Group] = []
    for (provider, region, name), insts in sorted(groups.items()):
        ids = sorted(i.id for i in insts)
        stamps = [_expiry_of(i) for i in insts]
        whens = [parse_expiry(s) if s else None for s in stamps]
        latest = max((w for w in whens if w is not None), default=None)
        shown = latest.isoformat() if latest else None
        if any(s is None for s in stamps):
            reason, ok = f"no {TAG_EXPIRES} tag on every instance: kept (no TTL was set)", False
        elif any(w is None for w in whens):
            bad = next(s for s, w in zip(stamps, whens) if w is None)
            reason, ok = f"unreadable {TAG_EXPIRES} {bad!r}: kept", False
        elif latest is not None and latest < now:
            reason, ok = f"expired {_ago(now - latest)} ago", True
        else:
            assert latest is not None
            early = [w for w in whens if w is not None and w < now]
            reason = (f"expires in {_ago(latest - now)}" if not early else
                      f"only {len(early)} of {len(insts)} instance(s) expired; the group "
                      f"lives until {latest.isoformat()}")
            ok = False
        group = Group(provider=provider, region=region, name=name, instances=ids,
                      expires=shown, expired=ok, reason=reason)
        (expired if ok else kept).append(group)
    return expired, kept


def _ago(delta: dt.timedelta) -> str:
    secs = int(delta.total_seconds())
    if secs < 120:
        return f"{secs}s"
    if secs < 7200:
        return f"{secs // 60}m"
    if secs < 172800:
        return f"{secs // 3600}h{(secs % 3600) // 60:02d}m"
    return f"{secs // 86400}d"


class ReapResult(Result):
    columns: ClassVar[tuple[str, ...]] = (
        "provider", "region", "name", "instances", "expires", "action", "why")

    now: str
    dry_run: bool
    expired: list[Group] = Field(default_factory=list)
    kept: list[Group] = Field(default_factory=list)
    removed: list[DownResult] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)
    # How many (provider, region) places were listed: said in the text, not in the JSON
    # document (whose shape is a public contract).
    places: int = Field(default=0, exclude=True)

    def rows(self) -> list[list[str]]:
        gone = "would remove" if self.dry_run else "removed"
        return [[g.provider, g.region, g.name, str(len(g.instances)), g.expires or "-",
                 gone if g.expired else "kept", g.reason] for g in self.expired + self.kept]

    def caption(self) -> str:
        return f"reap at {self.now}" + (" (dry run)" if self.dry_run else "")

    def text(self, **options: Any) -> list[Block]:
        rows = self.rows()
        return [*([self.table()] if rows else []),
                f"{len(self.expired)} expired group(s) "
                + ("would be removed (dry run)" if self.dry_run else "removed")
                + f", {len(self.kept)} kept; scanned {self.places} place(s)"]


# (provider name, region) -> Provider
ProviderOpener = Callable[[str, str], Any]


def reap(places: Iterable[tuple[str, str]], open_provider: ProviderOpener, *,
         now: dt.datetime, dry_run: bool = False) -> ReapResult:
    """List every place, select expired groups, and (unless dry_run) remove them.

    A failure in one place is recorded and the others still run, so one bad region does not
    keep every other expired lab billing.
    """
    instances: dict[tuple[str, str], Instance] = {}
    errors: list[str] = []
    providers: dict[tuple[str, str], Any] = {}
    scanned = 0
    for provider, region in places:
        scanned += 1
        try:
            prov = open_provider(provider, region)
            providers[(provider, region)] = prov
            for i in prov.list(None):
                # A provider may list a whole account/subscription: count each one once.
                instances.setdefault((i.provider, i.id),
                                     i.model_copy(update={"region": i.region or region}))
        except NestcloudError as exc:
            errors.append(f"{provider} {region}: listing failed: {exc.message}")
    expired, kept = select_expired(instances.values(), now)
    removed: list[DownResult] = []
    if not dry_run:
        for g in expired:
            try:
                prov = providers.get((g.provider, g.region))
                if prov is None:
                    prov = open_provider(g.provider, g.region)
                removed.append(prov.down(g.name))
            except NestcloudError as exc:
                errors.append(f"{g.provider} {g.region} {g.name}: removal failed: "
                              f"{exc.message}")
    return ReapResult(now=now.isoformat(), dry_run=dry_run, expired=expired, kept=kept,
                      removed=removed, errors=errors, places=scanned)
