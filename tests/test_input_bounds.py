"""Issue 11, bad input: names, regions, durations, tags, timeouts, provider flags and SSH
networks are refused locally with exit 2 and one clear message, before any provider is made
or called. The CLI is driven through typer's CliRunner with an in-process provider that
records every call, so "no cloud call" is asserted, not assumed."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from nestcloud.cli import app
from nestcloud.errors import InputError
from nestcloud.models import DownResult, LaunchResult, VerifyResult

PROPS = settings(max_examples=60, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow,
                                        HealthCheck.function_scoped_fixture])

# The launch name rule, written out here independently of nestcloud.spec: 1-40 characters of
# lowercase ASCII letters, digits and '-', starting with a letter, not ending with '-'.
NAME_ORACLE = re.compile(r"[a-z](?:[a-z0-9-]{0,38}[a-z0-9])?")
RULE = ("names are 1-40 characters: lowercase letters, digits and '-', starting with a letter "
        "and not ending with '-'")

CATALOG = """\
schema_version: 1
sources:
  facts: {description: "test facts"}
types:
  - {provider: aws, name: c8i.large, family: c8i, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-01-01,
     regions: [us-east-1, eu-west-1]}
  - {provider: azure, name: Standard_D2s_v5, family: Dsv5, vcpus: 2, memory_gib: 8,
     arch: x86_64, cpu_vendor: intel, nesting: nested, nesting_source: facts,
     verified: 2026-01-01, hyperv_generations: [V1, V2], security_type: Standard,
     regions: [eastus]}
