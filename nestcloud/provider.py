"""The Provider protocol and the registry that finds providers by entry point.

Providers live outside the core and register under the entry-point group
``nestcloud.providers``; the built-in ``aws`` and ``azure`` do so from pyproject.toml exactly
as a third-party plugin would. A provider module may import its cloud SDK at module level: the
registry imports it only when that provider is asked for, and ``check``, ``plan`` and the
CLI read only its class attributes (which need no SDK).

The contract is documented once, on :class:`Provider`; :func:`open_provider` is the one
factory the CLI, labs, reap and the Python API build providers with.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint, entry_points
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from nestcloud.errors import (InputError, MissingDependencyError, ProviderError,
                              UnknownProviderError)

if TYPE_CHECKING:  # only annotations: listing providers must not build these models
    from nestcloud.catalog import Catalog, InstanceType
    from nestcloud.checks import Finding
    from nestcloud.failover import Attempt
    from nestcloud.models import DownResult, Instance, LaunchResult, VerifyResult
    from nestcloud.spec import LaunchSpec, TagLimits

GROUP = "nestcloud.providers"

Scope = Literal["zone", "type", "region", "account", "credentials", "request", "provider"]
"""What a provider error rules out, set by the provider (``ProviderError.scope``):

    zone         no capacity in that zone now: another zone or type may work
    type         the cloud refused this type (or feature on it) there: try another type
    region       a regional limit (quota, throttling): skip the region
    account      the account/subscription/project cannot do this anywhere: stop
    credentials  missing, expired or rejected credentials: stop
    request      the request itself is wrong (bad input the cloud caught): stop
    provider     the provider cannot run here (SDK missing, plugin broken): skip the provider
"""

ReadinessChannel = Literal["console", "tag", "guest-attribute", "run-command"]
WindowsDelivery = Literal["user-data", "provider", "unsupported"]


@dataclass(frozen=True)
class ProviderOption:
    """One construction option a provider declares; the CLI, labs, reap and the Python API
    all offer it (``--flag`` / ``envvar``) and pass it to the provider's constructor."""

    name: str                  # the constructor's keyword, e.g. "subscription_id"
    flag: str                  # the CLI flag, e.g. "--subscription"
    help: str
    envvar: str | None = None  # read when the flag is not given, e.g. "AZURE_SUBSCRIPTION_ID"


@dataclass(frozen=True)
class UserDataEnvelope:
    """How the cloud takes user data; ``nestcloud.bootstrap`` renders to this declaration.

    Over ``limit_bytes`` the body is gzipped only with ``gzip`` (never a Windows script),
    else refused (exit 2). ``windows="unsupported"`` refuses a Windows L1 (exit 3). The Linux
    L1 reports on the serial console, and through ``linux_report_script`` where the provider
    gives one (any other ``readiness`` channel needs it); the Windows L1 writes the
    ``nestcloud:l1`` tag (through ``windows_tag_script``) and a marker file (``"tag"`` /
    ``"run-command"``): declaring a channel the L1 does not write is a provider error."""

    limit_bytes: int                          # raw bytes, before the base64 the API wraps
    gzip: bool = True                         # the guest's cloud-init gunzips user data
    windows: WindowsDelivery = "unsupported"  # "user-data": <powershell> in user data runs
    #                                           (EC2); "provider": user data is NOT run on
    #                                           Windows, the provider runs the script itself
    readiness: ReadinessChannel = "console"   # where a Linux L1's marker is read
    windows_readiness: ReadinessChannel = "console"
    # PowerShell defining ``function Set-NcTag([string]$Value)``: how a Windows L1 writes its
    # readiness JSON as the ``nestcloud:l1`` tag of its own VM through the cloud's metadata
    # service (``$NcTag`` holds the tag's name). Empty: the L1 writes no tag, only the marker
    # file (``windows_readiness="run-command"``).
    windows_tag_script: str = ""
    # sh commands a Linux L1 runs after its check to publish the check's payload (saved at
    # nestcloud.bootstrap.profiles.L1_STATE_PATH) where ``readiness`` says, e.g. a guest
    # attribute; ``console()`` then returns that marker. Empty: the console only.
    linux_report_script: str = ""


