"""Reading the L1's readiness marker back from console text (or a tag value)."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nestcloud.bootstrap.l1check import MARKER

# CSI/OSC escape sequences and other C0 controls a serial console may carry.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MARKER_AT = re.compile(re.escape(MARKER) + r"[ \t]+(?=\{)")


class Marker(BaseModel):
    """One readiness report from an L1 (console line or the Windows tag)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    status: Literal["ready", "failed"]
    checks: dict[str, Any] = Field(default_factory=dict)
    failed: list[str] = Field(default_factory=list)
    profile: str | None = None

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    def failed_checks(self) -> list[str]:
        """Names of the required checks that failed, with the reason when one is given."""
        names = list(self.failed)
        for name, value in self.checks.items():
            ok = value.get("ok") if isinstance(value, dict) else value
            optional = isinstance(value, dict) and value.get("optional")
            if ok is False and not optional and name not in names:
                names.append(name)
        out = []
        for name in names:
            value = self.checks.get(name)
            detail = value.get("detail") if isinstance(value, dict) else None
            out.append(f"{name}: {detail}" if detail else name)
        if not out and self.status == "failed":
            err = (self.model_extra or {}).get("error")
            out.append(f"check_error: {err}" if err else "failed (no reason given)")
        return out


def parse_payload(text: str) -> Marker | None:
    """A marker payload (the JSON object after the marker word, or a tag value) -> Marker."""
    try:
        obj, _ = json.JSONDecoder().raw_decode(text.strip())
    except ValueError:
        return None
    return _to_marker(obj)


def _to_marker(obj: Any) -> Marker | None:
    if not isinstance(obj, dict) or obj.get("status") not in ("ready", "failed"):
        return None
    try:
        return Marker.model_validate(obj)
    except ValueError:
        return None


def clean_console(text: str) -> list[str]:
    """Console text -> lines without ANSI sequences or stray control characters."""
    text = _ANSI.sub("", text)
    lines = re.split(r"\r\n|\r|\n", text)
    return [_CONTROL.sub("", line) for line in lines]


def parse_marker(console_text: str) -> Marker | None:
    """The LAST complete ``NESTCLOUD-L1 {json}`` in console text, or None.

    The marker may sit mid-line (journal prefixes like ``[ 41.2] cloud-init[977]: ``); text
    after the JSON object is ignored; a truncated or garbled JSON is skipped in favour of an
    earlier complete one.
    """
    if not console_text or MARKER not in console_text:
        return None
    decoder = json.JSONDecoder()
    for line in reversed(clean_console(console_text)):
        starts = [m.end() for m in _MARKER_AT.finditer(line)]
        for start in reversed(starts):
            try:
                obj, _ = decoder.raw_decode(line, start)
            except ValueError:
                continue
            marker = _to_marker(obj)
            if marker is not None:
                return marker
    return None