"""
AWS_REGIONS = ("eu-west-1", "us-east-1")


def valid_name(s: str) -> bool:
    return NAME_ORACLE.fullmatch(s) is not None


class Calls(list):  # type: ignore[type-arg]
    """Every call made on the recording provider, in order."""


def recording_provider(calls: Calls) -> type:
    import dataclasses

    from providers.aws import AwsProvider

    from nestcloud.provider import LaunchOutcome

    class Recording:
        """Stands in for the aws provider: same declarations and constructor options,
        records every verb."""

        name = "aws"
        # It lists no leftovers (it has none): declaring so is what keeps `ls` from asking.
        capabilities = dataclasses.replace(AwsProvider.capabilities, leftovers=False)
        options = AwsProvider.options
        local_endpoint = AwsProvider.local_endpoint
        rules = AwsProvider.rules  # declared in its capabilities: the core calls it

        @classmethod
        def configured(cls, **options: Any) -> bool:
            return True

        def __init__(self, region: str | None = None, endpoint_url: str | None = None,
                     session: Any = None, *, sandbox: bool | None = None) -> None:
            calls.append(("init", region))
            self.region = region

        def launch(self, request: Any) -> LaunchOutcome:
            spec = request.spec
            calls.append(("launch", spec.name))
            return LaunchOutcome(LaunchResult(provider="aws", name=spec.name,
                                              region=spec.region or "-", type=spec.type,
                                              dry_run=request.dry_run))

        def list(self, name: str | None = None) -> list[Any]:
            calls.append(("list", name))
            return []

        def down(self, name: str) -> DownResult:
            calls.append(("down", name))
            return DownResult(provider="aws", name=name)

        def console(self, instance: Any) -> str:
            calls.append(("console", instance.id))
            return ""

        def verify_catalog(self, catalog: Any, region: str) -> VerifyResult:
            calls.append(("verify", region))
            return VerifyResult(provider="aws", region=region, checked=0)

    return Recording


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Calls]:
    """The 'aws' provider, replaced in-process by a recording one (registered providers win
    over entry points), for the length of one test."""
    import nestcloud.provider as registry

    got = Calls()
    monkeypatch.setitem(registry._extra, "aws", recording_provider(got))
    yield got


@pytest.fixture(scope="module")
def catalog_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("cat") / "catalog.yaml"
    p.write_text(CATALOG, encoding="utf-8")
    return p


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    res = CliRunner().invoke(app, list(args), env={"NESTCLOUD_DEBUG": "", **(env or {})})
    out = res.stdout + res.stderr
    assert "Traceback" not in out and "internal error" not in out, out
    assert "Credential=" not in out and "Signature=" not in out, out
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return res


def refused(res: Any, message: str, calls: Calls | None = None) -> None:
    """Exit 2, exactly ``message`` on stderr, nothing on stdout, no provider made or called."""
    assert (res.exit_code, res.stdout, res.stderr) == (2, "", message)
    if calls is not None:
        assert calls == []


# -- group names -------------------------------------------------------------------------------

names = st.one_of(
    st.text(max_size=45),
    st.from_regex(NAME_ORACLE, fullmatch=True),
    st.sampled_from(["", "*", "?", "v*", "a?c", "lab\n", "lab\r", "lab ", " lab", "Lab", "1ab",
                     "-ab", "ab-", "a" * 40, "a" * 41, "lab*", "ab_c", "ab.c", "é", "la\u0131b"]),
    st.from_regex(NAME_ORACLE, fullmatch=True).map(lambda s: s + "\n"),
)


@PROPS
@given(name=names)
def test_launch_spec_names_follow_the_rule_as_a_full_match(name: str) -> None:
    from nestcloud.errors import SpecError
    from nestcloud.spec import LaunchSpec

    try:
        spec = LaunchSpec(provider="aws", type="c8i.large", name=name)
    except SpecError as exc:
        assert not valid_name(name)
        [err] = exc.errors()
        assert err["loc"] == ("name",) and err["msg"] == f"Value error, {RULE}"
    else:
        assert valid_name(name) and spec.name == name


@PROPS
@given(name=names)
def test_check_name_accepts_exactly_the_rule(name: str) -> None:
    from nestcloud.spec import check_name

    if valid_name(name):
        assert check_name(name, "NAME") == name
    else:
        with pytest.raises(InputError) as info:
            check_name(name, "NAME")
        assert info.value.message == f"NAME {name!r}: {RULE}"


@pytest.mark.parametrize("args", [
    ("down", "--provider", "aws", "--yes", "--", "{}"),
    ("ls", "--provider", "aws", "--name={}"),
    ("wait", "--provider", "aws", "--", "{}"),
])
@PROPS
@given(name=names)
def test_every_command_taking_a_name_refuses_a_bad_one_before_any_call(
        args: tuple[str, ...], name: str, calls: Calls) -> None:
    assume("\x00" not in name)  # NUL cannot be in a real process argument
    calls.clear()
    res = run(*[a.replace("{}", name) for a in args])
    if valid_name(name):
        assert res.exit_code in (0, 2) and ("list", name) in calls
        return
    flag = "--name" if args[0] == "ls" else "NAME"
    hint = ("  hint: NAME is the exact name of one group; nestcloud never reads it as a "
            "pattern\n") if ("*" in name or "?" in name) else ""
    refused(res, f"error: {flag} {name!r}: {RULE}\n" + hint, calls)


@pytest.mark.parametrize("name", ["", "*", "v*", "?"])
def test_down_with_an_empty_or_wildcard_name_removes_nothing(name: str, calls: Calls) -> None:
    res = run("down", name, "--provider", "aws", "--yes")
    assert res.exit_code == 2 and calls == []
    assert res.stderr.startswith(f"error: NAME {name!r}: {RULE}\n")


def test_ls_name_star_lists_nothing_and_says_why_in_json(calls: Calls) -> None:
    res = run("ls", "--provider", "aws", "--name", "*", "--json")
    assert res.exit_code == 2 and calls == []
    assert json.loads(res.stdout) == {
        "error": "InputError", "message": f"--name '*': {RULE}",
        "hint": "NAME is the exact name of one group; nestcloud never reads it as a pattern",
        "exit_code": 2}


def test_a_lab_name_with_a_trailing_newline_is_refused() -> None:
    from nestcloud.errors import LabFileError
    from nestcloud.lab import parse_lab

    text = ('name: "kvm-class\\n"\nseats: 1\nseat: {vcpus: 2, memory_gib: 8}\n'
            'ttl: 4h\n')
    with pytest.raises(LabFileError) as info:
        parse_lab(text, "lab.yaml")
    [problem] = info.value.problems
    assert problem.startswith("lab.yaml:1: name: lab names are 1-40 characters"), problem


# -- regions -----------------------------------------------------------------------------------

regions = st.one_of(
    st.sampled_from([*AWS_REGIONS, "mars-1", "us-east-1\n", "us-east-1 ", "US-EAST-1", "",
                     "us-east-2", "eastus", "*", "us-east-1/../x", "us-east-1\r\nX-Amz: 1"]),
    st.text(max_size=20),
)


@pytest.mark.parametrize("args", [
    ("ls", "--provider", "aws"),
    ("down", "lab", "--provider", "aws", "--yes"),
    ("wait", "lab", "--provider", "aws"),
    ("catalog", "verify", "--provider", "aws"),
])
@PROPS
@given(region=regions)
def test_every_command_taking_a_region_checks_it_against_the_catalog_first(
        args: tuple[str, ...], region: str, calls: Calls, catalog_file: Path) -> None:
    assume("\x00" not in region)
    calls.clear()
    res = run(*args, f"--region={region}", "--catalog", str(catalog_file))
    if region in AWS_REGIONS:
        assert ("init", region) in calls
        return
    assert calls == [] and res.exit_code == 2 and res.stdout == ""
    assert res.stderr.startswith(f"error: --region {region!r}: unknown region for aws (no "
                                 "catalog type is offered there)\n"), res.stderr
    assert res.stderr.count("\n") == 2  # the message and one hint line, nothing else


def test_unknown_region_names_the_closest_known_ones(calls: Calls, catalog_file: Path) -> None:
    res = run("ls", "--provider", "aws", "--region", "us-east-2", "--catalog", str(catalog_file))
    refused(res, "error: --region 'us-east-2': unknown region for aws (no catalog type is "
                 "offered there)\n  hint: did you mean us-east-1?\n", calls)
    far = run("down", "lab", "--provider", "aws", "--region", "mars-1", "--yes",
              "--catalog", str(catalog_file))
    refused(far, "error: --region 'mars-1': unknown region for aws (no catalog type is "
                 "offered there)\n  hint: known regions: eu-west-1, us-east-1\n", calls)


def test_a_region_of_another_provider_is_unknown_for_this_one(calls: Calls,
                                                               catalog_file: Path) -> None:
    res = run("ls", "--provider", "aws", "--region", "eastus", "--catalog", str(catalog_file))
    assert res.exit_code == 2 and calls == []


def test_the_built_in_catalog_is_used_when_no_catalog_is_given(calls: Calls) -> None:
    res = run("ls", "--provider", "aws", "--region", "mars-1")
    assert res.exit_code == 2 and calls == []
    assert res.stderr.startswith("error: --region 'mars-1': unknown region for aws")
    ok = run("ls", "--provider", "aws", "--region", "ap-south-2")
    assert ok.exit_code == 0 and calls == [("init", "ap-south-2"), ("list", None)]


@PROPS
@given(region=regions)
def test_launch_spec_refuses_a_malformed_region(region: str) -> None:
    from nestcloud.errors import SpecError
    from nestcloud.spec import LaunchSpec

    well_formed = re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?", region)
    try:
        spec = LaunchSpec(provider="aws", type="c8i.large", region=region)
    except SpecError as exc:
        assert not well_formed
        assert [e["loc"] for e in exc.errors()] == [("region",)]
    else:
        assert well_formed and spec.region == region


def test_launch_with_a_newline_in_the_region_is_bad_input(calls: Calls,
                                                          catalog_file: Path) -> None:
    res = run("launch", "-p", "aws", "-t", "c8i.large", "--region", "us-east-1\n",
              "--catalog", str(catalog_file), "--dry-run")
    assert res.exit_code == 2 and calls == []
    assert res.stderr.startswith("error: --region 'us-east-1\\n': ")


# -- durations ---------------------------------------------------------------------------------

UNITS = {"": 3600, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_S = 366 * 86400


@PROPS
@given(parts=st.lists(st.tuples(st.integers(min_value=0, max_value=10**30),
                                st.sampled_from(sorted(UNITS))), min_size=1, max_size=3))
def test_durations_are_positive_and_at_most_366_days(parts: list[tuple[int, str]]) -> None:
    from nestcloud.spec import parse_duration

    assume(all(u for _, u in parts[:-1]))  # "12" followed by "3h" would read as "123h"
    text = "".join(f"{n}{u}" for n, u in parts)
    total = sum(n * UNITS[u] for n, u in parts)
    if 0 < total <= MAX_S:
        assert parse_duration(text) == total
    else:
        with pytest.raises(ValueError):
            parse_duration(text)


@PROPS
@given(text=st.text(max_size=30) | st.sampled_from(["9" * 5000, "1e9h", "inf", "nan", "-4h"]))
def test_any_duration_text_gives_seconds_or_a_value_error(text: str) -> None:
    from nestcloud.spec import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        assert str(exc)
    else:
        assert 0 < seconds <= MAX_S


@pytest.mark.parametrize("ttl,message", [
    ("1000000w", "error: --ttl: too long: '1000000w' (at most 366 days)\n"),
    ("367d", "error: --ttl: too long: '367d' (at most 366 days)\n"),
    ("9" * 5000 + "h", f"error: --ttl: too long: '{'9' * 5000}h' (at most 366 days)\n"),
])
def test_launch_ttl_overflow_is_bad_input(ttl: str, message: str, calls: Calls,
                                          catalog_file: Path) -> None:
    res = run("launch", "-p", "aws", "-t", "c8i.large", "--region", "us-east-1", "--ttl", ttl,
              "--catalog", str(catalog_file), "--dry-run")
    refused(res, message, calls)


def test_a_366_day_ttl_still_launches(calls: Calls, catalog_file: Path) -> None:
    res = run("launch", "-p", "aws", "-t", "c8i.large", "--region", "us-east-1", "--ttl",
              "366d", "--catalog", str(catalog_file), "--dry-run", "--os", "al2023",
              "--hypervisor", "firecracker")
    assert res.exit_code == 0, res.stderr
    assert calls == [("init", "us-east-1"), ("launch", "c8i-large-firecracker")]


@pytest.mark.parametrize("ttl", [float("inf"), float("nan"), 1e12, -1.0, 0.0])
def test_python_launch_refuses_a_ttl_out_of_bounds(ttl: float, calls: Calls) -> None:
    import nestcloud

    with pytest.raises(InputError) as info:
        nestcloud.launch("aws", "c8i.large", region="us-east-1", ttl=ttl, dry_run=True)
    assert info.value.message.startswith("ttl")
    assert calls == []


def test_launch_spec_ttl_seconds_has_an_upper_bound() -> None:
    from nestcloud.errors import SpecError
    from nestcloud.spec import LaunchSpec

    assert LaunchSpec(provider="aws", type="t", ttl_seconds=MAX_S).ttl_seconds == MAX_S
    with pytest.raises(SpecError) as info:
        LaunchSpec(provider="aws", type="t", ttl_seconds=MAX_S + 1)
    assert [(e["loc"], e["msg"]) for e in info.value.errors()] == [
        (("ttl_seconds",), f"Input should be less than or equal to {MAX_S}")]


# -- plan numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize("flag,value,message", [
    ("--hours", "inf", "--hours inf: Input should be a finite number"),
    ("--hours", "nan", "--hours nan: Input should be a finite number"),
    ("--hours", "-1", "--hours -1.0: Input should be greater than 0"),
    ("--hours", "1e308", "--hours 1e+308: Input should be less than or equal to 8784"),
    ("--budget", "inf", "--budget inf: Input should be a finite number"),
    ("--max-hourly", "nan", "--max-hourly nan: Input should be a finite number"),
    ("--memory", "inf", "--memory inf: Input should be a finite number"),
    ("--seats", "1" + "0" * 400, "--seats 1" + "0" * 400 + ": Input should be less than or "
                                  "equal to 100000"),
])
def test_plan_numbers_must_be_finite_and_bounded(flag: str, value: str, message: str,
                                                 catalog_file: Path) -> None:
    args = ["plan", "--vcpus", "2", "--catalog", str(catalog_file), flag, value]
    if flag != "--memory":
        args += ["--memory", "4"]
    refused(run(*args), f"error: {message}\n")
    as_json = run(*args, "--json")
    assert as_json.exit_code == 2
    assert json.loads(as_json.stdout)["message"] == message  # JSON: never Infinity/NaN


@pytest.mark.parametrize("hours", [float("inf"), float("nan"), 1e308])
def test_python_plan_refuses_hours_out_of_bounds(hours: float) -> None:
    import nestcloud

    with pytest.raises(InputError):
        nestcloud.plan(vcpus=2, memory_gib=4, hours=hours)


# -- timeouts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["-5", "0", "nan", "inf"])
def test_launch_timeout_must_be_positive_and_finite(value: str, calls: Calls,
                                                    catalog_file: Path) -> None:
    res = run("launch", "-p", "aws", "-t", "c8i.large", "--region", "us-east-1", "--wait",
              "--timeout", value, "--catalog", str(catalog_file))
    refused(res, f"error: --timeout {float(value)!r}: must be a positive, finite number of "
                 "seconds\n", calls)


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_lab_up_timeout_must_be_positive_and_finite(value: str, tmp_path: Path) -> None:
    res = run("lab", "up", str(tmp_path / "missing.yaml"), "--timeout", value)
    refused(res, f"error: --timeout {float(value)!r}: must be a positive, finite number of "
                 "seconds\n")


@pytest.mark.parametrize("args,message", [
    (("--timeout", "nan"), "--timeout 'nan': must be a positive, finite number of seconds"),
    (("--timeout", "inf"), "--timeout 'inf': must be a positive, finite number of seconds"),
    (("--timeout", "-3"), "--timeout '-3': must be a positive, finite number of seconds"),
    (("--interval", "nan"), "--interval nan: must be a positive, finite number of seconds"),
    (("--interval", "-1"), "--interval -1.0: must be a positive, finite number of seconds"),
])
def test_wait_timeout_and_interval_must_be_positive_and_finite(
        args: tuple[str, str], message: str, calls: Calls) -> None:
    refused(run("wait", "lab", "-p", "aws", *args), f"error: {message}\n", calls)


# -- values the clouds reject ------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--key-name", "--image"])
def test_empty_key_name_or_image_is_bad_input(flag: str, calls: Calls,
                                              catalog_file: Path) -> None:
    res = run("launch", "-p", "aws", "-t", "c8i.large", "--region", "us-east-1", flag, "",
              "--catalog", str(catalog_file), "--dry-run")
    refused(res, f"error: {flag} '': String should have at least 1 character\n", calls)


@pytest.mark.parametrize("pair", [" =v", "  =v"])
def test_an_empty_tag_key_is_bad_input(pair: str, calls: Calls, catalog_file: Path) -> None:
    res = run("launch", "-p", "aws", "-t", "c8i.large", "--region", "us-east-1", "--tag", pair,
              "--catalog", str(catalog_file), "--dry-run")
    refused(res, f"error: --tag {pair!r}: the key is empty\n", calls)


def test_launch_spec_refuses_an_empty_tag_key() -> None:
    from nestcloud.errors import SpecError
    from nestcloud.spec import LaunchSpec

    with pytest.raises(SpecError) as info:
        LaunchSpec(provider="aws", type="t", tags={"": "v"})
    assert [(e["loc"], e["msg"]) for e in info.value.errors()] == [
        (("tags",), "Value error, tag keys may not be empty")]


# The AWS and Azure providers' own declared limits, through the real provider classes. The
# endpoints point at a closed loopback port: any call would fail with exit 1, not 2.
DEAD = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "NESTCLOUD_AZURE_ARM_ENDPOINT":
        "http://127.0.0.1:9"}
AWS_LAUNCH = ("launch", "-p", "aws", "-t", "c8i.large", "--region", "us-east-1", "--os",
              "al2023", "--hypervisor", "firecracker")
AZ_LAUNCH = ("launch", "-p", "azure", "-t", "Standard_D2s_v5", "--region", "eastus")


def _tags(n: int) -> list[str]:
    return [a for i in range(n) for a in ("--tag", f"k{i}=v")]


@pytest.mark.parametrize("launch,tags,message", [
    (AWS_LAUNCH, ["--tag", "k=" + "v" * 257],
     "tag 'k': the value is 257 characters; AWS allows at most 256"),
    (AWS_LAUNCH, ["--tag", "k" * 128 + "=v"],
     f"tag '{'k' * 40}...': the key is 128 characters; AWS allows at most 127"),
    (AWS_LAUNCH, ["--tag", "team=aws:infra"],
     "tag 'team': the value starts with 'aws:', which AWS reserves"),
    (AWS_LAUNCH, _tags(44),
     "44 tags of your own: AWS allows 50 per resource and nestcloud adds up to 7 (Name, "
     "nestcloud:name, nestcloud:owner, nestcloud:expires, nestcloud:seat, nestcloud:lab, "
     "nestcloud:l1), so at most 43"),
    (AZ_LAUNCH, ["--tag", "k=" + "v" * 257],
     "tag 'k': the value is 257 characters; Azure allows at most 256"),
    (AZ_LAUNCH, ["--tag", "k" * 513 + "=v"],
     f"tag '{'k' * 40}...': the key is 513 characters; Azure allows at most 512"),
    (AZ_LAUNCH, ["--tag", "a/b=v"],
     "tag 'a/b': Azure tag names may not contain any of < > % & \\ ? /"),
    (AZ_LAUNCH, _tags(46),
     "46 tags of your own: Azure allows 50 per resource and nestcloud adds up to 5 "
     "(nestcloud:name, nestcloud:owner, nestcloud:expires, nestcloud:seat, nestcloud:lab), so "
     "at most 45"),
])
def test_tags_the_cloud_would_reject_are_refused_before_any_call(
        launch: tuple[str, ...], tags: list[str], message: str, catalog_file: Path) -> None:
    res = run(*launch, *tags, "--catalog", str(catalog_file), "--dry-run", env=DEAD)
    refused(res, f"error: {message}\n")


def test_tag_limits_are_inclusive() -> None:
    from nestcloud.spec import check_tags
    from providers.aws import AwsProvider
    from providers.azure import AzureProvider

    aws, azure = AwsProvider.capabilities.tags, AzureProvider.capabilities.tags
    check_tags({f"k{i}": "v" for i in range(43)}, aws)
    check_tags({"k" * 127: "v" * 256}, aws)
    check_tags({"Name": "mine", **{f"k{i}": "v" for i in range(43)}}, aws)  # replaces ours
    # A lab's seats carry nestcloud:lab among the tags the launch checks: not one of "yours".
    check_tags({"nestcloud:lab": "x", **{f"k{i}": "v" for i in range(43)}}, aws)
    check_tags({f"k{i}": "v" for i in range(45)}, azure)
    check_tags({"k" * 512: "v" * 256, "a:b.c-d_e": ""}, azure)
    with pytest.raises(InputError):
        check_tags({f"k{i}": "v" for i in range(46)}, azure)
    with pytest.raises(InputError):
        check_tags({f"k{i}": "v" for i in range(44)}, aws)


tag_text = st.one_of(st.text(max_size=8), st.sampled_from(["aws:x", "AWS:y", "Name", "a/b",
                                                            "100%", "x" * 127, "x" * 128,
                                                            "y" * 256, "y" * 257, "z" * 513]))
tag_dicts = st.dictionaries(tag_text, tag_text, max_size=6) | st.integers(40, 52).map(
    lambda n: {f"k{i}": "v" for i in range(n)})


def _aws_rejects(tags: dict[str, str]) -> bool:
    """AWS's documented tag rules, restated: EC2 API model (key <= 127, value <= 256, no aws:
    key) and the tagging guide (50 per resource, no aws: value); nestcloud's 7 count."""
    ours = {"Name", "nestcloud:name", "nestcloud:owner", "nestcloud:expires", "nestcloud:seat",
            "nestcloud:lab", "nestcloud:l1"}
    return (len(set(tags) | ours) > 50 or any(
        len(k) > 127 or len(v) > 256 or k.lower().startswith("aws:")
        or v.lower().startswith("aws:") for k, v in tags.items()))