@dataclass(frozen=True)
class Capabilities:
    """What a provider offers beyond the required verbs. Callers read this, never probe the
    provider object; an optional verb is called only when its capability is declared."""

    fleet_above: int | None = None   # launches of more seats go through one fleet call that
    #                                  takes equivalent types (LaunchRequest.types)
    quota: bool = False              # vcpu_quota(region, type) answers (QuotaReader)
    launch_lock: bool = False        # LaunchRequest.exclusive holds a lock across machines;
    #                                  unlock(name) releases one a failed launch kept
    prefetch: bool = False           # prefetch(spec) gives the launch's reads a head start
    adaptive_rate: bool = False      # LaunchRequest.adaptive: client-side rate limiting
    native_ttl: bool = False         # the cloud itself deletes instances past their TTL
    spot: bool = False               # spot/preemptible capacity
    windows: bool = False            # can host a Windows L1
    local_endpoint: bool = False     # local_endpoint() starts a local endpoint (--sandbox)
    leftovers: bool = False          # leftovers(name, instances) lists what names without
    #                                  instances still have (`ls` shows, `down NAME` removes)
    user_data: UserDataEnvelope = UserDataEnvelope(limit_bytes=16 * 1024)
    tags: TagLimits | None = None    # what the cloud accepts as tags, checked before a create
    launch_options: frozenset[str] = frozenset()  # optional LaunchOptions fields it honours
    #                                  ("instance_profile", "security_type", ...); the core
    #                                  refuses a launch that sets any other optional field
    egress: tuple[str, ...] = ()     # outbound paths --egress may choose, the default first;
    #                                  egress_cost(mode, instances) prices them
    rules: bool = False              # rules(spec, catalog, entry): its own pre-launch checks
    prices: str | None = None        # fetch_prices(regions): where its prices come from
    #                                  (this text is the catalog's source description)
    access_policy: bool = False      # access_policy(instance_role, l1): least-privilege policy
    planned_unnamed: bool = True     # plans and labs that name no provider consider it; False:
    #                                  only when named (e.g. hosts on the user's own machine,
    #                                  which a plan must not pick in place of a cloud unasked)


@dataclass(frozen=True)
class LaunchRequest:
    """What the core hands ``Provider.launch``: a checked spec and how to launch it."""

    spec: LaunchSpec
    catalog: Catalog
    dry_run: bool = False
    types: tuple[str, ...] = ()   # equivalent types; only when capabilities.fleet_above
    exclusive: bool = False       # hold the launch lock throughout; capabilities.launch_lock
    adaptive: bool = False        # many calls ahead; capabilities.adaptive_rate


@dataclass(frozen=True)
class LaunchOutcome:
    """Everything a launch did, returned (or carried by the ProviderError it raised)."""

    result: LaunchResult | None = None          # None when it failed
    attempts: tuple[Attempt, ...] = ()          # per-zone/type errors it absorbed
    created_any: bool = True                    # False: nothing of this run to roll back
    found_live: tuple[str, ...] = ()            # seats another run launched meanwhile
    lock_held: bool = False                     # the caller must unlock(name) when done


@dataclass(frozen=True)
class Quota:
    """A region's vCPU limit for a type, or why it is unknown (``limit`` None)."""

    limit: float | None
    how: str


@dataclass(frozen=True)
class LocalEndpoint:
    """A provider's local endpoint as `nestcloud sandbox` reports it."""

    url: str                    # "" for a server found that does not answer
    pid: int | None
    limits: str                 # what the endpoint does not do, in one sentence or two
    started: bool = False       # this call started it
    running: bool = True        # False: a status of an endpoint that does not run (its
    #                             state file and limits still shown)
    state_file: str | None = None
    detail: tuple[tuple[str, Any], ...] = ()   # more fields for --json (port, versions)


@dataclass(frozen=True)
class EgressCost:
    """What a group's outbound path costs per hour, and a note saying so with its date."""

    mode: str
    usd_per_hour: float
    note: str
    price_date: str | None


NO_EGRESS_WARNING = ("none: the hosts have no route to the internet (no public address, no "
                     "NAT): the bootstrap cannot install packages or download Firecracker, so "
                     "the L1 never reports ready unless its image already holds everything")

PriceTable = dict[tuple[str, str], tuple[float | None, float | None]]
"""(type name, region) -> (on-demand USD/h or None, spot USD/h or None)."""


@dataclass(frozen=True)
class PriceFetch:
    """What ``fetch_prices`` read: the table, and whether it holds spot prices at all (when
    not, a refreshed entry drops its old spot price rather than date it today)."""

    table: PriceTable
    spot: bool = True
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class AccessPolicy:
    """A least-privilege policy document and the sentences that explain it."""

    document: dict[str, Any]
    explain: str


