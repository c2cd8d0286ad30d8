"""One schema for a launch: the CLI's `launch` flags, lab files, ``nestcloud.launch()`` and
``Lab()`` take the same options (nestcloud.spec.LaunchOptions), with the same defaults, the
same rules and one error formatter naming the flag, the keyword or the file and line."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import click
import pytest
import typer
from pydantic import BaseModel
from pydantic_core import PydanticUndefined
from typer.testing import CliRunner

import nestcloud
from nestcloud.cli import app
from nestcloud.cli.check_cmd import SPEC_FLAGS
from nestcloud.errors import InputError, LabFileError, SpecError
from nestcloud.lab import Lab, LabFile, parse_lab
from nestcloud.planner import PlanOption
from nestcloud.spec import LaunchOptions, LaunchSpec

OPTIONS = list(LaunchOptions.model_fields)


def _defaults(model: type[BaseModel]) -> dict[str, Any]:
    out = {}
    for name, field in model.model_fields.items():
        if field.default_factory is not None:
            out[name] = field.default_factory()  # type: ignore[call-arg]
        elif field.default is not PydanticUndefined:
            out[name] = field.default
    return out


def _params(func: Any) -> dict[str, Any]:
    return {n: p.default for n, p in inspect.signature(func).parameters.items()
            if n != "self"}


def _launch_flags() -> dict[str, click.Parameter]:
    cmd = typer.main.get_command(app)
    launch = cmd.commands["launch"]  # type: ignore[attr-defined]
    return {opt: p for p in launch.params for opt in p.opts}


def test_the_models_share_the_launch_options() -> None:
    assert OPTIONS and set(OPTIONS) <= set(LaunchSpec.model_fields)
    assert set(OPTIONS) <= set(LabFile.model_fields)
    for model in (LaunchOptions, LaunchSpec, LabFile):
        assert model.model_config.get("extra") == "forbid"


def test_nestcloud_launch_takes_every_launchspec_field_with_its_default() -> None:
    params = _params(nestcloud.launch)
    fields = {("ttl" if n == "ttl_seconds" else n) for n in LaunchSpec.model_fields}
    assert fields <= set(params)
    assert set(params) - fields == {"dry_run", "sandbox", "catalog"}
    for name, default in _defaults(LaunchSpec).items():
        if name == "ttl_seconds":
            continue  # launch() gives a TTL of 4 hours unless told otherwise (ttl=None: none)
        given = params[name]
        assert given == default or (given is None and default == {}), name


def test_lab_takes_every_labfile_field_with_its_default() -> None:
    params = _params(Lab.__init__)
    fields = set(LabFile.model_fields) - {"seat"} | {"vcpus", "memory_gib", "type"}
    assert set(params) - {"catalog"} == fields
    for name, default in _defaults(LabFile).items():
        given = params[name]
        assert given == default or (given is None and default == {}), name


def test_the_cli_launch_has_a_flag_for_every_launchspec_field() -> None:
    flags = _launch_flags()
    for name, field in LaunchSpec.model_fields.items():
        flag = SPEC_FLAGS.get(name, "--" + name.replace("_", "-"))
        assert flag in flags, name
        default = _defaults(LaunchSpec).get(name)
        if isinstance(flags[flag], click.Option) and name not in ("tags", "ttl_seconds",
                                                                  "user_data", "type",
                                                                  "provider"):
            assert flags[flag].default == default, name


# -- the same rule, named where it was given -------------------------------------------------

CASES = [
    # (field, bad value, the schema's message)
    ("disk_gib", 7, "Input should be greater than or equal to 8"),
    ("depth", 10, "Input should be less than or equal to 9"),
    ("egress", "vpn", "Input should be 'nat', 'public-ip' or 'none'"),
    ("security_type", "Secure", "Input should be 'Standard', 'TrustedLaunch' or "
                                "'ConfidentialVM'"),
    ("ssh_cidr", "10.0.0.300/8", "not an IPv4 or IPv6 network (use e.g. 203.0.113.7/32)"),
    ("instance_profile", "bad profile", "an IAM instance profile name is 1-128 characters: "
                                        "letters, digits and + = , . @ _ -"),
    ("os", "plan9", "unknown OS (one of ubuntu-24.04, debian-12, rhel-9, al2023, "
                    "windows-2022, windows-2025)"),
]


@pytest.mark.parametrize(("field", "value", "message"), CASES, ids=[c[0] for c in CASES])
def test_python_api_names_the_keyword(field: str, value: Any, message: str) -> None:
    with pytest.raises(SpecError) as launched:
        nestcloud.launch("aws", "c8i.large", region="us-east-1", dry_run=True,
                         **{field: value})
    assert str(launched.value) == f"{field}: {message} (got {value!r})"
    with pytest.raises(InputError) as lab:
        Lab("web", 2, vcpus=2, memory_gib=4, **{field: value})
    assert str(lab.value) == f"{field}: {message} (got {value!r})"


@pytest.mark.parametrize(("field", "value", "message"), CASES, ids=[c[0] for c in CASES])
def test_lab_files_name_the_file_line_and_key(field: str, value: Any, message: str) -> None:
    text = f"name: web\nseats: 2\nseat: {{vcpus: 2, memory_gib: 4}}\nttl: 1h\n{field}: {value}\n"
    with pytest.raises(LabFileError) as ei:
        parse_lab(text, "lab.yaml")
    assert ei.value.problems == [f"lab.yaml:5: {field}: {message} (got {value!r})"]


@pytest.mark.parametrize(("field", "value", "message"), CASES, ids=[c[0] for c in CASES])
def test_the_cli_names_the_flag(tmp_path: Path, field: str, value: Any, message: str) -> None:
    flag = "--" + field.replace("_", "-")
    r = CliRunner().invoke(app, ["launch", "-p", "aws", "-t", "c8i.large", "-r", "us-east-1",
                                 "--dry-run", flag, str(value)])
    assert r.exit_code == 2, r.output
    assert r.stderr == f"error: {flag} {value!r}: {message}\n"


def test_every_launch_option_of_a_lab_reaches_its_launch_spec() -> None:
    given = {"depth": 3, "spot": True, "security_type": "TrustedLaunch",
             "image_generation": "V2", "image": "ami-0123456789abcdef0", "disk_gib": 64,
             "key_name": "me", "ssh_cidr": "203.0.113.7/32", "allow_world_ssh": True,
             "public_ip": True, "egress": "public-ip", "tags": {"course": "virt"},
             "user_data": "#!/bin/sh\n", "l2_smoke": True, "instance_profile": "lab-role",
             "os": "debian-12", "hypervisor": "firecracker"}
    assert set(given) == set(OPTIONS)  # a new option must be added here too
    lab = Lab("virt", 3, type="c8i.large", ttl=2, **given)
    option = PlanOption(provider="aws", region="us-east-1", type="c8i.large", family="c8i",
                        nesting="nested", vcpus=2, memory_gib=4, bare_metal=False, spot=True,
                        usd_per_hour=0.1, instances=3, seats_per_instance=1,
                        usd_per_seat_hour=0.1, hourly_usd=0.3, hours=2, total_usd=0.6,
                        price_date="2026-01-01", price_source="test")
    spec = lab.launch_spec(option)
    assert {k: getattr(spec, k) for k in given} == {
        **given, "tags": {"course": "virt", "nestcloud:lab": "virt"}}
    assert (spec.name, spec.count, spec.ttl_seconds) == ("virt", 3, 7200)


def test_unknown_options_are_refused_everywhere() -> None:
    with pytest.raises(TypeError):
        nestcloud.launch("aws", "c8i.large", colour="blue")  # type: ignore[call-arg]
    with pytest.raises(SpecError, match=r"^colour: unexpected keyword argument$"):
        LaunchSpec(provider="aws", type="c8i.large", colour="blue")
    with pytest.raises(LabFileError) as ei:
        parse_lab("name: web\nseats: 1\nseat: {type: x}\nttl: 1\ncolour: blue\n", "lab.yaml")
    assert ei.value.problems == ["lab.yaml:5: colour: unknown key"]


def test_plan_requests_know_the_same_oses(tmp_path: Path) -> None:
    """`plan` takes an OS the same way (nestcloud.spec.OsAlias): an unknown one is bad input
    naming the flag or keyword, not an empty plan."""
    message = ("unknown OS (one of ubuntu-24.04, debian-12, rhel-9, al2023, windows-2022, "
               "windows-2025)")
    r = CliRunner().invoke(app, ["plan", "--vcpus", "2", "--memory", "4", "--os", "plan9"])
    assert (r.exit_code, r.stderr) == (2, f"error: --os 'plan9': {message}\n")
    with pytest.raises(InputError) as ei:
        nestcloud.plan(2, 4, os="plan9")
    assert str(ei.value) == f"os: {message} (got 'plan9')"
