"""Files users hand us are read with bounds: size, file kind, aliases, nesting, duplicate keys.

Every hostile file must end in one clear message and exit 2 within about a second, whichever
command reads it (catalog, lab file, user data). The CLI cases run in a forked child with a
memory cap and a timeout, so a regression fails the test instead of eating the machine.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nestcloud._yamlio import MAX_ALIAS_NODES, MAX_DEPTH, load_yaml

GOOD_CATALOG = Path(__file__).parent / "data" / "catalogs" / "good.yaml"
LAB_HEAD = ("name: bombs\nseats: 1\nseat: {vcpus: 2, memory_gib: 4}\nproviders: [aws]\n"
            "regions: [us-east-1]\nttl: 1h\n")
USERDATA = ["userdata", "-p", "aws", "--os", "ubuntu-24.04", "--hypervisor", "kvm",
            "--user-data"]
LAUNCH = ["launch", "-p", "aws", "-t", "c8i.large", "-r", "us-east-1", "--dry-run",
          "--catalog", str(GOOD_CATALOG), "--user-data"]


def billion_laughs(levels: int = 9, width: int = 9, key_prefix: str = "") -> str:
    """The classic alias bomb: ~340 bytes that expand to width**levels strings."""
    lines = [f'{key_prefix}a: &a [{", ".join(["lol"] * width)}]']
    prev = "a"
    for name in "bcdefghijklmnop"[:levels - 1]:
        lines.append(f"{key_prefix}{name}: &{name} [{', '.join([f'*{prev}'] * width)}]")
        prev = name
    return "\n".join(lines) + "\n"


def merge_bomb(levels: int = 20) -> str:
    """Merge keys (<<) pointing twice at the level below: 2**levels merged pairs."""
    lines = ["l0: &l0 {k0: v}"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} {{<<: [*l{i - 1}, *l{i - 1}], k{i}: v}}")
    return "\n".join(lines) + "\n"


def _child(conn: Any, args: list[str], env: dict[str, str]) -> None:
    import resource

    # A regression must not take the machine down with it (others share it). The cap is on
    # top of what the forked child already maps: late in a full run the parent maps far more
    # than a fresh process, and a fixed cap then left no room for the stack to grow (SIGSEGV).
    with open("/proc/self/statm") as fh:
        mapped = int(fh.read().split()[0]) * resource.getpagesize()
    cap = mapped + 1536 * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    from typer.testing import CliRunner

    from nestcloud.cli import app

    os.environ.update(env)
    start = time.perf_counter()
    r = CliRunner().invoke(app, args)
    conn.send((r.exit_code, r.stdout, r.stderr, time.perf_counter() - start))


def run_bounded(args: list[str], timeout: float = 20.0, **env: str) -> tuple[int, str, str, float]:
    """(exit code, stdout, stderr, seconds) of `nestcloud ARGS`, run in a forked child."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, args, env))
    proc.start()
    try:
        if not parent.poll(timeout):
            pytest.fail(f"nestcloud {' '.join(args)}: no answer within {timeout:g} s "
                        f"(exit code {proc.exitcode}, still running: {proc.is_alive()})")
        return parent.recv()  # type: ignore[no-any-return]
    finally:
        proc.kill()
        proc.join()


def assert_refused(result: tuple[int, str, str, float], *needles: str) -> str:
    code, out, err, took = result
    assert code == 2, (code, out, err[-2000:])
    assert took < 5.0, f"took {took:.1f} s"  # ~1 s on a quiet machine; loose against CI load
    assert "Traceback" not in err and "internal error" not in err
    assert len(err) < 4000, "the message must be short, not the expanded document"
    for needle in needles:
        assert needle in err, err
    return err


# -- alias bombs through every command that reads a user's file ---------------------------


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {
        "catalog": tmp_path / "catalog.yaml",
        "lab": tmp_path / "lab.yaml",
        "userdata": tmp_path / "cloud.yaml",
        "lab_userdata": tmp_path / "lab-ud.yaml",
        "merge_catalog": tmp_path / "merge.yaml",
    }
    bomb = billion_laughs()
    assert len(bomb.encode()) < 2048
    out["catalog"].write_text(bomb)
    out["merge_catalog"].write_text(merge_bomb())
    out["lab"].write_text(LAB_HEAD + "tags:\n" + billion_laughs(key_prefix="  x"))
    out["userdata"].write_text("#cloud-config\n" + bomb)
    out["lab_userdata"].write_text(LAB_HEAD + "user_data: {file: cloud.yaml}\n")
    return out


