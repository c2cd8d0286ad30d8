"""The instance-type catalog: models, parsing (pure), loading (thin I/O) and queries.

The catalog is a cache of what the clouds say about each instance type: size, architecture,
whether it can run a hypervisor (``nesting``), where it is offered and what it costs. Every
fact names the source it rests on; ``scripts/gen_catalog.py`` regenerates the file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import json
import os
import re
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from annotated_types import Ge, Gt, Le, MinLen

from nestcloud._yamlio import (MAX_CATALOG_BYTES, FileRefused, decode_utf8, line_of,
                               load_yaml, pydantic_problems, read_bounded, short_repr)
from nestcloud.cache import cache_dir, read_cache_entry, write_cache_entry
from nestcloud.errors import CatalogError

if TYPE_CHECKING:
    from pydantic import TypeAdapter

SCHEMA_VERSION = 1

# Constraints in annotated_types' terms, which pydantic reads natively (its PositiveInt is
# exactly Annotated[int, Gt(0)]): the same checks and messages, without importing pydantic.
PositiveInt = Annotated[int, Gt(0)]
PositiveFloat = Annotated[float, Gt(0)]
NonNegativeFloat = Annotated[float, Ge(0)]
NonEmptyStr = Annotated[str, MinLen(1)]

# Sanity bounds, not facts about any cloud: each is far above every size and price in the
# catalog (largest today: 384 vCPUs, 6144 GiB, ~59 USD/h), so only a broken file or a typo
# reaches them, and sums and products over the catalog stay finite.
MAX_VCPUS = 4096
MAX_MEMORY_GIB = 131072
MAX_USD_PER_HOUR = 10000
VcpuCount = Annotated[int, Gt(0), Le(MAX_VCPUS)]
MemoryGib = Annotated[float, Gt(0), Le(MAX_MEMORY_GIB)]
UsdPerHour = Annotated[float, Ge(0), Le(MAX_USD_PER_HOUR)]

Nesting = Literal["nested", "native", "none"]
Arch = Literal["x86_64", "arm64"]
CpuVendor = Literal["intel", "amd", "amazon", "ampere", "unknown"]  # amazon: Graviton
HyperVGeneration = Literal["V1", "V2"]

# The catalog types are stdlib frozen dataclasses that pydantic validates (TypeAdapter, with
# extra="forbid"), not pydantic models: every command reads the catalog from the parsed cache,
# and building plain dataclasses from it needs no pydantic import, while defining one pydantic
# model costs ~45 ms (half the time of `import typer, pydantic, yaml`). Whatever comes from a
# file or the network goes through `Catalog.validate`/`parse_catalog`, which validate exactly
# as the models did.
_D = TypeVar("_D", bound="_Data")
# A pydantic ConfigDict (a TypedDict: a plain dict at run time). No float field may be
# infinite or NaN: `.inf` in a catalog would otherwise print as `Infinity` in --json.
_FORBID = {"extra": "forbid", "allow_inf_nan": False}


class _Data:
    """Validation and dumping helpers for the catalog dataclasses (pydantic is imported lazily)."""

    @classmethod
    def validate(cls: type[_D], data: Any) -> _D:
        """Validate plain data (e.g. parsed YAML) into this type; raises pydantic's ValidationError."""
        return _adapter(cls).validate_python(data)  # type: ignore[no-any-return]

    def to_dict(self, *, mode: Literal["python", "json"] = "python",
                exclude_none: bool = False) -> dict[str, Any]:
        """Plain data, as pydantic dumps it (``mode="json"``: dates as ISO strings)."""
        return _adapter(type(self)).dump_python(  # type: ignore[no-any-return]
            self, mode=mode, exclude_none=exclude_none)

    def replace(self: _D, **changes: Any) -> _D:
        """A copy with some fields changed (not validated, like pydantic's model_copy)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Source(_Data):
    """Where a set of facts came from and when."""

    __pydantic_config__ = _FORBID

    description: str
    date: dt.date | None = None
    date_note: str | None = None
    # The facts are expected, not confirmed (e.g. a documented rule allows nesting on these
    # types but no source names them): `check` warns, and suggestions prefer confirmed types.
    unconfirmed: bool = False


@dataclasses.dataclass(frozen=True, kw_only=True)
class RegionPrice(_Data):
    """USD per hour in one region (Linux), and the price source that gives its date."""

    __pydantic_config__ = _FORBID

    on_demand: UsdPerHour | None = None
    spot: UsdPerHour | None = None
    source: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class InstanceType(_Data):
    """One instance type (AWS) or VM size (Azure)."""

    __pydantic_config__ = _FORBID

    provider: NonEmptyStr
    name: NonEmptyStr
    family: NonEmptyStr
    vcpus: VcpuCount
    memory_gib: MemoryGib
    arch: Arch
    cpu_vendor: CpuVendor
    nesting: Nesting
    nesting_source: str
    verified: dt.date
    bare_metal: bool = False
    hyperv_generations: list[HyperVGeneration] | None = None
    security_type: Literal["Standard"] | None = None
    regions: list[str] = dataclasses.field(default_factory=list)
    prices: dict[str, RegionPrice] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return (self.provider, self.name)

    def price(self, region: str, *, spot: bool = False) -> float | None:
        p = self.prices.get(region)
        if p is None:
            return None
        return p.spot if spot else p.on_demand


@dataclasses.dataclass(frozen=True, kw_only=True)
class Catalog(_Data):
    """The whole catalog file."""

    __pydantic_config__ = _FORBID

    schema_version: Literal[1]
    generated_by: str | None = None
    generated_at: dt.date | None = None
    sources: dict[str, Source]
    types: list[InstanceType]

    @classmethod
    def validate(cls, data: Any) -> Catalog:
        """Validate plain data into a catalog, cross-field rules included."""
        return _catalog_adapter().validate_python(data)  # type: ignore[no-any-return]

    # -- queries ---------------------------------------------------------------------------

    @cached_property
    def _index(self) -> dict[tuple[str, str], InstanceType]:
        return {t.key: t for t in self.types}

    @cached_property
    def providers(self) -> list[str]:
        return sorted({t.provider for t in self.types})

    def get(self, provider: str, name: str) -> InstanceType | None:
        return self._index.get((provider, name))

    def find(self, name: str, provider: str | None = None) -> list[InstanceType]:
        """Every type with that name (case-insensitive), optionally for one provider."""
        low = name.lower()
        return [t for t in self.types
                if t.name.lower() == low and (provider is None or t.provider == provider)]

    def of(self, provider: str) -> list[InstanceType]:
        return [t for t in self.types if t.provider == provider]

    def regions(self, provider: str) -> list[str]:
        return sorted({r for t in self.of(provider) for r in t.regions})

    def closest_names(self, name: str, provider: str | None = None, n: int = 3) -> list[str]:
        names = [t.name for t in self.types if provider is None or t.provider == provider]
        by_lower = {x.lower(): x for x in names}
        return [by_lower[m] for m in difflib.get_close_matches(name.lower(), list(by_lower), n=n,
                                                                cutoff=0.5)]

    def source_date(self, source: str) -> str:
        """The date a price source is valid for, or its note when the date is unknown."""
        src = self.sources.get(source)
        if src is None:
            return "unknown"
        if src.date is not None:
            return src.date.isoformat()
        return src.date_note or "unknown"

    def unconfirmed(self, t: InstanceType) -> bool:
        """Whether ``t``'s nesting rests on a source that says it is expected, unconfirmed."""
        src = self.sources.get(t.nesting_source)
        return src is not None and src.unconfirmed

    def cheapest_nested(self, provider: str, *, min_vcpus: int, min_memory_gib: float,
                        region: str | None, spot: bool = False,
                        arch: Arch = "x86_64") -> tuple[InstanceType, float | None] | None:
        """The cheapest type that can run a hypervisor with at least these resources.

        Types whose nesting is confirmed win over unconfirmed ones (``unconfirmed``), priced
        over unpriced; among unpriced, the smallest.
        """
        best: tuple[tuple[int, int, float, int, float, str], InstanceType, float | None] | None
        best = None
        for t in self.of(provider):
            if t.nesting == "none" or t.arch != arch:
                continue
            if t.vcpus < min_vcpus or t.memory_gib < min_memory_gib:
                continue
            if region is not None and t.regions and region not in t.regions:
                continue
            price = t.price(region, spot=spot) if region else _min_price(t, spot)
            rank = (1 if self.unconfirmed(t) else 0, 0 if price is not None else 1,
                    price if price is not None else 0.0, t.vcpus, t.memory_gib, t.name)
            if best is None or rank < best[0]:
                best = (rank, t, price)
        return (best[1], best[2]) if best else None


