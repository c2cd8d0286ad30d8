"""Labs: many identical seats launched as one named group, with a TTL and a budget.

A lab file is parsed strictly (unknown keys are errors naming file, line and YAML path). ``up``
plans, checks and prices the lab, refuses before creating anything when the budget is too
small, then launches every seat as one group named after the lab. The cloud's tags are the only
state: re-running ``up`` finds the seats that already run (wherever the first run put them)
and launches only the missing ones there.

A first ``up`` is all or nothing: it tries the planner's places in failover order (zone ->
equivalent type -> region -> provider, ``nestcloud.failover``), removes what each failed
attempt created before the next, and reports every attempt. Big AWS labs go through one EC2
Fleet call per region (``capabilities.fleet_above``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PositiveInt
from pydantic import ValidationError, field_validator, model_validator

from nestcloud._yamlio import (MAX_LAB_BYTES, MAX_USER_DATA_BYTES, FileRefused, line_of,
                               load_yaml, pydantic_problems, read_text_bounded)
from nestcloud.checks import CheckResult  # noqa: F401 - re-exported (its earlier home)
from nestcloud.errors import (BudgetError, CleanupError, CredentialsError, InputError,
                              LabFileError, LaunchInterrupted, MissingDependencyError,
                              NestcloudError, ProviderError, RefusedError)
from nestcloud import failover
from nestcloud.failover import Candidate, Launched, StopFailover, candidates
from nestcloud.provider import capabilities_of, has_local_endpoint, open_provider
from nestcloud.planner import PlanOption, PlanRequest, PlanResult, plan
from nestcloud.spec import (NAME_RE, TAG_LAB, Duration, LaunchOptions, LaunchSpec,
                            check_tags, duration_seconds)

from nestcloud.models import DownResult, Instance, LaunchResult, Result
from nestcloud.render import Block

if TYPE_CHECKING:
    from concurrent.futures import Future

    from nestcloud.catalog import Catalog
    from nestcloud.bootstrap.wait import WaitReport
    from nestcloud.provider import LaunchOutcome, Provider, Quota

DEFAULT_READY_TIMEOUT_S = 1200.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SeatSpec(_Strict):
    """What one seat needs: a size (the planner picks the type) or one explicit type."""

    vcpus: PositiveInt | None = None
    memory_gib: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    type: str | None = None

    @model_validator(mode="after")
    def _one_form(self) -> SeatSpec:
        sized = self.vcpus is not None or self.memory_gib is not None
        if self.type is not None and sized:
            raise ValueError("give either type or vcpus + memory_gib, not both")
        if self.type is None and (self.vcpus is None or self.memory_gib is None):
            raise ValueError("give vcpus and memory_gib, or an explicit type")
        return self


class UserDataFile(_Strict):
    file: str = Field(min_length=1)


class LabFile(LaunchOptions):
    """The lab file schema: every launch option (nestcloud.spec.LaunchOptions, so a lab file
    says what `launch` flags say, with the same rules), plus the lab's own keys."""

    name: str
    seats: int = Field(ge=1, le=1000)
    seat: SeatSpec
    providers: list[str] | None = Field(default=None, min_length=1)
    regions: list[str] | None = Field(default=None, min_length=1)
    ttl: Duration
    budget: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    user_data: str | UserDataFile | None = None  # type: ignore[assignment]

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.fullmatch(v):
            raise ValueError("lab names are 1-40 characters: lowercase letters, digits and '-', "
                             "starting with a letter and not ending with '-'")
        return v

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, v: str | float) -> str | float:
        if isinstance(v, str):
            duration_seconds(v)  # ValueError names the bad text
        return v

    @property
    def ttl_seconds(self) -> int:
        return duration_seconds(self.ttl)

    def launch_options(self) -> dict[str, Any]:
        """The validated launch options, as LaunchSpec takes them (user data excluded: a
        file reference is resolved by parse_lab)."""
        return self.model_dump(include=set(LaunchOptions.model_fields) - {"user_data"})


def parse_lab(text: str, source: str = "<lab>", base_dir: Path | None = None
              ) -> tuple[LabFile, str | None]:
    """Validate lab YAML; return the model and the resolved user data (file read relative to
    ``base_dir``). Raise LabFileError listing every problem with file:line and YAML path."""
    data, err = load_yaml(text, source)
    if err:
        raise LabFileError(source, [err])
    if not isinstance(data, dict):
        raise LabFileError(source, [f"{source}: the top level must be a mapping with name, "
                                    f"seats, seat and ttl (got {type(data).__name__})"])
    try:
        lab = LabFile.model_validate(data)
    except ValidationError as exc:
        errors = _union_errors(exc.errors(include_url=False))
        # In file order (the schema's field order is not the file's), stable within a line.
        errors.sort(key=lambda e: line_of(text, tuple(e["loc"])) or 0)
        raise LabFileError(source, pydantic_problems(errors, text, source)) from None
    user_data: str | None = None
    if isinstance(lab.user_data, UserDataFile):
        path = _user_data_path(lab.user_data, base_dir)
        try:
            user_data = read_text_bounded(path, "a user-data file", MAX_USER_DATA_BYTES)
        except FileRefused as exc:
            line = line_of(text, ("user_data", "file"))
            where = f"{source}:{line}" if line else source
            raise LabFileError(source, [f"{where}: user_data.file: cannot read {str(path)!r}: "
                                        f"{exc.reason}"]) from None
    else:
        user_data = lab.user_data
    return lab, user_data