def _azure_rejects(tags: dict[str, str]) -> bool:
    ours = {"nestcloud:name", "nestcloud:owner", "nestcloud:expires", "nestcloud:seat",
            "nestcloud:lab"}
    return (len(set(tags) | ours) > 50 or any(
        len(k) > 512 or len(v) > 256 or any(c in k for c in "<>%&\\?/")
        for k, v in tags.items()))


@PROPS
@given(tags=tag_dicts)
def test_tag_checks_refuse_exactly_what_each_cloud_documents(tags: dict[str, str]) -> None:
    from nestcloud.spec import check_tags
    from providers.aws import AwsProvider
    from providers.azure import AzureProvider

    for limits, rejects in ((AwsProvider.capabilities.tags, _aws_rejects),
                            (AzureProvider.capabilities.tags, _azure_rejects)):
        try:
            check_tags(tags, limits)
        except InputError as exc:
            assert rejects(tags), (limits.cloud, exc.message)
            assert exc.exit_code == 2 and exc.message
            assert not any(len(v) > 8 and v in exc.message for v in tags.values())  # no values
        else:
            assert not rejects(tags), limits.cloud


@PROPS
@given(tags=st.dictionaries(st.text(max_size=6) | st.integers() | st.none(),
                            st.text(max_size=6) | st.integers() | st.none(), max_size=4))
