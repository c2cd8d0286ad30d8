"""`nestcloud catalog ...`, `check` and `providers` through typer's CliRunner: exit codes,
exact output, and --json meaning one JSON document on stdout (errors included)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from nestcloud.cli import app

SMALL = """\
schema_version: 1
sources:
  facts: {description: "test facts"}
  prices: {description: "test prices", date: 2026-02-01}
types:
  - {provider: aws, name: c8i.large, family: c8i, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-01-01,
     regions: [us-east-1, eu-west-1],
     prices: {us-east-1: {on_demand: 0.1, spot: 0.04, source: prices}}}
  - {provider: aws, name: c6i.large, family: c6i, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: none, nesting_source: facts, verified: 2026-01-01,
     regions: [us-east-1], prices: {us-east-1: {on_demand: 0.085, source: prices}}}
  - {provider: azure, name: Standard_D2s_v5, family: Dsv5, vcpus: 2, memory_gib: 8,
     arch: x86_64, cpu_vendor: intel, nesting: nested, nesting_source: facts,
     verified: 2026-01-01, hyperv_generations: [V1, V2], security_type: Standard,
     regions: [eastus]}
  - {provider: azure, name: same.name, family: X, vcpus: 1, memory_gib: 1, arch: x86_64,
     cpu_vendor: intel, nesting: none, nesting_source: facts, verified: 2026-01-01}
  - {provider: aws, name: same.name, family: X, vcpus: 1, memory_gib: 1, arch: x86_64,
     cpu_vendor: intel, nesting: none, nesting_source: facts, verified: 2026-01-01}
"""

# Three problems at once: a negative price, an unknown key, and a duplicate type.
BAD = """\
schema_version: 1
sources:
  facts: {description: "f"}
types:
  - {provider: aws, name: a.large, family: a, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-01-01,
     regions: [r1], prices: {r1: {on_demand: -1, source: facts}}}
  - {provider: aws, name: b.large, family: b, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-01-01,
     colour: blue}
"""

DUPLICATE = """\
schema_version: 1
sources:
  facts: {description: "f"}
types:
  - {provider: aws, name: a.large, family: a, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-01-01}
  - {provider: aws, name: a.large, family: a, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-01-01}
