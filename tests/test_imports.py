"""Start-up stays light: help, catalog, check and providers never import a cloud SDK.

Each command runs in a fresh interpreter (this test process has imported everything already),
through the same main() the console script calls; the modules loaded are read at exit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

RUNNER = """
import json, sys
out = sys.argv[1]
sys.argv = ["nestcloud", *sys.argv[2:]]
from nestcloud.cli import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code
with open(out, "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""

# detect_secrets (and the requests it imports) is the secret scan's: only commands that send
# user data load it.
FORBIDDEN = ("boto3", "botocore", "azure", "moto", "providers", "detect_secrets", "requests")

COMMANDS = [
    ["--help"],
    ["catalog", "--help"],
    ["catalog", "list"],
    ["catalog", "list", "--json", "--provider", "azure", "--nested-only"],
    ["catalog", "show", "c8i.large", "--json"],
    ["catalog", "validate"],
    ["check", "--provider", "aws", "--type", "c8i.large", "--region", "us-east-1"],
    ["check", "--provider", "azure", "--type", "Standard_D2s_v5", "--json"],
    ["check", "--provider", "aws", "--type", "c7g.large", "--json"],  # refused: exit 3
    ["providers"],
    ["providers", "--json"],
]


def loaded_modules(tmp_path: Path, args: list[str]) -> tuple[int, list[str]]:
    out = tmp_path / "modules.json"
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(out), *args],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads(out.read_text())
    return doc["code"], doc["modules"]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_command_imports_no_cloud_sdk(tmp_path: Path, args: list[str]) -> None:
    code, modules = loaded_modules(tmp_path, args)
    assert code in (0, None, 3), code
    bad = [m for m in modules if m.split(".")[0] in FORBIDDEN]
    assert bad == []


def test_the_probe_does_see_an_sdk_import(tmp_path: Path) -> None:
    """The check above can fail: importing the AWS SDK shows up in the same probe."""
    out = tmp_path / "modules.json"
    code = RUNNER.replace("from nestcloud.cli import main",
                          "import botocore\nfrom nestcloud.cli import main")
    subprocess.run([sys.executable, "-c", code, str(out), "--help"], capture_output=True,
                   timeout=60, check=False)
    modules = json.loads(out.read_text())["modules"]
    assert "botocore" in modules


# pydantic's model machinery: what a warm `catalog list` / `check` must not load (it costs
# ~45 ms, half of `import typer, pydantic, yaml`; bench/README.md). `import pydantic` alone
# loads only pydantic's lazy top-level module and pydantic-core.
PYDANTIC_MACHINERY = ("pydantic.main", "pydantic._internal._generate_schema",
                      "pydantic.type_adapter")


@pytest.mark.parametrize("args", [
    ["catalog", "list", "--json"],
    ["check", "--provider", "aws", "--type", "c8i.large", "--region", "us-east-1"],
    ["check", "--provider", "aws", "--type", "c7g.large", "--json"],  # refused: exit 3
], ids=" ".join)
def test_warm_hot_commands_do_not_build_pydantic_models(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    monkeypatch.setenv("NESTCLOUD_CACHE_DIR", str(tmp_path / "cache"))
    cold_code, cold = loaded_modules(tmp_path, args)  # fills the parsed-catalog cache
    assert "pydantic.main" in cold  # the probe can see it: the first run validates
    code, warm = loaded_modules(tmp_path, args)
    assert code == cold_code
    assert [m for m in warm if m in PYDANTIC_MACHINERY] == []


def test_launch_specs_are_checked_without_pydantic() -> None:
    """LaunchSpec validates by hand: building one, good or bad, imports no pydantic at all."""
    code = """
import sys
from nestcloud.errors import SpecError
from nestcloud.spec import LaunchSpec
LaunchSpec(provider="aws", type="c8i.large", name="web-1", tags={"team": "a"}, depth="3")
try:
    LaunchSpec(provider="", depth=10, tags={"aws:x": "1"}, bogus=1)
except SpecError as exc:
    print(len(exc.errors()))
print(sorted(m for m in sys.modules if m.split(".")[0] in ("pydantic", "pydantic_core")))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert proc.stdout == "5\n[]\n"  # provider, type (missing), depth, tags, bogus
