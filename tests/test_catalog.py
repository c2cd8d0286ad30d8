"""The shipped catalog.yaml against its sources, its generator, its YAML writer and bad files.

Expected values come from the sources themselves (moto's EC2 data, the price CSVs), read
here independently of scripts/gen_catalog.py, never from numbers copied into the test.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import importlib.metadata
import json
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from gen_catalog_module import GEN, gen_catalog
from hypothesis import given, settings
from hypothesis import strategies as st

from nestcloud._catalog_dump import dump as dump_catalog
from nestcloud.catalog import (
    Catalog,
    InstanceType,
    RegionPrice,
    Source,
    load_catalog,
    parse_catalog,
)
from nestcloud.errors import CatalogError

REPO = Path(__file__).resolve().parents[1]
CATALOG = REPO / "catalog.yaml"
FIXTURES = Path(__file__).parent / "data" / "catalogs"

gen = gen_catalog()
DATA = gen.DEFAULT_DATA_DIR
needs_data = pytest.mark.skipif(not (DATA / "prices-aws.csv").is_file(),
                                reason=f"price data not found in {DATA}")


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return load_catalog(CATALOG)


@pytest.fixture(scope="module")
def moto_res() -> Path:
    pytest.importorskip("moto")
    return gen.moto_dir(None)[0]


@pytest.fixture(scope="module")
def described(moto_res: Path) -> dict[str, Any]:
    with gzip.open(moto_res / "instance_types.json.gz", "rt") as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def offered(moto_res: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for f in (moto_res / "instance_type_offerings" / "region").glob("*.json.gz"):
        with gzip.open(f, "rt") as fh:
            for row in json.load(fh):
                out[row["InstanceType"]].add(row["Location"])
    return out


def _csv(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(newline="") as fh:
        return list(csv.DictReader(fh))


def _opt(cell: str) -> float | None:
    return float(cell) if cell else None


def _nested_feature(d: dict[str, Any]) -> bool:
    return "nested-virtualization" in d["ProcessorInfo"].get("SupportedFeatures", [])


def _moto_version_in(cat: Catalog) -> str:
    m = re.search(r"moto (\S+) ", cat.sources[gen.SRC_AWS_TYPES].description)
    assert m, cat.sources[gen.SRC_AWS_TYPES].description
    return m.group(1)


# -- the shipped catalog against moto's EC2 data ---------------------------------------------


def test_every_moto_type_with_the_nested_feature_is_nested(cat: Catalog,
                                                           described: dict[str, Any]) -> None:
    with_feature = sorted(n for n, d in described.items() if _nested_feature(d))
    assert with_feature, "moto lists no nested-virtualization type: the source changed"
    for name in with_feature:
        t = cat.get("aws", name)
        assert t is not None, name
        d = described[name]
        assert (t.nesting, t.bare_metal) == ("nested", False), name
        assert t.vcpus == d["VCpuInfo"]["DefaultVCpus"], name
        assert t.memory_gib == d["MemoryInfo"]["SizeInMiB"] / 1024, name
        assert t.nesting_source == gen.SRC_AWS_TYPES
    assert {t.name for t in cat.of("aws") if t.nesting == "nested"} == set(with_feature)


def test_aws_coverage_is_every_size_of_the_wanted_families(cat: Catalog,
                                                            described: dict[str, Any]) -> None:
    nested_fams = {n.split(".")[0] for n, d in described.items() if _nested_feature(d)}
    wanted = nested_fams | {"c7g", "m7g", "c8g", "m8g", "c7a", "m7a", "c6i", "m6i", "r6i", "t3"}
    expected = {n for n in described if n.split(".")[0] in wanted}
    assert {t.name for t in cat.of("aws")} == expected


def test_aws_facts_match_describe_instance_types(cat: Catalog, described: dict[str, Any]) -> None:
    vendors = {"Intel": "intel", "AMD": "amd", "AWS": "amazon"}
    for t in cat.of("aws"):
        d = described[t.name]
        archs = d["ProcessorInfo"]["SupportedArchitectures"]
        assert t.arch == ("arm64" if "arm64" in archs else "x86_64"), t.name
        assert t.cpu_vendor == vendors[d["ProcessorInfo"]["Manufacturer"]], t.name
        assert t.bare_metal is d["BareMetal"], t.name
        want = "native" if d["BareMetal"] else "nested" if _nested_feature(d) else "none"
        assert t.nesting == want, t.name
        assert t.family == t.name.split(".")[0]


def test_graviton_cannot_nest_and_metal_is_native(cat: Catalog, described: dict[str, Any]
                                                  ) -> None:
    c7g = cat.get("aws", "c7g.large")
    assert c7g is not None
    assert (c7g.arch, c7g.nesting) == ("arm64", "none")
    assert described["c7g.large"]["ProcessorInfo"]["SupportedArchitectures"] == ["arm64"]
    metals = [t for t in cat.of("aws") if ".metal" in t.name]
    assert metals
    for t in metals:
        assert described[t.name]["BareMetal"] is True
        assert (t.nesting, t.bare_metal) == ("native", True), t.name
    c7g_metal = cat.get("aws", "c7g.metal")
    assert c7g_metal is not None and (c7g_metal.arch, c7g_metal.nesting) == ("arm64", "native")


def test_aws_regions_are_the_offerings(cat: Catalog, offered: dict[str, set[str]]) -> None:
    for t in cat.of("aws"):
        assert t.regions == sorted(offered[t.name]), t.name


@needs_data
def test_aws_prices_are_the_csv_rows_in_offered_regions(cat: Catalog,
                                                        offered: dict[str, set[str]]) -> None:
    expected: dict[str, dict[str, RegionPrice]] = defaultdict(dict)
    for row in _csv("prices-aws.csv"):
        if cat.get("aws", row["instance_type"]) is None:
            continue
        if row["region"] not in offered[row["instance_type"]]:
            continue
        expected[row["instance_type"]][row["region"]] = RegionPrice(
            on_demand=float(row["on_demand_usd_per_hour"]),
            spot=_opt(row["spot_min_usd_per_hour"]),
            source="aws-prices")
    for t in cat.of("aws"):
        assert t.prices == expected.get(t.name, {}), t.name
    # i7i has no spot minimum in some regions: stays absent, not zero.
    assert any(p.spot is None for t in cat.of("aws") for p in t.prices.values())


def test_sources_and_dates(cat: Catalog) -> None:
    assert cat.generated_by == "scripts/gen_catalog.py"
    assert {t.verified for t in cat.types} == {cat.generated_at}
    for key in ("aws-prices", "azure-prices"):
        src = cat.sources[key]
        assert src.date is None
        assert src.date_note == "published 2025 or later, exact date unknown"
        assert cat.source_date(key) == "published 2025 or later, exact date unknown"
    assert "Local Zones" in cat.sources["aws-prices"].description
    assert {t.nesting_source for t in cat.of("aws")} == {"aws-describe-instance-types"}
    assert {t.nesting_source for t in cat.of("azure")} == {"azure-nesting-facts"}


# -- the shipped catalog against the Azure CSV and FACTS.md -------------------------------------


@needs_data
def test_azure_sizes_come_from_the_csv(cat: Catalog) -> None:
    rows: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in _csv("prices-azure.csv"):
        rows[row["instance_type"]].append(row)
    classified = {n for n in rows if gen.azure_nesting(n) is not None}
    assert {t.name for t in cat.of("azure")} == classified
    for t in cat.of("azure"):
        rs = rows[t.name]
        assert t.vcpus == int(rs[0]["vcpus"]) and t.memory_gib == float(rs[0]["memory_gib"])
        assert t.regions == sorted(r["region"] for r in rs)
        assert t.prices == {r["region"]: RegionPrice(on_demand=float(r["on_demand_usd_per_hour"]),
                                                     spot=_opt(r["spot_usd_per_hour"]),
                                                     source="azure-prices") for r in rs}
        csv_gens = sorted(rs[0]["generation"].split(","))
        if t.family in ("Dv3", "Ev3"):
            assert t.hyperv_generations == ["V1"]
        else:
            assert t.hyperv_generations == csv_gens, t.name
        assert t.security_type == ("Standard" if t.nesting == "nested" else None)


def test_azure_families_and_traps(cat: Catalog) -> None:
    fams = {t.family: t.nesting for t in cat.of("azure")}
    for fam in ("Dv3", "Dsv3", "Dv4", "Dsv4", "Ddv4", "Ddsv4", "Dv5", "Dsv5", "Ddv5", "Ddsv5",
                "Dasv5", "Dadsv5", "Ev3", "Esv3", "Ev4", "Ev5", "Easv5", "Fsv2", "Lsv3"):
        assert fams.get(fam) == "nested", fam
    for fam in ("Bv1", "Bsv2", "Basv2", "Av2", "Dasv4", "Dpsv5"):
        assert fams.get(fam) == "none", fam
    arm = cat.get("azure", "Standard_D2ps_v5")
    assert arm is not None and (arm.arch, arm.cpu_vendor, arm.nesting) == ("arm64", "ampere",
                                                                            "none")
    amd = cat.get("azure", "Standard_D2as_v5")
    assert amd is not None and (amd.cpu_vendor, amd.nesting) == ("amd", "nested")
    dv3 = cat.get("azure", "Standard_D2_v3")
    assert dv3 is not None and dv3.notes == ["FACTS.md: nesting on Dv3 works on Gen1 (V1) only"]
    # The CSV has no Standard_D3_v3 (so no vCPU source): absent, or listed as none.
    d3 = cat.get("azure", "Standard_D3_v3")
    assert d3 is None or d3.nesting == "none"
    # Families the CSV lacks are named where a reader looks for them.
    for fam in ("Dsv6", "Dasv7", "Esv6", "M"):
        assert fam in cat.sources["azure-prices"].description
        assert fam in CATALOG.read_text().split("\nschema_version")[0]


@pytest.mark.parametrize(("name", "family", "nesting"), [
    ("Standard_D4s_v5", "Dsv5", "nested"),
    ("Standard_E16ads_v5", "Eadsv5", None),  # FACTS.md does not classify Eadsv5
    ("Standard_D2_v3", "Dv3", "nested"),
    ("Standard_D3_v3", "Dv3", "none"),  # FACTS.md trap overrides its family
    ("Standard_D16ads_v5", "Dadsv5", "nested"),
    ("Standard_D2als_v6", "Dalsv6", "nested"),
    ("Standard_F72s_v2", "Fsv2", "nested"),
    ("Standard_L8s_v3", "Lsv3", "nested"),
    ("Standard_M416ms_v2", "Mmsv2", "nested"),  # the whole M series
    ("Standard_M8-2ms_v2", "Mmsv2", "nested"),  # constrained vCPUs
    ("Standard_B1ls", "Bv1", "none"),
    ("Standard_B2ms", "Bv1", "none"),
    ("Standard_B2ats_v2", "Basv2", "none"),
    ("Standard_B4pls_v2", "Bpsv2", "none"),
    ("Standard_B8s_v2", "Bsv2", "none"),
    ("Standard_A8m_v2", "Av2", "none"),
    ("Standard_D8as_v4", "Dasv4", "none"),
    ("Standard_D8a_v4", "Dav4", "none"),
    ("Standard_D2ps_v6", "Dpsv6", "none"),
    ("Standard_E4ps_v5", "Epsv5", "none"),
    ("Standard_DC4as_v5", "DCasv5", "none"),
    ("Standard_NC4as_T4_v3", "NCasv3", "none"),
    ("Standard_HB120rs_v3", "HBrsv3", "none"),
    ("Standard_E16s_v5", "Esv5", None),
])
def test_azure_family_parser(name: str, family: str, nesting: str | None) -> None:
    assert gen.parse_azure_name(name).family == family
    verdict = gen.azure_nesting(name)
    assert (verdict[0] if verdict else None) == nesting


def test_azure_name_parts() -> None:
    n = gen.parse_azure_name("Standard_M8-2ms_v2")
    assert (n.series, n.vcpus, n.constrained, n.features, n.version) == ("M", 8, 2, "ms", 2)
    n = gen.parse_azure_name("Standard_NC4as_T4_v3")
    assert (n.series, n.vcpus, n.features, n.accelerator, n.version) == ("NC", 4, "as", "T4", 3)


@pytest.mark.parametrize("name", ["Standard_", "D4s_v5", "Standard_d4s_v5", "Standard_D4s_v",
                                  "Standard_Dsv5"])
def test_azure_parser_rejects_other_names(name: str) -> None:
    with pytest.raises(ValueError, match="does not follow the Azure size naming convention"):
        gen.parse_azure_name(name)


@pytest.mark.parametrize(("name", "cpu"), [
    ("Standard_D2ps_v5", ("arm64", "ampere")), ("Standard_B2pts_v2", ("arm64", "ampere")),
    ("Standard_D2ps_v6", ("arm64", "unknown")),  # Cobalt 100: no CpuVendor value for it
    ("Standard_D2as_v5", ("x86_64", "amd")), ("Standard_E16ads_v5", ("x86_64", "amd")),
    ("Standard_D2s_v5", ("x86_64", "intel")), ("Standard_F2s_v2", ("x86_64", "intel")),
])
def test_azure_cpu_rule(name: str, cpu: tuple[str, str]) -> None:
    assert gen.azure_cpu(name) == cpu


def test_generator_applies_facts_overrides_to_csv_rows(tmp_path: Path) -> None:
    """Dv3 listed as V1,V2 keeps only V1 (with a note); Standard_D3_v3 becomes none."""
    csv_path = tmp_path / "prices-azure.csv"
    csv_path.write_text(
        "instance_type,region,vcpus,memory_gib,generation,on_demand_usd_per_hour,"
        "spot_usd_per_hour\n"
        'Standard_D2_v3,eastus,2,8,"V1,V2",0.096,0.01\n'
        'Standard_D3_v3,eastus,4,16,"V1,V2",0.2,\n'
        "Standard_E16s_v5,eastus,16,128,V2,1.0,0.1\n")
    report = gen.Report([])
    day = dt.date(2030, 1, 2)
    types = {t.name: t for t in gen.azure_types(csv_path, day, report)}
    assert set(types) == {"Standard_D2_v3", "Standard_D3_v3"}
    d2 = types["Standard_D2_v3"]
    assert (d2.nesting, d2.hyperv_generations, d2.security_type) == ("nested", ["V1"], "Standard")
    assert d2.notes == ["FACTS.md: nesting on Dv3 works on Gen1 (V1) only",
                        "the price data lists generations V1,V2; FACTS.md allows nesting on "
                        "V1 only, so only that is listed"]
    d3 = types["Standard_D3_v3"]
    assert (d3.nesting, d3.security_type, d3.hyperv_generations) == ("none", None, ["V1", "V2"])
    assert d3.notes == ["FACTS.md: reported unsupported although Dv3 is a nested family"]
    assert d3.prices["eastus"] == RegionPrice(on_demand=0.2, spot=None, source="azure-prices")
    assert d3.verified == day
    assert "azure: left out family Esv5 (1 sizes): FACTS.md says nothing about its nesting" \
        in report.lines


def test_generator_drops_prices_for_regions_not_offered(tmp_path: Path, moto_res: Path,
                                                        offered: dict[str, set[str]]) -> None:
    name = "c8i.large"
    all_regions = set().union(*offered.values())
    missing = sorted(all_regions - offered[name])
    assert missing, "c8i.large is offered everywhere: pick another type for this test"
    here, there = sorted(offered[name])[0], missing[0]
    csv_path = tmp_path / "prices-aws.csv"
    csv_path.write_text(
        "instance_type,region,vcpus,memory_gib,arch,on_demand_usd_per_hour,"
        "spot_min_usd_per_hour,zones\n"
        f"{name},{here},2,4,x86_64,0.1,,z\n"
        f"{name},{there},2,4,x86_64,0.2,0.05,z\n"
        f"c7g.large,{sorted(offered['c7g.large'])[0]},2,8,arm64,0.3,,z\n")
    report = gen.Report([])
    types = {t.name: t for t in gen.aws_types(moto_res, csv_path, dt.date(2030, 1, 2), report)}
    assert types[name].prices == {here: RegionPrice(on_demand=0.1, spot=None,
                                                    source="aws-prices")}
    assert (f"aws: 1 price row(s) dropped because the offerings data does not list the type "
            f"in that region: {name}@{there}") in report.lines
    c7g_region = sorted(offered["c7g.large"])[0]
    assert (f"aws: 1 price row(s) whose vcpus/memory/arch differ from DescribeInstanceTypes "
            f"(catalog keeps AWS's values): c7g.large@{c7g_region}") in report.lines
    assert types["c7g.large"].memory_gib == 4


# -- generator determinism ------------------------------------------------------------------------


@needs_data
def test_generator_reproduces_the_committed_catalog(tmp_path: Path, cat: Catalog) -> None:
    """Fails when catalog.yaml is edited by hand or the script drifts from it."""
    installed = importlib.metadata.version("moto")
    if _moto_version_in(cat) != installed:
        pytest.skip(f"catalog.yaml was generated with moto {_moto_version_in(cat)}, "
                    f"moto {installed} is installed")
    assert cat.generated_at is not None
    out = tmp_path / "catalog.yaml"
    proc = subprocess.run([sys.executable, str(GEN), "--out", str(out), "--date",
                           cat.generated_at.isoformat()], capture_output=True, text=True,
                          check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert out.read_text() == CATALOG.read_text()
    assert f"gen_catalog: wrote {out}: {len(cat.types)} types" in proc.stderr
    assert "gen_catalog: aws: 0 price row(s) dropped because the offerings data does not " \
        "list the type in that region\n" in proc.stderr


def test_generator_date_defaults_to_source_date_epoch() -> None:
    assert gen._today("2031-05-06") == dt.date(2031, 5, 6)
    import os

    old = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = "86400"
    try:
        assert gen._today(None) == dt.date(1970, 1, 2)
    finally:
        if old is None:
            del os.environ["SOURCE_DATE_EPOCH"]
        else:
            os.environ["SOURCE_DATE_EPOCH"] = old


# -- the YAML writer --------------------------------------------------------------------------


def test_dump_round_trips_the_shipped_catalog(cat: Catalog) -> None:
    text = dump_catalog(cat)
    assert parse_catalog(text, "dumped") == cat
    assert dump_catalog(parse_catalog(text)) == text
    assert text.startswith("# nestcloud instance-type catalog. Generated by "
                           "scripts/gen_catalog.py: do not edit by hand.\n"
                           "# Regenerate from a checkout:  python scripts/gen_catalog.py "
                           "--out catalog.yaml\n")


def test_dump_layout_is_one_block_per_type_with_flow_prices() -> None:
    c = load_catalog(FIXTURES / "good.yaml")
    text = dump_catalog(c)
    assert parse_catalog(text) == c
    block = text[text.index("  - provider: aws\n    name: c8i.large"):]
    block = block[:block.index("\n\n")]
    assert block == (
        "  - provider: aws\n"
        "    name: c8i.large\n"
        "    family: c8i\n"
        "    vcpus: 2\n"
        "    memory_gib: 4\n"
        "    arch: x86_64\n"
        "    cpu_vendor: intel\n"
        "    nesting: nested\n"
        "    nesting_source: facts\n"
        "    verified: 2026-11-29\n"
        "    regions: [us-east-1, us-west-2]\n"
        "    prices:\n"
        "      us-east-1: {on_demand: 0.0941, spot: 0.02, source: prices}")
    assert "  # ---- azure Dsv5: 1 size\n" in text


def _awkward_catalog() -> Catalog:
    regions = [f"zz-region-{i}" for i in range(40)]
    t = InstanceType(
        provider="aws", name="yes", family="null", vcpus=3, memory_gib=0.75, arch="x86_64",
        cpu_vendor="unknown", nesting="none", nesting_source="a: b", verified=dt.date(2030, 1, 2),
        regions=regions,
        prices={"zz-region-1": RegionPrice(on_demand=0.0, spot=1e-05, source="a: b")},
        notes=["- leading dash", "has # hash and 'quotes' and \"double\"", "1.5", "ünïcode",
               "line\nbreak", "  spaced  "])
    t2 = t.replace(name="yes2", regions=list(regions))
    t3 = t.replace(name="yes3", regions=regions[:5])
    long = ("A long description: " + "word " * 60).strip()
    return Catalog(schema_version=1, sources={
        "a: b": Source(description=long, date=dt.date(2025, 1, 1)),
        "plain": Source(description="x  y\n z", date_note="# not a comment"),
    }, types=[t, t2, t3])


def test_dump_round_trips_awkward_strings_and_aliases() -> None:
    c = _awkward_catalog()
    text = dump_catalog(c)
    assert parse_catalog(text, "awkward") == c
    assert "regions: &null-regions [zz-region-0," in text
    assert "regions: *null-regions\n" in text
    assert "regions: &null-regions-2 [zz-region-0, zz-region-1," in text
    assert max(len(line) for line in text.splitlines()) <= 100


@pytest.mark.parametrize("description", ["A\n", "plain\n", "x.y\n"])
def test_dump_keeps_a_trailing_newline(description: str) -> None:
    """A plain-looking word followed by a newline must be quoted: `$` in a regex matches
    before a final newline, and the plain scalar `A` reads back without it."""
    c = Catalog(schema_version=1, sources={"s": Source(description=description)}, types=[])
    assert parse_catalog(dump_catalog(c), "prop").sources["s"].description == description


@settings(max_examples=60, deadline=None)
@given(regions=st.lists(st.from_regex(r"[a-z]{2}-[a-z]{1,12}-[0-9]{1,2}", fullmatch=True),
                        min_size=3, max_size=40, unique=True),
       family=st.from_regex(r"[a-z][a-z0-9]{0,20}(-flex)?", fullmatch=True),
       notes=st.lists(st.text(min_size=1, max_size=150), max_size=3),
       description=st.text(min_size=1, max_size=400))
def test_dump_round_trip_and_width_property(regions: list[str], family: str, notes: list[str],
                                            description: str) -> None:
    t = InstanceType(provider="aws", name=f"{family}.large", family=family, vcpus=2,
                     memory_gib=4, arch="x86_64", cpu_vendor="intel", nesting="nested",
                     nesting_source="s", verified=dt.date(2030, 1, 2), regions=sorted(regions),
                     notes=notes)
    c = Catalog(schema_version=1, sources={"s": Source(description=description)},
                types=[t, t.replace(name=f"{family}.xlarge")])
    text = dump_catalog(c)
    assert parse_catalog(text, "prop") == c
    region_lines = [line for line in text.splitlines()
                    if line.startswith("    regions:") or re.fullmatch(r" {6}[a-z0-9, \-]+[,\]]", line)]
    assert region_lines
    assert all(len(line) <= 100 for line in region_lines), region_lines


# -- bad files: one exact message each, naming file, line, YAML path and bad value --------------


@pytest.mark.parametrize(("name", "problem"), [
    ("bad_malformed.yaml", "{f}:20:11: malformed YAML: did not find expected ',' or ']'"),
    ("bad_unknown_key.yaml", "{f}:26: types[1].gpus: unknown key"),
    ("bad_wrong_type.yaml", "{f}:25: types[1].vcpus: Input should be a valid integer, unable "
                            "to parse string as an integer (got 'two')"),
    ("bad_negative_price.yaml", "{f}:21: types[0].prices.us-east-1.on_demand: Input should be "
                                "greater than or equal to 0 (got -0.0941)"),
    ("bad_duplicate.yaml", "{f}:33: types[2]: duplicate type aws/c8i.large "
                           "(first at types[0])"),
    ("bad_unknown_source.yaml", "{f}:30: types[1].nesting_source: unknown source 'fact' "
                                "(known: facts, prices)"),
    ("bad_missing_field.yaml", "{f}:33: types[2].memory_gib: field required"),
    ("bad_arm64_nesting.yaml", "{f}:22: types[1]: c7g.large is arm64 but nesting is 'nested'; "
                               "no cloud offers nesting on Arm"),
    ("bad_schema_version.yaml", "{f}:2: schema_version: this nestcloud reads version 1 "
                                "(got 2)"),
])
def test_bad_catalog_files(name: str, problem: str) -> None:
    path = FIXTURES / name
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    want = problem.format(f=path)
    assert info.value.problems == [want]
    assert str(info.value) == f"{path}: invalid catalog (1 problem(s)):\n  - {want}"
    assert info.value.exit_code == 2


def test_good_fixture_is_valid() -> None:
    c = load_catalog(FIXTURES / "good.yaml")
    assert [t.name for t in c.types] == ["c8i.large", "c7g.large", "Standard_D2s_v5"]


def test_every_problem_is_listed() -> None:
    text = (FIXTURES / "good.yaml").read_text()
    text = text.replace("vcpus: 2\n    memory_gib: 4\n    arch: arm64",
                        "vcpus: -1\n    memory_gib: 4\n    arch: arm64")
    text = text.replace("spot: 0.02,", "spot: -1,")
    with pytest.raises(CatalogError) as info:
        parse_catalog(text, "multi.yaml")
    assert info.value.problems == [
        "multi.yaml:21: types[0].prices.us-east-1.spot: Input should be greater than or equal "
        "to 0 (got -1)",
        "multi.yaml:25: types[1].vcpus: Input should be greater than 0 (got -1)",
    ]
