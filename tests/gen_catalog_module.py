"""scripts/gen_catalog.py, a script rather than a package module, loaded once for the tests
that read it:

    from gen_catalog_module import GEN, gen_catalog   # tests/ is on sys.path
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

GEN = Path(__file__).resolve().parents[1] / "scripts" / "gen_catalog.py"


def gen_catalog() -> ModuleType:
    """The generator, registered as ``gen_catalog`` (its dataclasses look their module up
    there)."""
    mod = sys.modules.get("gen_catalog")
    if mod is None:
        spec = importlib.util.spec_from_file_location("gen_catalog", GEN)
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        sys.modules["gen_catalog"] = mod
        spec.loader.exec_module(mod)
    return mod
