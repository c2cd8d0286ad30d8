"""Lab files: the strict schema and its exact error messages (file:line, YAML path, value)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nestcloud.errors import LabFileError
from nestcloud.lab import Lab, LabFile, load_lab, parse_lab
from nestcloud.spec import TAG_LAB

GOOD = """\
name: virt101
seats: 3
seat: {vcpus: 4, memory_gib: 16}
providers: [aws]
regions: [us-east-1]
ttl: 6h
budget: 50
ssh_cidr: 203.0.113.0/24
tags: {course: virt101}
user_data: {file: setup.sh}
"""


def problems(text: str, base: Path | None = None) -> list[str]:
    with pytest.raises(LabFileError) as ei:
        parse_lab(text, "lab.yaml", base)
    assert ei.value.exit_code == 2
    return ei.value.problems


def test_good_file_with_user_data_relative_to_the_lab_file(tmp_path: Path) -> None:
    (tmp_path / "setup.sh").write_text("#!/bin/sh\necho hi\n")
    (tmp_path / "lab.yaml").write_text(GOOD)
    lab, user_data = load_lab(tmp_path / "lab.yaml")
    assert isinstance(lab, LabFile)
    assert (lab.name, lab.seats, lab.seat.vcpus, lab.seat.memory_gib) == ("virt101", 3, 4, 16.0)
    assert lab.ttl_seconds == 6 * 3600
    assert user_data == "#!/bin/sh\necho hi\n"


def test_every_problem_is_listed_with_line_path_and_value() -> None:
    text = """\
