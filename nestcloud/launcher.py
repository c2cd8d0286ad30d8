"""Run the pre-launch checks, then hand the launch to a provider.

The CLI, lab files and the Python API all launch through :func:`launch`, so a launch the
checks refuse never reaches a cloud, whoever asked for it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import TYPE_CHECKING, Any

from nestcloud.checks import Finding, refused, run_checks
from nestcloud.errors import InputError, RefusedError
from nestcloud.models import LaunchResult
from nestcloud.spec import LaunchSpec, TagLimits, check_tags, parse_cidr

if TYPE_CHECKING:
    from nestcloud.catalog import Catalog
    from nestcloud.provider import Capabilities, LaunchOutcome, Provider

WORLD_CIDRS = ("0.0.0.0/0", "::/0")
# A source network at least this wide (a shorter prefix) counts as world-open unless all of it
# is private: /8 is the largest block ever assigned to one organisation in IPv4, /32 the usual
# first allocation to an ISP in IPv6. Anything wider is "much of the internet", not "my site".
WORLD_PREFIX = {4: 8, 6: 32}
# Address space that never routes on the internet (RFC 1918, RFC 4193 unique local, link
# local): a wide rule inside it opens nothing to the world.
PRIVATE_NETS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "fe80::/10"))


def default_name(spec: LaunchSpec) -> str:
    """A deterministic name for an unnamed launch, so re-running the command reconciles."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"{spec.type}-{spec.hypervisor}".lower()).strip("-")
    slug = slug[:40].rstrip("-")
    return slug if slug and slug[0].isalpha() else f"nc-{slug}"[:40].rstrip("-")


