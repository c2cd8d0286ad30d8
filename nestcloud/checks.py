"""Pre-launch rules: pure functions from (LaunchSpec, Catalog) to findings.

A finding of severity ``error`` refuses the launch before anything is created.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict

from nestcloud.catalog import Catalog, InstanceType
from nestcloud.oses import OSES
from nestcloud.spec import LaunchSpec

Severity = Literal["error", "warning", "info"]

AWS_WINDOWS_MAX_VCPUS = 192  # FACTS.md: no Windows L1 support above 192 vCPUs on AWS


class Finding(BaseModel):
    model_config = ConfigDict(frozen=True)

    rule: str
    severity: Severity
    message: str
    suggestion: str | None = None


def _fmt_price(catalog: Catalog, t: InstanceType, region: str | None, spot: bool) -> str:
    if region is None:
        return ""
    p = t.prices.get(region)
    val = None if p is None else (p.spot if spot else p.on_demand)
    if p is None or val is None:
        return f" (no price known in {region})"
    kind = "spot" if spot else "on-demand"
    return f" at ${val:.4f}/h {kind} in {region} (price date: {catalog.source_date(p.source)})"


def suggest_nested(catalog: Catalog, spec: LaunchSpec, want_vcpus: int, want_mem: float
                   ) -> str | None:
    """The cheapest nested-capable type of the provider that covers the wanted size."""
    hit = catalog.cheapest_nested(spec.provider, min_vcpus=want_vcpus, min_memory_gib=want_mem,
                                  region=spec.region, spot=spec.spot)
    if hit is None and spec.region is not None:
        hit = catalog.cheapest_nested(spec.provider, min_vcpus=want_vcpus,
                                      min_memory_gib=want_mem, region=None, spot=spec.spot)
    if hit is None:
        return None
    t, _ = hit
    return (f"use {t.name} ({t.vcpus} vCPU, {t.memory_gib:g} GiB, {t.nesting})"
            f"{_fmt_price(catalog, t, spec.region, spec.spot)}")


Rule = Callable[[LaunchSpec, Catalog, InstanceType | None], list[Finding]]


def rule_unknown_type(spec: LaunchSpec, catalog: Catalog, t: InstanceType | None
                      ) -> list[Finding]:
    if t is not None:
        return []
    other = [x.provider for x in catalog.find(spec.type) if x.provider != spec.provider]
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
    return [Finding(rule="arm64", severity="error",
                    message=f"{t.name} is an Arm (arm64) type: AWS and Azure offer no nested "
                            "virtualization on Arm",
                    suggestion=suggest_nested(catalog, spec, t.vcpus, t.memory_gib))]


def rule_nesting_none(spec: LaunchSpec, catalog: Catalog, t: InstanceType | None
                      ) -> list[Finding]:
    if t is None or t.nesting != "none" or t.arch == "arm64":
        return []
    src = catalog.sources.get(t.nesting_source)
    why = f" (source: {src.description})" if src else ""
    return [Finding(rule="no-nesting", severity="error",
                    message=f"{t.name} cannot run a hypervisor: {spec.provider} does not offer "
                            f"nested virtualization on it{why}",
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
    reason = info.why_not.get(spec.hypervisor)
    if reason is None:
        need = "Windows" if spec.hypervisor in ("hyperv", "wsl2") else "Linux"
        reason = f"{spec.hypervisor} needs a {need} L1, and {info.title} is {info.family}"
        alts = [o.alias for o in OSES.values() if spec.hypervisor in o.hypervisors]
        suggestion = f"use --os {alts[0]}" if alts else None
    else:
        suggestion = None
    return [Finding(rule="os-hypervisor", severity="error", message=reason,
                    suggestion=suggestion)]


def rule_trusted_launch(spec: LaunchSpec, catalog: Catalog, t: InstanceType | None
                        ) -> list[Finding]:
    if spec.provider != "azure" or spec.security_type == "Standard":
        return []
    return [Finding(rule="trusted-launch", severity="error",
                    message=f"security type {spec.security_type} blocks nesting on Azure: "
                            "Hyper-V and WSL2 in the L1 report that virtualization is not "
                            "enabled in the BIOS",
                    suggestion="use security type Standard (nestcloud's default)")]


def rule_generation(spec: LaunchSpec, catalog: Catalog, t: InstanceType | None
                    ) -> list[Finding]:
    gen = spec.image_generation
    if t is None or not t.hyperv_generations or gen is None:
        return []
    if gen in t.hyperv_generations:
        return []
    only = "/".join(t.hyperv_generations)
    want = "Gen1" if gen == "V1" else "Gen2"
    return [Finding(rule="generation", severity="error",
                    message=f"{t.name} boots {only} images only, and the image is {want}",
                    suggestion=f"use a {'Gen1' if 'V1' in t.hyperv_generations else 'Gen2'} "
                               "image (nestcloud picks the right one for an OS alias)")]


def rule_region(spec: LaunchSpec, catalog: Catalog, t: InstanceType | None) -> list[Finding]:
    if t is None or spec.region is None:
        return []
    known = catalog.regions(spec.provider)
    if spec.region not in known and known:
        close = difflib.get_close_matches(spec.region, known, n=3, cutoff=0.5)
        return [Finding(rule="unknown-region", severity="error",
                        message=f"unknown {spec.provider} region {spec.region!r}",
                        suggestion=("did you mean " + ", ".join(close) + "?") if close else
                        "known regions: " + ", ".join(known))]
    if t.regions and spec.region not in t.regions:
        offered = ", ".join(t.regions[:8]) + (" ..." if len(t.regions) > 8 else "")
        return [Finding(rule="region", severity="error",
                        message=f"{t.name} is not offered in {spec.region}",
                        suggestion=f"regions that offer it: {offered}")]
    return []


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


def rule_windows_aws_vcpus(spec: LaunchSpec, catalog: Catalog, t: InstanceType | None
                           ) -> list[Finding]:
    info = OSES.get(spec.os)
    if (t is None or spec.provider != "aws" or info is None or info.family != "windows"
            or t.vcpus <= AWS_WINDOWS_MAX_VCPUS or t.nesting != "nested"):
        return []
    return [Finding(rule="windows-vcpus", severity="error",
                    message=f"{t.name} has {t.vcpus} vCPUs: AWS supports a nested Windows L1 "
                            f"only up to {AWS_WINDOWS_MAX_VCPUS} vCPUs",
                    suggestion=f"pick a size with at most {AWS_WINDOWS_MAX_VCPUS} vCPUs, or a "
                               "Linux L1")]


RULES: tuple[Rule, ...] = (
    rule_unknown_type, rule_arch, rule_nesting_none, rule_native, rule_depth,
    rule_os_hypervisor, rule_trusted_launch, rule_generation, rule_region, rule_amd,
    rule_spot, rule_windows_aws_vcpus,
)


def run_checks(spec: LaunchSpec, catalog: Catalog) -> list[Finding]:
    """Every finding for this launch, errors first."""
    t = catalog.get(spec.provider, spec.type)
    if t is None:
        # Accept a case-insensitive match (Azure sizes are case-insensitive).
        hits = catalog.find(spec.type, spec.provider)
        t = hits[0] if hits else None
    findings = [f for rule in RULES for f in rule(spec, catalog, t)]
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(findings, key=lambda f: order[f.severity])


def refused(findings: list[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)