def _user_data_path(ref: UserDataFile, base_dir: Path | None) -> Path:
    path = Path(ref.file)
    return path if path.is_absolute() else (base_dir or Path.cwd()) / path


def _union_errors(errors: list[Any]) -> list[Any]:
    """For ``str | number`` and ``str | {file: ...}`` fields pydantic reports every member's
    complaint; keep the ones that help (before pydantic_problems formats them)."""
    errors = [_clean(e) for e in errors]
    out: list[Any] = []
    top: dict[Any, int] = {}
    for e in errors:
        top[e["loc"][0] if e["loc"] else None] = top.get(e["loc"][0] if e["loc"] else None,
                                                         0) + 1
    said_user_data = False
    for e in errors:
        loc = tuple(e["loc"])
        if loc == ("ttl",) and e.get("type") in ("string_type", "float_type",
                                                  "float_parsing"):
            kinds = {x.get("type") for x in errors if tuple(x["loc"]) == ("ttl",)}
            if kinds <= {"string_type", "float_type", "float_parsing"}:
                if e.get("type") == "string_type":
                    out.append({**e, "type": "value_error",
                                "msg": "ttl is a duration (90m, 4h, 2d) or a number of hours"})
                continue
            if e.get("type") == "string_type":
                continue
        if loc == ("user_data",) and e.get("type") in ("string_type", "model_type",
                                                        "dict_type", "model_attributes_type"):
            nested = any(len(x["loc"]) > 1 and x["loc"][0] == "user_data" for x in errors)
            if not said_user_data and not nested:
                out.append({**e, "type": "value_error",
                            "msg": "user_data is inline text, or {file: PATH} with PATH "
                                   "relative to the lab file"})
                said_user_data = True
            continue
        if (e.get("type") == "string_type" and loc == ("user_data",)
                and top.get("user_data", 0) > 1):
            continue
        out.append(e)
    return out


def _clean(err: Any) -> Any:
    """Union errors carry the union member in the loc ('user_data', 'str'); drop it so the
    path is the YAML one."""
    err = dict(err)
    loc = tuple(err.get("loc", ()))
    if loc and loc[0] in ("ttl", "user_data") and len(loc) > 1 and loc[1] in (
            "str", "float", "UserDataFile", "constrained-float"):
        err["loc"] = (loc[0], *loc[2:])
    return err


def load_lab(path: str | os.PathLike[str]) -> tuple[LabFile, str | None]:
    p = Path(path)
    try:
        text = read_text_bounded(p, "a lab file", MAX_LAB_BYTES)
    except FileRefused as exc:
        raise LabFileError(str(p), [str(exc)]) from None
    return parse_lab(text, str(p), p.parent)


# -- results -------------------------------------------------------------------------------

# The seat table of `lab up` and `lab status` (`launch` and `ls` show nestcloud.models').
SEAT_COLUMNS = ("seat", "name", "id", "provider", "region", "type", "state", "ip", "expires")


def seat_rows(instances: list[Instance]) -> list[list[str]]:
    return [[str(i.seat if i.seat is not None else "-"), i.name, i.id, i.provider, i.region,
             i.type, i.state, i.public_ip or i.private_ip or "-", i.expires or "-"]
            for i in sorted(instances, key=lambda i: (i.seat or 0, i.id))]


class LabCost(Result):
    """What the lab costs for its TTL at the chosen place, and the date of that price."""

    columns: ClassVar[tuple[str, ...]] = (
        "lab", "seats", "type", "region", "USD/h each", "hours", "total USD", "budget USD",
        "price date")

    lab: str
    seats: int
    hours: float
    option: PlanOption
    total_usd: float
    price_date: str
    budget: float | None
    within_budget: bool

    def rows(self) -> list[list[str]]:
        o = self.option
        return [[self.lab, str(self.seats), f"{o.provider}/{o.type}", o.region,
                 f"{o.usd_per_hour:.4f}", f"{self.hours:g}", f"{self.total_usd:.2f}",
                 "-" if self.budget is None else f"{self.budget:.2f}", self.price_date]]

    def caption(self) -> str:
        o = self.option
        return (f"lab {self.lab}: {self.seats} seat(s) of {o.provider}/{o.type} in {o.region}, "
                f"{o.vcpus} vCPU / {o.memory_gib:g} GiB, {o.nesting}")

    def text(self, **options: Any) -> list[Block]:
        o = self.option
        budget = f" (budget ${self.budget:.2f})" if self.budget is not None else ""
        egress = f" + ${o.egress_usd_per_hour:.4f}/h egress" if o.egress_usd_per_hour else ""
        return [self.caption(),
                f"cost: ${o.usd_per_hour:.4f}/h x {o.instances}{egress} x {self.hours:g} h = "
                f"${self.total_usd:.2f}{budget} (price date: {self.price_date})"]


