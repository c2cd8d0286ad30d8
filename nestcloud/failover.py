"""Failover for big launches: zone -> equivalent type -> region -> provider. Pure core.

The planner ranks places; :func:`candidates` turns its options into an ordered list of
:class:`Candidate` launches, and :func:`run` tries them in order with a launch callable (the
only thing that talks to a cloud), recording one :class:`Attempt` row per try. Errors are
classified by the *scope* the provider set on them (``ProviderError.scope``, never a cloud's
error code), so one failure rules out exactly what it says is unusable:

    zone      no capacity there now: the next zone/type is tried
    type      the cloud refused this type here: the next type
    region    a regional limit (quota, throttling) or a quota check that says no: every
              other candidate in that region is skipped
    provider  the provider cannot run here (SDK missing): every candidate on it is skipped
    fatal     credentials, account, a bad request, refusals, bad input, failed cleanup,
              unknown errors, or a launch callable that says stop (:class:`StopFailover`)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Generic, Literal, TypeVar

from nestcloud.errors import (CapacityError, CleanupError, InputError, NestcloudError,
                              ProviderError, RefusedError)
from nestcloud.render import Rendered

Verdict = Literal["zone", "type", "region", "provider", "fatal"]
Outcome = Literal["ok", "failed", "skipped"]
R = TypeVar("R")

# An equivalent type may be used by failover (or a fleet override) only when its hourly
# price per seat is at most this much above the planned one, and within the lab's budget:
# failover must not quietly cost much more than the plan the user was shown.
EQUIVALENT_PRICE_FACTOR = 1.25


@dataclass(frozen=True)
class Candidate:
    """One launch to try: a provider and region, and the types it may use (first = planned).

    A fleet launch gets every equivalent type of the region at once (and tries its zones
    itself); a seat-by-seat launch gets one type per candidate.
    """

    provider: str
    region: str
    types: tuple[str, ...]

    @property
    def type(self) -> str:
        return self.types[0]


@dataclass(frozen=True)
class Attempt:
    """One row of the attempt table."""

    provider: str
    region: str
    type: str
    zone: str | None
    outcome: Outcome
    scope: Verdict | None = None
    code: str | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def row(self) -> list[str]:
        return [self.provider, self.region, self.type, self.zone or "-", self.outcome,
                self.scope or "-", self.code or "-", self.reason]


ATTEMPT_HEADERS = ["provider", "region", "type", "zone", "outcome", "scope", "code", "reason"]


@dataclass(frozen=True)
class Attempts(Rendered):
    """The attempt table of a launch: every place tried and why it failed (as data, the
    ``attempts`` of a lab's result or of an error's --json document)."""

    columns: ClassVar[tuple[str, ...]] = tuple(ATTEMPT_HEADERS)

    attempts: tuple[Attempt, ...] = ()

    @classmethod
    def of(cls, rows: Iterable[Attempt | dict[str, Any]]) -> Attempts:
        return cls(tuple(r if isinstance(r, Attempt) else Attempt(**r) for r in rows))

    def rows(self) -> list[list[str]]:
        return [a.row() for a in self.attempts]

    def caption(self) -> str:
        return "attempts:"

    def to_dict(self) -> list[dict[str, Any]]:
        return [a.to_dict() for a in self.attempts]


@dataclass
class Launched(Generic[R]):
    """What a launch callable returns: its result and the rows it saw itself (e.g. the
    per-override errors of a fleet that still succeeded)."""

    result: R
    attempts: list[Attempt] = field(default_factory=list)
    launched_type: str | None = None  # when the launch used an equivalent type


class StopFailover(Exception):
    """Raised by a launch callable: ``error`` ends failover here, whatever its scope (e.g. a
    partial launch kept by --keep-partial must not be split across places)."""

    def __init__(self, error: NestcloudError) -> None:
        super().__init__(str(error))
        self.error = error


def attempts_of(exc: BaseException) -> list[Attempt]:
    """The attempt table behind an error: rows its launch absorbed (``outcome``) and the
    failover table (``attempts``)."""
    return list(exc.attempt_rows()) if isinstance(exc, NestcloudError) else []


def attach(exc: NestcloudError, attempts: list[Attempt]) -> NestcloudError:
    """Set the error's attempt table (declared on NestcloudError) so the CLI can print it."""
    exc.attempts = tuple(attempts)
    return exc


_BY_SCOPE: dict[str, Verdict] = {"zone": "zone", "type": "type", "region": "region",
                                 "provider": "provider"}


def classify(exc: BaseException) -> Verdict:
    """Which scope an error rules out: the scope its provider set, else fatal."""
    if isinstance(exc, RefusedError | InputError | CleanupError):
        return "fatal"
    if isinstance(exc, ProviderError) and exc.scope is not None:
        return _BY_SCOPE.get(exc.scope, "fatal")
    return "fatal"


def _code(exc: BaseException) -> str | None:
    return exc.code if isinstance(exc, ProviderError) else None


