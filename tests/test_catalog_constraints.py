"""The catalog's constrained fields: annotated_types constraints, checked by pydantic."""

from __future__ import annotations

from pathlib import Path

import pytest

from nestcloud.catalog import parse_catalog
from nestcloud.errors import CatalogError

GOOD = (Path(__file__).parent / "data" / "catalogs" / "good.yaml").read_text()


def test_constrained_types_are_pydantics_own() -> None:
    import pydantic

    import nestcloud.catalog as catalog

    assert catalog.PositiveInt == pydantic.PositiveInt
    assert catalog.PositiveFloat == pydantic.PositiveFloat
    assert catalog.NonNegativeFloat == pydantic.NonNegativeFloat


@pytest.mark.parametrize(("old", "new", "problem"), [
    ("name: c8i.large", "name: ''",
     "c.yaml:10: types[0].name: String should have at least 1 character (got '')"),
    ("family: c8i", "family: ''",
     "c.yaml:11: types[0].family: String should have at least 1 character (got '')"),
    ("provider: aws\n    name: c8i", "provider: ''\n    name: c8i",
     "c.yaml:9: types[0].provider: String should have at least 1 character (got '')"),
    ("vcpus: 2\n    memory_gib: 4\n    arch: x86_64", "vcpus: 0\n    memory_gib: 4\n    arch: x86_64",
     "c.yaml:12: types[0].vcpus: Input should be greater than 0 (got 0)"),
    ("memory_gib: 4\n    arch: x86_64", "memory_gib: 0.0\n    arch: x86_64",
     "c.yaml:13: types[0].memory_gib: Input should be greater than 0 (got 0.0)"),
    ("on_demand: 0.0941", "on_demand: -1",
     "c.yaml:21: types[0].prices.us-east-1.on_demand: Input should be greater than or equal "
     "to 0 (got -1)"),
])
def test_each_constraint_gives_pydantics_message(old: str, new: str, problem: str) -> None:
    assert GOOD.count(old) == 1
    with pytest.raises(CatalogError) as info:
        parse_catalog(GOOD.replace(old, new), "c.yaml")
    assert info.value.problems == [problem]


def test_the_bounds_themselves_are_accepted() -> None:
    text = GOOD.replace("on_demand: 0.0941, spot: 0.02", "on_demand: 0, spot: 0.0")
    text = text.replace("vcpus: 2\n    memory_gib: 4\n    arch: x86_64",
                        "vcpus: 1\n    memory_gib: 0.5\n    arch: x86_64")
    t = parse_catalog(text, "c.yaml").types[0]
    assert (t.vcpus, t.memory_gib, t.prices["us-east-1"].on_demand,
            t.prices["us-east-1"].spot) == (1, 0.5, 0.0, 0.0)


# -- no infinities, NaN or absurd sizes -----------------------------------------------------

@pytest.mark.parametrize(("old", "new", "problem"), [
    ("on_demand: 0.0941", "on_demand: .inf",
     "c.yaml:21: types[0].prices.us-east-1.on_demand: Input should be a finite number "
     "(got inf)"),
    ("spot: 0.02", "spot: .nan",
     "c.yaml:21: types[0].prices.us-east-1.spot: Input should be a finite number (got nan)"),
    ("memory_gib: 4\n    arch: x86_64", "memory_gib: .inf\n    arch: x86_64",
     "c.yaml:13: types[0].memory_gib: Input should be a finite number (got inf)"),
    ("memory_gib: 4\n    arch: x86_64", "memory_gib: -.inf\n    arch: x86_64",
     "c.yaml:13: types[0].memory_gib: Input should be a finite number (got -inf)"),
    ("vcpus: 2\n    memory_gib: 4\n    arch: x86_64",
     "vcpus: 1000000\n    memory_gib: 4\n    arch: x86_64",
     "c.yaml:12: types[0].vcpus: Input should be less than or equal to 4096 (got 1000000)"),
    ("memory_gib: 4\n    arch: x86_64", "memory_gib: 1.0e+9\n    arch: x86_64",
     "c.yaml:13: types[0].memory_gib: Input should be less than or equal to 131072 "
     "(got 1000000000.0)"),
    ("on_demand: 0.0941", "on_demand: 1.0e+300",
     "c.yaml:21: types[0].prices.us-east-1.on_demand: Input should be less than or equal to "
     "10000 (got 1e+300)"),
])
def test_infinities_nan_and_absurd_sizes_are_refused(old: str, new: str, problem: str) -> None:
    assert GOOD.count(old) == 1
    with pytest.raises(CatalogError) as info:
        parse_catalog(GOOD.replace(old, new), "c.yaml")
    assert info.value.problems == [problem]


def test_json_output_never_holds_infinity(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from nestcloud.cli import app

    cat = tmp_path / "inf.yaml"
    cat.write_text(GOOD.replace("on_demand: 0.0941", "on_demand: .inf"))
    r = CliRunner().invoke(app, ["catalog", "list", "--json", "-r", "us-east-1",
                                 "--catalog", str(cat)])
    assert r.exit_code == 2
    assert "Infinity" not in r.stdout and json.loads(r.stdout)["error"] == "CatalogError"


def test_emit_json_refuses_non_finite_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    from nestcloud.cli._app import emit_json

    for bad in (float("inf"), float("-inf"), float("nan")):
        with pytest.raises(ValueError):
            emit_json({"usd_per_hour": bad})
    assert capsys.readouterr().out == ""
    emit_json({"usd_per_hour": 0.1})
    assert capsys.readouterr().out == '{\n  "usd_per_hour": 0.1\n}\n'