class LabStatus(Result):
    columns: ClassVar[tuple[str, ...]] = SEAT_COLUMNS

    lab: str
    seats: int
    instances: list[Instance] = Field(default_factory=list)
    running: int = 0
    missing: int = 0
    notes: list[str] = Field(default_factory=list)

    def rows(self) -> list[list[str]]:
        return seat_rows(self.instances)

    def caption(self) -> str:
        return f"lab {self.lab}: {self.running}/{self.seats} running, {self.missing} missing"


class LabUpResult(Result):
    columns: ClassVar[tuple[str, ...]] = SEAT_COLUMNS

    lab: str
    dry_run: bool
    cost: LabCost
    launch: LaunchResult | None = None
    ready: Any = None
    reused_placement: bool = False
    notes: list[str] = Field(default_factory=list)
    attempts: list[dict[str, Any]] = Field(default_factory=list)

    def rows(self) -> list[list[str]]:
        return seat_rows(self.launch.instances if self.launch else [])

    def caption(self) -> str:
        o = self.cost.option
        return (f"lab {self.lab}: {'dry run, ' if self.dry_run else ''}"
                f"{o.provider}/{o.type} in {o.region}, ${self.cost.total_usd:.2f} for "
                f"{self.cost.hours:g} h (price date: {self.cost.price_date})")

    def text(self, **options: Any) -> list[Block]:
        out = self.cost.text()
        if self.dry_run:
            return [*out, "dry run: nothing was created"]
        if self.launch is not None:
            ids = {i.id for i in self.launch.instances}
            new = [c for c in self.launch.created if c in ids]
            out += [self.table(), f"{len(new)} seat(s) launched, {len(self.launch.reused)} "
                                  "already running"]
        ready = self.ready if isinstance(self.ready, dict) else {}
        if ready.get("message"):
            out.append(f"readiness: {ready['message']}")
        for r in ready.get("instances", []):
            out.append(f"readiness: {r['name']} {r['id']}: {r['status']}"
                       + (f" - {r['message']}" if r.get("message") else ""))
        return out


class LabDownResult(Result):
    columns: ClassVar[tuple[str, ...]] = DownResult.columns

    lab: str
    results: list[DownResult] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    @property
    def terminated(self) -> list[str]:
        return [i for r in self.results for i in r.terminated]

    def rows(self) -> list[list[str]]:
        return [r.row() for r in self.results]

    def caption(self) -> str:
        return f"lab {self.lab} removed"

    def text(self, **options: Any) -> list[Block]:
        return [f"lab {self.lab}: terminated {len(self.terminated)} instance(s)"
                + (f": {', '.join(self.terminated)}" if self.terminated else "")]

    def json_doc(self, **options: Any) -> Any:
        return {"lab": self.lab, "terminated": self.terminated,
                "results": [r.to_dict() for r in self.results], "notes": self.notes}


# The earlier name of what `nestcloud.launch` returns (every result renders in notebooks now).
LaunchReport = LaunchResult


# -- the lab -------------------------------------------------------------------------------

ProviderFactory = Any  # (provider_name, region) -> Provider


