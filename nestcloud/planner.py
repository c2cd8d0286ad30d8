"""Cost-aware planning: requirements -> ranked places to run them, cheapest first. Pure.

A *seat* is one person's L1 hypervisor host. By default every seat is its own instance. A
bare-metal type is then just another candidate: it wins only when it really is the cheapest
instance that fits one seat. With ``pack_metal`` a metal host is split into several seats
(VMs the user runs on the metal host himself; nestcloud launches the hosts, not those VMs), and
the plan says so on the option (``seats_per_instance`` and a note).

Every cost carries the date of the price it rests on (``price_date``); an unpriced type cannot
be ranked on cost and is listed as rejected instead.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt
from pydantic import PrivateAttr, computed_field, model_validator

from nestcloud.catalog import Catalog, InstanceType
from nestcloud.errors import BudgetError, RefusedError
from nestcloud.oses import OSES, Hypervisor
from nestcloud.render import Block, Rendered, Table
from nestcloud.spec import MAX_DURATION_S, OsAlias

MAX_HOURS = MAX_DURATION_S // 3600
MAX_SEATS = 100_000

# What a packed metal host keeps for its own OS and hypervisor. nestcloud's own assumption, not
# a cloud fact: enough for the host kernel, libvirt and page tables of the seat VMs.
HOST_RESERVE_VCPUS = 2
HOST_RESERVE_GIB = 8.0

# The catalog holds Linux rates only (FACTS.md, shared/data): say so wherever it matters.
WINDOWS_PRICE_NOTE = ("price is the Linux rate: the Windows Server licence costs extra and is "
                      "not in the catalog")

RejectCode = Literal["nesting", "size", "checks", "region", "no-price", "max-hourly", "budget"]
# How far a candidate got before it was dropped: the "closest" misses are the furthest ones.
_STAGE: dict[str, int] = {"nesting": 0, "size": 1, "checks": 2, "region": 3, "no-price": 4,
                          "max-hourly": 5, "budget": 6}


def _money(x: float) -> str:
    """A rate: cents are too coarse below a dollar an hour."""
    return f"${x:,.2f}" if x >= 1 else f"${x:.4f}"


def _usd(x: float) -> str:
    """A total or a budget: cents, unless that would round a real cost to nothing."""
    return f"${x:,.2f}" if x >= 0.01 or x == 0 else f"${x:.4f}"


class _Model(Rendered, BaseModel):
    model_config = ConfigDict(extra="forbid")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class PlanRequest(_Model):
    """What is wanted: per-seat size (or one explicit type), where, how long, how many."""

    vcpus: PositiveInt | None = None
    memory_gib: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    type: str | None = None
    hypervisor: Hypervisor = "kvm"
    os: OsAlias = "ubuntu-24.04"  # the launch schema's rule (nestcloud.spec)
    providers: list[str] | None = None
    regions: list[str] | None = None
    spot: bool = False
    # Finite and bounded, so totals stay finite numbers (JSON has no Infinity): hours up to
    # the longest TTL (a year, spec.MAX_DURATION_S), seats up to far more than a lab holds.
    hours: Annotated[float, Field(gt=0, le=MAX_HOURS, allow_inf_nan=False)] = 1.0
    seats: Annotated[int, Field(gt=0, le=MAX_SEATS)] = 1
    max_hourly: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(
        default=None, description="ceiling on USD per hour for one seat")
    budget: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = Field(
        default=None, description="ceiling on USD for all seats over all hours")
    pack_metal: bool = False
    # How the hosts reach the internet (where a provider prices it); None: its default.
    egress: Literal["nat", "public-ip", "none"] | None = None

    @model_validator(mode="after")
    def _size_or_type(self) -> PlanRequest:
        if self.type is None and (self.vcpus is None or self.memory_gib is None):
            raise ValueError("give vcpus and memory_gib per seat, or an explicit type")
        return self

    def describe(self) -> str:
        what = (self.type if self.type else f"{self.vcpus} vCPU / {self.memory_gib:g} GiB")
        return (f"{self.seats} seat(s) of {what}, {self.hypervisor} on {self.os}, "
                f"{self.hours:g} h, {'spot' if self.spot else 'on-demand'}")


OPTION_COLUMNS = ("#", "provider", "region", "type", "nesting", "vCPU", "GiB", "instances",
                  "USD/h each", "total USD", "price date")


class PlanOption(_Model):
    """One feasible place to run every seat, with what it costs and when that price held."""

    columns: ClassVar[tuple[str, ...]] = OPTION_COLUMNS[1:]

    provider: str
    region: str
    type: str
    family: str
    nesting: str
    vcpus: int
    memory_gib: float
    bare_metal: bool
    spot: bool
    usd_per_hour: float = Field(description="price of one instance per hour")
    instances: int
    seats_per_instance: int
    usd_per_seat_hour: float
    hourly_usd: float = Field(description="all instances, per hour")
    hours: float
    total_usd: float
    price_date: str
    price_source: str
    notes: list[str] = Field(default_factory=list)
    # The outbound path (Azure) and its price, included in hourly_usd and total_usd.
    egress: str | None = None
    egress_usd_per_hour: float = 0.0
    egress_price_date: str | None = None

    def rate(self) -> str:
        """'$0.0960/h x 2', with the outbound path when it costs something."""
        each = f"{_money(self.usd_per_hour)}/h x {self.instances}"
        if not self.egress_usd_per_hour:
            return each
        return f"({each} + {_money(self.egress_usd_per_hour)}/h egress)"

    def seats_within(self, budget: float) -> int:
        """The most seats this option fits in ``budget`` over its hours, counting the
        outbound path for fewer instances too (0: not even one)."""
        from nestcloud.prices import egress_cost

        fits = 0
        for n in range(1, self.instances + 1):
            egress = egress_cost(self.provider, self.egress, n) if self.egress else None
            hourly = self.usd_per_hour * n + (egress.usd_per_hour if egress else 0.0)
            if hourly * self.hours > budget + 1e-9:
                break
            fits = n
        return fits * self.seats_per_instance

    def line(self) -> str:
        return (f"{self.provider}/{self.type} in {self.region} at {self.rate()} x "
                f"{self.hours:g} h = {_usd(self.total_usd)} (price date: {self.price_date})")

    def row(self) -> list[str]:
        return [self.provider, self.region, self.type, self.nesting, str(self.vcpus),
                f"{self.memory_gib:g}",
                str(self.instances) + (f" ({self.seats_per_instance}/host)"
                                       if self.seats_per_instance > 1 else ""),
                f"{self.usd_per_hour:.4f}", f"{self.total_usd:.2f}", self.price_date]

    def rows(self) -> list[list[str]]:
        return [self.row()]

    def caption(self) -> str:
        return self.line()


class Rejected(_Model):
    """A candidate that was dropped and why."""

    provider: str
    type: str
    region: str | None = None
    code: RejectCode
    reason: str
    usd_per_seat_hour: float | None = None


# (provider, type, region, code, reason, usd_per_seat_hour)
_RawReject = tuple[str, str, "str | None", str, str, "float | None"]


class PlanResult(_Model):
    """Ranked options (cheapest first) and, for --explain, every rejected candidate."""

    columns: ClassVar[tuple[str, ...]] = OPTION_COLUMNS

    request: PlanRequest
    options: list[PlanOption] = Field(default_factory=list)
    closest: PlanOption | None = Field(
        default=None, description="the cheapest option the budget ruled out")
    # Thousands of rejections per plan: kept as tuples until someone looks (--explain, a
    # refusal message), so planning itself stays fast.
    _raw_rejected: list[_RawReject] = PrivateAttr(default_factory=list)
    _rejected: list[Rejected] | None = PrivateAttr(default=None)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rejected(self) -> list[Rejected]:
        if self._rejected is None:
            self._rejected = [
                Rejected(provider=p, type=t, region=r, code=c, reason=why,
                         usd_per_seat_hour=u)
                for p, t, r, c, why, u in self._raw_rejected]
        return self._rejected

    @property
    def best(self) -> PlanOption | None:
        return self.options[0] if self.options else None

    def require(self) -> PlanOption:
        """The cheapest option, or RefusedError/BudgetError saying what to relax."""
        if self.options:
            return self.options[0]
        raise self.refusal()

    def refusal(self) -> RefusedError:
        """The error that explains why nothing is feasible (call when ``options`` is empty)."""
        return _refusal(self)

    def rows(self, limit: int = 0) -> list[list[str]]:
        shown = self.options[:limit] if limit > 0 else self.options
        return [[str(i + 1), *o.row()] for i, o in enumerate(shown)]

    def caption(self) -> str:
        return self.request.describe()

    def empty(self) -> tuple[str, str] | None:
        return "No feasible option", f"for {self.caption()}: {self.refusal()}"

    def text(self, *, limit: int = 10, explain: bool = False, **options: Any) -> list[Block]:
        """The plan for a terminal: the first ``limit`` options (0: all), the cheapest, and
        with ``explain`` every rejected candidate."""
        req = self.request
        out: list[Block] = [
            f"Plan for {req.describe()}"
            + (f", budget ${req.budget:.2f}" if req.budget is not None else "")
            + (f", max ${req.max_hourly:.4f}/h per seat" if req.max_hourly is not None else "")]
        rows = self.rows(limit)
        if rows:
            out.append(Table(self.columns, rows))
            if len(self.options) > len(rows):
                out.append(f"... {len(self.options) - len(rows)} more (--limit 0 shows all)")
            best = self.options[0]
            out.append(f"cheapest: {best.line()}")
            out += [f"  note: {n}" for n in best.notes]
        if explain:
            out.append(f"rejected ({len(self.rejected)}):")
            out += [f"  {r.provider}/{r.type} ({r.region or 'any region'}): {r.code}: {r.reason}"
                    for r in self.rejected]
        return out

    def json_doc(self, *, explain: bool = False, **options: Any) -> Any:
        """The --json document: the request and every option (and with ``explain`` every
        rejected candidate)."""
        doc: dict[str, Any] = {"request": self.request.to_dict(),
                               "options": [o.to_dict() for o in self.options]}
        if explain:
            doc["rejected"] = [r.to_dict() for r in self.rejected]
        return doc


def _seats_per_host(t: InstanceType, req: PlanRequest) -> int:
    if not (req.pack_metal and t.bare_metal and req.vcpus and req.memory_gib):
        return 1
    by_cpu = (t.vcpus - HOST_RESERVE_VCPUS) // req.vcpus
    by_mem = math.floor((t.memory_gib - HOST_RESERVE_GIB) / req.memory_gib)
    return max(1, min(by_cpu, by_mem))


def _fits(t: InstanceType, req: PlanRequest) -> bool:
    return ((req.vcpus is None or t.vcpus >= req.vcpus)
            and (req.memory_gib is None or t.memory_gib >= req.memory_gib))


def plan(catalog: Catalog, request: PlanRequest) -> PlanResult:
    """Every feasible (provider, region, type) for the request, cheapest total first."""
    from nestcloud.checks import run_checks
    from nestcloud.prices import egress_cost
    from nestcloud.spec import LaunchSpec

    req = request
    providers = set(req.providers) if req.providers else None
    if providers is None:  # only those that want to be planned unasked
        from nestcloud.provider import planned_unnamed

        providers = {p for p in catalog.providers if planned_unnamed(p)}
    regions = list(dict.fromkeys(req.regions)) if req.regions else None
    want_type = req.type.lower() if req.type else None
    options: list[tuple[tuple[Any, ...], PlanOption]] = []
    rejected: list[_RawReject] = []
    closest: tuple[tuple[Any, ...], PlanOption] | None = None
    # One validated spec, copied per type: model_copy is far cheaper than building a model.
    os_info = OSES.get(req.os)
    windows_note = ([WINDOWS_PRICE_NOTE] if os_info is not None and os_info.family == "windows"
                    else [])
    # The provider and type are placeholders, replaced per catalog entry below.
    template = LaunchSpec(provider="-", type="-", os=req.os, hypervisor=req.hypervisor,
                          spot=req.spot)

    def reject(t: InstanceType, code: RejectCode, reason: str, region: str | None = None,
               per_seat: float | None = None) -> None:
        rejected.append((t.provider, t.name, region, code, reason, per_seat))

    for t in catalog.types:
        if providers is not None and t.provider not in providers:
            continue
        if want_type is not None and t.name.lower() != want_type:
            continue
        if t.nesting == "none":
            reject(t, "nesting", f"cannot run a hypervisor (nesting: none, {t.arch})")
            continue
        if not _fits(t, req):
            reject(t, "size", f"{t.vcpus} vCPU / {t.memory_gib:g} GiB is smaller than "
                              f"{req.vcpus} vCPU / {req.memory_gib:g} GiB per seat")
            continue
        spec = template.model_copy(update={"provider": t.provider, "type": t.name})
        findings = run_checks(spec, catalog)
        errors = [f for f in findings if f.severity == "error"]
        if errors:
            reject(t, "checks", "; ".join(f"{f.rule}: {f.message}" for f in errors))
            continue
        offered = set(t.regions) | set(t.prices)
        where = [r for r in regions if r in offered] if regions is not None else sorted(offered)
        if not where:
            reject(t, "region", "not offered in " + (", ".join(regions) if regions else
                                                     "any known region"))
            continue
        per_seat_notes = [f.message for f in findings if f.severity == "warning"
                          and f.rule != "spot"] + windows_note
        spi = _seats_per_host(t, req)
        instances = math.ceil(req.seats / spi)
        for region in where:
            rp = t.prices.get(region)
            price = None if rp is None else (rp.spot if req.spot else rp.on_demand)
            if rp is None or price is None:
                kind = "spot price" if req.spot else "price"
                reject(t, "no-price", f"no {kind} known in {region}", region)
                continue
            egress = egress_cost(t.provider, req.egress, instances)
            egress_h = egress.usd_per_hour if egress is not None else 0.0
            # A seat's share of its instance and of the group's outbound path.
            per_seat = price / spi + egress_h / req.seats
            if req.max_hourly is not None and per_seat > req.max_hourly + 1e-9:
                reject(t, "max-hourly", f"{_money(per_seat)}/h per seat is over the "
                                        f"{_money(req.max_hourly)}/h ceiling", region,
                       round(per_seat, 6))
                continue
            hourly = price * instances + egress_h
            total = round(hourly * req.hours, 6)
            date = catalog.source_date(rp.source)
            notes = list(per_seat_notes) + ([egress.note] if egress is not None else [])
            if t.bare_metal:
                if spi > 1:
                    notes.append(
                        f"bare metal packed with {spi} seats per host ({req.vcpus} vCPU / "
                        f"{req.memory_gib:g} GiB each, {HOST_RESERVE_VCPUS} vCPU / "
                        f"{HOST_RESERVE_GIB:g} GiB kept for the host): nestcloud launches "
                        f"{instances} host(s); you create the seat VMs on them")
                else:
                    notes.append("bare metal: the hypervisor runs on the hardware; one seat "
                                 "per instance")
            # Ties: fewer spare resources first, then names, so the order never depends on
            # the catalog's order.
            key = (total, round(per_seat, 6), instances, t.vcpus, t.memory_gib, t.provider,
                   region, t.name)
            over = req.budget is not None and total > req.budget + 1e-9
            if over:
                reject(t, "budget", f"{_usd(total)} for {req.seats} seat(s) x {req.hours:g} h "
                                    f"is over the {_usd(req.budget or 0)} budget "
                                    f"(price date: {date})", region, round(per_seat, 6))
                if closest is not None and closest[0] <= key:
                    continue
            opt = PlanOption(
                provider=t.provider, region=region, type=t.name, family=t.family,
                nesting=t.nesting, vcpus=t.vcpus, memory_gib=t.memory_gib,
                bare_metal=t.bare_metal, spot=req.spot, usd_per_hour=price,
                instances=instances, seats_per_instance=spi,
                usd_per_seat_hour=round(per_seat, 6), hourly_usd=round(hourly, 6),
                hours=req.hours, total_usd=total, price_date=date, price_source=rp.source,
                notes=notes, egress=egress.mode if egress is not None else None,
                egress_usd_per_hour=round(egress_h, 6),
                egress_price_date=egress.price_date if egress is not None else None)
            if over:
                closest = (key, opt)
                continue
            options.append((key, opt))
    options.sort(key=lambda kv: kv[0])
    result = PlanResult(request=req, options=[o for _, o in options],
                        closest=closest[1] if closest else None)
    result._raw_rejected = rejected
    return result


def _refusal(result: PlanResult) -> RefusedError:
    req = result.request
    rej = result.rejected
    what = req.describe()
    if not rej:
        scope = []
        if req.providers:
            scope.append("providers " + ", ".join(req.providers))
        if req.type:
            scope.append(f"type {req.type}")
        return RefusedError(f"nothing fits {what}: the catalog has no candidate"
                            + (f" for {' and '.join(scope)}" if scope else ""),
                            hint="check --providers / the type name (`nestcloud catalog list`)")
    furthest = max(_STAGE[r.code] for r in rej)
    code = next(c for c, s in _STAGE.items() if s == furthest)
    hits = [r for r in rej if r.code == code]
    if code == "budget":
        # The cheapest over-budget option: rebuild its numbers from the rejection set.
        cheapest = result.closest
        if cheapest is not None:
            o = cheapest
            budget = req.budget or 0.0
            parts = [f"raise the budget to at least {_usd(math.ceil(o.total_usd * 100) / 100)}"]
            max_hours = budget / o.hourly_usd if o.hourly_usd else 0
            if max_hours >= 0.1:
                parts.append(f"cut hours to {math.floor(max_hours * 10) / 10:g}")
            max_seats = o.seats_within(budget)
            if max_seats >= 1 and req.seats > 1:
                parts.append(f"cut seats to {max_seats}")
            if not req.spot:
                parts.append("try spot")
            return BudgetError(
                f"over budget: the cheapest option for {what} is {o.line()}, over the "
                f"{_usd(budget)} budget",
                hint="; ".join(parts))
        return BudgetError(f"over budget: {hits[0].reason}")
    if code == "max-hourly":
        first = min(hits, key=lambda r: (r.usd_per_seat_hour or math.inf, r.provider, r.type,
                                         r.region or ""))
        return RefusedError(f"nothing fits {what} under the hourly ceiling: cheapest is "
                            f"{first.provider}/{first.type} in {first.region}: {first.reason}",
                            hint="raise --max-hourly, or lower the per-seat size")
    if code == "no-price":
        names = sorted({f"{r.provider}/{r.type}" for r in hits})
        where = sorted({r.region for r in hits if r.region})
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return RefusedError(f"nothing can be ranked for {what}: {shown} fit but no "
                            f"{'spot ' if req.spot else ''}price is known in "
                            f"{', '.join(where)}",
                            hint=("try on-demand (no --spot), " if req.spot else "")
                            + "allow other regions, or run `nestcloud catalog refresh-prices`")
    if code == "region":
        names = sorted({f"{r.provider}/{r.type}" for r in hits})
        if not req.regions:
            return RefusedError(f"nothing fits {what}: the catalog knows no region for "
                                f"{', '.join(names[:5])}",
                                hint="run `nestcloud catalog verify` / regenerate the catalog")
        return RefusedError(f"nothing fits {what} in {', '.join(req.regions)}: "
                            f"{', '.join(names[:5])} fit but are offered elsewhere",
                            hint="allow more regions (--regions) or drop the region filter")
    if code == "checks":
        return RefusedError(f"nothing fits {what}: every type that is big enough was refused "
                            f"by the pre-launch checks, e.g. {hits[0].provider}/{hits[0].type}: "
                            f"{hits[0].reason}",
                            hint="change --os / --hypervisor (see `nestcloud check`)")
    # size or nesting: say what the biggest nested-capable type is.
    return RefusedError(f"nothing fits {what}: no nested-capable type is that large"
                        if code == "size" else
                        f"nothing fits {what}: none of the candidates can run a hypervisor",
                        hint=_largest_hint(rej) or "lower the per-seat vCPUs / memory")


def _largest_hint(rej: list[Rejected]) -> str | None:
    import re

    best: tuple[int, float, str] | None = None
    for r in rej:
        if r.code != "size":
            continue
        m = re.match(r"(\d+) vCPU / ([\d.]+) GiB", r.reason)
        if m:
            cand = (int(m.group(1)), float(m.group(2)), f"{r.provider}/{r.type}")
            if best is None or cand[:2] > best[:2]:
                best = cand
    if best is None:
        return None
    return (f"the largest candidate is {best[2]} ({best[0]} vCPU / {best[1]:g} GiB): "
            "lower --vcpus / --memory")
