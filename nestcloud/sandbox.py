"""``--sandbox``: whether a command runs against its provider's local endpoint.

The endpoint itself belongs to the provider (``capabilities.local_endpoint``,
``local_endpoint()`` and ``endpoint_control()`` in nestcloud.provider); this module only
reads the switch, so every command and the Python API agree on it.
"""

from __future__ import annotations

import os

ENV_SANDBOX = "NESTCLOUD_SANDBOX"

__all__ = ["ENV_SANDBOX", "enabled"]


def enabled(flag: bool = False) -> bool:
    """--sandbox, or NESTCLOUD_SANDBOX set to a true value."""
    env = os.environ.get(ENV_SANDBOX, "").strip().lower()
    return flag or env in ("1", "true", "yes", "on")