class Lab:
    """A lab: plan it, price it, bring it up, look at it, take it down."""

    # Missing seats above which a provider launches through one fleet call (failover then
    # hands a region's equivalent types over together): the provider's
    # ``capabilities.fleet_above`` unless set here (tests force one path).
    fleet_threshold: int | None = None

    # The keywords are LabFile's fields (``seat`` flattened into vcpus, memory_gib and type)
    # with its defaults, spelled out for editors and help(); tests/test_schema.py keeps them
    # equal to the model. Everything is validated by LabFile, once.
    def __init__(self, name: str, seats: int, *, vcpus: int | None = None,
                 memory_gib: float | None = None, type: str | None = None,
                 providers: list[str] | None = None, regions: list[str] | None = None,
                 ttl: str | float = "4h", budget: float | None = None,
                 os: str = "ubuntu-24.04", hypervisor: str = "kvm", depth: int = 2,
                 spot: bool = False, security_type: str = "Standard",
                 image_generation: str | None = None, image: str | None = None,
                 disk_gib: int = 30, key_name: str | None = None, ssh_cidr: str | None = None,
                 allow_world_ssh: bool = False, public_ip: bool = False,
                 egress: str | None = None, tags: dict[str, str] | None = None,
                 user_data: str | None = None, l2_smoke: bool = False,
                 instance_profile: str | None = None, catalog: Catalog | None = None) -> None:
        options = dict(locals())  # the keywords, before anything else is bound here
        del options["self"], options["catalog"]
        seat = {k: options.pop(k) for k in ("vcpus", "memory_gib", "type")}
        options["tags"] = tags or {}
        try:
            self.spec = LabFile.model_validate(
                {**options, "seat": {k: v for k, v in seat.items() if v is not None}})
        except ValidationError as exc:
            raise InputError("; ".join(pydantic_problems(
                _union_errors(exc.errors(include_url=False)), style="keyword"))) from None
        self.user_data = user_data
        self.user_data_source = "user_data"  # what messages about the user data name
        self._catalog = catalog
        self.source = "<python>"

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], catalog: Catalog | None = None) -> Lab:
        spec, user_data = load_lab(path)
        lab = cls.__new__(cls)
        lab.spec, lab.user_data, lab._catalog, lab.source = spec, user_data, catalog, str(path)
        lab.user_data_source = (str(_user_data_path(spec.user_data, Path(path).parent))
                                if isinstance(spec.user_data, UserDataFile)
                                else f"{path} (inline user_data)")
        return lab

    def __repr__(self) -> str:
        s = self.spec
        return f"Lab({s.name!r}, seats={s.seats}, source={self.source!r})"

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def hours(self) -> float:
        return self.spec.ttl_seconds / 3600

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            from nestcloud.catalog import load_catalog

            self._catalog = load_catalog()
        return self._catalog

    def request(self, *, budget: bool = True, providers: list[str] | None = None,
                regions: list[str] | None = None, type: str | None = None) -> PlanRequest:
        s = self.spec
        return PlanRequest(vcpus=s.seat.vcpus, memory_gib=s.seat.memory_gib,
                           type=type or s.seat.type, hypervisor=s.hypervisor, os=s.os,
                           providers=providers or s.providers, regions=regions or s.regions,
                           spot=s.spot, hours=self.hours, seats=s.seats,
                           budget=s.budget if budget else None, egress=s.egress)

    def plan(self) -> PlanResult:
        """Every feasible place for the whole lab over its TTL, cheapest first (no budget cut:
        ``cost()`` compares the cheapest with the budget)."""
        return plan(self.catalog, self.request(budget=False))

    def cost(self, option: PlanOption | None = None) -> LabCost:
        """The cost of the cheapest option (or ``option``) against the budget."""
        if option is None:
            option = self.plan().require()
        b = self.spec.budget
        return LabCost(lab=self.name, seats=self.spec.seats, hours=self.hours, option=option,
                       total_usd=option.total_usd, price_date=option.price_date, budget=b,
                       within_budget=b is None or option.total_usd <= b + 1e-9)

    def launch_spec(self, option: PlanOption) -> LaunchSpec:
        s = self.spec
        spec = LaunchSpec(provider=option.provider, type=option.type, region=option.region,
                          name=s.name, count=s.seats, ttl_seconds=s.ttl_seconds,
                          user_data=self.user_data, **s.launch_options())
        # The lab tag uses the reserved prefix that user tags may not; set it after validation.
        return spec.model_copy(update={"tags": {**spec.tags, TAG_LAB: s.name}})

    # -- cloud verbs ---------------------------------------------------------------------

    def places(self) -> list[tuple[str, str]]:
        """(provider, region) pairs where this lab's seats could be: where to look for them."""
        res = plan(self.catalog, self.request(budget=False))
        seen = dict.fromkeys((o.provider, o.region) for o in res.options)
        if self.spec.regions:
            for p in self.spec.providers or self.catalog.providers:
                for r in self.spec.regions:
                    if r in self.catalog.regions(p):
                        seen.setdefault((p, r), None)
        return sorted(seen)

    def _providers(self, sandbox: bool, factory: ProviderFactory | None
                   ) -> ProviderFactory:
        if factory is not None:
            return factory
        return provider_cache(sandbox)

    def _fleet_above(self, prov: Provider) -> int | None:
        """Missing seats above which ``prov`` launches through one fleet call."""
        above = prov.capabilities.fleet_above
        if above is None:
            return None
        return self.fleet_threshold if self.fleet_threshold is not None else above

    def status(self, *, sandbox: bool = False, providers: ProviderFactory | None = None,
               launching: bool = False) -> LabStatus:
        """The lab's instances, found by tag in every place it could be (``launching`` is
        accepted for callers of the earlier signature and changes nothing)."""
        make = self._providers(sandbox, providers)
        found: dict[str, Instance] = {}
        notes: list[str] = []
        unusable: set[str] = set()
        for prov, region in self._search_places(sandbox):
            if prov in unusable:
                continue
            try:
                listed = make(prov, region).list(self.name)
            except (MissingDependencyError, CredentialsError) as exc:
                # A lab that allows several clouds must not need credentials for all of them;
                # the cloud it launches on reports its own error when it is used.
                unusable.add(prov)
                notes.append(f"{prov}: not searched ({exc.message})")
                continue
            for inst in listed:
                found.setdefault(f"{inst.provider}:{inst.id}", inst)
        insts = sorted(found.values(), key=lambda i: (i.seat or 0, i.id))
        live = [i for i in insts if i.state not in ("terminated", "shutting-down", "deleting")]
        return LabStatus(lab=self.name, seats=self.spec.seats, instances=live,
                         running=sum(1 for i in live if i.state == "running"),
                         missing=max(0, self.spec.seats - len(live)), notes=notes)

    def _search_places(self, sandbox: bool) -> list[tuple[str, str]]:
        places = self.places()
        if sandbox:
            places = [(p, r) for p, r in places if has_local_endpoint(p)]
        return places

    def up(self, *, dry_run: bool = False, sandbox: bool = False, wait: bool = True,
           timeout_s: float = DEFAULT_READY_TIMEOUT_S, interval_s: float = 10.0,
           providers: ProviderFactory | None = None, progress: Any = None,
           keep_partial: bool = False) -> LabUpResult:
        """Plan, check, budget, launch every missing seat, wait for readiness (see _up).

        Two ``up`` of the same lab on one machine run one after the other (a lock file in
        the state directory): the second finds the first one's seats by tag and launches
        nothing. Across machines, the deterministic ClientTokens are what AWS dedupes on."""
        if dry_run:
            return self._up(dry_run=True, sandbox=sandbox, wait=wait, timeout_s=timeout_s,
                            interval_s=interval_s, providers=providers, progress=progress,
                            keep_partial=keep_partial)
        with _lab_lock(self.name):
            return self._up(dry_run=False, sandbox=sandbox, wait=wait, timeout_s=timeout_s,
                            interval_s=interval_s, providers=providers, progress=progress,
                            keep_partial=keep_partial)

    def _up(self, *, dry_run: bool, sandbox: bool, wait: bool, timeout_s: float,
            interval_s: float, providers: ProviderFactory | None, progress: Any,
            keep_partial: bool) -> LabUpResult:
        """Plan, check, budget, launch every missing seat as one group, wait for readiness.

        Refuses (BudgetError, exit 3) before anything is created when the cost of the whole
        lab for its TTL exceeds the budget. ``dry_run`` calls no cloud at all. When the first
        ``up`` of a lab fails (or is interrupted) part-way, what it created is removed again
        unless ``keep_partial``; a re-run that fails leaves the seats that already ran alone.
        """
        from nestcloud.checks import refused, run_checks
        from nestcloud.launcher import prepare, tag_limits

        step = progress.step if progress is not None else (lambda _t: None)
        if self.user_data:
            from nestcloud.bootstrap import check_user_data

            # Before any cloud call, naming the user-data file (prepare() checks it again).
            check_user_data(self.user_data, self.user_data_source)
        notes: list[str] = []
        req_providers = self.spec.providers
        if sandbox:
            local = [p for p in (req_providers or self.catalog.providers)
                     if has_local_endpoint(p)]
            if not local:
                raise InputError(f"lab {self.name}: --sandbox needs a provider with a local "
                                 "endpoint, and the lab allows none of "
                                 f"{', '.join(req_providers or self.catalog.providers)}")
            req_providers = local
            notes.append(f"sandbox: planned on {', '.join(local)} prices, launched on the "
                         "local endpoint")
        step("planning")
        reused = False
        existing: list[Instance] = []
        fresh = plan(self.catalog, self.request(budget=False, providers=req_providers))
        ahead: dict[tuple[str, str, str], Future[Quota | None]] = {}
        if not dry_run:
            step("looking for seats that already run")
            providers = self._providers(sandbox, providers)  # one client per place
            with self._read_ahead(fresh, providers, ahead):
                st = self.status(sandbox=sandbox, providers=providers, launching=True)
            existing = st.instances
            notes += st.notes
        if existing:
            # Re-run: stay where the first run put the lab, whatever is cheapest today.
            first = existing[0]
            res = plan(self.catalog, self.request(budget=False, providers=[first.provider],
                                                  regions=[first.region], type=first.type))
            reused = True
            notes.append(f"{len(existing)} seat(s) already run in {first.provider} "
                         f"{first.region} ({first.type}); launching only the missing ones there")
        else:
            res = fresh
        option = res.require()
        cost = self.cost(option)
        if not cost.within_budget:
            raise BudgetError(
                f"lab {self.name}: {self.spec.seats} seat(s) for {self.hours:g} h cost "
                f"${cost.total_usd:.2f} with the cheapest option ({option.line()}), over the "
                f"${cost.budget:.2f} budget; nothing was created",
                hint=res_hint(res, self.spec.budget or 0.0))
        spec = self.launch_spec(option)
        findings = run_checks(spec, self.catalog)
        if refused(findings):
            errors = [f for f in findings if f.severity == "error"]
            raise RefusedError(f"lab {self.name}: refused by pre-launch checks: "
                               + "; ".join(f.message for f in errors),
                               hint=next((f.suggestion for f in errors if f.suggestion), None),
                               findings=findings)
        notes += [f.message for f in findings if f.severity == "warning"]
        # What every launch attempt runs first (launcher.launch): a dry run must refuse
        # exactly what the real run refuses (world-open SSH, secrets in the user data...).
        prepare(spec, self.catalog)
        check_tags(spec.tags, tag_limits(spec.provider))  # as run_launch does before a create
        if dry_run:
            return LabUpResult(lab=self.name, dry_run=True, cost=cost, notes=notes,
                               reused_placement=reused)
        make = self._providers(sandbox, providers)
        missing = max(0, self.spec.seats - len(existing))
        if existing:
            # Stay where the lab runs, with the types its seats already have.
            seen = tuple(dict.fromkeys([option.type, *(i.type for i in existing)]))
            cands = [Candidate(option.provider, option.region, seen)]
        else:
            def fleet(p: str) -> bool:
                try:
                    caps = capabilities_of(p)
                except NestcloudError:  # failover reports it when it gets there
                    return False
                above = caps.fleet_above
                if above is not None and self.fleet_threshold is not None:
                    above = self.fleet_threshold
                return above is not None and missing > above

            cands = candidates(res.options, fleet=fleet, budget=self.spec.budget)
        by_place = {(o.provider, o.region, o.type): o for o in res.options}
        launched_at: list[Any] = []
        rolled: list[str] = []

        def attempt(c: Candidate) -> Launched[LaunchResult]:
            return self._launch_at(c, by_place[(c.provider, c.region, c.type)], make,
                                   missing, bool(existing), keep_partial, step, launched_at,
                                   rolled)

        def quota(c: Candidate) -> str | None:
            early = ahead.pop((c.provider, c.region, c.type), None)
            if early is not None and missing == self.spec.seats:
                said = early.result()
            else:
                said = _quota(make(c.provider, c.region),
                              by_place[(c.provider, c.region, c.type)])
            if said is None:
                return None
            if said.limit is None:  # unknown: failover tries, the cloud refuses if it must
                notes.append(f"{c.provider} {c.region}: quota not checked: {said.how}")
                return None
            need = by_place[(c.provider, c.region, c.type)].vcpus * missing
            if need > said.limit:
                return (f"needs {need} vCPUs ({missing} x {c.type}); the on-demand vCPU "
                        f"quota in {c.region} is {said.limit:g} ({said.how})")
            return None

        try:
            result, attempts = failover.run(cands, attempt,
                                            quota=None if existing else quota)
        except NestcloudError as exc:
            tried = {(a.provider, a.region) for a in failover.attempts_of(exc)
                     if a.outcome == "failed"}
            if rolled and not isinstance(exc, CleanupError) and len(tried) > 1:
                # The error is failover's summary: say what each attempt's rollback removed.
                note = "; ".join(rolled)
                if note not in (exc.hint or ""):
                    exc.hint = f"{exc.hint}; {note}" if exc.hint else note
            raise
        prov = launched_at[-1]
        option = by_place.get((result.provider, result.region, result.type), option)
        if option is not cost.option:
            cost = self.cost(option)
            notes.append(f"failover: launched as {option.line()}")
        rows = [a.to_dict() for a in attempts]
        ready = None
        if wait and result.instances:
            try:
                from nestcloud.bootstrap.wait import wait_for_ready
            except ModuleNotFoundError as exc:
                if exc.name != "nestcloud.bootstrap.wait":
                    raise
                notes.append("readiness not checked: this nestcloud build has no readiness "
                             "waiter (nestcloud.bootstrap.wait)")
                return LabUpResult(lab=self.name, dry_run=False, cost=cost, launch=result,
                                   notes=notes, reused_placement=reused, attempts=rows)
            step(f"waiting for {len(result.instances)} seat(s) to report ready")
            try:
                ready = wait_for_ready(prov, result.instances, timeout_s=timeout_s,
                                       interval_s=interval_s, sandbox=sandbox)
            except KeyboardInterrupt as exc:
                # The seats exist and bill: say so, not just "interrupted".
                ids = ", ".join(i.id for i in result.instances)
                raise KeyboardInterrupt(
                    f"lab {self.name}: interrupted while waiting for readiness; "
                    f"{len(result.instances)} seat(s) are still running ({ids}): "
                    f"`nestcloud lab status` on the lab file shows them, `nestcloud lab down` "
                    f"or `nestcloud down {self.name}` removes them") from exc
        return LabUpResult(lab=self.name, dry_run=False, cost=cost, launch=result,
                           ready=_plain(ready), notes=notes, reused_placement=reused,
                           attempts=rows)

    def _launch_at(self, c: Candidate, option: PlanOption, make: ProviderFactory,
                   missing: int, rerun: bool, keep_partial: bool, step: Any,
                   launched_at: list[Any], rolled: list[str]) -> Launched[LaunchResult]:
        """One failover attempt: launch the lab at ``c``; on failure (or Ctrl-C) remove what
        this attempt created there before failover moves on (unless --keep-partial)."""
        from nestcloud.launcher import run_launch

        prov = make(c.provider, c.region)
        launched_at.append(prov)
        caps = prov.capabilities
        above = self._fleet_above(prov)
        spec = self.launch_spec(option)
        also = f" (or {', '.join(c.types[1:])})" if len(c.types) > 1 else ""
        step(f"launching {missing} seat(s) of {c.type}{also} in {c.provider} {c.region}")
        try:
            # exclusive: hold the name's launch lock in the cloud for the whole launch, so a
            # concurrent `lab up` on another machine waits, then finds this run's seats
            # instead of launching its own. adaptive: many calls, client-side rate limiting.
            outcome = run_launch(spec, self.catalog, prov, types=c.types[1:],
                                 exclusive=caps.launch_lock,
                                 adaptive=above is not None and missing > above)
        except (NestcloudError, KeyboardInterrupt) as exc:
            left = _outcome_of(exc)
            try:
                stop = self._after_failure(c, prov, exc, left, rerun, keep_partial, step,
                                           rolled)
            finally:
                # A failed launch may keep its cloud lock for the rollback above, so that no
                # other run takes the lock and counts this run's seats as its own.
                if left is not None and left.lock_held and caps.launch_lock:
                    prov.unlock(self.name)
            if stop and isinstance(exc, NestcloudError):
                raise StopFailover(exc) from exc
            raise
        result = outcome.result
        assert result is not None
        kinds = [i.type for i in result.instances]
        launched = max(set(kinds), key=kinds.count) if kinds else c.type
        if launched != result.type:  # a fleet used an equivalent type
            result = result.model_copy(update={"type": launched})
        return Launched(result, list(outcome.attempts), launched_type=launched)

    def _after_failure(self, c: Candidate, prov: Provider, exc: BaseException,
                       left: LaunchOutcome | None, rerun: bool, keep_partial: bool, step: Any,
                       rolled: list[str]) -> bool:
        """All or nothing: remove what a failed first launch created at ``c`` (recorded in
        ``rolled``), unless it must stay. True when failover must stop here."""
        if rerun or isinstance(exc, RefusedError | InputError):
            return False
        if left is not None and not left.created_any:
            # It failed before its first create (a read, a check, another run's lock): nothing
            # of this run to remove, and whatever else carries the lab's name is another run's.
            return False
        others = list(left.found_live) if left is not None else []
        if others:
            # Another run launched seats of this lab while this one waited for the lock:
            # removing the lab would remove them. Stay here and leave them running.
            note = (f"not rolled back: {len(others)} seat(s) another run launched are "
                    f"running ({', '.join(others)}); re-run to complete the lab")
            if isinstance(exc, NestcloudError):
                exc.hint = f"{exc.hint}; {note}" if exc.hint else note
            return True
        if keep_partial:
            # A kept partial lab stays where it is: failing over would split it.
            return bool(_safe_list(prov, self.name))
        rolled.append(f"{c.provider} {c.region} {c.type}: " + self._roll_back(prov, exc, step))
        return False

    @contextlib.contextmanager
    def _read_ahead(self, res: PlanResult, make: ProviderFactory,
                    ahead: dict[tuple[str, str, str], Future[Quota | None]]) -> Iterator[None]:
        """While the tag search runs, read what a first ``up`` asks for next at the cheapest
        place: its vCPU quota (failover checks quota before a region's first try) and, where
        the provider can (``prefetch``), the launch plan's lookups. A re-run drops them. All
        read-only, and nothing is launched before their answers are looked at."""
        if not res.options:
            yield
            return
        o = res.options[0]
        try:
            prov = make(o.provider, o.region)
        except NestcloudError:  # status says why it cannot search there
            yield
            return
        caps = prov.capabilities
        if caps.prefetch:
            # Only a head start: if it cannot start, the plan reads for itself (and the
            # search reports a place it cannot use).
            with contextlib.suppress(NestcloudError):
                prov.prefetch(self.launch_spec(o))
        if not caps.quota:
            yield
            return
        from concurrent.futures import ThreadPoolExecutor

        # The quota reader makes its client under the provider's client lock.
        with ThreadPoolExecutor(max_workers=1) as pool:
            ahead[(o.provider, o.region, o.type)] = pool.submit(_quota, prov, o)
            yield

    def _roll_back(self, prov: Provider, exc: BaseException, step: Any) -> str:
        """Remove what a failed first ``up`` created; say so on the error (or raise
        CleanupError naming what is left). Returns the note."""
        step("launch failed: removing what this run created")
        try:
            removed = prov.down(self.name)
        except NestcloudError as cleanup:
            left = list(dict.fromkeys(
                [i.id for i in _safe_list(prov, self.name)]
                + (cleanup.leftovers if isinstance(cleanup, CleanupError) else [])))
            region = prov.region
            raise CleanupError(
                f"lab {self.name}: the launch failed ({exc}) and removing what it created "
                f"failed too: {cleanup}; still there"
                + (f" in {region}" if region else "")
                + f": {', '.join(left) or 'nothing found by tag'}", leftovers=left,
                hint=f"remove them with `nestcloud lab down FILE` or `nestcloud down "
                     f"{self.name}`") from exc
        what = ", ".join(removed.terminated) or "nothing had been launched"
        note = (f"all or nothing: lab {self.name} did not reach {self.spec.seats} seat(s); "
                f"removed what this run created ({what}); re-run to try again, or pass "
                "--keep-partial to keep partial labs")
        if isinstance(exc, NestcloudError):
            exc.hint = f"{exc.hint}; {note}" if exc.hint else note
        else:
            exc.args = (*exc.args, note)
        return note

    def down(self, *, sandbox: bool = False, providers: ProviderFactory | None = None
             ) -> LabDownResult:
        """Remove every seat of the lab wherever it runs; harmless when nothing is left."""
        make = self._providers(sandbox, providers)
        st = self.status(sandbox=sandbox, providers=make)
        places = sorted({(i.provider, i.region) for i in st.instances})
        results = [make(p, r).down(self.name) for p, r in places]
        notes = [] if places else [f"lab {self.name}: nothing to remove"]
        return LabDownResult(lab=self.name, results=results, notes=notes)


