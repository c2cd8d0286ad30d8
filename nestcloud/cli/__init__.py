"""The `nestcloud` command: parse, call the library, render. Nothing else lives here.

Each group of commands is its own module with a ``register(app)`` function, so the command
modules stay small and none of them imports a cloud SDK at import time.

``app`` (``from nestcloud.cli import app``) has every command. ``main()``, the console script,
imports and registers only the module of the command it was asked for: building every group
cost ~15 ms of CPU per start, about a tenth of a `catalog list`. Anything it cannot place
with certainty (--help, no command, an unknown one, a `catalog` subcommand another module
adds) runs on the full app, so messages and suggestions are the full app's.
"""

from __future__ import annotations

import gc
import importlib
import sys
from typing import Any

import typer

from nestcloud.cli._app import new_app, run

# Registration order of the full app (it is the order of `nestcloud --help`).
MODULES = ("catalog_cmd", "check_cmd", "cloud_cmd", "bootstrap_cmd", "plan_cmd", "security_cmd")

# Top-level command -> the module whose register() adds it. tests/test_cli_foundation.py checks
# this against the full app, so a new command that is missing here fails a test.
COMMAND_MODULES: dict[str, str] = {
    "catalog": "catalog_cmd", "providers": "catalog_cmd",
    "check": "check_cmd",
    "launch": "cloud_cmd", "ls": "cloud_cmd", "down": "cloud_cmd", "sandbox": "cloud_cmd",
    "userdata": "bootstrap_cmd", "doctor": "bootstrap_cmd", "wait": "bootstrap_cmd",
    "plan": "plan_cmd", "reap": "plan_cmd", "lab": "plan_cmd",
    "iam-policy": "security_cmd",
}
# `catalog` subcommands catalog_cmd defines itself; cloud_cmd adds `verify` and plan_cmd
# `refresh-prices` to the same group, so those (and `catalog` alone) take the full app.
CATALOG_OWN = frozenset({"list", "show", "validate"})

_full: typer.Typer | None = None


def _register(target: typer.Typer, modules: tuple[str, ...]) -> None:
    for name in modules:
        importlib.import_module(f"nestcloud.cli.{name}").register(target)


def full_app() -> typer.Typer:
    """The app with every command (built once)."""
    global _full
    if _full is None:
        from nestcloud.cli._app import app as every

        _register(every, MODULES)
        _full = every
    return _full


def app_for(args: list[str]) -> typer.Typer:
    """The smallest app that runs ``args`` exactly as the full app would."""
    if _full is not None or not args or "--help" in args:
        return full_app()
    module = COMMAND_MODULES.get(args[0])
    if module is None:
        return full_app()
    if args[0] == "catalog" and (len(args) < 2 or args[1] not in CATALOG_OWN):
        return full_app()
    small = new_app()
    _register(small, (module,))
    return small


def main() -> None:
    """Console-script entry point."""
    try:
        run(app_for(sys.argv[1:]))
    finally:
        # The process ends here. Freezing the heap keeps the collector's shutdown passes from
        # walking everything the command loaded (the catalog alone is ~15,000 objects): ~15 ms
        # of CPU per command, measured with bench/bench_cli.py. Finalizers of objects left in
        # reference cycles at exit are not guaranteed by Python anyway; stdout and stderr are
        # still flushed by the interpreter.
        gc.freeze()


def __getattr__(name: str) -> Any:
    if name == "app":
        return full_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["app", "full_app", "main"]