def _min_price(t: InstanceType, spot: bool) -> float | None:
    vals = [v for v in ((p.spot if spot else p.on_demand) for p in t.prices.values())
            if v is not None]
    return min(vals) if vals else None


def _consistency_problems(cat: Catalog) -> list[str]:
    """Cross-field rules, each message starting with its YAML path."""
    problems: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    for i, t in enumerate(cat.types):
        if t.key in seen:
            problems.append(f"types[{i}]: duplicate type {t.provider}/{t.name} "
                            f"(first at types[{seen[t.key]}])")
        else:
            seen[t.key] = i
        if t.nesting_source not in cat.sources:
            problems.append(f"types[{i}].nesting_source: unknown source "
                            f"{t.nesting_source!r} (known: {', '.join(sorted(cat.sources))})")
        for region, p in t.prices.items():
            if p.source not in cat.sources:
                problems.append(f"types[{i}].prices.{region}.source: unknown source "
                                f"{p.source!r}")
            if t.regions and region not in t.regions:
                problems.append(f"types[{i}].prices.{region}: priced in a region the type "
                                f"does not list in regions")
        if t.arch == "arm64" and t.nesting != "none" and not t.bare_metal:
            problems.append(f"types[{i}]: {t.name} is arm64 but nesting is {t.nesting!r}; "
                            "no cloud offers nesting on Arm")
        if t.bare_metal != (t.nesting == "native"):
            problems.append(f"types[{i}]: bare_metal={t.bare_metal} contradicts "
                            f"nesting={t.nesting!r} (native means bare metal)")
    return problems


