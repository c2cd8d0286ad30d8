"""The Provider protocol and the registry that finds providers by entry point.

Providers live outside the core and register under the entry-point group
``nestcloud.providers``; the built-in ``aws`` and ``azure`` do so from pyproject.toml exactly
as a third-party plugin would. A provider module may import its cloud SDK at module level: the
registry imports it only when that provider is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from nestcloud.errors import MissingDependencyError, ProviderError, UnknownProviderError

if TYPE_CHECKING:  # only annotations: listing providers must not build these models
    from nestcloud.catalog import Catalog
    from nestcloud.failover import Attempt
    from nestcloud.models import DownResult, Instance, LaunchResult, VerifyResult
    from nestcloud.spec import LaunchSpec, TagLimits

GROUP = "nestcloud.providers"

# The pip extra that brings each built-in provider's SDK, and the distributions that extra
# installs (checked through installed metadata, so asking never imports an SDK).
EXTRAS: dict[str, str] = {"aws": "aws", "azure": "azure"}
SDK_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "aws": ("boto3",),
    "azure": ("azure-mgmt-compute", "azure-mgmt-network", "azure-mgmt-resource",
              "azure-identity"),
}
# Top-level modules whose absence means "install the extra", not "the plugin is broken".
SDK_MODULES: dict[str, tuple[str, ...]] = {"aws": ("boto3", "botocore"), "azure": ("azure",)}


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
    """How the cloud takes user data; ``nestcloud.bootstrap`` renders to this declaration."""

    limit_bytes: int                          # raw bytes, before the base64 the API wraps
    gzip: bool = True                         # the guest's cloud-init gunzips user data
    windows: WindowsDelivery = "unsupported"  # "user-data": <powershell> in user data runs
    #                                           (EC2); "provider": user data is NOT run on
    #                                           Windows, the provider runs the script itself
    readiness: ReadinessChannel = "console"   # where a Linux L1's marker is read
    windows_readiness: ReadinessChannel = "console"


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
    user_data: UserDataEnvelope = UserDataEnvelope(limit_bytes=16 * 1024)
    tags: TagLimits | None = None    # what the cloud accepts as tags, checked before a create


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


@runtime_checkable
class Provider(Protocol):
    """One cloud. Every verb acts on a *named group* of instances found by their tags.

    A provider is a class registered under the entry-point group ``nestcloud.providers``
    (``name = "package.module:Class [extra]"``; the extra names what ``pip install
    'nestcloud[extra]'`` brings). Its module must import no cloud SDK at import time: ``check``,
    ``plan`` and the CLI read the class attributes below without creating anything.

    Class attributes:

    - ``name``: the registered name; ``capabilities``: :class:`Capabilities`;
      ``options``: the construction options (:class:`ProviderOption`) besides ``region``.
    - ``rules(spec, catalog, type)`` (classmethod): the provider's own pre-launch rules,
      returning ``nestcloud.checks.Finding`` lists; pure, no SDK, no I/O.

    Constructor: ``Provider(region=None, **options)`` with the declared options.

    Required verbs:

    - ``launch(request)`` makes the group ``request.spec.name`` have ``spec.count`` running
      instances of ``spec.type`` (or of ``request.types``): it reuses what already runs under
      that name and launches only what is missing, so re-running converges and never
      duplicates. Every resource it creates carries the tags ``nestcloud:name``,
      ``nestcloud:owner``, ``nestcloud:expires`` (when a TTL is set) and the user's tags,
      written with or before the create call. With ``dry_run`` it sends nothing that creates
      or changes anything and returns the requests it would send. It returns a
      :class:`LaunchOutcome`; on failure it raises a ``nestcloud.errors.ProviderError`` whose
      ``scope`` says what the failure rules out and whose ``outcome`` says what it left.
    - ``list(name)``: the instances nestcloud created (every name when None), from the
      cloud's tags only: there is no local state.
    - ``down(name)`` removes every resource of that name and waits until they are gone;
      running it again when nothing is left is harmless and succeeds.
    - ``console(instance)``: the latest serial-console text (``""`` when none yet).
    - ``verify_catalog(catalog, region)``: the catalog compared with the live API.

    Optional verbs, called only when ``capabilities`` declares them: ``vcpu_quota(region,
    type) -> Quota`` (quota), ``prefetch(spec)`` (prefetch), ``unlock(name)`` (launch_lock),
    ``local_endpoint() -> dict`` (classmethod, local_endpoint: the constructor options that
    point the provider at a local endpoint it started).

    Errors are ``nestcloud.errors`` types raised ``from`` the SDK's exception, never SDK
    exceptions, and their messages never include credentials or authorization headers.
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


