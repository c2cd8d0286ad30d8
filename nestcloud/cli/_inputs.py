"""Checks of command-line values that several commands share, run before any provider is made:
a bad value is exit 2 with one message naming the flag, and nothing reaches a cloud."""

from __future__ import annotations

import difflib
import inspect
import math
from pathlib import Path
from typing import Any

from nestcloud.errors import InputError

# Provider settings some commands take as flags: (parameter, flag, the provider's option).
# A flag applies to a provider whose factory takes that option (see make_provider); given on
# the command line to one that does not, it is refused instead of silently dropped. Values
# from the environment (AZURE_SUBSCRIPTION_ID...) are settings, not requests, and never count.
PROVIDER_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("subscription", "--subscription", "subscription_id"),
    ("arm_endpoint", "--arm-endpoint", "arm_endpoint"),
    ("resource_group", "--resource-group", "resource_group"),
)


def given_on_command_line(ctx: Any, param: str) -> bool:
    """Whether ``param`` came from the command line (not a default or the environment)."""
    source = ctx.get_parameter_source(param)
    return getattr(source, "name", None) == "COMMANDLINE"


def _takes(provider: str, option: str) -> bool:
    from nestcloud.provider import available, load_factory

    if provider not in available():
        return True  # make_provider reports an unknown provider, with the known ones
    try:
        params = inspect.signature(load_factory(provider)).parameters.values()
    except (TypeError, ValueError):  # no signature to read: let the provider decide
        return True
    return any(p.kind is p.VAR_KEYWORD or p.name == option for p in params)


def refuse_foreign_flags(ctx: Any, providers: list[str]) -> None:
    """InputError for a provider flag given on the command line that none of ``providers``
    takes (``--resource-group`` with ``--provider aws``)."""
    for param, flag, option in PROVIDER_FLAGS:
        if param in ctx.params and given_on_command_line(ctx, param) and not any(
                _takes(p, option) for p in providers):
            raise InputError(f"{flag} does not apply to --provider {', '.join(providers)}")


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