def _reason(exc: BaseException) -> str:
    return exc.message if isinstance(exc, NestcloudError) else str(exc) or type(exc).__name__


def run(candidates: Sequence[Candidate], launch: Callable[[Candidate], Launched[R]], *,
        quota: Callable[[Candidate], str | None] | None = None
        ) -> tuple[R, list[Attempt]]:
    """Try ``candidates`` in order until one launches; return its result and every attempt.

    ``quota(candidate)`` is asked before the first try in each region: a reason string
    blocks the region without calling ``launch``. A fatal error is raised at once; when
    nothing launches, a CapacityError says so. Either way the error carries the attempt
    table (:func:`attempts_of`). KeyboardInterrupt is never caught here.
    """
    attempts: list[Attempt] = []
    blocked_region: dict[tuple[str, str], str] = {}
    blocked_provider: dict[str, str] = {}
    checked: set[tuple[str, str]] = set()
    for c in candidates:
        where = (c.provider, c.region)
        why = blocked_provider.get(c.provider) or blocked_region.get(where)
        if why:
            attempts.append(Attempt(c.provider, c.region, c.type, None, "skipped",
                                    reason=why))
            continue
        if quota is not None and where not in checked:
            checked.add(where)
            said = quota(c)
            if said:
                attempts.append(Attempt(c.provider, c.region, c.type, None, "failed",
                                        "region", "quota-check", said))
                blocked_region[where] = f"quota check failed in {c.region}"
                continue
        try:
            out = launch(c)
        except StopFailover as stop:
            exc = stop.error
            attempts += [a for a in attempts_of(exc) if a not in attempts]
            attempts.append(Attempt(c.provider, c.region, c.type, None, "failed", "fatal",
                                    _code(exc), _reason(exc)))
            attach(exc, attempts)
            raise exc from exc.__cause__
        except NestcloudError as exc:
            scope = classify(exc)
            attempts += [a for a in attempts_of(exc) if a not in attempts]
            attempts.append(Attempt(c.provider, c.region, c.type, None, "failed", scope,
                                    _code(exc), _reason(exc)))
            if scope == "fatal":
                attach(exc, attempts)
                raise
            if scope == "region":
                blocked_region[where] = f"{_code(exc) or 'quota'} earlier in {c.region}"
            elif scope == "provider":
                blocked_provider[c.provider] = f"{c.provider} unusable: {_reason(exc)}"
            continue
        attempts += out.attempts
        attempts.append(Attempt(c.provider, c.region, out.launched_type or c.type, None,
                                "ok", reason="launched"))
        return out.result, attempts
    tried = sum(1 for a in attempts if a.outcome == "failed")
    err = CapacityError(
        f"no place could take the whole launch: {tried} attempt(s) failed across "
        f"{len({(c.provider, c.region) for c in candidates})} region(s)",
        hint="see the attempt table; retry later, allow more regions/providers, or lower "
             "the seat count")
    raise attach(err, attempts)


def candidates(options: Iterable[Any], *, fleet: bool | Callable[[str], bool],
               budget: float | None = None,
               price_factor: float = EQUIVALENT_PRICE_FACTOR) -> list[Candidate]:
    """Planner options (cheapest first) -> candidates in failover order.

    Order: providers and regions in the order their cheapest option appears; inside a region
    the planned (cheapest) type first, then equivalent types (every option already fits the
    seat size and nesting). An equivalent type must cost at most ``price_factor`` times the
    cheapest option's rate per seat, and fit ``budget`` (total) when one is set. With
    ``fleet`` a region's types form one candidate (the fleet tries them and its zones in one
    call); without, one candidate per type.
    """
    opts = list(options)
    if not opts:
        return []
    # Equivalent means the same way to run a hypervisor: a nested plan never fails over to
    # a bare-metal type (or back), which would change the launch request and the price class.
    opts = [o for o in opts if o.nesting == opts[0].nesting]
    fleet_of = fleet if callable(fleet) else (lambda _p: bool(fleet))
    ceiling = opts[0].usd_per_seat_hour * price_factor + 1e-9
    groups: dict[tuple[str, str], list[str]] = {}
    for o in opts:
        if o is not opts[0]:
            if o.usd_per_seat_hour > ceiling:
                continue
            if budget is not None and o.total_usd > budget + 1e-9:
                continue
        types = groups.setdefault((o.provider, o.region), [])
        if o.type not in types:
            types.append(o.type)
    provider_order = list(dict.fromkeys(p for p, _ in groups))
    out: list[Candidate] = []
    for prov in provider_order:
        for (p, region), types in groups.items():
            if p != prov:
                continue
            if fleet_of(p):
                out.append(Candidate(p, region, tuple(types)))
            else:
                out += [Candidate(p, region, (t,)) for t in types]
    return out


__all__ = ["ATTEMPT_HEADERS", "EQUIVALENT_PRICE_FACTOR", "Attempt", "Attempts", "Candidate",
           "Launched", "StopFailover", "Verdict", "attach", "attempts_of", "candidates",
           "classify", "run"]
