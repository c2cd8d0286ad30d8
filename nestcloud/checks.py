"""Pre-launch rules: pure functions from (LaunchSpec, Catalog) to findings.

A finding of severity ``error`` refuses the launch before anything is created.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from typing import Any, ClassVar, Literal, get_args

from nestcloud.catalog import Catalog, InstanceType
from nestcloud.oses import OSES
from nestcloud.render import Block, Rendered
from nestcloud.spec import LaunchSpec

Severity = Literal["error", "warning", "info"]

# A frozen dataclass, not a pydantic model: `nestcloud check` builds findings on every run and
# defining a model class would import pydantic's machinery (~45 ms) for values our own rules
# make. Pydantic models that hold findings (CheckResult) still validate and dump them.
@dataclasses.dataclass(frozen=True, kw_only=True)
class Finding:
    rule: str
    severity: Severity
    message: str
    suggestion: str | None = None

    def __post_init__(self) -> None:
        if self.severity not in _SEVERITIES:
            raise ValueError(f"severity {self.severity!r}: one of {', '.join(_SEVERITIES)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SEVERITIES: tuple[str, ...] = get_args(Severity)


def _where_cheapest(t: InstanceType, spot: bool) -> tuple[str, float, str] | None:
    """(region, USD/h, price source) of the type's lowest known price."""
    best: tuple[str, float, str] | None = None
    for region, p in sorted(t.prices.items()):
        val = p.spot if spot else p.on_demand
        if val is not None and (best is None or val < best[1]):
            best = (region, val, p.source)
    return best


def _price_text(catalog: Catalog, t: InstanceType, region: str | None, spot: bool) -> str:
    """' $0.0123/h on-demand in R (price date: D)', or that no price is known."""
    kind = "spot" if spot else "on-demand"
    if region is not None:
        p = t.prices.get(region)
        val = None if p is None else (p.spot if spot else p.on_demand)
        if p is None or val is None:
            return f" no {kind} price known in {region}"
        return f" ${val:.4f}/h {kind} in {region} (price date: {catalog.source_date(p.source)})"
    where = _where_cheapest(t, spot)
    if where is None:
        return f" no {kind} price known"
    r, val, src = where
    return f" from ${val:.4f}/h {kind} in {r} (price date: {catalog.source_date(src)})"


def suggest_nested(catalog: Catalog, spec: LaunchSpec, want_vcpus: int, want_mem: float
                   ) -> str | None:
    """The cheapest nested-capable type of the provider that covers the wanted size.

    Looks in the spec's region first; when nothing there fits, says so and names the cheapest
    one offered elsewhere. The text always carries the price and its date (or says none is known).
    """
    size = f"at least {want_vcpus} vCPU and {want_mem:g} GiB"
    hit = catalog.cheapest_nested(spec.provider, min_vcpus=want_vcpus, min_memory_gib=want_mem,
                                  region=spec.region, spot=spec.spot)
    if hit is not None:
        t, _ = hit
        return (f"use {t.name} ({t.vcpus} vCPU, {t.memory_gib:g} GiB, nesting {t.nesting}): the "
                f"cheapest {spec.provider} type able to run a hypervisor with {size},"
                f"{_price_text(catalog, t, spec.region, spec.spot)}")
    if spec.region is None:
        return None
    hit = catalog.cheapest_nested(spec.provider, min_vcpus=want_vcpus, min_memory_gib=want_mem,
                                  region=None, spot=spec.spot)
    if hit is None:
        return None
    t, _ = hit
    return (f"no {spec.provider} type that can run a hypervisor with {size} is offered in "
            f"{spec.region}; elsewhere: {t.name} ({t.vcpus} vCPU, {t.memory_gib:g} GiB, nesting "
            f"{t.nesting}),{_price_text(catalog, t, None, spec.spot)}")


Rule = Callable[[LaunchSpec, Catalog, InstanceType | None], list[Finding]]


def rule_unknown_provider(spec: LaunchSpec, catalog: Catalog, t: InstanceType | None
                          ) -> list[Finding]:
    if spec.provider in catalog.providers:
        return []
    return [Finding(rule="unknown-provider", severity="error",
                    message=f"the catalog has no provider {spec.provider!r}",
                    suggestion="known providers: " + ", ".join(catalog.providers))]


def rule_unknown_type(spec: LaunchSpec, catalog: Catalog, t: InstanceType | None
                      ) -> list[Finding]:
    if t is not None or spec.provider not in catalog.providers:
        return []
    other = sorted({x.provider for x in catalog.find(spec.type) if x.provider != spec.provider})
    if other:
        return [Finding(rule="unknown-type", severity="error",
                        message=f"{spec.type} is a {other[0]} type, not a {spec.provider} one",
                        suggestion=f"use --provider {other[0]}")]
    close = catalog.closest_names(spec.type, spec.provider)
    return [Finding(rule="unknown-type", severity="error",
                    message=f"unknown {spec.provider} instance type {spec.type!r}",
                    suggestion=("did you mean " + ", ".join(close) + "?") if close else
                    f"see `nestcloud catalog list --provider {spec.provider} --nested-only`")]


