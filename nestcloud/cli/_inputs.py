"""Checks of command-line values that several commands share, run before any provider is made:
a bad value is exit 2 with one message naming the flag, and nothing reaches a cloud."""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any

from nestcloud.errors import InputError

# The provider flags every command that reaches a cloud offers (typer needs its options when
# a command is defined, and reading every installed provider's class then would slow start-up).
# Each flag goes to the provider that declares it (``ProviderOption.flag``); given on the


def given_on_command_line(ctx: Any, param: str) -> bool:
    """Whether ``param`` came from the command line (not a default or the environment)."""
    source = ctx.get_parameter_source(param)
    return getattr(source, "name", None) == "COMMANDLINE"


def check_provider_name(name: str) -> None:
    """InputError for a provider name no plugin registers, naming the known ones."""
    from nestcloud.provider import available

    if name not in available():
        raise InputError(f"--provider {name!r}: unknown provider "
                         f"(known: {', '.join(available())})")


def _declared(provider: str) -> dict[str, str]:
    """flag -> option name, as ``provider`` declares them."""
    from nestcloud.provider import options_of

    return {o.flag: o.name for o in options_of(provider)}


def _pairs(ctx: Any) -> list[tuple[str, str]]:
    """``--provider-option KEY=VALUE`` entries, checked for their shape."""
    out = []
    for item in ctx.params.get("provider_option") or []:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise InputError(f"--provider-option {item!r}: expected KEY=VALUE "
                             "(e.g. -o subscription_id=...)")
        out.append((key.strip(), value))
    return out


def provider_options(ctx: Any, providers: list[str], *, tolerant: bool = False
                     ) -> dict[str, dict[str, Any]]:
    """Each provider's construction options from this command's provider flags and
    ``--provider-option KEY=VALUE`` entries (KEY: an option's name or its flag).

    A flag given on the command line that none of ``providers`` declares is bad input
    naming the flag (``--resource-group`` with ``--provider aws``). ``tolerant`` (labs, reap:
    several providers, some maybe unusable here): a provider whose class cannot be loaded
    declares nothing, and reports its own error when it is used."""
    from nestcloud.errors import ProviderError

    declared: dict[str, dict[str, str]] = {}
    for p in providers:
        check_provider_name(p)
        try:
            declared[p] = _declared(p)
        except ProviderError:
            if not tolerant:
                raise
            declared[p] = {}
    out: dict[str, dict[str, Any]] = {p: {} for p in providers}
    for key, value in _pairs(ctx):
        flag = key if key.startswith("--") else "--" + key.replace("_", "-")
        takers = [p for p in providers if key in declared[p].values() or flag in declared[p]]
        if not takers:
            if key.startswith("--"):  # a provider's flag, given as itself
                raise InputError(f"{key} does not apply to --provider {', '.join(providers)}")
            offered = sorted({n for d in declared.values() for n in d.values()})
            raise InputError(f"--provider-option {key}: not an option of --provider "
                             f"{', '.join(providers)} (its options: "
                             f"{', '.join(offered) or 'none'})")
        for p in takers:
            name = key if key in declared[p].values() else declared[p][flag]
            out[p][name] = value
    return out


def check_region(region: str | None, providers: list[str], catalog_path: Path | None,
                 flag: str = "--region") -> None:
    """InputError unless ``region`` is a region the catalog offers a type of ``providers`` in
    (closest names suggested). A provider the catalog knows nothing of gets the shape check."""
    if region is None:
        return
    from nestcloud.catalog import load_catalog
    from nestcloud.spec import REGION_RE

    cat = load_catalog(catalog_path)
    known = sorted({r for p in providers for r in cat.regions(p)})
    if region in known or (not known and REGION_RE.fullmatch(region)):
        return
    who = ", ".join(providers)
    if not known:
        raise InputError(f"{flag} {region!r}: not a region name (letters, digits and '-')")
    close = difflib.get_close_matches(region, known, n=3, cutoff=0.5)
    raise InputError(f"{flag} {region!r}: unknown region for {who} (no catalog type is "
                     "offered there)",
                     hint=(f"did you mean {', '.join(close)}?" if close else
                           f"known regions: {', '.join(known)}"))


def check_seconds(flag: str, value: float) -> float:
    """``value`` if it is a positive, finite number of seconds; InputError otherwise."""
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{flag} {value!r}: must be a positive, finite number of seconds")
    return value


def declared_flags() -> set[str]:
    """Every flag an installed provider declares (their classes are loaded, nothing is made;
    a provider that cannot be loaded declares nothing here and says why when it is used)."""
    from nestcloud.errors import NestcloudError
    from nestcloud.provider import available, options_of

    flags: set[str] = set()
    for name in available():
        try:
            flags.update(o.flag for o in options_of(name))
        except NestcloudError:
            continue
    return flags


def rewrite_provider_flags(own: set[str], args: list[str],
                           takes_value: frozenset[str] = frozenset()) -> list[str]:
    """``args`` with each flag a provider declares (``--subscription X``, ``--project=X``)
    turned into ``--provider-option FLAG=VALUE``, which `provider_options` routes to the
    providers that declare it. Flags of the command itself (``own``) and anything after
    ``--`` stay as they are, and so does the value after an own option that takes one
    (``-o --project=X``); an unknown flag stays for click to refuse. Providers are loaded
    only when a flag the command does not know appears."""
    out: list[str] = []
    flags: set[str] | None = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            out += args[i:]
            break
        if arg in takes_value:
            out += args[i:i + 2]
            i += 2
            continue
        name, eq, value = arg.partition("=")
        if arg.startswith("--") and name not in own:
            if flags is None:
                flags = declared_flags()
            if name in flags:
                if not eq:
                    if i + 1 >= len(args):
                        raise InputError(f"{name} needs a value")
                    value = args[i + 1]
                    i += 1
                out += ["--provider-option", f"{name}={value}"]
                i += 1
                continue
        out.append(arg)
        i += 1
    return out
