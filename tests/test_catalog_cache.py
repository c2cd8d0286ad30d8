"""The on-disk parsed-catalog cache behind load_catalog: used when valid, never when stale."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import nestcloud.catalog as catalog_mod
from nestcloud.catalog import load_catalog
from nestcloud.errors import CatalogError

TEXT = """\
schema_version: 1
sources:
  facts: {description: "f", date: 2026-03-04}
types:
  - {provider: aws, name: c8i.large, family: c8i, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-01-01,
     regions: [us-east-1], prices: {us-east-1: {on_demand: 0.1, spot: 0.05, source: facts}}}
"""


@pytest.fixture()
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("NESTCLOUD_CACHE_DIR", str(d))
    return d


def fresh_load(path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """load_catalog as a new process would run it (no in-memory cache)."""
    monkeypatch.setattr(catalog_mod, "_cache", {})
    return load_catalog(path)


def forbid_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def parse(*a: Any, **k: Any) -> None:
        raise AssertionError("the YAML was parsed although the cache was valid")

    monkeypatch.setattr(catalog_mod, "parse_catalog", parse)


def test_second_load_comes_from_the_cache_and_is_identical(
        tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(TEXT)
    first = fresh_load(p, monkeypatch)
    files = list(cache_dir.glob("catalog-*.json"))
    assert len(files) == 1
    forbid_parsing(monkeypatch)
    second = fresh_load(p, monkeypatch)
    assert second.to_dict() == first.to_dict()
    assert second.get("aws", "c8i.large") is not None
    assert second.source_date("facts") == "2026-03-04"


def test_changed_content_with_same_size_and_mtime_is_reparsed(
        tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(TEXT)
    fresh_load(p, monkeypatch)
    st = p.stat()
    changed = TEXT.replace("vcpus: 2", "vcpus: 3")
    assert len(changed) == len(TEXT)
    p.write_text(changed)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    t = fresh_load(p, monkeypatch).get("aws", "c8i.large")
    assert t is not None and t.vcpus == 3


def test_a_cache_written_by_other_model_code_is_ignored(
        tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(TEXT)
    fresh_load(p, monkeypatch)
    (f,) = cache_dir.glob("catalog-*.json")
    # Same body, but the key a different catalog.py/pydantic would have produced.
    body = f.read_bytes().split(b"\n", 1)[1].replace(b'"vcpus":2', b'"vcpus":99')
    assert b'"vcpus":99' in body
    f.write_bytes(b"0" * 64 + b"\n" + body)
    t = fresh_load(p, monkeypatch).get("aws", "c8i.large")
    assert t is not None and t.vcpus == 2


def test_a_corrupt_cache_falls_back_to_parsing(tmp_path: Path, cache_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(TEXT)
    fresh_load(p, monkeypatch)
    (f,) = cache_dir.glob("catalog-*.json")
    key = f.read_bytes().split(b"\n", 1)[0]
    f.write_bytes(key + b"\n{not json")
    assert fresh_load(p, monkeypatch).get("aws", "c8i.large") is not None
    # ...and the next load repaired it.
    forbid_parsing(monkeypatch)
    assert fresh_load(p, monkeypatch).get("aws", "c8i.large") is not None


def test_an_unwritable_cache_dir_only_costs_speed(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("NESTCLOUD_CACHE_DIR", str(blocker / "sub"))
    p = tmp_path / "c.yaml"
    p.write_text(TEXT)
    assert fresh_load(p, monkeypatch).get("aws", "c8i.large") is not None


def test_cache_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NESTCLOUD_CACHE_DIR", "off")
    monkeypatch.setenv("NESTCLOUD_STATE_DIR", str(tmp_path / "state"))
    p = tmp_path / "c.yaml"
    p.write_text(TEXT)
    fresh_load(p, monkeypatch)
    assert not (tmp_path / "state").exists()


def test_default_location_is_under_the_state_dir(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NESTCLOUD_CACHE_DIR", raising=False)
    monkeypatch.setenv("NESTCLOUD_STATE_DIR", str(tmp_path / "state"))
    p = tmp_path / "c.yaml"
    p.write_text(TEXT)
    fresh_load(p, monkeypatch)
    assert len(list((tmp_path / "state" / "cache").glob("catalog-*.json"))) == 1


def test_an_invalid_catalog_is_never_cached(tmp_path: Path, cache_dir: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(TEXT.replace("vcpus: 2", "vcpus: -2"))
    for _ in range(2):
        with pytest.raises(CatalogError, match="types\\[0\\].vcpus"):
            fresh_load(p, monkeypatch)
    assert not cache_dir.exists() or list(cache_dir.iterdir()) == []


def test_a_value_json_cannot_carry_is_refused_and_not_cached(
        tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "c.yaml"
    p.write_text(TEXT.replace("spot: 0.05", "spot: .inf"))
    for _ in range(2):
        with pytest.raises(CatalogError, match="spot: Input should be a finite number"):
            fresh_load(p, monkeypatch)
        assert not cache_dir.exists() or list(cache_dir.iterdir()) == []