@runtime_checkable
class Provider(Protocol):
    """One cloud. Every verb acts on a *named group* of instances found by their tags.

    **Registering.** A provider is a class registered under the entry-point group
    ``nestcloud.providers``, e.g. in pyproject.toml::

        [project.entry-points."nestcloud.providers"]
        mycloud = "nestcloud_mycloud:MyCloud [mycloud]"

    The optional ``[extra]`` names the pip extra of the distribution that brings the cloud's
    SDK (``pip install 'nestcloud[aws]'``); its ``Requires-Dist`` lines are what `nestcloud
    providers` reports as missing. The module must import no cloud SDK at import time: the
    CLI, ``check`` and ``plan`` read the class attributes below without making anything.

    **Class attributes** (read by the core instead of probing the object):

    - ``name``: the registered name.
    - ``capabilities``: :class:`Capabilities`, what the provider offers beyond the required
      verbs. The core calls an optional verb only when its capability is declared.
    - ``options``: the construction options besides ``region`` (:class:`ProviderOption`):
      every command that reaches a cloud offers their flags, and :func:`open_provider`
      refuses any other option. Declare ``()`` when there are none.

    **Class methods:**

    - ``configured(**options) -> bool``: whether this provider can be used here without
      being named (credentials or settings found); `ls`/`down` without ``--provider`` ask
      every installed provider. It may import the SDK; it must not call the cloud.
    - ``local_endpoint(note=None) -> dict`` (only with ``capabilities.local_endpoint``):
      starts (or finds) a local endpoint and returns the constructor options that point the
      provider at it (``--sandbox``); ``"region"`` in it is the default region there. ``note``
      (a callable taking one line, or None) hears what it started, for the user.
    - ``endpoint_control(action, note) -> LocalEndpoint | None`` (with ``local_endpoint``):
      ``"start"``, ``"status"`` or ``"stop"`` the local endpoint for `nestcloud sandbox`;
      None (or, for status, ``running=False``) when none runs.

    **Constructor:** ``Provider(region=None, **options)`` with the declared options.

    **Required verbs:**

    - ``launch(request: LaunchRequest) -> LaunchOutcome`` makes the group
      ``request.spec.name`` have ``spec.count`` running instances of ``spec.type`` (or of
      ``request.types``): it reuses what already runs under that name and launches only what
      is missing, so re-running converges and never duplicates. Every resource it creates
      carries the tags ``nestcloud:name``, ``nestcloud:owner``, ``nestcloud:expires`` (when a
      TTL is set) and the user's tags, written with or before the create call. With
      ``dry_run`` it sends nothing that creates or changes anything and returns the requests
      it would send. It returns everything the launch did (:class:`LaunchOutcome`) and keeps
      nothing about the launch on the object (labs launch from several threads). On failure it
      raises a ``nestcloud.errors.ProviderError`` whose ``scope`` says what the failure rules
      out (:data:`Scope`) and whose ``outcome`` says what it left (Ctrl-C:
      ``nestcloud.errors.LaunchInterrupted`` with the same ``outcome``).
    - ``list(name=None) -> list[Instance]``: the instances nestcloud created (every name
      when None), from the cloud's tags only: there is no local state.
    - ``down(name) -> DownResult`` removes every resource of that name and waits until they
      are gone; running it again when nothing is left is harmless and succeeds.
    - ``console(instance) -> str``: the latest serial-console text (``""`` when none yet).
    - ``verify_catalog(catalog, region) -> VerifyResult``: the catalog against the live API.

    **Optional verbs**, called only when ``capabilities`` declares them:

    - ``vcpu_quota(region, type) -> Quota | None`` (``quota``): the on-demand vCPU limit
      that applies to ``type`` (None: no quota the provider reads applies to that type);
      ``Quota(None, why)`` when it cannot be read (never raises for that).
    - ``prefetch(spec)`` (``prefetch``): start the launch's read-only lookups early.
    - ``unlock(name)`` (``launch_lock``): release the launch lock a failed ``exclusive``
      launch kept (``outcome.lock_held``) once the caller has rolled back.
    - ``leftovers(name, instances) -> list[dict]`` (``leftovers``): resources of names that
      have no instance any more (rows with provider, name, region, kind, id; ``instances`` is
      the listing the caller already has); ``down(name)`` removes them.

    **Optional class methods**, called on the class (no object, no SDK import, no network
    unless said), only when ``capabilities`` declares them:

    - ``rules(spec, catalog, entry) -> list[Finding]`` (``rules``): the cloud's own
      pre-launch checks (``nestcloud.checks.Finding``), run by ``check``, ``plan`` and every
      launch after the core's; ``entry`` is the catalog's ``InstanceType`` or None. Pure.
    - ``egress_cost(mode, instances) -> EgressCost | None`` (``egress``): the hourly cost of
      ``instances`` hosts' outbound path ``mode`` (None: the default, ``egress[0]``), with a
      note naming its source and date. Pure.
    - ``fetch_prices(regions, catalog) -> PriceFetch`` (``prices``): on-demand (and spot)
      USD/hour per (type, region) from the cloud's price API (``catalog refresh-prices``);
      ``catalog`` is the one being refreshed (its types' shapes, where prices come per vCPU
      and GiB); network.
    - ``access_policy(instance_role=None, l1=False) -> AccessPolicy`` (``access_policy``):
      the least-privilege policy nestcloud needs (``iam-policy``); ``instance_role`` also lets
      the operator hand that role to hosts, ``l1`` asks for the L1 host's own policy instead.
      Raises ``InputError`` for a combination the cloud has no use for. Pure.

    **Errors** are ``nestcloud.errors`` types raised ``from`` the SDK's exception, never SDK
    exceptions; the provider sets ``scope`` (or uses a subclass whose ``default_scope`` fits:
    CapacityError zone, UnsupportedError type, QuotaError/ThrottledError region,
    CredentialsError credentials). Messages never include credentials or authorization
    headers, and no caller reads meaning from message text.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    options: ClassVar[tuple[ProviderOption, ...]]
    region: str | None

    def launch(self, request: LaunchRequest) -> LaunchOutcome: ...

    def list(self, name: str | None = None) -> list[Instance]: ...

    def down(self, name: str) -> DownResult: ...

    def console(self, instance: Instance) -> str: ...

    def verify_catalog(self, catalog: Catalog, region: str) -> VerifyResult: ...


class EndpointControl(Protocol):
    """``capabilities.local_endpoint`` (on the class)."""

    @classmethod
    def endpoint_control(cls, action: Literal["start", "status", "stop"],
                         note: Callable[[str], None]) -> LocalEndpoint | None: ...


class ProviderRules(Protocol):
    """``capabilities.rules`` (on the class)."""

    @classmethod
    def rules(cls, spec: LaunchSpec, catalog: Catalog, entry: InstanceType | None
              ) -> list[Finding]: ...


class EgressPricer(Protocol):
    """``capabilities.egress`` (on the class)."""

    @classmethod
    def egress_cost(cls, mode: str | None, instances: int) -> EgressCost | None: ...


class PriceSource(Protocol):
    """``capabilities.prices`` (on the class)."""

    @classmethod
    def fetch_prices(cls, regions: Sequence[str], catalog: Catalog) -> PriceFetch: ...


class AccessPolicyWriter(Protocol):
    """``capabilities.access_policy`` (on the class)."""

    @classmethod
    def access_policy(cls, instance_role: str | None = None, l1: bool = False
                      ) -> AccessPolicy: ...


class QuotaReader(Protocol):
    """``capabilities.quota``."""

    def vcpu_quota(self, region: str, type: str) -> Quota | None: ...


class Prefetcher(Protocol):
    """``capabilities.prefetch``."""

    def prefetch(self, spec: LaunchSpec) -> None: ...


class Locker(Protocol):
    """``capabilities.launch_lock``."""

    def unlock(self, name: str) -> None: ...


ProviderClass = Any  # a class following Provider (its ClassVars are read before it is made)

_extra: dict[str, ProviderClass] = {}


def register(name: str, cls: ProviderClass) -> None:
    """Register a provider class in-process (tests, notebooks); entry points are the normal
    way. The class declares ``name``, ``capabilities`` and ``options`` like any provider."""
    _extra[name] = cls


_eps_seen: tuple[tuple[str, ...], dict[str, EntryPoint]] | None = None


def _entry_points() -> dict[str, EntryPoint]:
    """The group's entry points, read again only when ``sys.path`` changed (reading them scans
    every installed distribution; ``check`` and ``plan`` ask once per catalog entry)."""
    global _eps_seen
    key = tuple(sys.path)
    if _eps_seen is None or _eps_seen[0] != key:
        _eps_seen = (key, {ep.name: ep for ep in entry_points(group=GROUP)})
    return _eps_seen[1]


def available() -> list[str]:
    """Names of every provider that can be asked for (nothing is imported)."""
    return sorted(set(_entry_points()) | set(_extra))


_EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def _extra_requirements(ep: EntryPoint) -> list[str]:
    """The distribution names the entry point's extras require, read from the installed
    metadata of the distribution that registers it (``Requires-Dist: SDK; extra == "EXTRA"``)."""
    if not ep.extras or ep.dist is None:
        return []
    wanted = set(ep.extras)
    out: list[str] = []
    for line in ep.dist.requires or []:
        req, _, marker = line.partition(";")
        m = _EXTRA_MARKER.search(marker)
        if m is None or m.group(1) not in wanted:
            continue
        dist = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
        if dist and dist.group(1) not in out:
            out.append(dist.group(1))
    return out


def missing_sdk(name: str) -> list[str]:
    """The distributions provider ``name``'s extra needs that are not installed (no import)."""
    from importlib.metadata import PackageNotFoundError, distribution

    ep = _entry_points().get(name)
    if ep is None or name in _extra:
        return []
    missing = []
    for dist in _extra_requirements(ep):
        try:
            distribution(dist)
        except PackageNotFoundError:
            missing.append(dist)
    return missing