def world_open(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str | None:
    """How much of the internet an SSH rule from ``net`` opens to, when that is too much
    ("the whole internet", "a large part of the internet ..."); None for a narrower network.
    The one rule for every provider (Azure's NSG rules use it too)."""
    if net.prefixlen == 0:
        return "the whole internet"
    widest = WORLD_PREFIX[net.version]
    if net.prefixlen >= widest or any(
            net.version == p.version and net.subnet_of(p)  # type: ignore[arg-type]
            for p in PRIVATE_NETS):
        return None
    return f"a large part of the internet (a public network wider than /{widest})"


def check_ssh_cidr(cidr: str | None, allow_world: bool) -> str | None:
    """Normalise ``--ssh-cidr``; refuse a malformed or world-open one unless allowed. The one
    SSH source rule: the launcher applies it before any provider sends anything, and providers
    that build their own rules (Azure's NSG) call it too."""
    if cidr is None:
        return None
    try:
        net = parse_cidr(cidr)  # the schema's syntax rule (LaunchSpec.ssh_cidr)
    except ValueError as exc:
        raise InputError(f"--ssh-cidr {cidr!r}: {exc}") from None
    text = str(net)
    reach = world_open(net)
    if reach and not allow_world:
        raise InputError(f"--ssh-cidr {cidr!r} opens SSH to {reach}",
                         hint="use your own address (e.g. 203.0.113.7/32), or add "
                              "--allow-world-ssh if you really mean it")
    return text


def tag_limits(provider: Provider | str) -> TagLimits | None:
    """The tag limits a provider declares (``capabilities.tags``), by object or by name;
    None when it declares none. By name, the provider's class is imported, nothing is made."""
    if isinstance(provider, str):
        from nestcloud.provider import capabilities_of

        return capabilities_of(provider).tags
    return provider.capabilities.tags


# LaunchOptions fields whose meaning belongs to one cloud's API: a provider honours them only
# when it lists them in ``capabilities.launch_options`` (default values mean "not asked for").
PROVIDER_FIELDS: dict[str, str] = {
    "instance_profile": "--instance-profile",
    "security_type": "--security-type",
    "image_generation": "--image-generation",
    "egress": "--egress",
}


def check_launch_options(spec: LaunchSpec, caps: Capabilities) -> None:
    """Refuse (exit 2) an option the provider does not honour, before anything is sent: a
    setting silently ignored would launch something other than what was asked."""
    defaults = type(spec).model_fields
    values = spec.model_dump(include=set(PROVIDER_FIELDS))
    for field, flag in PROVIDER_FIELDS.items():
        value = values[field]
        if value == defaults[field].default or field in caps.launch_options:
            continue
        if field == "egress" and caps.egress:
            continue  # checked against the offered modes below
        raise InputError(f"{flag} {value}: provider {spec.provider!r} does not offer this "
                         "setting",
                         hint=f"leave {flag} out for {spec.provider}")
    if spec.egress is not None and caps.egress and spec.egress not in caps.egress:
        raise InputError(f"--egress {spec.egress}: provider {spec.provider!r} offers "
                         f"{', '.join(caps.egress)}")
    if spec.spot and not caps.spot:
        raise InputError(f"--spot: provider {spec.provider!r} offers no spot capacity")


def refusal_message(findings: list[Finding]) -> str:
    lines = ["launch refused by the pre-launch checks (nothing was created):"]
    for f in findings:
        if f.severity != "error":
            continue
        lines.append(f"  [{f.severity}] {f.rule}: {f.message}")
        if f.suggestion:
            lines.append(f"      -> {f.suggestion}")
    return "\n".join(lines)


def prepare(spec: LaunchSpec, catalog: Catalog) -> tuple[LaunchSpec, list[Finding]]:
    """Checks and input normalisation, no I/O: the spec to launch and the non-fatal findings."""
    from nestcloud.provider import available, capabilities_of

    if spec.provider in available():  # else opening it fails, naming the known ones
        check_launch_options(spec, capabilities_of(spec.provider))  # bad input before refusal
    findings = run_checks(spec, catalog)
    if refused(findings):
        raise RefusedError(refusal_message(findings), findings=findings)
    if spec.user_data:
        from nestcloud.bootstrap import check_user_data

        check_user_data(spec.user_data, "user data")
    cidr = check_ssh_cidr(spec.ssh_cidr, spec.allow_world_ssh)
    updates: dict[str, Any] = {"ssh_cidr": cidr}
    if spec.name is None:
        updates["name"] = default_name(spec)
    return spec.model_copy(update=updates), findings


def run_launch(spec: LaunchSpec, catalog: Catalog, provider: Provider, *,
               dry_run: bool = False, types: tuple[str, ...] = (), exclusive: bool = False,
               adaptive: bool = False) -> LaunchOutcome:
    """Check, then launch ``spec`` through ``provider``: its whole outcome.

    ``types`` (equivalent types), ``exclusive`` (hold the launch lock) and ``adaptive``
    (client-side rate limiting) go only to a provider whose capabilities declare them."""
    from nestcloud.provider import LaunchRequest

    ready, findings = prepare(spec, catalog)
    caps = provider.capabilities
    check_tags(ready.tags, caps.tags)  # before the provider sends anything
    request = LaunchRequest(spec=ready, catalog=catalog, dry_run=dry_run,
                            types=types if caps.fleet_above is not None else (),
                            exclusive=exclusive and caps.launch_lock,
                            adaptive=adaptive and caps.adaptive_rate)
    outcome = provider.launch(request)
    if outcome.result is None:
        from nestcloud.errors import ProviderError

        raise ProviderError(f"provider {provider.name!r} returned no result from a launch "
                            "that did not fail", hint="this is a bug in the provider",
                            provider=provider.name, outcome=outcome)
    extra = [f"[{f.severity}] {f.rule}: {f.message}" for f in findings]
    result = outcome.result.model_copy(update={"notes": extra + list(outcome.result.notes)})
    return dataclasses.replace(outcome, result=result)


def launch(spec: LaunchSpec, catalog: Catalog, provider: Provider | None = None, *,
           dry_run: bool = False, types: tuple[str, ...] = (),
           **provider_options: Any) -> LaunchResult:
    """Check, then launch ``spec`` (through ``provider`` or one opened with
    ``provider_options``, see ``nestcloud.provider.open_provider``); its result."""
    if provider is None:
        from nestcloud.provider import open_provider

        prepare(spec, catalog)  # bad input is refused before any provider is made
        region = provider_options.pop("region", spec.region)
        provider = open_provider(spec.provider, region, **provider_options)
    result = run_launch(spec, catalog, provider, dry_run=dry_run, types=types).result
    assert result is not None
    return result
