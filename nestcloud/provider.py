"""The Provider protocol and the registry that finds providers by entry point.

Providers live outside the core and register under the entry-point group
``nestcloud.providers``; the built-in ``aws`` and ``azure`` do so from pyproject.toml exactly
as a third-party plugin would. A provider module may import its cloud SDK at module level: the
registry imports it only when that provider is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from nestcloud.errors import MissingDependencyError, ProviderError, UnknownProviderError

if TYPE_CHECKING:  # only annotations: listing providers must not build these models
    from nestcloud.catalog import Catalog
    from nestcloud.models import DownResult, Instance, LaunchResult, VerifyResult
    from nestcloud.spec import LaunchSpec

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


@runtime_checkable
class Provider(Protocol):
    """One cloud. Every verb acts on a *named group* of instances found by their tags.

    Contract, for every implementation:

    - ``launch(spec, catalog, dry_run)`` makes the group ``spec.name`` have ``spec.count``
      running instances of ``spec.type``: it reuses what already runs under that name and
      launches only what is missing, so re-running converges and never duplicates. Every
      resource it creates carries the tags ``nestcloud:name``, ``nestcloud:owner``,
      ``nestcloud:expires`` (when a TTL is set) and the user's tags, written with or before the
      create call. With ``dry_run`` it sends nothing that creates or changes anything and
      returns the requests it would send in ``LaunchResult.requests``.
    - ``list(name)`` returns the instances nestcloud created (all names when ``name`` is None),
      from the cloud's tags only: there is no local state.
    - ``down(name)`` removes every resource of that name and waits until they are gone;
      running it again when nothing is left is harmless and succeeds.
    - ``console(instance)`` returns the latest serial-console text of an instance (``""`` when
      the cloud has none yet) so readiness can be read without SSH.
    - ``verify_catalog(catalog, region)`` compares the catalog with the live API.
    - Errors are raised as ``nestcloud.errors`` types (``from`` the SDK's exception), never as
      SDK exceptions.

    Optional, looked up with ``getattr`` by labs (a provider without them works, slower or
    with fewer guarantees): ``use_adaptive()`` (client-side rate limiting for big labs),
    ``vcpu_quota(region)`` / ``quota_covers(type)`` (quota before a region is tried),
    ``prefetch(spec)`` (start the launch plan's reads while the lab searches for its seats),
    ``list_ahead(name)`` (``list`` whose answer the next launch of the name may reuse),
    ``exclusive`` (set True: hold a lock across machines for the whole launch; seats another
    run launched meanwhile go in ``found_live`` and are never rolled back; a failed launch
    keeps the lock until ``unlock()``, so the lab's rollback runs under it), ``created_any``
    (False: the launch failed before its first create, there is nothing to roll back) and
    ``last_attempts`` (attempt rows of a launch that succeeded after capacity errors).
    """

    name: str

    def launch(self, spec: LaunchSpec, catalog: Catalog, *, dry_run: bool = False
               ) -> LaunchResult: ...

    def list(self, name: str | None = None) -> list[Instance]: ...

    def down(self, name: str) -> DownResult: ...

    def console(self, instance: Instance) -> str: ...

    def verify_catalog(self, catalog: Catalog, region: str) -> VerifyResult: ...


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