def test_catalog_validate_refuses_an_alias_bomb(files: dict[str, Path]) -> None:
    err = assert_refused(run_bounded(["catalog", "validate", str(files["catalog"])]),
                         str(files["catalog"]), "alias")
    assert "lol" not in err


def test_catalog_validate_refuses_a_merge_key_bomb(files: dict[str, Path]) -> None:
    assert_refused(run_bounded(["catalog", "validate", str(files["merge_catalog"])]),
                   str(files["merge_catalog"]), "alias")


def test_check_with_a_bomb_catalog_is_refused(files: dict[str, Path]) -> None:
    assert_refused(run_bounded(["check", "-p", "aws", "-t", "c8i.large", "--catalog",
                                str(files["catalog"])]), "alias")
    assert_refused(run_bounded(["check", "-p", "aws", "-t", "c8i.large"],
                               NESTCLOUD_CATALOG=str(files["catalog"])), "alias")


def test_lab_up_dry_run_refuses_an_alias_bomb(files: dict[str, Path]) -> None:
    assert_refused(run_bounded(["lab", "up", str(files["lab"]), "--dry-run", "--catalog",
                                str(GOOD_CATALOG)]), str(files["lab"]), "alias")


def test_lab_up_dry_run_refuses_an_alias_bomb_in_its_user_data(files: dict[str, Path]
                                                               ) -> None:
    assert_refused(run_bounded(["lab", "up", str(files["lab_userdata"]), "--dry-run",
                                "--catalog", str(GOOD_CATALOG)]), "cloud.yaml", "alias")


def test_userdata_refuses_an_alias_bomb(files: dict[str, Path]) -> None:
    assert_refused(run_bounded([*USERDATA, str(files["userdata"])]), "cloud.yaml", "alias")


def test_launch_refuses_an_alias_bomb_in_user_data(files: dict[str, Path]) -> None:
    assert_refused(run_bounded([*LAUNCH, str(files["userdata"])]), "cloud.yaml", "alias")


def test_json_error_document_for_a_bomb_is_one_small_document(files: dict[str, Path]) -> None:
    code, out, err, _ = run_bounded(["catalog", "validate", str(files["catalog"]), "--json"])
    assert code == 2
    doc = json.loads(out)
    assert doc["ok"] is False and len(out) < 4000


# -- deep nesting ----------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 999, 5000])
def test_deeply_nested_user_data_is_bad_input(tmp_path: Path, depth: int) -> None:
    f = tmp_path / "deep.yaml"
    f.write_text("#cloud-config\nx: " + "[" * depth + "]" * depth + "\n")
    assert_refused(run_bounded([*USERDATA, str(f)]), "deep.yaml", "nested deeper than")
    assert_refused(run_bounded([*LAUNCH, str(f)]), "deep.yaml", "nested deeper than")


def test_deeply_nested_lab_file_is_bad_input(tmp_path: Path) -> None:
    f = tmp_path / "lab.yaml"
    f.write_text(LAB_HEAD + "tags: " + "{a: " * 200 + "x" + "}" * 200 + "\n")
    assert_refused(run_bounded(["lab", "up", str(f), "--dry-run", "--catalog",
                                str(GOOD_CATALOG)]), "lab.yaml:7", "nested deeper than")


# -- only regular files of a sane size ------------------------------------------------------


def _why(kind: str) -> str:
    return "at most" if kind == "big" else "not a regular file"


