"""The in-memory provider (tests/plugins/nestcloud-memory), installed as a real distribution.

A session fixture pip-installs the plugin (offline, ``--target`` a temporary directory); each
test that asks for it gets that directory on ``sys.path`` and ``PYTHONPATH`` (removed after
it): nestcloud then finds the provider the way it finds any third-party plugin, through the
``nestcloud.providers`` entry-point group. Nothing registers it in-process.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

PLUGIN_SRC = Path(__file__).resolve().parents[1] / "plugins" / "nestcloud-memory"
MEMORY_CATALOG = PLUGIN_SRC / "catalog.yaml"


@pytest.fixture(scope="session")
def memory_install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The plugin pip-installed (offline) into a directory of its own, once per session."""
    target = tmp_path_factory.mktemp("memory-plugin")
    # The source tree is copied first: pip builds in place, and the checkout stays clean.
    src = tmp_path_factory.mktemp("memory-src") / "nestcloud-memory"
    shutil.copytree(PLUGIN_SRC, src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info",
                                                                    "dist", "build"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "--quiet", "--target", str(target),
         str(src)], capture_output=True, text=True, timeout=300,
        env={**os.environ, "PIP_NO_INPUT": "1"})
    assert done.returncode == 0, done.stderr
    try:
        yield target
    finally:
        for mod in [m for m in sys.modules if m.split(".")[0] == "nestcloud_memory"]:
            del sys.modules[mod]


@pytest.fixture
def memory_plugin(memory_install: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The installed ``nestcloud_memory`` module, its entry point visible for this test only
    (on ``sys.path`` and ``PYTHONPATH`` for subprocesses): the other tests of the session
    never see a third provider."""
    monkeypatch.syspath_prepend(str(memory_install))  # also invalidates import caches
    old = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(memory_install), old])))
    return importlib.import_module("nestcloud_memory")


@pytest.fixture
def world(memory_plugin: ModuleType) -> Iterator[object]:
    """The memory cloud, empty and without faults for each test (and left empty after)."""
    memory_plugin.WORLD.reset()
    yield memory_plugin.WORLD
    memory_plugin.WORLD.reset()


@pytest.fixture
def memory_catalog_file() -> Path:
    return MEMORY_CATALOG