def test_launch_spec_tags_are_strings_with_keys_or_a_spec_error(tags: dict[Any, Any]) -> None:
    from nestcloud.errors import SpecError
    from nestcloud.spec import LaunchSpec

    try:
        spec = LaunchSpec(provider="aws", type="t", tags=tags)
    except SpecError as exc:
        assert all(e["loc"][0] == "tags" for e in exc.errors())
    else:
        assert all(isinstance(k, str) and k and isinstance(v, str)
                   for k, v in spec.tags.items())


@pytest.mark.parametrize("flag,value", [("--resource-group", "rg"),
                                        ("--subscription", "00000000-0000-0000-0000-00000000000a"),
                                        ("--arm-endpoint", "https://management.example")])
def test_azure_flags_with_aws_are_bad_input(flag: str, value: str, catalog_file: Path) -> None:
    res = run(*AWS_LAUNCH, flag, value, "--catalog", str(catalog_file), "--dry-run", env=DEAD)
    refused(res, f"error: {flag} does not apply to --provider aws\n")


@pytest.mark.parametrize("args", [("ls", "-p", "aws"), ("down", "lab", "-p", "aws", "--yes"),
                                  ("wait", "lab", "-p", "aws"),
                                  ("catalog", "verify", "-p", "aws", "-r", "us-east-1")])