def rule_arch(spec: LaunchSpec, catalog: Catalog, t: InstanceType | None) -> list[Finding]:
    if t is None or t.arch != "arm64":
        return []
    if t.nesting == "native":
        what = (f"{t.name} is Arm (arm64) bare metal: nestcloud launches x86_64 L1 hosts only, "
                f"and {spec.provider} offers no nested virtualization on Arm")
    else:
        what = (f"{t.name} is an Arm (arm64) type: {spec.provider} offers no nested "
                "virtualization on Arm")
    return [Finding(rule="arm64", severity="error", message=what,
                    suggestion=suggest_nested(catalog, spec, t.vcpus, t.memory_gib))]


def rule_nesting_none(spec: LaunchSpec, catalog: Catalog, t: InstanceType | None
                      ) -> list[Finding]:
    if t is None or t.nesting != "none" or t.arch == "arm64":
        return []
    return [Finding(rule="no-nesting", severity="error",
                    message=f"{t.name} cannot run a hypervisor: {spec.provider} does not offer "
                            f"nested virtualization on it (catalog source "
                            f"{t.nesting_source!r}, verified {t.verified.isoformat()})",
                    suggestion=suggest_nested(catalog, spec, t.vcpus, t.memory_gib))]


def rule_native(spec: LaunchSpec, catalog: Catalog, t: InstanceType | None) -> list[Finding]:
    if t is None or t.nesting != "native":
        return []
    return [Finding(rule="bare-metal", severity="info",
                    message=f"{t.name} is bare metal: the hypervisor runs on the hardware, no "
                            "nested switch is needed and L2 guests run at full speed",
                    suggestion=None)]


def rule_depth(spec: LaunchSpec, catalog: Catalog, t: InstanceType | None) -> list[Finding]:
    if spec.depth <= 2:
        return []
    return [Finding(rule="depth", severity="error",
                    message=f"depth {spec.depth}: guests at L3 or deeper (a hypervisor inside an "
                            "L2 guest) are not expected to work (Red Hat: not properly tested; "
                            "upstream KVM: absurdly slow)",
                    suggestion="run every guest as an L2 of this host (--depth 2), or use a "
                               "bare-metal type so your guests become L1")]


def rule_os_hypervisor(spec: LaunchSpec, catalog: Catalog, t: InstanceType | None
                       ) -> list[Finding]:
    info = OSES.get(spec.os)
    if info is None:
        return [Finding(rule="unknown-os", severity="error",
                        message=f"unknown OS {spec.os!r}",
                        suggestion="one of " + ", ".join(OSES))]
    if spec.hypervisor in info.hypervisors:
        return []
    alts = [o.alias for o in OSES.values() if spec.hypervisor in o.hypervisors]
    reason = info.why_not.get(spec.hypervisor)
    if reason is None:
        need = "Windows" if spec.hypervisor in ("hyperv", "wsl2") else "Linux"
        reason = f"{spec.hypervisor} needs a {need} L1, and {info.title} is not {need}"
    others = [h for h in info.hypervisors if h != "none"]
    suggestion = " or ".join(
        ([f"--os {alts[0]}"] if alts else []) + [f"--hypervisor {h}" for h in others[:1]])
    return [Finding(rule="os-hypervisor", severity="error", message=reason,
                    suggestion=f"use {suggestion}" if suggestion else None)]


_GEN = {"V1": "Gen1", "V2": "Gen2"}


def rule_generation(spec: LaunchSpec, catalog: Catalog, t: InstanceType | None
                    ) -> list[Finding]:
    gen = spec.image_generation
    if t is None or not t.hyperv_generations or gen is None:
        return []
    if gen in t.hyperv_generations:
        return []
    only = "/".join(_GEN[g] for g in t.hyperv_generations)
    return [Finding(rule="generation", severity="error",
                    message=f"{t.name} boots {only} images only, and the image is {_GEN[gen]}",
                    suggestion=f"use a {_GEN[t.hyperv_generations[0]]} image (nestcloud picks "
                               "the right one for an OS alias when no image is given)")]


def rule_unknown_region(spec: LaunchSpec, catalog: Catalog, t: InstanceType | None
                        ) -> list[Finding]:
    if spec.region is None:
        return []
    known = catalog.regions(spec.provider)
    if not known or spec.region in known:
        return []
    close = difflib.get_close_matches(spec.region, known, n=3, cutoff=0.5)
    return [Finding(rule="unknown-region", severity="error",
                    message=f"unknown {spec.provider} region {spec.region!r}",
                    suggestion=("did you mean " + ", ".join(close) + "?") if close else
                    "known regions: " + ", ".join(known))]


