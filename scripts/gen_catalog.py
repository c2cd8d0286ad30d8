#!/usr/bin/env python3
"""Generate catalog.yaml from the sources it cites; never from memory.

    python scripts/gen_catalog.py [--out catalog.yaml] [--date YYYY-MM-DD]

Sources (nothing else is read; a fact none of them gives stays out of the catalog):

* AWS sizes and nesting: moto's mirror of EC2 DescribeInstanceTypes
  (moto/ec2/resources/instance_types.json.gz). vcpus = VCpuInfo.DefaultVCpus, memory_gib =
  MemoryInfo.SizeInMiB / 1024, arch from ProcessorInfo.SupportedArchitectures, cpu_vendor from
  ProcessorInfo.Manufacturer (Intel/AMD/AWS; a missing or other manufacturer becomes "unknown":
  we do not guess from the family letter), bare_metal = BareMetal. nesting is "native" for
  bare metal, "nested" when ProcessorInfo.SupportedFeatures lists nested-virtualization,
  otherwise "none".
* AWS regions: moto's mirror of DescribeInstanceTypeOfferings (LocationType=region),
  moto/ec2/resources/instance_type_offerings/region/<region>.json.gz.
* AWS prices: data/prices-aws.csv (a copy of shared/data). A price row is attached only when the offerings
  data lists the type in that region; dropped rows are counted on stderr.
* Azure sizes, generations, regions and prices: data/prices-azure.csv (a copy of shared/data).
* Azure nesting: the per-family lists in ../shared/FACTS.md, copied into AZURE_NESTED /
  AZURE_NOT_NESTED below (FACTS.md is prose, not data). Families the CSV lacks (v6, v7, M, Lasv3)
  cannot be listed: the CSV is our only source for their vCPUs and memory.
* GCP machine types, regions and prices: data/prices-gcp.csv (a copy of shared/data); the
  series is the name's first part (n2-standard-4 -> n2).
* GCP nesting: FACTS.md "GCP", copied into GCP_SERIES below: N1 and N2 confirmed by name; C2, C3
  and N4 expected but unconfirmed (their own source key, gcp-nesting-unconfirmed, which
  `check` turns into a warning); E2 (its trap), N2D (AMD) and T2A (Arm) refused.

Azure cpu_vendor follows the size-name convention (learn.microsoft.com "Azure VM sizes naming
conventions"): the additive-feature letter "a" means an AMD processor and "p" an Arm CPU, so
arch arm64. Arm sizes up to v5 (Dpsv5, Epsv5, Bpsv2) run on Ampere Altra: vendor "ampere";
v6 Arm sizes (Dpsv6, Dplsv6) run on Microsoft's Cobalt 100, which the catalog's CpuVendor
cannot name: "unknown". The doc does not say what the absence of both letters means; the
convention relied on, and what we record, is Intel.

* Local sizes (provider ``local``, QEMU on the user's own machine): LOCAL_SIZES below, vCPU and
  memory pairs nestcloud offers, not facts of any cloud. Their nesting rests on FACTS.md, "A
  local L1 under QEMU" (TCG's default CPU carries AMD-V; KVM seats nest when the host's module
  allows it); whether *this* machine can give a size is checked at `check`/launch time
  (LocalProvider.rules) and by `catalog verify -p local`. Price 0: no cloud bill.

Output is deterministic: sorted input, no clocks except the date, which is --date (or
SOURCE_DATE_EPOCH, or today in UTC) and lands in generated_at and every type's `verified`.
The result is validated with nestcloud.catalog.parse_catalog before it is written.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import importlib.metadata
import importlib.util
import json
import os
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a checkout without installing

from nestcloud._catalog_dump import dump  # noqa: E402
from nestcloud.catalog import (  # noqa: E402
    SCHEMA_VERSION,
    Catalog,
    CpuVendor,
    InstanceType,
    Nesting,
    RegionPrice,
    Source,
    parse_catalog,
)

GENERATED_BY = "scripts/gen_catalog.py"
DEFAULT_DATA_DIR = REPO / "data"

# Source keys (referenced by nesting_source and prices.*.source).
SRC_AWS_TYPES = "aws-describe-instance-types"
SRC_AWS_OFFERINGS = "aws-instance-type-offerings"
SRC_AWS_PRICES = "aws-prices"
SRC_AZURE_SIZES = "azure-prices"
SRC_AZURE_NESTING = "azure-nesting-facts"
SRC_GCP_PRICES = "gcp-prices"
SRC_GCP_NESTING = "gcp-nesting-facts"
# C2, C3, N4: a separate source marked unconfirmed, so the core's check warns on them and its
# suggestions prefer confirmed types, without a list of families anywhere.
SRC_GCP_NESTING_UNCONFIRMED = "gcp-nesting-unconfirmed"

PRICE_DATE_NOTE = "published 2025 or later, exact date unknown"

# -- AWS coverage -------------------------------------------------------------------------

# Families users will try that cannot nest (besides every family with the nested feature).
AWS_NON_NESTING_FAMILIES = ("c7g", "m7g", "c8g", "m8g", "c7a", "m7a", "c6i", "m6i", "r6i", "t3")
AWS_NESTED_FEATURE = "nested-virtualization"
AWS_VENDORS = {"Intel": "intel", "AMD": "amd", "AWS": "amazon"}

# -- Azure nesting per family (FACTS.md, Azure section) ------------------------------------

# Family name as parse_azure_name() spells it -> note (None when there is nothing to add).
AZURE_NESTED: dict[str, str | None] = {
    "Dv3": "FACTS.md: nesting on Dv3 works on Gen1 (V1) only",
    "Dsv3": None, "Dv4": None, "Dsv4": None, "Ddv4": None, "Ddsv4": None,
    "Dv5": None, "Dsv5": None, "Ddv5": None, "Ddsv5": None, "Dasv5": None, "Dadsv5": None,
    "Dsv6": None, "Dasv6": None, "Dalsv6": None, "Dsv7": None, "Dasv7": None,
    "Ev3": "FACTS.md: nesting on Ev3 works on Gen1 (V1) only",
    "Esv3": None, "Ev4": None, "Ev5": None, "Easv5": None, "Esv6": None, "Easv6": None,
    "Fsv2": None, "Lsv3": None, "Lasv3": None,
}
# Families that FACTS.md restricts to one Hyper-V generation for nesting.
AZURE_NESTING_GENERATIONS: dict[str, list[str]] = {"Dv3": ["V1"], "Ev3": ["V1"]}
# FACTS.md's "Not supported" list, as predicates on the parsed name (series letters, features,
# version) because some entries name a whole series ("B-series", "N-series", "HB/HC").
AZURE_NOT_NESTED_FAMILIES: dict[str, str] = {
    "Dasv4": "FACTS.md: Dasv4 (AMD v4) does not support nested virtualization",
    "Dav4": "FACTS.md: Dav4 (AMD v4) does not support nested virtualization",
    "Dpsv5": "FACTS.md: Arm Dpsv5 does not support nested virtualization",
    "Dpsv6": "FACTS.md: Arm Dpsv6 does not support nested virtualization",
    "Epsv5": "FACTS.md: Arm Epsv5 does not support nested virtualization",
    "DCasv5": "FACTS.md: confidential DCasv5 does not support nested virtualization",
}
# Single sizes FACTS.md singles out against their family.
AZURE_SIZE_OVERRIDES: dict[str, str] = {
    "Standard_D3_v3": "FACTS.md: reported unsupported although Dv3 is a nested family",
}

_AZURE_NAME = re.compile(
    r"^Standard_(?P<series>[A-Z]+)(?P<vcpus>\d+)(?:-(?P<constrained>\d+))?"
    r"(?P<features>[a-z]*)(?:_(?P<accel>[A-Z][A-Za-z0-9]*))?(?:_v(?P<version>\d+))?$")


@dataclass(frozen=True)
class AzureName:
    """A VM size name split per the naming convention: series, vCPUs, features, version."""

    series: str
    vcpus: int
    constrained: int | None
    features: str
    accelerator: str | None
    version: int | None

    @property
    def family(self) -> str:
        """The series name Azure's docs use: Standard_D4s_v5 -> Dsv5, E16ads_v5 -> Eadsv5.

        Series letters + feature letters + version, except that in the A and B series the
        memory-amount letters (l = low, m = more, t = tiny) pick a size *within* one series
        (Av2 lists A2m_v2; Bsv2 lists B2ts_v2 and B2ls_v2), and the unversioned B sizes form
        the series FACTS.md calls Bv1.
        """
        if self.series == "B" and self.version is None:
            return "Bv1"
        feats = self.features
        if self.series in ("A", "B"):
            feats = "".join(c for c in feats if c not in "lmt")
        return self.series + feats + (f"v{self.version}" if self.version else "")


def parse_azure_name(name: str) -> AzureName:
    """Split an Azure size name; ValueError for names outside the convention."""
    m = _AZURE_NAME.match(name)
    if not m:
        raise ValueError(f"{name!r} does not follow the Azure size naming convention")
    return AzureName(series=m["series"], vcpus=int(m["vcpus"]),
                     constrained=int(m["constrained"]) if m["constrained"] else None,
                     features=m["features"], accelerator=m["accel"],
                     version=int(m["version"]) if m["version"] else None)


def azure_nesting(name: str) -> tuple[str, str | None] | None:
    """("nested" | "none", note) per FACTS.md, or None when FACTS.md says nothing about it."""
    n = parse_azure_name(name)
    fam = n.family
    if name in AZURE_SIZE_OVERRIDES:
        return "none", AZURE_SIZE_OVERRIDES[name]
    if fam in AZURE_NOT_NESTED_FAMILIES:
        return "none", AZURE_NOT_NESTED_FAMILIES[fam]
    if n.series == "B":
        return "none", "FACTS.md: B-series (Bv1, Bsv2, Basv2) does not support nested virtualization"
    if n.series == "A" and n.version == 2:
        return "none", "FACTS.md: Av2 does not support nested virtualization"
    if n.series.startswith("N"):
        return "none", "FACTS.md: GPU N-series does not support nested virtualization"
    if n.series in ("HB", "HC"):
        return "none", "FACTS.md: HPC HB/HC does not support nested virtualization"
    if n.series == "M":
        return "nested", None  # FACTS.md: "M" (the whole series)
    if fam in AZURE_NESTED:
        return "nested", AZURE_NESTED[fam]
    return None


def azure_cpu(name: str) -> tuple[str, str]:
    """(arch, cpu_vendor) from the additive-feature letters (see the module docstring)."""
    n = parse_azure_name(name)
    feats = n.features
    if "p" in feats:
        return "arm64", "ampere" if (n.version or 0) <= 5 else "unknown"
    if "a" in feats:
        return "x86_64", "amd"
    return "x86_64", "intel"


# -- GCP nesting per series (FACTS.md, "GCP (Compute Engine)") ------------------------------


@dataclass(frozen=True)
class GcpSeries:
    """What FACTS.md says about one machine series."""

    nesting: Nesting
    source: str          # SRC_GCP_NESTING or SRC_GCP_NESTING_UNCONFIRMED
    cpu_vendor: CpuVendor  # "unknown" where neither FACTS.md nor the CSV names the maker
    note: str | None = None


_GCP_OVERVIEW = "cloud.google.com/compute/docs/instances/nested-virtualization/overview"
# Nested series carry no note: their nesting_source's description says how sure it is.
GCP_SERIES: dict[str, GcpSeries] = {
    "n1": GcpSeries("nested", SRC_GCP_NESTING, "intel"),
    "n2": GcpSeries("nested", SRC_GCP_NESTING, "intel"),
    "c2": GcpSeries("nested", SRC_GCP_NESTING_UNCONFIRMED, "intel"),
    "c3": GcpSeries("nested", SRC_GCP_NESTING_UNCONFIRMED, "intel"),
    "n4": GcpSeries("nested", SRC_GCP_NESTING_UNCONFIRMED, "intel"),
    # The data README lists e2 beside n2d under "AMD"; FACTS.md names no E2 processor.
    "e2": GcpSeries("none", SRC_GCP_NESTING, "unknown",
                    "FACTS.md trap: the API accepts enableNestedVirtualization on E2 and the VM "
                    "boots with no vmx, so nothing can run a hypervisor on it "
                    "(pulumi/pulumi-gcp#715); older text of the nested-virtualization overview "
                    "excludes E2"),
    "n2d": GcpSeries("none", SRC_GCP_NESTING, "amd",
                     "FACTS.md: N2D is AMD, and VMs with AMD processors cannot use nested "
                     f"virtualization on Compute Engine ({_GCP_OVERVIEW})"),
    # Arm; FACTS.md and the CSV name no maker for T2A's processor.
    "t2a": GcpSeries("none", SRC_GCP_NESTING, "unknown",
                     "FACTS.md: T2A is Arm, and VMs with Arm processors cannot use nested "
                     f"virtualization on Compute Engine ({_GCP_OVERVIEW})"),
}
GCP_PRICE_DATE_NOTE = "not recorded in the source; exact date unknown"


def gcp_series(name: str) -> str:
    return name.split("-", 1)[0]


# -- reading sources ------------------------------------------------------------------------


def moto_dir(explicit: Path | None) -> tuple[Path, str]:
    """moto's ec2/resources directory and moto's version, without importing moto."""
    try:
        version = importlib.metadata.version("moto")
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit("gen_catalog: moto is not installed (pip install 'moto==5.2.5')") from None
    if explicit is not None:
        return explicit, version
    spec = importlib.util.find_spec("moto")
    assert spec is not None and spec.submodule_search_locations
    return Path(list(spec.submodule_search_locations)[0]) / "ec2" / "resources", version


def _gz_json(path: Path) -> Any:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def aws_offerings(res: Path) -> dict[str, list[str]]:
    regions: dict[str, set[str]] = defaultdict(set)
    for f in sorted((res / "instance_type_offerings" / "region").glob("*.json.gz")):
        for row in _gz_json(f):
            regions[row["InstanceType"]].add(row["Location"])
    return {k: sorted(v) for k, v in regions.items()}


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _price(s: str) -> float | None:
    return float(s) if s.strip() else None


@dataclass
class Report:
    """What the run left out or adjusted, printed to stderr."""

    lines: list[str]

    def add(self, line: str) -> None:
        self.lines.append(line)


# -- local (QEMU on this machine) ----------------------------------------------------------

SRC_LOCAL = "local-qemu"
SRC_LOCAL_PRICE = "local-free"
# (vCPUs, GiB) pairs: powers of two with 2 GiB per vCPU, plus a 2 vCPU / 2 GiB seat (the
# real-boot test's size; the kvm profile wants 3 GiB or more).
LOCAL_SIZES = ((1, 2), (2, 2), (2, 4), (4, 8), (8, 16), (16, 32), (32, 64))
LOCAL_REGION = "local"
LOCAL_SOURCES = {
    SRC_LOCAL: Source(
        description=(
            "shared/FACTS.md, \"A local L1 under QEMU\": a seat is a QEMU process on the user's "
            "own Linux machine; under TCG emulation QEMU's default CPU carries AMD-V (the L1's "
            "readiness check runs a real KVM guest inside it), under KVM the seat sees vmx/svm "
            "when the host's kvm_intel/kvm_amd has nested=1. Sizes are nestcloud's own vCPU/"
            "memory pairs; `nestcloud check` refuses one this machine cannot give."),
        date_note="FACTS.md records no date"),
    SRC_LOCAL_PRICE: Source(
        description="QEMU on your own machine: no cloud bill (the machine's own cost is not "
                    "counted).",
        date_note="not a published price"),
}


def local_types(today: dt.date) -> list[InstanceType]:
    return [InstanceType(provider="local", name=f"{v}c-{m}g", family="local", vcpus=v,
                         memory_gib=m, arch="x86_64", cpu_vendor="unknown", nesting="nested",
                         nesting_source=SRC_LOCAL, verified=today, regions=[LOCAL_REGION],
                         prices={LOCAL_REGION: RegionPrice(on_demand=0.0,
                                                           source=SRC_LOCAL_PRICE)})
            for v, m in LOCAL_SIZES]


# -- building -------------------------------------------------------------------------------


def aws_types(res: Path, prices_csv: Path, today: dt.date, report: Report) -> list[InstanceType]:
    described: dict[str, Any] = _gz_json(res / "instance_types.json.gz")
    offered = aws_offerings(res)

    def family(name: str) -> str:
        return name.split(".", 1)[0]

    def features(d: Any) -> list[str]:
        return list(d.get("ProcessorInfo", {}).get("SupportedFeatures", []))

    nested_families = sorted({family(n) for n, d in described.items()
                              if AWS_NESTED_FEATURE in features(d)})
    wanted = set(nested_families) | set(AWS_NON_NESTING_FAMILIES)
    missing = sorted(set(AWS_NON_NESTING_FAMILIES) - {family(n) for n in described})
    if missing:
        report.add(f"aws: families asked for but absent from DescribeInstanceTypes: {missing}")

    price_rows: dict[str, dict[str, RegionPrice]] = defaultdict(dict)
    dropped: list[str] = []
    disagree: list[str] = []  # the price file's own vcpus/memory/arch columns vs AWS's data
    for row in _read_csv(prices_csv):
        name, region = row["instance_type"], row["region"]
        if family(name) not in wanted:
            continue
        if region not in offered.get(name, []):
            dropped.append(f"{name}@{region}")
            continue
        d = described[name]
        if (int(row["vcpus"]), float(row["memory_gib"]), row["arch"]) != (
                d["VCpuInfo"]["DefaultVCpus"], d["MemoryInfo"]["SizeInMiB"] / 1024,
                "arm64" if "arm64" in d["ProcessorInfo"]["SupportedArchitectures"] else "x86_64"):
            disagree.append(f"{name}@{region}")
        price_rows[name][region] = RegionPrice(on_demand=_price(row["on_demand_usd_per_hour"]),
                                               spot=_price(row["spot_min_usd_per_hour"]),
                                               source=SRC_AWS_PRICES)
    if disagree:
        report.add(f"aws: {len(disagree)} price row(s) whose vcpus/memory/arch differ from "
                   "DescribeInstanceTypes (catalog keeps AWS's values): " + ", ".join(disagree))
    report.add(f"aws: {len(dropped)} price row(s) dropped because the offerings data does not "
               "list the type in that region" + (": " + ", ".join(sorted(dropped)) if dropped else ""))

    out: list[InstanceType] = []
    unknown_vendor: list[str] = []
    for name in sorted(n for n in described if family(n) in wanted):
        d = described[name]
        proc = d.get("ProcessorInfo", {})
        archs = proc.get("SupportedArchitectures", [])
        arch = "arm64" if "arm64" in archs else "x86_64" if "x86_64" in archs else None
        if arch is None:
            raise SystemExit(f"gen_catalog: {name}: unexpected architectures {archs}")
        vendor = AWS_VENDORS.get(proc.get("Manufacturer", ""), "unknown")
        if vendor == "unknown":
            unknown_vendor.append(name)
        bare = bool(d.get("BareMetal", False))
        has_feature = AWS_NESTED_FEATURE in features(d)
        nesting = "native" if bare else "nested" if has_feature else "none"
        regions = offered.get(name, [])
        if not regions:
            report.add(f"aws: {name}: no region offers it in the offerings data")
        out.append(InstanceType(
            provider="aws", name=name, family=family(name),
            vcpus=d["VCpuInfo"]["DefaultVCpus"],
            memory_gib=d["MemoryInfo"]["SizeInMiB"] / 1024,
            arch=arch, cpu_vendor=vendor, nesting=nesting, nesting_source=SRC_AWS_TYPES,
            verified=today, bare_metal=bare, regions=regions,
            prices=dict(sorted(price_rows.get(name, {}).items()))))
    if unknown_vendor:
        report.add(f"aws: no known ProcessorInfo.Manufacturer, cpu_vendor unknown: {unknown_vendor}")
    unpriced = [t.name for t in out if not t.prices]
    if unpriced:
        report.add(f"aws: {len(unpriced)} type(s) without any price row: {', '.join(unpriced)}")
    return _sorted(out)


def azure_types(prices_csv: Path, today: dt.date, report: Report) -> list[InstanceType]:
    rows: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in _read_csv(prices_csv):
        rows[row["instance_type"]].append(row)

    out: list[InstanceType] = []
    skipped: dict[str, list[str]] = defaultdict(list)
    for name in sorted(rows):
        verdict = azure_nesting(name)
        if verdict is None:
            skipped[parse_azure_name(name).family].append(name)
            continue
        nesting, note = verdict
        rs = sorted(rows[name], key=lambda r: r["region"])
        shape = {(r["vcpus"], r["memory_gib"], r["generation"]) for r in rs}
        if len(shape) != 1:
            raise SystemExit(f"gen_catalog: {name}: regions disagree on vcpus/memory/generation: "
                             f"{sorted(shape)}")
        vcpus, memory, generation = shape.pop()
        gens = sorted(g.strip() for g in generation.split(","))
        notes = [note] if note else []
        fam = parse_azure_name(name).family
        only = AZURE_NESTING_GENERATIONS.get(fam)
        if nesting == "nested" and only is not None and gens != only:
            notes.append(f"the price data lists generations {','.join(gens)}; FACTS.md allows "
                         f"nesting on {','.join(only)} only, so only that is listed")
            gens = only
        arch, vendor = azure_cpu(name)
        out.append(InstanceType(
            provider="azure", name=name, family=fam, vcpus=int(vcpus),
            memory_gib=float(memory), arch=arch, cpu_vendor=vendor, nesting=nesting,
            nesting_source=SRC_AZURE_NESTING, verified=today,
            hyperv_generations=gens,
            security_type="Standard" if nesting == "nested" else None,
            regions=[r["region"] for r in rs],
            prices={r["region"]: RegionPrice(on_demand=_price(r["on_demand_usd_per_hour"]),
                                             spot=_price(r["spot_usd_per_hour"]),
                                             source=SRC_AZURE_SIZES) for r in rs},
            notes=notes))
    for fam, names in sorted(skipped.items()):
        report.add(f"azure: left out family {fam} ({len(names)} sizes): FACTS.md says nothing "
                   "about its nesting")
    absent = absent_nested_families(out)
    report.add(f"azure: nested families with no size in the price CSV (not listed): {absent}")
    for size in sorted(AZURE_SIZE_OVERRIDES):
        if size not in rows:
            report.add(f"azure: {size} (FACTS.md override) is not in the price CSV: not listed")
    return _sorted(out)


def gcp_types(prices_csv: Path, today: dt.date, report: Report) -> list[InstanceType]:
    rows: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in _read_csv(prices_csv):
        rows[row["instance_type"]].append(row)
    out: list[InstanceType] = []
    skipped: dict[str, list[str]] = defaultdict(list)
    for name in sorted(rows):
        series = GCP_SERIES.get(gcp_series(name))
        if series is None:
            skipped[gcp_series(name)].append(name)
            continue
        rs = sorted(rows[name], key=lambda r: r["region"])
        shape = {(r["vcpus"], r["memory_gib"], r["arch"]) for r in rs}
        if len(shape) != 1:
            raise SystemExit(f"gen_catalog: {name}: regions disagree on vcpus/memory/arch: "
                             f"{sorted(shape)}")
        vcpus, memory, arch = shape.pop()
        out.append(InstanceType(
            provider="gcp", name=name, family=gcp_series(name), vcpus=int(vcpus),
            memory_gib=float(memory), arch=arch, cpu_vendor=series.cpu_vendor,
            nesting=series.nesting, nesting_source=series.source, verified=today,
            regions=[r["region"] for r in rs],
            prices={r["region"]: RegionPrice(on_demand=_price(r["on_demand_usd_per_hour"]),
                                             spot=_price(r["spot_min_usd_per_hour"]),
                                             source=SRC_GCP_PRICES) for r in rs},
            notes=[series.note] if series.note else []))
    for fam, names in sorted(skipped.items()):
        report.add(f"gcp: left out series {fam} ({len(names)} sizes): FACTS.md says nothing "
                   "about its nesting")
    return _sorted(out)


def absent_nested_families(types: list[InstanceType]) -> list[str]:
    """FACTS.md nested families (and the M series) with no size in the generated list."""
    present = {t.family for t in types}
    absent = [f for f in sorted(AZURE_NESTED) if f not in present]
    if not any(t.provider == "azure" and parse_azure_name(t.name).series == "M" for t in types):
        absent.append("M")
    return absent


def _sorted(types: list[InstanceType]) -> list[InstanceType]:
    return sorted(types, key=lambda t: (t.provider, t.family, t.vcpus, t.memory_gib, t.name))


def build(data_dir: Path, res: Path, moto_version: str, today: dt.date,
          report: Report) -> tuple[Catalog, list[str]]:
    aws = aws_types(res, data_dir / "prices-aws.csv", today, report)
    azure = azure_types(data_dir / "prices-azure.csv", today, report)
    gcp = gcp_types(data_dir / "prices-gcp.csv", today, report)
    gcp_regions = sorted({r for t in gcp for r in t.regions})
    absent_nested = absent_nested_families(azure)
    left_out = sorted({parse_azure_name(n).family
                       for n in {r["instance_type"]
                                 for r in _read_csv(data_dir / "prices-azure.csv")}
                       if azure_nesting(n) is None})
    sources = {
        SRC_AWS_TYPES: Source(
            description=(
                f"EC2 DescribeInstanceTypes as mirrored in moto {moto_version} "
                "(moto/ec2/resources/instance_types.json.gz): VCpuInfo.DefaultVCpus, "
                "MemoryInfo.SizeInMiB/1024, ProcessorInfo.SupportedArchitectures, "
                "ProcessorInfo.Manufacturer, BareMetal, and the nested-virtualization value in "
                "ProcessorInfo.SupportedFeatures (native = BareMetal, nested = feature listed, "
                "none = neither)."),
            date_note=f"snapshot shipped with moto {moto_version}; AWS capture date not recorded"),
        SRC_AWS_OFFERINGS: Source(
            description=(
                f"EC2 DescribeInstanceTypeOfferings (LocationType=region) as mirrored in moto "
                f"{moto_version} (moto/ec2/resources/instance_type_offerings/region/*.json.gz): "
                "the `regions` of every AWS type."),
            date_note=f"snapshot shipped with moto {moto_version}; AWS capture date not recorded"),
        SRC_AWS_PRICES: Source(
            description=(
                "shared/data/prices-aws.csv, from skypilot-org/skypilot-catalog "
                "catalogs/v8/aws/vms.csv at commit 00148f2af3672e2229b4f7bf8157d5a3f36e3c35: "
                "on-demand Linux USD/hour, and spot as the minimum over the zones listed, which "
                "may include Local Zones (use1-atl2-az1, usw2-lax1-*) that can look much cheaper "
                "than the region's regular zones. Regions covered: us-east-1, us-west-2, "
                "eu-west-1, eu-central-1, ap-southeast-1; rows for a region the offerings data "
                "does not list for the type are dropped."),
            date_note=PRICE_DATE_NOTE),
        SRC_AZURE_SIZES: Source(
            description=(
                "shared/data/prices-azure.csv, from skypilot-org/skypilot-catalog "
                "catalogs/v6/azure/vms.csv at commit 098741e70562f65d7af1cceb81e33b284f742604: "
                "vCPUs, memory, Hyper-V generation, regions (eastus and westus2 only) and "
                "on-demand/spot Linux USD/hour of every Azure size. It has no v6/v7 sizes: "
                "sizes of the nested families it lacks "
                f"({', '.join(absent_nested)}) cannot be listed, as there is no source for "
                "their vCPUs or memory."),
            date_note=PRICE_DATE_NOTE),
        SRC_AZURE_NESTING: Source(
            description=(
                "shared/FACTS.md, Azure section: nested-virtualization support per size family "
                "from the learn.microsoft.com series pages (no API reports it). Sizes of "
                f"families it does not mention ({', '.join(left_out)}) are left out."),
            date_note="FACTS.md records no date for these pages"),
        SRC_GCP_PRICES: Source(
            description=(
                "shared/data/prices-gcp.csv, from skypilot-org/skypilot-catalog "
                "catalogs/v7/gcp/vms.csv at commit 017e2502fb63c7a28757acd94002b2d6099d3e3d: "
                "vCPUs, memory, architecture, regions and on-demand Linux USD/hour of the n1, "
                "n2, n4, c2, c3, e2, n2d and t2a machine types, and spot as the minimum over the "
                f"zones listed. Regions covered: {', '.join(gcp_regions)}. It has no c4, c3d, "
                "c4a or c4d rows."),
            date_note=GCP_PRICE_DATE_NOTE),
        SRC_GCP_NESTING: Source(
            description=(
                "shared/FACTS.md, GCP section: nested virtualization on Compute Engine needs an "
                "Intel processor (the nested-virtualization overview excludes AMD and Arm "
                "processors and Intel memory-optimized series); N1 and N2 are confirmed by name "
                "(Cloud Workstations docs); E2 is refused for its trap (the API accepts the "
                "nested flag and the VM has no vmx: pulumi/pulumi-gcp#715)."),
            date_note="FACTS.md records no date for these pages"),
        SRC_GCP_NESTING_UNCONFIRMED: Source(
            description=(
                "shared/FACTS.md, GCP section: C2, C3 and N4 are Intel and not memory-optimized, "
                "so the nested-virtualization overview's rule allows them, but no source "
                "confirms them by name: expected, unconfirmed. `check` warns on them; the L1's "
                "in-guest check decides."),
            date_note="FACTS.md records no date for these pages", unconfirmed=True),
    }
    cat = Catalog(schema_version=SCHEMA_VERSION, generated_by=GENERATED_BY, generated_at=today,
                  sources={**sources, **LOCAL_SOURCES},
                  types=aws + azure + gcp + local_types(today))
    header = [
        f"Sources: AWS sizes, nesting and regions from moto {moto_version}'s DescribeInstanceTypes "
        "and DescribeInstanceTypeOfferings data; AWS and Azure prices from shared/data "
        f"({PRICE_DATE_NOTE}); Azure nesting per family from shared/FACTS.md.",
        "Not listed: Azure sizes of nested families absent from the price CSV "
        f"({', '.join(absent_nested)}; no source for their vCPUs/memory), and Azure families "
        f"FACTS.md does not classify ({', '.join(left_out)}).",
        "GCP: machine types, regions and prices from shared/data/prices-gcp.csv; nesting per "
        "series from shared/FACTS.md (C2, C3, N4 expected but unconfirmed).",
    ]
    return cat, header


def _iso_date(text: str) -> str:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-11-29") from None
    return text


def _today(explicit: str | None) -> dt.date:
    if explicit:
        return dt.date.fromisoformat(explicit)
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return dt.datetime.fromtimestamp(int(epoch), tz=dt.timezone.utc).date()
    return dt.datetime.now(tz=dt.timezone.utc).date()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "catalog.yaml",
                    help="where to write (default: the repo's catalog.yaml); '-' for stdout")
    ap.add_argument("--date", type=_iso_date, help="verification date YYYY-MM-DD (default: SOURCE_DATE_EPOCH "
                                   "or today, UTC)")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                    help=f"directory with prices-aws.csv, prices-azure.csv and prices-gcp.csv "
                         f"(default: {DEFAULT_DATA_DIR})")
    ap.add_argument("--moto-resources", type=Path, default=None,
                    help="moto/ec2/resources directory (default: the installed moto's)")
    args = ap.parse_args(argv)

    today = _today(args.date)
    res, moto_version = moto_dir(args.moto_resources)
    for needed in (args.data_dir / "prices-aws.csv", args.data_dir / "prices-azure.csv",
                   args.data_dir / "prices-gcp.csv", res / "instance_types.json.gz"):
        if not needed.is_file():
            raise SystemExit(f"gen_catalog: {needed}: not found (see --data-dir, "
                             "--moto-resources)")
    report = Report([])
    cat, header = build(args.data_dir, res, moto_version, today, report)
    text = dump(cat, header_notes=header)
    out_name = "<stdout>" if str(args.out) == "-" else str(args.out)
    check = parse_catalog(text, out_name)  # raises CatalogError listing every problem
    if check != cat:
        raise SystemExit("gen_catalog: the dumped YAML does not read back as the same catalog")
    if str(args.out) == "-":
        sys.stdout.write(text)
    else:
        args.out.write_text(text, encoding="utf-8")
    by = Counter((t.provider, t.nesting) for t in cat.types)
    print(f"gen_catalog: wrote {out_name}: {len(cat.types)} types "
          + ", ".join(f"{p}/{n}={c}" for (p, n), c in sorted(by.items())), file=sys.stderr)
    for line in report.lines:
        print(f"gen_catalog: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