@contextlib.contextmanager
def _lab_lock(name: str) -> Iterator[None]:
    """An exclusive lock per lab name in the state directory (an OS lock: released when the
    process dies; filelock, so Windows is locked too)."""
    from nestcloud.localstate import file_lock, private_dir, state_dir

    private_dir(state_dir())
    with file_lock(state_dir() / "locks" / f"lab-{name}.lock"):
        yield


def _safe_list(prov: Provider, name: str) -> list[Instance]:
    try:
        return prov.list(name)
    except NestcloudError:
        return []


def _plain(report: WaitReport | None) -> Any:
    return None if report is None else report.to_dict()  # WaitReport's carries its exit code


def res_hint(res: PlanResult, budget: float) -> str:
    if not res.options:
        return "raise the budget"
    o = res.options[0]
    parts = [f"raise the budget to at least ${o.total_usd:.2f}"]
    if o.hourly_usd:
        parts.append(f"or shorten the ttl to {int(budget / o.hourly_usd * 60)} minutes")
    if o.usd_per_hour and o.hours:
        n = o.seats_within(budget)
        if n >= 1:
            parts.append(f"or cut seats to {n}")
    return ", ".join(parts)


def _outcome_of(exc: BaseException) -> LaunchOutcome | None:
    """What a failed launch left, as its provider said (None: it did not say)."""
    if isinstance(exc, ProviderError | LaunchInterrupted):
        return exc.outcome
    return None


def _quota(prov: Provider, option: PlanOption) -> Quota | None:
    """The region's vCPU quota for the option's type (``capabilities.quota``), else None."""
    if not prov.capabilities.quota:
        return None
    return prov.vcpu_quota(option.region, option.type)  # type: ignore[attr-defined,no-any-return]


def provider_cache(sandbox: bool = False,
                   options: dict[str, dict[str, Any]] | None = None) -> ProviderFactory:
    """A (provider, region) -> provider factory that opens each place once, through
    ``nestcloud.provider.open_provider`` with each provider's ``options``."""
    cache: dict[tuple[str, str], Provider] = {}

    def make(provider: str, region: str) -> Provider:
        if (provider, region) not in cache:
            cache[(provider, region)] = open_provider(
                provider, region, sandbox=sandbox, **(options or {}).get(provider, {}))
        return cache[(provider, region)]

    return make