def test_azure_flags_with_aws_are_bad_input_for_every_command(args: tuple[str, ...],
                                                              calls: Calls) -> None:
    refused(run(*args, "--resource-group", "rg"),
            "error: --resource-group does not apply to --provider aws\n", calls)


def test_azure_settings_from_the_environment_do_not_count_as_flags(calls: Calls) -> None:
    res = run("ls", "-p", "aws", env={"AZURE_SUBSCRIPTION_ID": "x",
                                      "NESTCLOUD_AZURE_ARM_ENDPOINT": "https://m.example"})
    assert res.exit_code == 0 and calls == [("init", None), ("list", None)]


def test_instance_profile_with_azure_is_bad_input(catalog_file: Path) -> None:
    res = run(*AZ_LAUNCH, "--instance-profile", "p", "--catalog", str(catalog_file),
              "--dry-run", env=DEAD)
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.startswith("error: --instance-profile p: provider 'azure' does not "
                                 "offer this setting\n")


# -- provider errors never show authorization headers ------------------------------------------


def test_internal_errors_never_print_authorization_headers(calls: Calls,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    import nestcloud.provider as registry

    class Leaky(recording_provider(calls)):  # type: ignore[misc]
        def list(self, name: str | None = None) -> list[Any]:
            raise RuntimeError("bad header b'AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/2026/"
                               "us-east-1/ec2/aws4_request, SignedHeaders=host, "
                               "Signature=0123abcd' and Authorization: Bearer eyJ0eXAi.x.y")

    monkeypatch.setitem(registry._extra, "aws", Leaky)
    res = CliRunner().invoke(app, ["ls", "-p", "aws"], env={"NESTCLOUD_DEBUG": ""})
    assert res.exit_code == 1
    for secret in ("AKIAEXAMPLE", "0123abcd", "eyJ0eXAi"):
        assert secret not in res.stdout + res.stderr
    assert res.stderr.startswith("error: internal error: RuntimeError: bad header")


# -- world-open SSH ----------------------------------------------------------------------------

WIDE = ["0.0.0.0/0", "::/0", "0.0.0.0/1", "128.0.0.0/1", "2000::/3", "0.0.0.0/7", "4.0.0.0/6",
        "2001::/16", "2600::/31", "10.0.0.0/7", "fc00::/6"]
NARROW = ["203.0.113.7/32", "1.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
          "2001:db8::/32", "2600::/32", "fd00::/8", "fc00::/7", "fe80::/10", "100.64.0.0/10"]


@pytest.mark.parametrize("cidr", WIDE)
def test_a_very_wide_public_network_counts_as_world_open(cidr: str) -> None:
    from nestcloud.launcher import check_ssh_cidr
    from providers.azure.plan import ssh_rules

    with pytest.raises(InputError) as info:
        check_ssh_cidr(cidr, False)
    assert info.value.message.startswith(f"--ssh-cidr {cidr!r} opens SSH to ")
    assert "--allow-world-ssh" in (info.value.hint or "")
    with pytest.raises(InputError):
        ssh_rules(cidr, False)
    assert check_ssh_cidr(cidr, True) == str(ipaddress.ip_network(cidr))
    [rule] = ssh_rules(cidr, True)
    net = ipaddress.ip_network(cidr)
    assert rule["properties"]["sourceAddressPrefix"] == ("*" if net.prefixlen == 0 else cidr)


@pytest.mark.parametrize("cidr", NARROW)
def test_narrower_or_private_networks_are_not_world_open(cidr: str) -> None:
    from nestcloud.launcher import check_ssh_cidr
    from providers.azure.plan import ssh_rules

    assert check_ssh_cidr(cidr, False) == cidr
    [rule] = ssh_rules(cidr, False)
    assert rule["properties"]["sourceAddressPrefix"] == cidr


PRIVATE = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                             "fc00::/7", "fe80::/10")]


