"""The in-memory provider through the Python API and `nestcloud providers`: the same factory
and checks as the CLI, for a provider found only by its entry point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

import nestcloud
from nestcloud.spec import TAG_NAME

from .conftest import MEMORY_CATALOG


def test_providers_lists_the_plugin(world: Any) -> None:
    from nestcloud.cli import app

    res = CliRunner().invoke(app, ["providers", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)["providers"]}
    assert rows["memory"]["installed"] is True
    assert "nestcloud_memory:MemoryProvider" in rows["memory"]["origin"]
    assert "nestcloud-memory" in rows["memory"]["origin"]


def test_python_check_and_launch(world: Any) -> None:
    ok = nestcloud.check("memory", "m1.small", region="mem-east-1",
                         catalog=str(MEMORY_CATALOG))
    assert (ok.ok, ok.findings) == (True, [])
    assert nestcloud.check("memory", "m1.flat", region="mem-east-1",
                           catalog=str(MEMORY_CATALOG)).ok is False
    rep = nestcloud.launch("memory", "m1.small", region="mem-east-1", name="py", count=2,
                           ttl="1h", catalog=str(MEMORY_CATALOG))
    assert (rep.provider, rep.name, len(rep.created)) == ("memory", "py", 2)
    assert sorted(rep.created) == sorted(world.instances)
    assert {i.tags[TAG_NAME] for i in world.instances.values()} == {"py"}
    again = nestcloud.launch("memory", "m1.small", region="mem-east-1", name="py", count=2,
                             ttl="1h", catalog=str(MEMORY_CATALOG))
    assert again.created == [] and len(world.instances) == 2


def test_python_lab_up_and_down(world: Any) -> None:
    from nestcloud.catalog import load_catalog

    lab = nestcloud.Lab("pylab", 2, vcpus=2, memory_gib=4, providers=["memory"], ttl="1h",
                        catalog=load_catalog(MEMORY_CATALOG))
    res = lab.up(wait=False)
    assert res.launch is not None and len(res.launch.created) == 2
    assert len(world.instances) == 2
    gone = lab.down()
    assert sorted(gone.terminated) == sorted(res.launch.created) and world.instances == {}


def test_the_console_script_finds_the_plugin_in_another_process(memory_plugin: Any,
                                                                tmp_path: Path) -> None:
    # A fresh interpreter sees the plugin only through PYTHONPATH (set by the fixture) and
    # its entry point; the world there is that process's own.
    import os
    import subprocess
    import sys

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "nestcloud", *args], capture_output=True,
                              text=True, timeout=120, cwd=tmp_path,
                              env={**os.environ, "NESTCLOUD_DEBUG": ""})

    ok = run("check", "-p", "memory", "-t", "m1.small", "-r", "mem-east-1", "--catalog",
             str(MEMORY_CATALOG), "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    launched = run("launch", "-p", "memory", "-t", "m1.small", "-r", "mem-east-1", "--name",
                   "sub", "--count", "2", "--catalog", str(MEMORY_CATALOG), "--json")
    assert launched.returncode == 0, launched.stderr
    assert [i["seat"] for i in json.loads(launched.stdout)["instances"]] == [0, 1]
    refused = run("check", "-p", "memory", "-t", "m1.flat", "-r", "mem-east-1", "--catalog",
                  str(MEMORY_CATALOG))
    assert refused.returncode == 3, refused.stderr
    assert refused.stdout.splitlines()[0] == "memory/m1.flat in mem-east-1: refused"
