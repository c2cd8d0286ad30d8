"""Build the wheel, install it into a clean virtual environment, and use it from elsewhere.

Slow (a venv and a pip install), but it is the only test that sees what users get: the
packaged catalog, py.typed, the console script and the provider entry points.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def build_wheel(out: Path) -> Path:
    """python -m build, without isolation when hatchling is at hand (no index needed)."""
    cmd = [sys.executable, "-m", "build", "--wheel", "--outdir", str(out)]
    if importlib.util.find_spec("hatchling") is not None:
        cmd.append("--no-isolation")
    if importlib.util.find_spec("build") is None:
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(ROOT)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = out.glob("nestcloud-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean venv (no system site-packages, no checkout on the path) with only the wheel."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    proc = subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q",
                           str(wheel)], capture_output=True, text=True, timeout=600,
                          env=clean_env(env_dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return env_dir


def clean_env(env_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "NESTCLOUD_CATALOG", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def run(env_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(env_dir / "bin" / "nestcloud"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env=clean_env(env_dir))


def test_wheel_contents(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
        metadata = zf.read(f"{dist_info}/METADATA").decode()
        packaged_catalog = zf.read("nestcloud/catalog.yaml")
    assert "nestcloud/py.typed" in names
    assert "nestcloud/catalog.py" in names
    assert "nestcloud/cli/_app.py" in names
    # The built-in providers ship as their own top-level package, like a plugin would.
    for module in sorted((ROOT / "providers").rglob("*.py")):
        assert module.relative_to(ROOT).as_posix() in names
    assert "providers/aws/files/set-tag.ps1" in names  # read at class definition
    # The shipped catalog is the checkout's, byte for byte.
    assert packaged_catalog == (ROOT / "catalog.yaml").read_bytes()
    assert "[console_scripts]\nnestcloud = nestcloud.cli:main" in entry_points
    assert "[nestcloud.providers]" in entry_points
    assert "aws = providers.aws:AwsProvider" in entry_points
    assert "azure = providers.azure:AzureProvider" in entry_points
    assert "Requires-Python: >=3.10" in metadata
    for extra in ("aws", "azure", "sandbox", "all", "test"):
        assert f"Provides-Extra: {extra}" in metadata
    # No tests, caches or the checkout's own clutter in the wheel.
    assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n]


def test_installed_wheel_runs_from_outside_the_checkout(installed: Path,
                                                        tmp_path: Path) -> None:
    r = run(installed, tmp_path, "catalog", "list")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split() == ["provider", "type", "vcpus", "GiB", "arch",
                                                "nesting", "USD/h", "from"]
    assert any(line.split()[:2] == ["aws", "c8i.large"] for line in r.stdout.splitlines())

    r = run(installed, tmp_path, "catalog", "list", "--json", "--provider", "azure")
    assert r.returncode == 0, r.stderr
    assert {t["provider"] for t in json.loads(r.stdout)["types"]} == {"azure"}

    r = run(installed, tmp_path, "check", "--provider", "aws", "--type", "c8i.large",
            "--region", "us-east-1", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ok"] is True

    r = run(installed, tmp_path, "check", "--provider", "aws", "--type", "c7g.large", "--json")
    assert r.returncode == 3
    assert json.loads(r.stdout)["findings"][0]["rule"] == "arm64"


def test_installed_wheel_uses_its_packaged_catalog(installed: Path, tmp_path: Path) -> None:
    r = run(installed, tmp_path, "catalog", "validate", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is True
    site = Path(doc["file"]).resolve()
    assert site.is_relative_to(installed.resolve())
    assert site.name == "catalog.yaml" and site.parent.name == "nestcloud"


def test_installed_wheel_without_sdks_names_the_extras(installed: Path, tmp_path: Path) -> None:
    # Core dependencies only: no boto3, no azure SDK in this venv.
    r = run(installed, tmp_path, "providers", "--json")
    assert r.returncode == 0, r.stderr
    rows = {p["name"]: p for p in json.loads(r.stdout)["providers"]}
    assert rows["aws"]["installed"] is False
    assert rows["aws"]["missing"] == ["boto3"]
    assert rows["azure"]["installed"] is False
    r = run(installed, tmp_path, "providers")
    assert "no: pip install 'nestcloud[aws]'" in r.stdout
    assert "no: pip install 'nestcloud[azure]'" in r.stdout