"""

runner = CliRunner()


@pytest.fixture()
def small(tmp_path: Path) -> str:
    p = tmp_path / "small.yaml"
    p.write_text(SMALL)
    return str(p)


def run(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    # Whatever happened, the user never sees a traceback.
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def one_json(result: Any) -> Any:
    """stdout holds exactly one JSON document and nothing else."""
    return json.loads(result.stdout)


# -- help ----------------------------------------------------------------------------------


def test_help_lists_the_commands() -> None:
    r = run("--help")
    assert r.exit_code == 0
    for cmd in ("catalog", "check", "providers"):
        assert f"  {cmd} " in r.stdout


# -- catalog list --------------------------------------------------------------------------


def test_catalog_list_json(small: str) -> None:
    r = run("catalog", "list", "--catalog", small, "--json")
    assert r.exit_code == 0
    assert r.stderr == ""
    doc = one_json(r)
    assert [(t["provider"], t["name"]) for t in doc["types"]] == [
        ("aws", "c8i.large"), ("aws", "c6i.large"), ("azure", "Standard_D2s_v5"),
        ("azure", "same.name"), ("aws", "same.name")]
    assert doc["types"][0] == {"provider": "aws", "name": "c8i.large", "family": "c8i",
                               "vcpus": 2, "memory_gib": 4.0, "arch": "x86_64",
                               "nesting": "nested", "usd_per_hour": None, "price_date": None}


def test_catalog_list_filters_with_region_prices(small: str) -> None:
    r = run("catalog", "list", "--catalog", small, "--provider", "aws", "--region",
            "us-east-1", "--nested-only", "--json")
    assert r.exit_code == 0
    assert one_json(r) == {"types": [
        {"provider": "aws", "name": "c8i.large", "family": "c8i", "vcpus": 2,
         "memory_gib": 4.0, "arch": "x86_64", "nesting": "nested", "usd_per_hour": 0.1,
         "price_date": "2026-02-01"}]}


def test_catalog_list_table(small: str) -> None:
    r = run("catalog", "list", "--catalog", small, "--provider", "aws", "--region", "us-east-1")
    assert r.exit_code == 0
    assert r.stdout.splitlines() == [
        "provider  type       vcpus  GiB  arch    nesting  USD/h us-east-1",
        "--------  ---------  -----  ---  ------  -------  ---------------",
        "aws       c8i.large  2      4    x86_64  nested   0.1000",
        "aws       c6i.large  2      4    x86_64  none     0.0850",
    ]
    assert "2 type(s)" in r.stderr


def test_catalog_list_unknown_provider_is_bad_input(small: str) -> None:
    r = run("catalog", "list", "--catalog", small, "--provider", "gcp", "--json")
    assert r.exit_code == 2
    msg = "--provider 'gcp': the catalog has no such provider (known: aws, azure)"
    assert one_json(r) == {"error": "InputError", "message": msg, "hint": None, "exit_code": 2}
    assert r.stderr == f"error: {msg}\n"


def test_catalog_list_unknown_region_suggests_close_names(small: str) -> None:
    r = run("catalog", "list", "--catalog", small, "--region", "us-east-2")
    assert r.exit_code == 2
    assert r.stdout == ""
    assert r.stderr == ("error: --region 'us-east-2': unknown region; no catalog type is offered "
                        "there\n  hint: did you mean us-east-1?\n")


def test_catalog_list_region_of_the_other_provider(small: str) -> None:
    r = run("catalog", "list", "--catalog", small, "--provider", "aws", "--region", "eastus",
            "--json")
    assert r.exit_code == 2
    assert one_json(r)["message"] == ("--region 'eastus': unknown region for provider 'aws'; "
                                      "no catalog type is offered there")


@pytest.mark.parametrize(("content", "problem"), [
    ("types: [unclosed\n", "malformed YAML"),
    ("- just\n- a list\n", "the top level must be a mapping"),
    (BAD, "unknown key"),
    (DUPLICATE, "duplicate type aws/a.large"),
])
@pytest.mark.parametrize("command", [["catalog", "list"], ["check", "--provider", "aws",
                                                           "--type", "a.large"]])
def test_a_broken_catalog_file_is_bad_input_everywhere(tmp_path: Path, content: str,
                                                       problem: str, command: list[str]) -> None:
    p = tmp_path / "broken.yaml"
    p.write_text(content)
    r = run(*command, "--catalog", str(p), "--json")
    assert r.exit_code == 2
    doc = one_json(r)
    assert doc["error"] == "CatalogError"
    assert doc["message"].startswith(f"{p}: invalid catalog (")
    assert problem in doc["message"]
    assert r.stderr.startswith(f"error: {p}: invalid catalog (")


def test_a_missing_catalog_file(tmp_path: Path) -> None:
    r = run("catalog", "list", "--catalog", str(tmp_path / "nope.yaml"))
    assert r.exit_code == 2
    assert r.stderr == (f"error: {tmp_path / 'nope.yaml'}: invalid catalog (1 problem(s)):\n"
                        f"  - {tmp_path / 'nope.yaml'}: file not found\n")


def test_a_directory_as_catalog(tmp_path: Path) -> None:
    r = run("catalog", "list", "--catalog", str(tmp_path))
    assert r.exit_code == 2
    assert f"  - {tmp_path}: not a regular file (a directory)\n" in r.stderr


# -- catalog show ----------------------------------------------------------------------------


def test_catalog_show_json(small: str) -> None:
    r = run("catalog", "show", "c8i.large", "--catalog", small, "--json")
    assert r.exit_code == 0
    doc = one_json(r)
    assert doc["name"] == "c8i.large"
    assert doc["nesting"] == "nested"
    assert doc["regions"] == ["us-east-1", "eu-west-1"]
    assert doc["prices"] == {"us-east-1": {"on_demand": 0.1, "spot": 0.04, "source": "prices"}}
    assert doc["price_dates"] == {"us-east-1": "2026-02-01"}
    assert doc["nesting_source_description"] == "test facts"


def test_catalog_show_text(small: str) -> None:
    r = run("catalog", "show", "standard_d2s_v5", "--catalog", small)
    assert r.exit_code == 0
    assert r.stdout.splitlines() == [
        "azure/Standard_D2s_v5  (Dsv5 family)",
        "  vCPUs 2, memory 8 GiB, x86_64, intel",
        "  nesting: nested  (source: test facts; verified 2026-01-01)",
        "  Hyper-V generations: V1, V2",
        "  security type: Standard (Trusted Launch must be off)",
        "  regions: eastus",
    ]


def test_catalog_show_unknown_type_suggests(small: str) -> None:
    r = run("catalog", "show", "c8i.larg", "--catalog", small, "--json")
    assert r.exit_code == 2
    assert one_json(r) == {"error": "InputError", "message": "unknown instance type 'c8i.larg'",
                           "hint": "did you mean c8i.large, c6i.large?", "exit_code": 2}


def test_catalog_show_ambiguous_name_asks_for_provider(small: str) -> None:
    r = run("catalog", "show", "same.name", "--catalog", small)
    assert r.exit_code == 2
    assert r.stderr == ("error: 'same.name' exists for several providers; add --provider\n"
                        "  hint: one of aws, azure\n")
    r = run("catalog", "show", "same.name", "--provider", "aws", "--catalog", small, "--json")
    assert r.exit_code == 0
    assert one_json(r)["provider"] == "aws"


# -- catalog validate ---------------------------------------------------------------------------


def test_validate_a_good_file(small: str) -> None:
    r = run("catalog", "validate", small)
    assert r.exit_code == 0
    assert r.stdout == f"{small}: valid (5 types)\n"
    r = run("catalog", "validate", small, "--json")
    assert one_json(r) == {"ok": True, "file": small, "types": 5}


def test_validate_lists_every_problem(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(BAD)
    r = run("catalog", "validate", str(p), "--json")
    assert r.exit_code == 2
    doc = one_json(r)
    assert doc["ok"] is False
    assert doc["file"] == str(p)
    assert len(doc["problems"]) == 2
    negative, unknown = doc["problems"]
    assert negative.startswith(f"{p}:7: types[0].prices.r1.on_demand: ")
    assert negative.endswith("(got -1)")
    assert unknown == f"{p}:10: types[1].colour: unknown key"
    assert r.stderr.startswith(f"error: {p}: invalid catalog (2 problem(s)):")
    # Without --json: the same problems, on stderr, exit 2, stdout empty.
    r = run("catalog", "validate", str(p))
    assert r.exit_code == 2
    assert r.stdout == ""
    for problem in doc["problems"]:
        assert f"  - {problem}" in r.stderr


def test_validate_the_shipped_catalog() -> None:
    r = run("catalog", "validate", "--json")
    assert r.exit_code == 0
    doc = one_json(r)
    assert doc["ok"] is True
    assert doc["types"] > 100


# -- check ----------------------------------------------------------------------------------------


def test_check_launchable(small: str) -> None:
    r = run("check", "--provider", "aws", "--type", "c8i.large", "--region", "us-east-1",
            "--catalog", small, "--json")
    assert r.exit_code == 0
    assert r.stderr == ""
    assert one_json(r) == {"ok": True, "provider": "aws", "type": "c8i.large",
                           "region": "us-east-1", "findings": []}


def test_check_refused_exit_3_with_findings(small: str) -> None:
    r = run("check", "--provider", "aws", "--type", "c6i.large", "--region", "us-east-1",
            "--spot", "--catalog", small, "--json")
    assert r.exit_code == 3
    doc = one_json(r)
    assert doc["ok"] is False
    assert [(f["rule"], f["severity"]) for f in doc["findings"]] == [
        ("no-nesting", "error"), ("spot", "warning")]
    assert set(doc["findings"][0]) == {"rule", "severity", "message", "suggestion"}
    assert doc["findings"][0]["suggestion"] == (
        "use c8i.large (2 vCPU, 4 GiB, nesting nested): the cheapest aws type able to run a "
        "hypervisor with at least 2 vCPU and 4 GiB, $0.0400/h spot in us-east-1 "
        "(price date: 2026-02-01)")


def test_check_text_output(small: str) -> None:
    r = run("check", "--provider", "aws", "--type", "c8i.large", "--region", "us-east-1",
            "--depth", "3", "--catalog", small)
    assert r.exit_code == 3
    lines = r.stdout.splitlines()
    assert lines[0] == "aws/c8i.large in us-east-1: refused"
    assert lines[1].startswith("  [error] depth: depth 3: guests at L3 or deeper")
    assert lines[2].startswith("      -> run every guest as an L2")


def test_check_unknown_type_and_region_are_refusals(small: str) -> None:
    r = run("check", "--provider", "aws", "--type", "c8i.larg", "--region", "us-east-2",
            "--catalog", small, "--json")
    assert r.exit_code == 3
    assert [(f["rule"], f["suggestion"]) for f in one_json(r)["findings"]] == [
        ("unknown-type", "did you mean c8i.large, c6i.large?"),
        ("unknown-region", "did you mean us-east-1?")]


def test_check_unknown_provider_is_bad_input(small: str) -> None:
    r = run("check", "--provider", "oci", "--type", "n2", "--catalog", small, "--json")
    assert r.exit_code == 2
    assert one_json(r) == {"error": "InputError",
                           "message": "--provider 'oci': unknown provider (known: aws, azure, "
                                      "gcp, local)",
                           "hint": None, "exit_code": 2}


@pytest.mark.parametrize(("flags", "message"), [
    (["--os", "plan9"], "--os 'plan9': unknown OS (one of ubuntu-24.04, debian-12, rhel-9, "
                        "al2023, windows-2022, windows-2025)"),
    # The schema's own message, as `plan --hypervisor` and lab files say it.
    (["--hypervisor", "xen"], "--hypervisor 'xen': Input should be 'kvm', 'firecracker', "
                              "'hyperv', 'wsl2' or 'none'"),
    (["--security-type", "Secure"], "--security-type 'Secure': Input should be 'Standard', "
                                    "'TrustedLaunch' or 'ConfidentialVM'"),
    (["--image-generation", "V3"], "--image-generation 'V3': Input should be 'V1' or 'V2'"),
    (["--depth", "0"], "--depth 0: Input should be greater than or equal to 1"),
])
def test_check_bad_enum_values_are_bad_input(small: str, flags: list[str], message: str
                                             ) -> None:
    r = run("check", "--provider", "aws", "--type", "c8i.large", *flags, "--catalog", small,
            "--json")
    assert r.exit_code == 2
    assert one_json(r) == {"error": "InputError", "message": message, "hint": None,
                           "exit_code": 2}
    assert r.stderr == f"error: {message}\n"


def test_check_two_bad_values_are_named_in_one_message(small: str) -> None:
    r = run("check", "--provider", "aws", "--type", "c8i.large", "--os", "x", "--hypervisor",
            "y", "--catalog", small)
    assert r.exit_code == 2
    assert r.stderr.count("\n") == 1
    assert "--os 'x'" in r.stderr and "--hypervisor 'y'" in r.stderr


@pytest.mark.parametrize("args", [
    ["check", "--provider", "aws", "--json"],                           # missing --type
    ["check", "--provider", "aws", "--type", "x", "--depth", "two", "--json"],  # not an int
    ["catalog", "show", "--json"],                                       # missing TYPE
    ["catalog", "list", "--bogus", "--json"],                            # unknown option
    ["nosuch", "--json"],                                                # unknown command
])
def test_usage_errors_with_json_still_print_one_json_document(args: list[str]) -> None:
    r = run(*args)
    assert r.exit_code == 2
    doc = one_json(r)
    assert doc["error"] == "UsageError"
    assert doc["exit_code"] == 2
    assert doc["message"] in r.stderr  # and the usual usage message on stderr


def test_usage_error_without_json_keeps_stdout_empty() -> None:
    r = run("check", "--provider", "aws")
    assert r.exit_code == 2
    assert r.stdout == ""
    assert "Missing option '--type'" in r.stderr


def test_an_internal_bug_is_one_message_not_a_traceback(small: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import nestcloud.checks

    def boom(*a: Any, **k: Any) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(nestcloud.checks, "run_checks", boom)
    r = run("check", "--provider", "aws", "--type", "c8i.large", "--catalog", small, "--json")
    assert r.exit_code == 1
    doc = one_json(r)
    assert doc["error"] == "InternalError"
    assert doc["message"].startswith("internal error: RuntimeError: kaboom")
    assert r.stderr.startswith("error: internal error: RuntimeError: kaboom")


def test_check_against_the_shipped_catalog() -> None:
    r = run("check", "--provider", "aws", "--type", "c8i.large", "--region", "us-east-1",
            "--json")
    assert r.exit_code == 0
    assert one_json(r)["ok"] is True


# -- providers ------------------------------------------------------------------------------------


def test_providers_json() -> None:
    r = run("providers", "--json")
    assert r.exit_code == 0
    rows = {p["name"]: p for p in one_json(r)["providers"]}
    assert {"aws", "azure"} <= set(rows)
    assert rows["aws"]["origin"] == "providers.aws:AwsProvider (nestcloud)"
    assert rows["aws"]["extra"] == "aws"
    # The shared test venv has every SDK installed.
    assert rows["aws"]["installed"] is True and rows["aws"]["missing"] == []
    assert rows["azure"]["installed"] is True


def test_providers_table_names_the_extra_when_an_sdk_is_missing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import nestcloud.provider as reg

    monkeypatch.setattr(reg, "missing_sdk", lambda name: ["boto3"] if name == "aws" else [])
    r = run("providers")
    assert r.exit_code == 0
    aws_line = next(line for line in r.stdout.splitlines() if line.startswith("aws "))
    assert "no: pip install 'nestcloud[aws]'" in aws_line
    azure_line = next(line for line in r.stdout.splitlines() if line.startswith("azure "))
    assert " yes " in azure_line


# -- the console script builds only the invoked group ----------------------------------------


def _command_names(target: Any) -> set[str]:
    from typer.main import get_group

    return set(get_group(target).commands)


def test_command_table_names_every_command_of_the_full_app() -> None:
    import nestcloud.cli as cli
    from nestcloud.cli._app import new_app

    assert set(cli.COMMAND_MODULES) == _command_names(app)
    for name, module in cli.COMMAND_MODULES.items():
        alone = new_app()
        cli._register(alone, (module,))
        assert name in _command_names(alone), (name, module)


def test_catalog_own_subcommands_are_those_catalog_cmd_defines() -> None:
    from typer.main import get_group

    import nestcloud.cli as cli
    from nestcloud.cli.catalog_cmd import catalog_app

    every = set(get_group(app).commands["catalog"].commands)  # type: ignore[attr-defined]
    own = {c.name for c in catalog_app.registered_commands
           if c.callback is not None and c.callback.__module__ == "nestcloud.cli.catalog_cmd"}
    assert cli.CATALOG_OWN == own
    assert {"verify", "refresh-prices"} <= every - own  # added by cloud_cmd and plan_cmd


@pytest.mark.parametrize("args", [[], ["--help"], ["check", "--help"], ["nosuch"],
                                  ["catalog"], ["catalog", "verify"], ["catalog", "lisst"]])
def test_anything_uncertain_takes_the_full_app(args: list[str]) -> None:
    import nestcloud.cli as cli

    assert cli.app_for(args) is app


# The console script in a fresh process (where no full app exists yet) must print exactly what
# the full app prints.
@pytest.mark.parametrize("args", [
    ["catalog", "list", "--json"],
    ["check", "--provider", "aws", "--type", "c8i.large", "--region", "us-east-1"],
    ["check", "--provider", "aws", "--type", "c8i.large", "--json"],
    ["check", "--provider", "aws", "--json"],
    ["catalog", "show", "nosuch"],
    ["providers", "--json"],
])
def test_console_script_matches_the_full_app(args: list[str], small: str) -> None:
    import subprocess
    import sys

    args = [*args, "--catalog", small] if args[0] != "providers" else args
    code = "import sys; sys.argv[0] = 'nestcloud'; import nestcloud.cli as c; c.main()"
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          check=False)
    r = run(*args)
    assert (proc.returncode, proc.stdout, proc.stderr) == (r.exit_code, r.stdout, r.stderr)


def test_console_script_imports_only_the_invoked_group(small: str) -> None:
    import subprocess
    import sys

    code = ("import atexit, sys; import nestcloud.cli as c\n"
            "atexit.register(lambda: print(sorted(m for m in sys.modules\n"
            "                                     if m.startswith('nestcloud.cli.'))))\n"
            "c.main()")
    proc = subprocess.run([sys.executable, "-c", code, "check", "--provider", "aws", "--type",
                           "c8i.large", "--catalog", small], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "['nestcloud.cli._app', 'nestcloud.cli.check_cmd']"