def _specials(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # nobody writes: opening it for reading would block forever
    big = tmp_path / "big.yaml"
    with open(big, "wb") as fh:  # sparse: costs no disk
        fh.truncate(64 * 1024 * 1024)
    d = tmp_path / "dir.yaml"
    d.mkdir()
    return {"fifo": fifo, "big": big, "dir": d, "zero": Path("/dev/zero")}


@pytest.mark.parametrize("kind", ["fifo", "big", "dir", "zero"])
def test_catalog_from_a_special_or_huge_file_is_refused(tmp_path: Path, kind: str) -> None:
    path = _specials(tmp_path)[kind]
    assert_refused(run_bounded(["catalog", "validate", str(path)]), str(path), _why(kind))
    assert_refused(run_bounded(["check", "-p", "aws", "-t", "c8i.large"],
                               NESTCLOUD_CATALOG=str(path)), str(path), _why(kind))


@pytest.mark.parametrize("kind", ["fifo", "big", "dir", "zero"])
def test_lab_file_and_its_user_data_from_a_special_or_huge_file_are_refused(
        tmp_path: Path, kind: str) -> None:
    path = _specials(tmp_path)[kind]
    assert_refused(run_bounded(["lab", "up", str(path), "--dry-run", "--catalog",
                                str(GOOD_CATALOG)]), str(path), _why(kind))
    lab = tmp_path / "lab.yaml"
    lab.write_text(LAB_HEAD + f"user_data: {{file: {json.dumps(str(path))}}}\n")
    assert_refused(run_bounded(["lab", "up", str(lab), "--dry-run", "--catalog",
                                str(GOOD_CATALOG)]), "lab.yaml:7", str(path), _why(kind))


@pytest.mark.parametrize("kind", ["fifo", "big", "dir", "zero"])
def test_user_data_from_a_special_or_huge_file_is_refused(tmp_path: Path, kind: str) -> None:
    path = _specials(tmp_path)[kind]
    assert_refused(run_bounded([*USERDATA, str(path)]), str(path), _why(kind))
    assert_refused(run_bounded([*LAUNCH, str(path)]), str(path), _why(kind))


def test_size_is_refused_before_reading(tmp_path: Path) -> None:
    from nestcloud._yamlio import FileRefused, read_bounded

    big = tmp_path / "big"
    with open(big, "wb") as fh:
        fh.truncate(10_001)
    with pytest.raises(FileRefused, match=r"is 10001 bytes; a test file may be at most 10000"):
        read_bounded(big, "a test file", 10_000)
    big.write_bytes(b"x" * 10_000)
    assert read_bounded(big, "a test file", 10_000) == b"x" * 10_000


# -- duplicate keys ---------------------------------------------------------------------------


def test_duplicate_key_in_a_lab_file_names_both_lines(tmp_path: Path) -> None:
    from nestcloud.errors import LabFileError
    from nestcloud.lab import parse_lab

    with pytest.raises(LabFileError) as info:
        parse_lab(LAB_HEAD + "seats: 40\n", "lab.yaml")
    assert info.value.problems == ["lab.yaml:7: duplicate key 'seats' (first at line 2)"]


def test_duplicate_key_in_a_catalog_is_an_error() -> None:
    from nestcloud.catalog import parse_catalog
    from nestcloud.errors import CatalogError

    text = GOOD_CATALOG.read_text().replace("    vcpus: 2\n", "    vcpus: 2\n    vcpus: 64\n", 1)
    with pytest.raises(CatalogError) as info:
        parse_catalog(text, "c.yaml")
    assert info.value.problems == ["c.yaml:13: duplicate key 'vcpus' (first at line 12)"]


def test_duplicate_key_in_cloud_config_user_data_is_bad_input(tmp_path: Path) -> None:
    f = tmp_path / "cloud.yaml"
    f.write_text("#cloud-config\nruncmd: [echo one]\npackages: [qemu-kvm]\nruncmd: [echo two]\n")
    err = assert_refused(run_bounded([*USERDATA, str(f)]), "cloud.yaml:4", "duplicate key")
    assert "echo" not in err
    assert_refused(run_bounded([*LAUNCH, str(f)]), "cloud.yaml:4", "duplicate key")


def test_merge_keys_may_be_overridden_without_a_duplicate_error() -> None:
    data, err = load_yaml("base: &b {a: 1, b: 2}\nx:\n  <<: *b\n  b: 3\n", "m.yaml")
    assert err is None
    assert data == {"base": {"a": 1, "b": 2}, "x": {"a": 1, "b": 3}}


# -- error excerpts are cut before they are built ------------------------------------------


def test_bad_value_excerpt_is_bounded_without_building_the_whole_repr() -> None:
    from nestcloud._yamlio import pydantic_problems

    class Loud:
        def __repr__(self) -> str:  # what a huge value would cost
            raise AssertionError("repr of the whole value was built")

    huge = [["x" * 10_000] * 1000] * 1000
    [line] = pydantic_problems([{"loc": ("a",), "msg": "bad", "type": "x", "input": huge}],
                               "a: 1\n", "f.yaml")
    assert line.startswith("f.yaml:1: a: bad (got [[") and len(line) < 200
    [line] = pydantic_problems([{"loc": ("a",), "msg": "bad", "type": "x",
                                 "input": {"k": ["x" * 200, Loud()]}}], "a: 1\n", "f.yaml")
    assert len(line) < 200


# -- properties over YAML shapes --------------------------------------------------------------

_scalars = st.one_of(st.integers(-1000, 1000), st.booleans(), st.none(),
                     st.text(alphabet="abcxyz -_", min_size=1, max_size=8))
_keys = st.text(alphabet="abcdefgh", min_size=1, max_size=4)


def _trees(max_leaves: int = 25) -> st.SearchStrategy[Any]:
    return st.recursive(_scalars, lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(_keys, kids, max_size=4)),
        max_leaves=max_leaves)