def _consistent(cat: Catalog) -> Catalog:
    problems = _consistency_problems(cat)
    if problems:
        # Newline-joined: the messages themselves contain "; ".
        raise ValueError("\n".join(problems))
    return cat


# -- validation (pydantic, imported only here) -----------------------------------------------

_adapters: dict[Any, TypeAdapter[Any]] = {}


def _adapter(tp: Any) -> TypeAdapter[Any]:
    ad = _adapters.get(tp)
    if ad is None:
        from pydantic import TypeAdapter

        ad = _adapters[tp] = TypeAdapter(tp)
    return ad


def _catalog_adapter() -> TypeAdapter[Any]:
    """Catalog with its cross-field rules: a failure is a value_error at the top level."""
    key = "catalog+consistency"
    ad = _adapters.get(key)
    if ad is None:
        from pydantic import AfterValidator

        ad = _adapters[key] = _adapter(Annotated[Catalog, AfterValidator(_consistent)])
    return ad


# -- parsing (pure) ------------------------------------------------------------------------


def parse_catalog(text: str, source: str = "<catalog>") -> Catalog:
    """Parse and validate catalog YAML text; raise CatalogError listing every problem."""
    data, err = load_yaml(text, source)
    if err:
        raise CatalogError(source, [err])
    if not isinstance(data, dict):
        raise CatalogError(source, [f"{source}: the top level must be a mapping with "
                                    f"schema_version, sources and types (got {type(data).__name__})"])
    version = data.get("schema_version")
    if version is not None and version != SCHEMA_VERSION:
        where = _where(text, source, ("schema_version",))
        raise CatalogError(source, [f"{where}: schema_version: this nestcloud reads version "
                                    f"{SCHEMA_VERSION} (got {short_repr(version)})"])
    from pydantic import ValidationError

    try:
        return Catalog.validate(data)
    except ValidationError as exc:
        raise CatalogError(source, _catalog_problems(exc, text, source)) from None


def _catalog_problems(exc: Any, text: str, source: str) -> list[str]:
    problems: list[str] = []
    for err in exc.errors(include_url=False):
        if err.get("type") == "value_error" and not err.get("loc"):
            # The cross-field validator joins its findings with newlines; each starts with
            # its YAML path ("types[3].nesting_source: ..."), which gives the line.
            msg = str(err.get("msg", "")).removeprefix("Value error, ")
            problems.extend(f"{_where(text, source, _path_loc(m))}: {m}"
                            for m in msg.split("\n"))
    rest = [e for e in exc.errors(include_url=False)
            if not (e.get("type") == "value_error" and not e.get("loc"))]
    problems.extend(pydantic_problems(rest, text, source))
    return problems


def _path_loc(message: str) -> tuple[str | int, ...]:
    """'types[3].prices.us-east-1: ...' -> ('types', 3, 'prices', 'us-east-1')."""
    loc: list[str | int] = []
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", message.split(":", 1)[0]):
        loc.append(int(part[1:-1]) if part.startswith("[") else part)
    return tuple(loc)


def _where(text: str, source: str, loc: tuple[str | int, ...]) -> str:
    line = line_of(text, loc) if loc else None
    return f"{source}:{line}" if line else source