def _extra_of(ep: EntryPoint) -> str | None:
    return ep.extras[0] if ep.extras else None


def describe() -> list[dict[str, Any]]:
    """Name, origin and whether the SDK is installed, for `nestcloud providers` (no import)."""
    out: list[dict[str, Any]] = []
    eps = _entry_points()
    for name in available():
        if name in _extra:
            out.append({"name": name, "origin": "registered in-process", "installed": True,
                        "missing": [], "extra": None})
            continue
        ep = eps[name]
        missing = missing_sdk(name)
        value = ep.value.split("[", 1)[0].strip()
        out.append({"name": name,
                    "origin": f"{value} ({ep.dist.name if ep.dist else 'entry point'})",
                    "installed": not missing, "missing": missing, "extra": _extra_of(ep)})
    return out


def _install_hint(ep: EntryPoint) -> str:
    extra = _extra_of(ep)
    if extra:
        dist = ep.dist.name if ep.dist else "nestcloud"
        return f"pip install '{dist}[{extra}]'"
    return f"install the package that provides the {ep.name!r} provider"


def load_factory(name: str) -> ProviderClass:
    """The provider class registered as ``name`` (its module is imported, nothing is made)."""
    if name in _extra:
        return _extra[name]
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(available()) or "none installed"
        raise UnknownProviderError(f"unknown provider {name!r} (known: {known})",
                                   hint="third-party providers register under the "
                                        f"'{GROUP}' entry-point group")
    ep = eps[name]
    value = ep.value.split("[", 1)[0].strip()
    try:
        return ep.load()
    except ImportError as exc:
        missing = exc.name or ""
        own = value.split(":", 1)[0]
        # A module of the plugin's own top-level package: its code is broken, not its SDK.
        is_own = bool(missing) and missing.split(".", 1)[0] == own.split(".", 1)[0]
        # Only a module that is not there at all is a missing dependency: "cannot import
        # name" means an installed module (the plugin's, or nestcloud's) does not match.
        if isinstance(exc, ModuleNotFoundError) and missing and not is_own:
            raise MissingDependencyError(
                f"provider {name!r} needs the module {missing!r}, which is not installed",
                hint=_install_hint(ep), provider=name) from exc
        # The plugin's own code is missing or broken: installing an extra would not help.
        raise ProviderError(
            f"provider {name!r} is registered as {value!r} but cannot be imported: {exc}",
            hint="reinstall the package that provides it", provider=name) from exc
    except AttributeError as exc:
        raise ProviderError(
            f"provider {name!r} is registered as {value!r}, which does not exist: {exc}",
            hint="reinstall the package that provides it", provider=name) from exc
    except Exception as exc:  # noqa: BLE001 - a plugin's import is code we do not control
        raise ProviderError(
            f"provider {name!r} ({value!r}) failed while being imported: "
            f"{type(exc).__name__}: {exc}",
            hint="report it to the provider's authors", provider=name) from exc