def rule_region(spec: LaunchSpec, catalog: Catalog, t: InstanceType | None) -> list[Finding]:
    if t is None or spec.region is None or not t.regions or spec.region in t.regions:
        return []
    if spec.region not in catalog.regions(spec.provider):
        return []  # rule_unknown_region reports it
    offered = ", ".join(t.regions[:8]) + (" ..." if len(t.regions) > 8 else "")
    return [Finding(rule="region", severity="error",
                    message=f"{t.name} is not offered in {spec.region}",
                    suggestion=f"regions that offer it: {offered}")]


def rule_unconfirmed(spec: LaunchSpec, catalog: Catalog, t: InstanceType | None
                     ) -> list[Finding]:
    if t is None or t.nesting != "nested" or not catalog.unconfirmed(t):
        return []
    src = catalog.sources[t.nesting_source]
    alt = suggest_nested(catalog, spec, t.vcpus, t.memory_gib)
    return [Finding(rule="unconfirmed-nesting", severity="warning",
                    message=f"nested virtualization on {t.name} is expected but unconfirmed "
                            f"(catalog source {t.nesting_source!r}: {src.description}) "
                            "`nestcloud wait` reports a host whose KVM does not work as failed",
                    suggestion=None if alt is None or alt.startswith(f"use {t.name} ") else alt)]


def rule_amd(spec: LaunchSpec, catalog: Catalog, t: InstanceType | None) -> list[Finding]:
    if t is None or t.cpu_vendor != "amd" or t.nesting != "nested":
        return []
    return [Finding(rule="amd-nesting", severity="warning",
                    message=f"{t.name} is AMD: an L1 running L2 guests must not be "
                            "live-migrated; the cloud handles this, but expect maintenance "
                            "events to stop or redeploy the VM rather than migrate it",
                    suggestion=None)]


def rule_spot(spec: LaunchSpec, catalog: Catalog, t: InstanceType | None) -> list[Finding]:
    if not spec.spot:
        return []
    return [Finding(rule="spot", severity="warning",
                    message="spot capacity can be reclaimed at any time, and preemption kills "
                            "every L2 guest on the host with it",
                    suggestion="use on-demand for labs and demos that must not vanish")]


RULES: tuple[Rule, ...] = (
    rule_unknown_provider, rule_unknown_type, rule_unknown_region, rule_arch, rule_nesting_none,
    rule_native, rule_depth, rule_os_hypervisor, rule_generation,
    rule_region, rule_unconfirmed, rule_amd, rule_spot,
)


def provider_rules(spec: LaunchSpec, catalog: Catalog, t: InstanceType | None
                   ) -> list[Finding]:
    """The provider's own pre-launch rules (``capabilities.rules``), read from its class.

    A provider that is not installed has none to run (its launch fails on its own); one that
    is installed but cannot be loaded says so as a warning rather than hiding its rules."""
    from nestcloud.errors import NestcloudError
    from nestcloud.provider import available, load_factory

    if spec.provider not in available():
        return []
    try:
        cls = load_factory(spec.provider)
    except NestcloudError as exc:
        return [Finding(rule="provider-rules", severity="warning",
                        message=f"provider {spec.provider!r} could not be loaded, so its own "
                                f"pre-launch rules were not checked: {exc.message}",
                        suggestion=exc.hint)]
    if not cls.capabilities.rules:
        return []
    found: list[Finding] = cls.rules(spec, catalog, t)
    return found


def run_checks(spec: LaunchSpec, catalog: Catalog) -> list[Finding]:
    """Every finding for this launch, errors first."""
    t = catalog.get(spec.provider, spec.type)
    if t is None:
        # Accept a case-insensitive match (Azure sizes are case-insensitive).
        hits = catalog.find(spec.type, spec.provider)
        t = hits[0] if hits else None
    findings = [f for rule in RULES for f in rule(spec, catalog, t)]
    findings += provider_rules(spec, catalog, t)
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(findings, key=lambda f: order[f.severity])


def refused(findings: list[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)


# A frozen dataclass like Finding, not a pydantic model: `nestcloud check` renders it on every
# run (bench/bench_cli.py), and the Python API's `nestcloud.check` returns the same type.
@dataclasses.dataclass(frozen=True, kw_only=True)
class CheckResult(Rendered):
    """What the pre-launch rules found for one launch (``ok``: nothing refuses it)."""

    columns: ClassVar[tuple[str, ...]] = ("severity", "rule", "message", "suggestion")

    ok: bool
    provider: str
    type: str
    region: str | None
    findings: list[Finding]

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "provider": self.provider, "type": self.type,
                "region": self.region, "findings": [f.to_dict() for f in self.findings]}

    def rows(self) -> list[list[str]]:
        return [[f.severity, f.rule, f.message, f.suggestion or ""] for f in self.findings]

    def caption(self) -> str:
        where = f" in {self.region}" if self.region else ""
        return f"{self.provider}/{self.type}{where}: {'launchable' if self.ok else 'refused'}"

    def text(self, **options: Any) -> list[Block]:
        lines: list[Block] = [self.caption()]
        for f in self.findings:
            lines.append(f"  [{f.severity}] {f.rule}: {f.message}")
            if f.suggestion:
                lines.append(f"      -> {f.suggestion}")
        return lines
