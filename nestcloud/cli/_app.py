"""The typer app, its error boundary and the output helpers every command uses."""

from __future__ import annotations

import contextvars
import json
import os
import re
import sys
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from nestcloud.errors import NestcloudError
from nestcloud.render import Rendered, table, to_json, to_table

# The exception classes typer raises. typer 0.28 vendors click and raises typer.Exit/Abort and
# typer.TyperException (the base of its vendored ClickException); typer 0.24-0.27 re-export
# click's Exit/Abort and raise click's ClickException for usage errors. Resolved once from the
# module that defines typer.Exit, so neither case needs an `import click` here.
_EXIT: type[BaseException] = typer.Exit
_ABORT: type[BaseException] = typer.Abort
_USAGE_ERRORS: tuple[type[Exception], ...] = tuple(dict.fromkeys(
    c for c in (getattr(typer, "TyperException", None),
                getattr(sys.modules[typer.Exit.__module__], "ClickException", None))
    if isinstance(c, type) and issubclass(c, Exception)))

# Request authorization that an SDK's error text may quote (botocore quotes a whole SigV4
# header when it is malformed): never printed, whichever provider or bug it comes from.
_AUTH = re.compile(
    r"(?i)(?:x-amz-)?(?:credential|signature|security-token)=[^\s,;&'\"]*"
    r"|(authorization[\"']?\s*[:=]\s*[\"']?)[^,;\n'\"]*"
    r"|(bearer\s+)[A-Za-z0-9._~+/=-]+")


def redact(text: str) -> str:
    """``text`` without authorization headers, SigV4 credentials/signatures or bearer tokens."""
    return _AUTH.sub(lambda m: (m.group(1) or m.group(2) or "") + "<redacted>", text)


_json_mode: contextvars.ContextVar[bool] = contextvars.ContextVar("json_mode", default=False)
# Whether the command line asked for --json: usage errors happen before a command runs and
# calls json_mode(), and they must still come out as one JSON document.
_json_argv: contextvars.ContextVar[bool] = contextvars.ContextVar("json_argv", default=False)


def _wants_json(args: list[str]) -> bool:
    head = args[:args.index("--")] if "--" in args else args
    return "--json" in head


class _Group(TyperGroup):
    """Translates nestcloud errors into one message and the documented exit code."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None,
                     **extra: Any) -> Any:
        if parent is None:
            _json_argv.set(_wants_json(list(args)))
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except _USAGE_ERRORS as exc:  # bad usage of the top-level command
            _report_usage(exc)
            raise

    def invoke(self, ctx: Any) -> Any:
        token = _json_mode.set(False)
        try:
            return super().invoke(ctx)
        except NestcloudError as exc:
            _report(exc.to_dict(), str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            _report({"error": "Interrupted", "message": "interrupted", "hint": None,
                     "exit_code": 130}, "interrupted")
            raise typer.Exit(130) from None
        except _USAGE_ERRORS as exc:  # usage errors: typer prints them on stderr
            _report_usage(exc)
            raise
        except (_EXIT, _ABORT):
            raise
        except Exception as exc:  # a bug in nestcloud: still no traceback unless asked for
            if os.environ.get("NESTCLOUD_DEBUG"):
                raise
            msg = (f"internal error: {type(exc).__name__}: {exc} (this is a nestcloud bug; "
                   "set NESTCLOUD_DEBUG=1 to see the traceback)")
            _report({"error": "InternalError", "message": msg, "hint": None, "exit_code": 1},
                    msg)
            raise typer.Exit(1) from None
        finally:
            _json_mode.reset(token)


def _json_wanted() -> bool:
    return _json_mode.get() or _json_argv.get()


def _report(doc: dict[str, Any], text: str) -> None:
    if _json_wanted():
        doc = {k: redact(v) if isinstance(v, str) else v for k, v in doc.items()}
        typer.echo(json.dumps(doc, indent=2, allow_nan=False))
    typer.echo(f"error: {redact(text)}", err=True)


def _report_usage(exc: Exception) -> None:
    """The JSON half of a usage error; typer itself prints the message on stderr."""
    if _json_wanted():
        typer.echo(json.dumps({"error": "UsageError", "message": exc.format_message(),  # type: ignore[attr-defined]
                               "hint": None,
                               "exit_code": exc.exit_code}, indent=2, allow_nan=False))


def new_app() -> typer.Typer:
    """An empty `nestcloud` app: the full one (``app``) or the one-group app main() runs."""
    return typer.Typer(
        cls=_Group,
        name="nestcloud",
        help="Launch cloud VMs that can run their own hypervisor (nested virtualization).",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )


# Every command group registers into this one (see nestcloud.cli.full_app).
app = new_app()


def json_mode(enabled: bool) -> None:
    """Commands call this first so errors also come out as one JSON document on stdout."""
    _json_mode.set(enabled)


def emit_json(doc: Any) -> None:
    """The one JSON document a --json command prints on stdout.

    Strict JSON: a non-finite number raises ValueError (an internal error, exit 1) instead
    of printing `Infinity` or `NaN`, which JSON parsers other than Python's reject."""
    typer.echo(json.dumps(doc, indent=2, default=str, allow_nan=False))


def info(text: str) -> None:
    """Progress and notes: always stderr, so stdout stays clean for data."""
    typer.echo(text, err=True)


def bad_input(message: str) -> NestcloudError:
    from nestcloud.errors import InputError

    return InputError(message)


def show(result: Rendered, as_json: bool, **options: Any) -> None:
    """Print a result on stdout: its --json document, or its terminal text (nothing at all
    when it has none). ``options`` go to the result's declaration (e.g. plan's ``limit``)."""
    if as_json:
        emit_json(to_json(result, **options))
        return
    text = to_table(result, **options)
    if text:
        typer.echo(text)


def run(target: typer.Typer) -> None:
    """Run an app as the console script: always a group, even with one command registered.

    (typer turns an app with a single command and no callback into that command, which would
    make `nestcloud check ...` read "check" as an argument.)
    """
    from typer.main import get_group

    try:
        get_group(target)()
    except KeyboardInterrupt:  # outside a command (e.g. during import)
        sys.exit(130)


class ProviderCommand(TyperCommand):
    """A command that reaches providers: besides its own options it takes every flag an
    installed provider declares (``ProviderOption.flag``), passed on as
    ``--provider-option FLAG=VALUE``, so a plugin's flags need nothing in the core."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        from nestcloud.cli._inputs import rewrite_provider_flags

        own = {o for p in self.params for o in (*p.opts, *p.secondary_opts)}
        # typer may vendor its own click: options are told apart by their declared kind.
        valued = frozenset(o for p in self.params if p.param_type_name == "option"
                           and not p.is_flag and not p.count for o in p.opts)
        try:
            rewritten = rewrite_provider_flags(own, list(args), valued)
        except NestcloudError as exc:
            ctx.fail(exc.message)  # click's own usage error, reported as any other
        result: list[str] = super().parse_args(ctx, rewritten)
        return result
