"""The in-memory provider (tests/plugins/nestcloud-memory), installed as a real distribution.

A session fixture pip-installs the plugin (offline, ``--target`` a temporary directory) and
puts that directory on ``sys.path`` and ``PYTHONPATH``: nestcloud then finds the provider the
way it finds any third-party plugin, through the ``nestcloud.providers`` entry-point group.
Nothing registers it in-process.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

PLUGIN_SRC = Path(__file__).resolve().parents[1] / "plugins" / "nestcloud-memory"
MEMORY_CATALOG = PLUGIN_SRC / "catalog.yaml"


@pytest.fixture(scope="session")
def memory_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The installed ``nestcloud_memory`` module (importable, its entry point visible)."""
    target = tmp_path_factory.mktemp("memory-plugin")
    # The source tree is copied first: pip builds in place, and the checkout stays clean.
    src = tmp_path_factory.mktemp("memory-src") / "nestcloud-memory"
    import shutil

    shutil.copytree(PLUGIN_SRC, src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info",
                                                                    "dist", "build"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "--quiet", "--target", str(target),
         str(src)], capture_output=True, text=True, timeout=300,
        env={**os.environ, "PIP_NO_INPUT": "1"})
    assert done.returncode == 0, done.stderr
    old_pythonpath = os.environ.get("PYTHONPATH")
    sys.path.insert(0, str(target))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), old_pythonpath]))
    importlib.invalidate_caches()
    try:
        yield importlib.import_module("nestcloud_memory")
    finally:
        sys.path.remove(str(target))
        if old_pythonpath is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old_pythonpath
        for mod in [m for m in sys.modules if m.split(".")[0] == "nestcloud_memory"]:
            del sys.modules[mod]
        importlib.invalidate_caches()


@pytest.fixture
def world(memory_plugin: ModuleType) -> Iterator[object]:
    """The memory cloud, empty and without faults for each test (and left empty after)."""
    memory_plugin.WORLD.reset()
    yield memory_plugin.WORLD
    memory_plugin.WORLD.reset()


@pytest.fixture
def memory_catalog_file() -> Path:
    return MEMORY_CATALOG
