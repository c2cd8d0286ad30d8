"""GCP types in the shipped catalog.yaml against their sources: data/prices-gcp.csv for sizes,
regions and prices, shared/FACTS.md "GCP" for nesting (copied into the generator, as for Azure).

Expected sizes and prices are read from the CSV here, independently of scripts/gen_catalog.py.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections import defaultdict
from pathlib import Path

import pytest
from gen_catalog_module import gen_catalog

from nestcloud.catalog import Catalog, RegionPrice, load_catalog

REPO = Path(__file__).resolve().parents[2]
CATALOG = REPO / "catalog.yaml"
PRICES = REPO / "data" / "prices-gcp.csv"

gen = gen_catalog()

# FACTS.md "GCP": which series nest, and how sure we are.
CONFIRMED = {"n1", "n2"}
UNCONFIRMED = {"c2", "c3", "n4"}
REFUSED = {"e2", "n2d", "t2a"}


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return load_catalog(CATALOG)


def _rows() -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = defaultdict(list)
    with PRICES.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            out[row["instance_type"]].append(row)
    return out


def _opt(cell: str) -> float | None:
    return float(cell) if cell.strip() else None


def test_every_csv_size_is_listed_with_its_size_regions_and_prices(cat: Catalog) -> None:
    rows = _rows()
    assert {t.name for t in cat.of("gcp")} == set(rows)
    for t in cat.of("gcp"):
        rs = rows[t.name]
        assert t.family == t.name.split("-")[0]
        assert (t.vcpus, t.memory_gib, t.arch) == (int(rs[0]["vcpus"]),
                                                   float(rs[0]["memory_gib"]), rs[0]["arch"])
        assert t.regions == sorted(r["region"] for r in rs)
        assert t.prices == {r["region"]: RegionPrice(on_demand=_opt(r["on_demand_usd_per_hour"]),
                                                     spot=_opt(r["spot_min_usd_per_hour"]),
                                                     source="gcp-prices") for r in rs}
        assert not t.bare_metal and t.hyperv_generations is None and t.security_type is None


def test_nesting_per_series_follows_facts(cat: Catalog) -> None:
    by_family: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for t in cat.of("gcp"):
        by_family[t.family].add((t.nesting, t.nesting_source))
    assert set(by_family) == CONFIRMED | UNCONFIRMED | REFUSED
    for fam in CONFIRMED:
        assert by_family[fam] == {("nested", "gcp-nesting-facts")}, fam
    for fam in UNCONFIRMED:
        assert by_family[fam] == {("nested", "gcp-nesting-unconfirmed")}, fam
    for fam in REFUSED:
        assert by_family[fam] == {("none", "gcp-nesting-facts")}, fam


def test_vendors_and_reasons(cat: Catalog) -> None:
    def one(name: str):  # type: ignore[no-untyped-def]
        t = cat.get("gcp", name)
        assert t is not None, name
        return t

    for name in ("n1-standard-4", "n2-standard-4", "c2-standard-4", "c3-standard-4",
                 "n4-standard-4"):
        assert (one(name).cpu_vendor, one(name).arch) == ("intel", "x86_64"), name
    assert (one("n2d-standard-4").cpu_vendor, one("n2d-standard-4").arch) == ("amd", "x86_64")
    t2a = one("t2a-standard-4")
    assert t2a.arch == "arm64"
    # Neither FACTS.md nor the price file names E2's or T2A's processor maker.
    assert one("e2-standard-4").cpu_vendor == "unknown" and t2a.cpu_vendor == "unknown"
    # The E2 trap is named where check can show it.
    assert any("no vmx" in n and "pulumi/pulumi-gcp#715" in n for n in one("e2-standard-4").notes)
    assert any("AMD" in n for n in one("n2d-standard-4").notes)
    assert any("Arm" in n for n in t2a.notes)
    # Nested types need no note: their source's description says how sure it is.
    assert one("c3-standard-4").notes == [] and one("n2-standard-4").notes == []


def test_sources(cat: Catalog) -> None:
    prices = cat.sources["gcp-prices"]
    assert "017e2502fb63c7a28757acd94002b2d6099d3e3d" in prices.description
    assert prices.date is None and prices.date_note
    assert cat.source_date("gcp-prices") == prices.date_note
    for key in ("gcp-nesting-facts", "gcp-nesting-unconfirmed"):
        assert "FACTS.md" in cat.sources[key].description
    assert "C2, C3 and N4" in cat.sources["gcp-nesting-unconfirmed"].description
    assert {t.verified for t in cat.of("gcp")} == {cat.generated_at}
    assert cat.regions("gcp") == sorted({r["region"] for rs in _rows().values() for r in rs})


CSV_HEAD = ("instance_type,region,vcpus,memory_gib,arch,on_demand_usd_per_hour,"
            "spot_min_usd_per_hour,zones\n")


def test_generator_skips_series_facts_do_not_classify(tmp_path: Path) -> None:
    csv_path = tmp_path / "prices-gcp.csv"
    csv_path.write_text(CSV_HEAD +
                        "n2-standard-2,us-central1,2,8,x86_64,0.1,0.02,us-central1-a\n"
                        "n2-standard-2,us-east1,2,8,x86_64,0.11,,us-east1-b\n"
                        "m3-ultramem-32,us-central1,32,976,x86_64,6.0,,us-central1-a\n")
    report = gen.Report([])
    day = dt.date(2030, 1, 2)
    types = gen.gcp_types(csv_path, day, report)
    assert [t.name for t in types] == ["n2-standard-2"]
    n2 = types[0]
    assert (n2.provider, n2.family, n2.nesting, n2.verified) == ("gcp", "n2", "nested", day)
    assert n2.regions == ["us-central1", "us-east1"]
    assert n2.prices["us-east1"] == RegionPrice(on_demand=0.11, spot=None, source="gcp-prices")
    assert "gcp: left out series m3 (1 sizes): FACTS.md says nothing about its nesting" \
        in report.lines


def test_generator_refuses_regions_that_disagree_on_a_size(tmp_path: Path) -> None:
    csv_path = tmp_path / "prices-gcp.csv"
    csv_path.write_text(CSV_HEAD +
                        "n2-standard-2,us-central1,2,8,x86_64,0.1,,z\n"
                        "n2-standard-2,us-east1,2,16,x86_64,0.1,,z\n")
    with pytest.raises(SystemExit, match="n2-standard-2: regions disagree"):
        gen.gcp_types(csv_path, dt.date(2030, 1, 2), gen.Report([]))