@PROPS
@given(data=st.data())
def test_launcher_and_azure_share_one_world_open_rule(data: st.DataObject) -> None:
    from nestcloud.launcher import check_ssh_cidr
    from providers.azure.plan import ssh_rules

    v6 = data.draw(st.booleans())
    bits = 128 if v6 else 32
    addr = data.draw(st.integers(min_value=0, max_value=2**bits - 1))
    prefix = data.draw(st.integers(min_value=0, max_value=bits))
    kind = ipaddress.IPv6Network if v6 else ipaddress.IPv4Network
    net = kind((addr, prefix), strict=False)
    inside_private = any(net.version == p.version and net.subnet_of(p)  # type: ignore[arg-type]
                         for p in PRIVATE)
    expect_world = prefix == 0 or (prefix < (32 if v6 else 8) and not inside_private)
    outcomes = []
    for check in (lambda: check_ssh_cidr(str(net), False), lambda: ssh_rules(str(net), False)):
        try:
            check()
            outcomes.append(False)
        except InputError:
            outcomes.append(True)
    assert outcomes == [expect_world, expect_world], (str(net), outcomes)


def test_reap_checks_sandbox_regions_before_opening_anything(monkeypatch: pytest.MonkeyPatch,
                                                            catalog_file: Path) -> None:
    opened: list[tuple[str, str]] = []

    def never(provider: str, region: str, **kw: Any) -> Any:
        opened.append((provider, region))
        raise AssertionError("no provider may be opened")

    monkeypatch.setattr("nestcloud.lab.open_provider", never)
    res = run("reap", "--sandbox", "--regions", "mars-1", "--catalog", str(catalog_file))
    refused(res, "error: --regions mars-1: no catalog region of aws (known: eu-west-1, "
                 "us-east-1)\n")
    assert opened == []