def capabilities_of(name: str) -> Capabilities:
    """What provider ``name`` declares (its class is imported, nothing is made)."""
    caps: Capabilities = load_factory(name).capabilities
    return caps


def has_local_endpoint(name: str) -> bool:
    """Whether provider ``name`` declares a local endpoint (False when it cannot be loaded)."""
    try:
        return capabilities_of(name).local_endpoint
    except ProviderError:
        return False
    except InputError:  # an unknown name
        return False


def planned_unnamed(name: str) -> bool:
    """Whether plans that name no provider consider provider ``name`` (its declaration; a
    provider that is not installed or cannot be loaded keeps its catalog entries planned, and
    fails when launched, as before)."""
    if name not in available():
        return True
    try:
        return capabilities_of(name).planned_unnamed
    except ProviderError:
        return True


def options_of(name: str) -> tuple[ProviderOption, ...]:
    """The construction options provider ``name`` declares."""
    opts: tuple[ProviderOption, ...] = load_factory(name).options
    return opts


def open_provider(name: str, region: str | None = None, *, sandbox: bool = False,
                  note: Callable[[str], None] | None = None, **options: Any) -> Provider:
    """The one factory: provider ``name`` for ``region`` with its declared ``options``.

    Options that are None are left out (the provider's default, or its declared environment
    variable, applies). An option the provider does not declare is bad input naming the ones
    it does. ``sandbox`` points it at its local endpoint (``capabilities.local_endpoint``);
    a provider without one is bad input too (``note`` hears what starting it did)."""
    cls = load_factory(name)
    declared: tuple[ProviderOption, ...] = cls.options
    known = {o.name: o for o in declared}
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(k for k in given if k not in known)
    if unknown:
        offered = ", ".join(f"{o.name} ({o.flag})" for o in declared) or "none"
        raise InputError(f"provider {name!r} takes no option {', '.join(map(repr, unknown))} "
                         f"(its options: {offered})")
    for opt in declared:
        if opt.name not in given and opt.envvar and os.environ.get(opt.envvar):
            given[opt.name] = os.environ[opt.envvar]
    if sandbox:
        caps: Capabilities = cls.capabilities
        if not caps.local_endpoint:
            raise InputError(f"--sandbox: provider {name!r} has no local endpoint",
                             hint="run without --sandbox (or point it at a local fake "
                                  "through its own options)")
        local: dict[str, Any] = dict(cls.local_endpoint(note))
        default_region = local.pop("region", None)
        given.update(local)
        region = region or default_region
    provider: Provider = cls(region=region, **given)
    return provider