def _depth(x: Any) -> int:
    if isinstance(x, dict):
        return 1 + max((_depth(v) for v in x.values()), default=0)
    if isinstance(x, list):
        return 1 + max((_depth(v) for v in x), default=0)
    return 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=_trees(), share=st.data())
def test_anchors_and_aliases_load_as_plain_yaml_does(tree: Any, share: st.DataObject) -> None:
    # Sharing a subtree makes the dumper write an anchor and aliases to it.
    shared = share.draw(_trees(8))
    doc = {"one": shared, "two": [shared, tree], "three": {"again": shared}}
    text = yaml.safe_dump(doc)
    data, err = load_yaml(text, "s.yaml")
    assert err is None
    assert data == yaml.safe_load(text)


@settings(max_examples=100, deadline=None)
@given(width=st.integers(2, 12), levels=st.integers(1, 9))
def test_aliases_are_refused_exactly_when_their_expansion_is_too_big(width: int,
                                                                     levels: int) -> None:
    text = billion_laughs(levels=levels, width=width)
    # Level 0 is a list of `width` strings, level n a list of `width` aliases to level n-1;
    # a node counts once per place it appears once aliases are expanded.
    sizes = [1 + width]
    for _ in range(levels - 1):
        sizes.append(1 + width * sizes[-1])
    expanded = 1 + sum(1 + s for s in sizes)
    literal = 1 + levels * (2 + width)
    start = time.perf_counter()
    data, err = load_yaml(text, "b.yaml")
    assert time.perf_counter() - start < 1.0
    if expanded - literal <= MAX_ALIAS_NODES:
        assert err is None and data == yaml.safe_load(text)
    else:
        assert data is None
        assert err == (f"b.yaml: aliases expand the document by more than {MAX_ALIAS_NODES} "
                       "nodes (an alias bomb?)")


@settings(max_examples=60, deadline=None)
@given(depth=st.integers(1, 3 * MAX_DEPTH), flow=st.booleans())
def test_nesting_is_refused_exactly_past_the_limit(depth: int, flow: bool) -> None:
    if flow:
        text = "x: " + "[" * depth + "1" + "]" * depth + "\n"
    else:
        text = "".join("  " * i + f"k{i}:\n" for i in range(depth)) + "  " * depth + "v\n"
    data, err = load_yaml(text, "d.yaml")
    levels = depth + 1 if flow else depth  # flow: the top-level mapping counts as one more
    if levels <= MAX_DEPTH:
        assert err is None and _depth(data) == levels
    else:
        assert err is not None and err.startswith("d.yaml:") and "nested" in err


@settings(max_examples=100, deadline=None)
@given(tree=st.dictionaries(_keys, _trees(10), min_size=1, max_size=5), data=st.data())
def test_any_duplicated_key_is_reported_at_its_second_line(tree: dict[str, Any],
                                                           data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(tree)))
    text = yaml.safe_dump(tree, default_flow_style=False)
    dup = yaml.safe_dump({key: "again"}, default_flow_style=False)
    lines = text.splitlines()
    first = next(i for i, ln in enumerate(lines) if ln.startswith(f"{key}:")) + 1
    got, err = load_yaml(text + dup, "k.yaml")
    assert got is None
    assert err == f"k.yaml:{len(lines) + 1}: duplicate key {key!r} (first at line {first})"


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet="ab:-[]{}&*! \n#<\"'|>", max_size=200))
def test_any_text_loads_or_gives_one_message_never_raises(text: str) -> None:
    data, err = load_yaml(text, "t.yaml")
    if err is not None:
        assert data is None and err.startswith("t.yaml") and "\n" not in err
    else:
        assert _depth(data) <= MAX_DEPTH
