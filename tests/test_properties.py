"""Property tests: whatever a user feeds nestcloud (catalog files, lab files, CLI arguments),
the answer is a result or one clear nestcloud error, never another exception or a traceback."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from nestcloud.catalog import Catalog, parse_catalog
from nestcloud.cli import app
from nestcloud.errors import CatalogError, LabFileError

PROPS = settings(max_examples=80, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow,
                                        HealthCheck.function_scoped_fixture])

VALID_CATALOG: dict[str, Any] = {
    "schema_version": 1,
    "generated_by": "tests",
    "generated_at": dt.date(2026, 11, 29),
    "sources": {"facts": {"description": "shared/FACTS.md"},
                "prices": {"description": "price list", "date": dt.date(2026, 11, 1)}},
    "types": [
        {"provider": "aws", "name": "c8i.large", "family": "c8i", "vcpus": 2,
         "memory_gib": 4, "arch": "x86_64", "cpu_vendor": "intel", "nesting": "nested",
         "nesting_source": "facts", "verified": dt.date(2026, 11, 29),
         "regions": ["us-east-1"],
         "prices": {"us-east-1": {"on_demand": 0.0882, "spot": 0.03, "source": "prices"}}},
        {"provider": "azure", "name": "Standard_D2s_v5", "family": "Dsv5", "vcpus": 2,
         "memory_gib": 8, "arch": "x86_64", "cpu_vendor": "intel", "nesting": "nested",
         "nesting_source": "facts", "verified": dt.date(2026, 11, 29),
         "hyperv_generations": ["V1", "V2"], "security_type": "Standard",
         "regions": ["eastus"], "notes": ["Gen1 and Gen2 images"]},
        {"provider": "aws", "name": "m7i.metal-24xl", "family": "m7i", "vcpus": 96,
         "memory_gib": 384, "arch": "x86_64", "cpu_vendor": "intel", "nesting": "native",
         "bare_metal": True, "nesting_source": "facts", "verified": dt.date(2026, 11, 29)},
    ],
}


def _dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def test_the_seed_documents_are_valid() -> None:
    # The mutations below start from these; if they were invalid, the properties would be weak.
    assert isinstance(parse_catalog(_dump(VALID_CATALOG), "seed"), Catalog)
    from nestcloud.lab import parse_lab

    lab, user_data = parse_lab(_dump(VALID_LAB), "seed-lab")
    assert lab.name == "kvm-class" and user_data == VALID_LAB["user_data"]


# -- random values and structural mutations -------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.dates(), st.sampled_from(["", "0", "-1", "1e309", "nan", "V3", "nested", "arm64",
                                 "us-east-1", "2026-13-45", "~", "null", "yes", "facts",
                                 "Standard", "TrustedLaunch", "x" * 300]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)),
    max_leaves=6)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


@st.composite
def mutated(draw: st.DrawFn, seed: dict[str, Any]) -> Any:
    doc = copy.deepcopy(seed)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        kind = draw(st.sampled_from(["replace", "delete", "add", "retype"]))
        if not path:  # the whole document
            doc = draw(values) if kind in ("replace", "retype") else doc
            continue
        parent, key = _get(doc, path[:-1]), path[-1]
        if kind == "replace":
            parent[key] = draw(values)
        elif kind == "delete":
            del parent[key]
        elif kind == "add":
            target = _get(doc, path)
            if isinstance(target, dict):
                target[draw(st.one_of(st.text(max_size=12), st.sampled_from(
                    ["vcpus", "regions", "prices", "extra", "nesting", "schema_version"])))] = (
                    draw(values))
            elif isinstance(target, list):
                target.append(draw(values))
        else:  # keep the value, change its container type
            old = parent[key]
            parent[key] = [old] if not isinstance(old, list) else {"x": old}
    return doc


def _text_mutations(text: str) -> st.SearchStrategy[str]:
    @st.composite
    def edit(draw: st.DrawFn) -> str:
        out = text
        for _ in range(draw(st.integers(min_value=1, max_value=3))):
            i = draw(st.integers(min_value=0, max_value=len(out)))
            j = draw(st.integers(min_value=i, max_value=min(len(out), i + 20)))
            out = out[:i] + draw(st.text(max_size=8)) + out[j:]
        return out
    return edit()


# -- catalog files -------------------------------------------------------------------------


def _catalog_outcome(text: str) -> None:
    try:
        result = parse_catalog(text, "mutated.yaml")
    except CatalogError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        assert str(exc).startswith("mutated.yaml: invalid catalog")
        assert exc.exit_code == 2
    else:
        assert isinstance(result, Catalog)


@PROPS
@given(doc=mutated(VALID_CATALOG))
def test_mutated_catalog_parses_or_raises_catalog_error(doc: Any) -> None:
    _catalog_outcome(_dump(doc))


@PROPS
@given(text=_text_mutations(_dump(VALID_CATALOG)))
def test_text_edited_catalog_parses_or_raises_catalog_error(text: str) -> None:
    _catalog_outcome(text)


@PROPS
@given(text=st.text(max_size=300))
def test_random_text_catalog_raises_catalog_error(text: str) -> None:
    with pytest.raises(CatalogError):
        parse_catalog(text, "mutated.yaml")


# -- lab files -----------------------------------------------------------------------------

VALID_LAB: dict[str, Any] = {
    "name": "kvm-class",
    "seats": 3,
    "seat": {"vcpus": 2, "memory_gib": 8},
    "providers": ["aws", "azure"],
    "regions": ["us-east-1", "eastus"],
    "hypervisor": "kvm",
    "os": "ubuntu-24.04",
    "spot": False,
    "ttl": "4h",
    "budget": 12.5,
    "ssh_cidr": "203.0.113.0/24",
    "tags": {"course": "virt-101"},
    "user_data": "#cloud-config\nruncmd: [echo hi]\n",
}


def _lab_outcome(text: str, base: Path) -> None:
    from nestcloud.lab import LabFile, parse_lab

    try:
        lab, user_data = parse_lab(text, "lab.yaml", base)
    except LabFileError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        assert str(exc).startswith("lab.yaml: invalid lab file")
        assert exc.exit_code == 2
    else:
        assert isinstance(lab, LabFile)
        assert user_data is None or isinstance(user_data, str)
        assert lab.ttl_seconds > 0


@PROPS
@given(doc=mutated(VALID_LAB))
def test_mutated_lab_parses_or_raises_lab_file_error(doc: Any, tmp_path: Path) -> None:
    _lab_outcome(_dump(doc), tmp_path)


@PROPS
@given(text=_text_mutations(_dump(VALID_LAB)))
def test_text_edited_lab_parses_or_raises_lab_file_error(text: str, tmp_path: Path) -> None:
    _lab_outcome(text, tmp_path)


@pytest.mark.parametrize("field,value", [
    ("regions", [["us-east-1"], None]),   # found by the property above: 0 problems listed
    ("providers", [1, 2]),
    ("regions", [None]),
])
def test_lab_list_items_of_the_wrong_type_are_named(field: str, value: Any) -> None:
    from nestcloud.lab import parse_lab

    with pytest.raises(LabFileError) as info:
        parse_lab(_dump(dict(VALID_LAB, **{field: value})), "lab.yaml")
    assert info.value.problems, str(info.value)
    assert all(field in p for p in info.value.problems), info.value.problems


@PROPS
@given(data=st.one_of(st.binary(max_size=300),
                      _text_mutations(_dump(VALID_LAB)).map(lambda t: t.encode("utf-8",
                                                                               "surrogatepass"))))
def test_lab_file_bytes_load_or_raise_lab_file_error(data: bytes, tmp_path: Path) -> None:
    from nestcloud.lab import LabFile, load_lab

    path = tmp_path / "lab.yaml"
    path.write_bytes(data)
    try:
        lab, _ = load_lab(path)
    except LabFileError as exc:
        assert str(exc).startswith(f"{path}: invalid lab file") and exc.exit_code == 2
    else:
        assert isinstance(lab, LabFile)


@PROPS
@given(name=st.one_of(st.text(max_size=40),
                      st.sampled_from(["missing.sh", "", ".", "..", "/", "/etc", "a/b/c",
                                       "x" * 5000, "data.bin"])))
def test_lab_user_data_file_reference_never_crashes(name: str, tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_bytes(b"\xff\xfe\x00 not utf-8")
    doc = dict(VALID_LAB, user_data={"file": name})
    _lab_outcome(_dump(doc), tmp_path)


def test_lab_user_data_file_name_with_nul_is_a_lab_file_error(tmp_path: Path) -> None:
    _lab_outcome(_dump(dict(VALID_LAB, user_data={"file": "a\x00b"})), tmp_path)


# -- CLI arguments -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("cat") / "catalog.yaml"
    p.write_text(_dump(VALID_CATALOG), encoding="utf-8")
    return p


_junk = st.text(max_size=12)
_CHECK_OPTS: dict[str, st.SearchStrategy[str]] = {
    "--provider": st.sampled_from(["aws", "azure", "gcp", "AWS", ""]) | _junk,
    "-p": st.sampled_from(["aws", "azure"]) | _junk,
    "--type": st.sampled_from(["c8i.large", "Standard_D2s_v5", "m7i.metal-24xl", "t3.micro"])
    | _junk,
    "-t": st.sampled_from(["c8i.large", "Standard_D2s_v5"]) | _junk,
    "--region": st.sampled_from(["us-east-1", "eastus", "mars-1"]) | _junk,
    "--os": st.sampled_from(["ubuntu-24.04", "al2023", "windows-2022", "plan9"]) | _junk,
    "--hypervisor": st.sampled_from(["kvm", "hyperv", "firecracker", "none", "xen"]) | _junk,
    "--depth": st.sampled_from(["1", "2", "3", "0", "10", "-1", "two"]) | _junk,
    "--security-type": st.sampled_from(["Standard", "TrustedLaunch", "ConfidentialVM"])
    | _junk,
    "--image-generation": st.sampled_from(["V1", "V2", "V3"]) | _junk,
    "--catalog": st.sampled_from(["<catalog>", "/nonexistent/c.yaml", "."]) | _junk,
}
_FLAGS = ["--spot", "--json", "--nested-only", "--help"]
_LIST_OPTS = {"--provider": _CHECK_OPTS["--provider"], "--region": _CHECK_OPTS["--region"],
              "--catalog": _CHECK_OPTS["--catalog"], "-r": _CHECK_OPTS["--region"]}
_SHOW_OPTS = {"--provider": _CHECK_OPTS["--provider"], "--catalog": _CHECK_OPTS["--catalog"]}


@st.composite
def argv(draw: st.DrawFn, opts: dict[str, st.SearchStrategy[str]],
         positional: st.SearchStrategy[str] | None = None) -> list[str]:
    args: list[str] = []
    if positional is not None and draw(st.booleans()):
        args.append(draw(positional))
    for _ in range(draw(st.integers(min_value=0, max_value=7))):
        choice = draw(st.sampled_from([*opts, *_FLAGS, "<junk>"]))
        if choice == "<junk>":
            args.append(draw(_junk))
        elif choice in _FLAGS:
            args.append(choice)
        else:
            args += [choice, draw(opts[choice])]
    return args


def _invoke(args: list[str], catalog: Path) -> None:
    args = [str(catalog) if a == "<catalog>" else a for a in args]
    # NUL cannot be in a real process argument; everything else can.
    assume(all("\x00" not in a for a in args))
    result = CliRunner().invoke(app, args)
    out = result.stdout + result.stderr
    assert "Traceback" not in out, out
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args, repr(result.exception))
    assert result.exit_code in (0, 2, 3), (args, result.exit_code, out)
    assert "internal error" not in out, (args, out)


@st.composite
def check_argv(draw: st.DrawFn) -> list[str]:
    """Often a well-formed request (so the checks themselves run and may refuse), plus noise."""
    base: list[str] = []
    if draw(st.booleans()):
        provider, type_name = draw(st.sampled_from([
            ("aws", "c8i.large"), ("azure", "Standard_D2s_v5"), ("aws", "m7i.metal-24xl"),
            ("aws", "Standard_D2s_v5"), ("azure", "c8i.large")]))
        base = ["--provider", provider, "--type", type_name, "--catalog", "<catalog>"]
    return base + draw(argv(_CHECK_OPTS))


@PROPS
@given(args=check_argv())
def test_check_arguments_give_a_clear_answer(args: list[str], catalog_file: Path) -> None:
    _invoke(["check", *args], catalog_file)


@PROPS
@given(args=argv(_LIST_OPTS))
def test_catalog_list_arguments_give_a_clear_answer(args: list[str],
                                                     catalog_file: Path) -> None:
    _invoke(["catalog", "list", *args], catalog_file)


@PROPS
@given(args=argv(_SHOW_OPTS, st.sampled_from(["c8i.large", "C8I.LARGE", "c8i.larg",
                                                "Standard_D2s_v5"]) | _junk))
def test_catalog_show_arguments_give_a_clear_answer(args: list[str],
                                                     catalog_file: Path) -> None:
    _invoke(["catalog", "show", *args], catalog_file)