# -- small helpers every provider needs the same way -------------------------------------------


def local_owner() -> str:
    """Who launches, as this machine knows it: ``NESTCLOUD_OWNER``, else the login name
    ("unknown" when there is none, as in some containers). Providers that know a better
    identity (a cloud principal) may prefer it."""
    import getpass

    try:
        return os.environ.get("NESTCLOUD_OWNER") or getpass.getuser()
    except Exception:  # noqa: BLE001 - getpass raises KeyError/OSError/... without a user
        return "unknown"


def is_loopback_host(host: str | None) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    import ipaddress

    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_http(url: str | None) -> bool:
    """A plain-``http`` URL to this machine: where a provider may send anonymous credentials
    (a local fake or endpoint), never the user's."""
    from urllib.parse import urlparse

    if not url:
        return False
    parsed = urlparse(url)
    return parsed.scheme == "http" and is_loopback_host(parsed.hostname)


def get_provider(name: str, **options: Any) -> Provider:
    """Instantiate a provider by name with constructor options, unchecked (tests, internal
    callers that pass more than the declared options, e.g. an SDK session)."""
    provider: Provider = load_factory(name)(**options)
    return provider


def configured(**options: Any) -> list[str]:
    """Installed providers that say they can be used here without being named
    (``configured(**options)`` on each class, given the options it declares, from
    ``options`` or their environment variables)."""
    out: list[str] = []
    for row in describe():
        if not row["installed"]:
            continue
        try:
            cls = load_factory(row["name"])
        except ProviderError:
            continue
        mine = {o.name: options[o.name] for o in cls.options
                if options.get(o.name) is not None}
        mine.update({o.name: os.environ[o.envvar] for o in cls.options
                     if o.name not in mine and o.envvar and os.environ.get(o.envvar)})
        if cls.configured(**mine):
            out.append(row["name"])
    return out