# -- loading (thin I/O) --------------------------------------------------------------------

ENV_CATALOG = "NESTCLOUD_CATALOG"


def default_catalog_path() -> Path:
    """The catalog in use: $NESTCLOUD_CATALOG, the packaged copy, or the checkout's root file."""
    env = os.environ.get(ENV_CATALOG)
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    packaged = here / "catalog.yaml"
    if packaged.is_file():
        return packaged
    return here.parent / "catalog.yaml"


_cache: dict[tuple[str, float, int], Catalog] = {}

# Parsing the YAML is most of a CLI command's run time (the shipped catalog takes ~0.1 s even
# with the C loader), so the validated catalog is also kept on disk as JSON. The key covers the
# file's bytes, this module's source and the pydantic version, so any change to the file or to
# the types invalidates it. Reading it back does not validate again: that would import pydantic
# and build the validators (~65 ms of a ~0.2 s command), so the entry is rebuilt by calling the
# dataclasses directly. That is safe because an entry is written only after rebuilding it that
# way gave exactly the validated catalog, and its body carries a SHA-256 that is checked before
# it is trusted (a truncated or damaged entry is re-parsed; see nestcloud.cache for what it
# does not protect against). The files live in nestcloud.cache.


def _pydantic_version() -> str:
    import pydantic

    return str(pydantic.VERSION)


def _disk_cache_key(data: bytes) -> str:
    import hashlib

    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    h.update(_pydantic_version().encode())
    h.update(b"\0")
    h.update(data)
    return h.hexdigest()


def _disk_cache_file(resolved: str) -> Path | None:
    import hashlib

    d = cache_dir()
    if d is None:
        return None
    return d / f"catalog-{hashlib.sha256(resolved.encode()).hexdigest()[:20]}.json"


def _read_disk_cache(file: Path | None, key: str) -> Catalog | None:
    body = read_cache_entry(file, key)
    if body is None:
        return None
    try:
        return _from_cache(json.loads(body))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def _from_cache(doc: dict[str, Any]) -> Catalog:
    """Rebuild a catalog from the JSON `_write_disk_cache` wrote, without validating again.

    Only for bytes this module wrote after checking that this gives back the validated catalog.
    """
    day = dt.date.fromisoformat

    def opt_day(v: str | None) -> dt.date | None:
        return None if v is None else day(v)

    sources = {k: Source(**{**s, "date": opt_day(s["date"])})
               for k, s in doc["sources"].items()}
    types = [InstanceType(**{
        **t, "verified": day(t["verified"]),
        "prices": {r: RegionPrice(**p) for r, p in t["prices"].items()}})
        for t in doc["types"]]
    return Catalog(**{**doc, "generated_at": opt_day(doc["generated_at"]),
                      "sources": sources, "types": types})


def _write_disk_cache(file: Path | None, key: str, cat: Catalog) -> None:
    if file is None:
        return
    body = _adapter(Catalog).dump_json(cat)
    try:
        if _from_cache(json.loads(body)) != cat:
            return  # whatever would not survive JSON: never cache a lossy copy
    except (ValueError, TypeError, KeyError, AttributeError):
        return
    write_cache_entry(file, key, body)


def load_catalog(path: str | os.PathLike[str] | None = None) -> Catalog:
    """Read and parse a catalog file (the default one when ``path`` is None)."""
    p = Path(path) if path is not None else default_catalog_path()
    try:
        st = p.stat()
        resolved = str(p.resolve())
    except FileNotFoundError:
        raise CatalogError(str(p), [f"{p}: file not found"]) from None
    except (OSError, ValueError) as exc:
        raise CatalogError(str(p), [f"{p}: cannot read it: {exc}"]) from None
    key = (resolved, st.st_mtime, st.st_size)
    if key in _cache:
        return _cache[key]
    try:
        # Only a regular file of a sane size: a FIFO or /dev/zero must not hang the command.
        data = read_bounded(p, "a catalog file", MAX_CATALOG_BYTES)
        text = decode_utf8(data, p)
    except FileRefused as exc:
        raise CatalogError(str(p), [str(exc)]) from None
    disk_key = _disk_cache_key(data)
    disk_file = _disk_cache_file(resolved)
    cat = _read_disk_cache(disk_file, disk_key)
    if cat is None:
        cat = parse_catalog(text, str(p))
        _write_disk_cache(disk_file, disk_key, cat)
    _cache[key] = cat
    return cat
