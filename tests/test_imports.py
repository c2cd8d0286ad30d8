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
# user data load it. Provider packages may load (`check` runs the provider's own rules, and
# `providers` lists its flags, from the class), never their SDKs.
FORBIDDEN = ("boto3", "botocore", "azure", "google", "moto", "pycdlib", "psutil",
             "detect_secrets", "requests")

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


# pydantic's model machinery. A warm `catalog list` must load none of it (it costs ~45 ms,
# half of `import typer, pydantic, yaml`; bench/README.md): it reads the parsed-catalog cache.
# `check` validates its flags with the LaunchSpec model (nestcloud.spec: one schema for every
# entry point, which the start-up baseline pays for too), but must not validate the catalog
# again: the TypeAdapter that validates a catalog file stays unloaded when warm.
# `import pydantic` alone loads only pydantic's lazy top-level module and pydantic-core.
PYDANTIC_MACHINERY = ("pydantic.main", "pydantic._internal._generate_schema",
                      "pydantic.type_adapter")
CATALOG_VALIDATION = ("pydantic.type_adapter",)


@pytest.mark.parametrize(("args", "unloaded"), [
    (["catalog", "list", "--json"], PYDANTIC_MACHINERY),
    (["check", "--provider", "aws", "--type", "c8i.large", "--region", "us-east-1"],
     CATALOG_VALIDATION),
    (["check", "--provider", "aws", "--type", "c7g.large", "--json"],  # refused: exit 3
     CATALOG_VALIDATION),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_warm_hot_commands_do_not_validate_the_catalog_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str],
        unloaded: tuple[str, ...]) -> None:
    monkeypatch.setenv("NESTCLOUD_CACHE_DIR", str(tmp_path / "cache"))
    cold_code, cold = loaded_modules(tmp_path, args)  # fills the parsed-catalog cache
    assert all(m in cold for m in unloaded)  # the probe can see them: the first run validates
    code, warm = loaded_modules(tmp_path, args)
    assert code == cold_code
    assert [m for m in warm if m in unloaded] == []