class QuotaReader(Protocol):
    def vcpu_quota(self, region: str, type: str) -> Quota: ...


class Prefetcher(Protocol):
    def prefetch(self, spec: LaunchSpec) -> None: ...


class Locker(Protocol):
    def unlock(self, name: str) -> None: ...


ProviderFactory = Callable[..., Provider]

_extra: dict[str, ProviderFactory] = {}


def register(name: str, factory: ProviderFactory) -> None:
    """Register a provider in-process (tests, notebooks); entry points are the normal way."""
    _extra[name] = factory


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def available() -> list[str]:
    """Names of every provider that can be asked for (nothing is imported)."""
    return sorted(set(_entry_points()) | set(_extra))


def missing_sdk(name: str) -> list[str]:
    """The SDK distributions provider ``name`` needs that are not installed (no import)."""
    from importlib.metadata import PackageNotFoundError, distribution

    missing = []
    for dist in SDK_DISTRIBUTIONS.get(name, ()):
        try:
            distribution(dist)
        except PackageNotFoundError:
            missing.append(dist)
    return missing


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
        dist = getattr(ep, "dist", None)
        missing = missing_sdk(name)
        out.append({"name": name, "origin": f"{ep.value} ({dist.name if dist else 'entry point'})",
                    "installed": not missing, "missing": missing, "extra": EXTRAS.get(name)})
    return out


def _install_hint(name: str) -> str:
    extra = EXTRAS.get(name)
    if extra:
        return f"pip install 'nestcloud[{extra}]'"
    return f"install the package that provides the {name!r} provider"


def load_factory(name: str) -> ProviderFactory:
    """The provider class (or factory) registered as ``name``."""
    if name in _extra:
        return _extra[name]
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(available()) or "none installed"
        raise UnknownProviderError(f"unknown provider {name!r} (known: {known})",
                                   hint="third-party providers register under the "
                                        f"'{GROUP}' entry-point group")
    ep = eps[name]
    try:
        return ep.load()  # type: ignore[no-any-return]
    except ImportError as exc:
        missing = exc.name or ""
        own = ep.value.split(":", 1)[0]
        is_own = bool(missing) and (own == missing or own.startswith(missing + "."))
        if missing.split(".", 1)[0] in SDK_MODULES.get(name, ()) or (
                name not in SDK_MODULES and missing and not is_own):
            raise MissingDependencyError(
                f"provider {name!r} needs the module {missing!r}, which is not installed",
                hint=_install_hint(name), provider=name) from exc
        # The plugin's own code is missing or broken: installing an extra would not help.
        raise ProviderError(
            f"provider {name!r} is registered as {ep.value!r} but cannot be imported: {exc}",
            hint="reinstall the package that provides it", provider=name) from exc
    except AttributeError as exc:
        raise ProviderError(
            f"provider {name!r} is registered as {ep.value!r}, which does not exist: {exc}",
            hint="reinstall the package that provides it", provider=name) from exc


def get_provider(name: str, **options: Any) -> Provider:
    """Instantiate a provider by name with provider-specific options (region, endpoint...)."""
    return load_factory(name)(**options)
