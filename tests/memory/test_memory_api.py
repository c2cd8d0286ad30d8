"""The in-memory provider through the Python API and `nestcloud providers`: the same factory
and checks as the CLI, for a provider found only by its entry point."""

from __future__ import annotations

import json
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
