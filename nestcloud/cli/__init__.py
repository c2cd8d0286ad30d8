"""The `nestcloud` command: parse, call the library, render. Nothing else lives here.

Each group of commands is its own module with a ``register(app)`` function, so the command
modules stay small and none of them imports a cloud SDK at import time.
"""

from __future__ import annotations

from nestcloud.cli._app import app, main
from nestcloud.cli import (bootstrap_cmd, catalog_cmd, check_cmd, cloud_cmd, plan_cmd,
                           security_cmd)

for _module in (catalog_cmd, check_cmd, cloud_cmd, bootstrap_cmd, plan_cmd, security_cmd):
    _module.register(app)

__all__ = ["app", "main"]