name: Bad_Name
seats: 0
seat: {vcpus: 4, type: c8i.xlarge}
ttl: 5x
ssh_cidr: 10.0.0.300/24
tags: {"nestcloud:x": y}
colour: blue
hypervisor: vmware
"""
    assert problems(text) == [
        "lab.yaml:1: name: lab names are 1-40 characters: lowercase letters, digits and '-', "
        "starting with a letter and not ending with '-' (got 'Bad_Name')",
        "lab.yaml:2: seats: Input should be greater than or equal to 1 (got 0)",
        "lab.yaml:3: seat: give either type or vcpus + memory_gib, not both "
        "(got {'vcpus': 4, 'type': 'c8i.xlarge'})",
        "lab.yaml:4: ttl: not a duration: '5x' (use e.g. 90m, 4h, 2d, 4h30m) (got '5x')",
        # The one CIDR rule of every entry point (nestcloud.spec.parse_cidr).
        "lab.yaml:5: ssh_cidr: not an IPv4 or IPv6 network (use e.g. 203.0.113.7/32) "
        "(got '10.0.0.300/24')",
        "lab.yaml:6: tags: tag 'nestcloud:x': the 'nestcloud:' prefix is reserved "
        "(got {'nestcloud:x': 'y'})",
        "lab.yaml:7: colour: unknown key",
        # In file order, whatever the schema's field order.
        "lab.yaml:8: hypervisor: Input should be 'kvm', 'firecracker', 'hyperv', 'wsl2' or "
        "'none' (got 'vmware')",
    ]


def test_missing_fields_and_nested_unknown_key() -> None:
    assert problems("name: a\nseat:\n  vcpus: 2\n  memory: 4\n") == [
        # A missing key points at the mapping that lacks it.
        "lab.yaml:1: seats: field required",
        "lab.yaml:1: ttl: field required",
        "lab.yaml:4: seat.memory: unknown key",
    ]


def test_malformed_yaml_and_wrong_top_level() -> None:
    assert problems("name: [a\n") == [
        "lab.yaml:2:1: malformed YAML: did not find expected ',' or ']'"]
    assert problems("- a\n- b\n") == [
        "lab.yaml: the top level must be a mapping with name, seats, seat and ttl (got list)"]


def test_unreadable_user_data_file(tmp_path: Path) -> None:
    text = GOOD.replace("setup.sh", "missing.sh")
    assert problems(text, tmp_path) == [
        f"lab.yaml:10: user_data.file: cannot read {str(tmp_path / 'missing.sh')!r}: "
        "file not found"]


def test_inline_user_data_and_ttl_in_hours() -> None:
    lab, ud = parse_lab("name: a\nseats: 1\nseat: {type: c8i.large}\nttl: 1.5\n"
                        "user_data: |\n  #cloud-config\n  packages: [htop]\n", "lab.yaml")
    assert lab.ttl_seconds == 5400
    assert ud == "#cloud-config\npackages: [htop]\n"


def test_lab_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(LabFileError) as ei:
        load_lab(tmp_path / "nope.yaml")
    assert ei.value.problems == [f"{tmp_path / 'nope.yaml'}: file not found"]


def test_launch_spec_carries_lab_tag_ttl_and_user_tags(tmp_path: Path) -> None:
    from nestcloud.planner import PlanRequest, plan
    from tests.planner.conftest import CATALOG_YAML
    from nestcloud.catalog import parse_catalog

    cat = parse_catalog(CATALOG_YAML)
    lab = Lab("virt101", 3, vcpus=4, memory_gib=16, providers=["aws"], ttl="2h",
              tags={"course": "virt"}, user_data="#!/bin/sh\n", catalog=cat)
    option = lab.plan().require()
    spec = lab.launch_spec(option)
    assert (spec.provider, spec.type, spec.region, spec.name, spec.count) == (
        "aws", "m8i.xlarge", "us-east-1", "virt101", 3)
    assert spec.ttl_seconds == 7200
    assert spec.tags == {"course": "virt", TAG_LAB: "virt101"}
    assert spec.user_data == "#!/bin/sh\n"
    assert plan(cat, PlanRequest(vcpus=4, memory_gib=16, providers=["aws"])).options[0] \
        == option.model_copy(update={"hours": 1.0, "total_usd": 0.25, "hourly_usd": 0.25,
                                     "instances": 1})


def test_python_lab_bad_arguments_are_input_errors() -> None:
    from nestcloud.errors import InputError

    with pytest.raises(InputError) as ei:
        Lab("x", 0, vcpus=2, memory_gib=4)
    assert str(ei.value) == "seats: Input should be greater than or equal to 1 (got 0)"


@pytest.mark.parametrize(("line", "expected"), [
    ("ttl: .inf", ["lab.yaml:4: ttl: Input should be a finite number (got inf)"]),
    ("ttl: 0", ["lab.yaml:4: ttl: Input should be greater than 0 (got 0)"]),
    ("ttl: true", ["lab.yaml:4: ttl: ttl is a duration (90m, 4h, 2d) or a number of hours "
                   "(got True)"]),
    ("ttl: 1\nuser_data: 5", ["lab.yaml:5: user_data: user_data is inline text, or "
                              "{file: PATH} with PATH relative to the lab file (got 5)"]),
    ("ttl: 1\nuser_data: {fil: x}", ["lab.yaml:5: user_data.file: field required",
                                     "lab.yaml:5: user_data.fil: unknown key"]),
    ("ttl: 1\nbudget: .nan", ["lab.yaml:5: budget: Input should be a finite number (got nan)"]),
])
def test_union_fields_give_one_clear_message(line: str, expected: list[str]) -> None:
    assert problems("name: a\nseats: 1\nseat: {type: x}\n" + line + "\n") == expected


def test_cli_reports_lab_file_problems(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from nestcloud.cli import app

    bad = tmp_path / "lab.yaml"
    bad.write_text("name: a\nseats: two\nseat: {vcpus: 2, memory_gib: 4}\nttl: 1h\n")
    r = CliRunner().invoke(app, ["lab", "up", str(bad), "--dry-run"])
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr == (f"error: {bad}: invalid lab file (1 problem(s)):\n"
                        f"  - {bad}:2: seats: Input should be a valid integer, unable to parse "
                        "string as an integer (got 'two')\n")
    r = CliRunner().invoke(app, ["lab", "status", str(tmp_path / "nope.yaml"), "--json"])
    assert r.exit_code == 2
    doc = json.loads(r.stdout)
    assert doc["error"] == "LabFileError"
    assert doc["message"].endswith("nope.yaml: file not found")


def test_every_bad_list_item_is_reported() -> None:
    assert problems("name: a\nseats: 1\nseat: {type: x}\nttl: 1\nregions: [[us-east-1], null]\n"
                    ) == ["lab.yaml:5: regions[0]: Input should be a valid string "
                          "(got ['us-east-1'])",
                          "lab.yaml:5: regions[1]: Input should be a valid string (got None)"]
