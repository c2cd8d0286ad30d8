"""L1 hypervisor bootstrap: profiles -> user data, and the in-guest readiness check.

(Interface agreed between the launch path and the bootstrap work; the bodies are being
written in the bootstrap issue.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class RenderedUserData:
    """What a provider sends: ``body`` as bytes (possibly gzipped), and how to describe it."""

    kind: Literal["cloud-config", "mime", "powershell", "none"]
    body: bytes
    gzipped: bool


def render_user_data(provider: str, os_alias: str, hypervisor: str, *,
                     extra: str | None = None, l2_smoke: bool = False) -> RenderedUserData:
    """User data for this provider/OS/hypervisor, merged with the user's own ``extra``."""
    raise NotImplementedError("bootstrap rendering lands with the bootstrap issue")
