"""What the real-boot tests (test_real_boot.py, test_kvm_profile_realboot.py) share: where the
test image and their records are cached, what a boot needs on this machine, and reading a
JSON report line off the serial console."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nestcloud.bootstrap.marker import clean_console
from providers.local import qemu

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "scripts" / "build-test-image.sh"
REPORT = "NESTCLOUD-TEST-REPORT"  # tests/local/guest_report.py: what cloud-init did
USER_LINE = "NESTCLOUD-TEST-USER"


def cache_dir() -> Path:
    """The image cache of scripts/build-test-image.sh; the boots' records go beside it."""
    env = os.environ.get("NESTCLOUD_IMAGE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nestcloud" / "images"


def missing_for_boot(tools: list[str]) -> str | None:
    """Why ``tools`` and pycdlib (the seed ISO) do not let a boot run here, or None."""
    missing = qemu.missing_tools(tools)
    if missing:
        return f"missing {', '.join(missing)} (docs/local-boot.md lists the apt packages)"
    try:
        import pycdlib  # noqa: F401
    except ImportError:
        return "pycdlib missing: pip install 'nestcloud[local]'"
    return None


def line_json(console: str, word: str) -> dict[str, Any] | None:
    """The JSON object after the last ``word`` on the console, or None."""
    for line in reversed(clean_console(console)):
        at = line.find(word + " {")
        if at >= 0:
            try:
                obj, _ = json.JSONDecoder().raw_decode(line, at + len(word) + 1)
            except ValueError:
                continue
            return obj if isinstance(obj, dict) else None
    return None
