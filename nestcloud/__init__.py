"""nestcloud: launch cloud VMs that can run their own hypervisor (nested virtualization).

The Python API, for scripts and notebooks::

    import nestcloud
    nestcloud.plan(vcpus=4, memory_gib=16, seats=12, hours=6, budget=50)
    nestcloud.check(PROVIDER, "c8i.xlarge", region="us-east-1")   # PROVIDER: e.g. aws
    nestcloud.launch(PROVIDER, "c8i.xlarge", region="us-east-1", ttl="4h", sandbox=True)
    lab = nestcloud.Lab.from_file("lab.yaml"); lab.cost(); lab.up(); lab.status(); lab.down()

Every result gives plain data with ``.to_dict()`` and renders through ``nestcloud.render``
(``to_table``, ``to_json``, ``to_html``); Jupyter shows it as a table. Errors are
``nestcloud.errors`` types. Importing this package imports no cloud SDK; pydantic and the
catalog load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nestcloud.errors import (BudgetError, InputError, NestcloudError, ProviderError,
                              ReadinessTimeout, RefusedError)

if TYPE_CHECKING:
    from nestcloud.catalog import Catalog
    from nestcloud.checks import CheckResult
    from nestcloud.lab import Lab
    from nestcloud.models import LaunchResult
    from nestcloud.planner import PlanResult

__version__ = "0.1.0"

__all__ = [
    "BudgetError",
    "InputError",
    "Lab",
    "NestcloudError",
    "ProviderError",
    "ReadinessTimeout",
    "RefusedError",
    "__version__",
    "check",
    "launch",
    "load_catalog",
    "plan",
]


def _catalog(catalog: Catalog | str | None) -> Catalog:
    from nestcloud.catalog import Catalog, load_catalog

    if isinstance(catalog, Catalog):
        return catalog
    return load_catalog(catalog)


def load_catalog(path: str | None = None) -> Catalog:
    """The instance-type catalog (the built-in one, $NESTCLOUD_CATALOG, or ``path``)."""
    return _catalog(path)


def plan(vcpus: int | None = None, memory_gib: float | None = None, *,
         type: str | None = None, providers: list[str] | None = None,
         regions: list[str] | None = None, hypervisor: str = "kvm", os: str = "ubuntu-24.04",
         spot: bool = False, hours: float = 1.0, seats: int = 1,
         max_hourly: float | None = None, budget: float | None = None,
         pack_metal: bool = False, egress: str | None = None,
         catalog: Catalog | str | None = None) -> PlanResult:
    """Feasible places for ``seats`` seats of this size, cheapest total first.

    An empty result is not an error: ``result.require()`` raises the RefusedError or
    BudgetError that says what to relax."""
    from pydantic import ValidationError

    from nestcloud._yamlio import pydantic_problems
    from nestcloud.planner import PlanRequest
    from nestcloud.planner import plan as _plan

    try:
        req = PlanRequest(vcpus=vcpus, memory_gib=memory_gib, type=type, providers=providers,
                          regions=regions, hypervisor=hypervisor, os=os, spot=spot, hours=hours,
                          seats=seats, max_hourly=max_hourly, budget=budget,
                          pack_metal=pack_metal, egress=egress)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise InputError("; ".join(pydantic_problems(exc.errors(include_url=False),
                                                     style="keyword"))) from None
    return _plan(_catalog(catalog), req)


def check(provider: str, type: str, *, region: str | None = None, os: str = "ubuntu-24.04",
          hypervisor: str = "kvm", depth: int = 2, spot: bool = False,
          security_type: str = "Standard", image_generation: str | None = None,
          catalog: Catalog | str | None = None) -> CheckResult:
    """The pre-launch findings for one launch, without launching (bad values: InputError
    naming the keyword)."""
    from nestcloud.checks import CheckResult, refused, run_checks
    from nestcloud.spec import LaunchSpec

    spec = LaunchSpec(provider=provider, type=type, region=region, os=os,
                      hypervisor=hypervisor, depth=depth, spot=spot,
                      security_type=security_type, image_generation=image_generation)
    findings = run_checks(spec, _catalog(catalog))
    return CheckResult(ok=not refused(findings), provider=provider, type=type, region=region,
                       findings=findings)


# The keywords are LaunchSpec's fields with its defaults (``ttl`` for ``ttl_seconds``: a
# duration or hours), spelled out for editors and help(); tests/test_schema.py keeps them equal
# to the model. LaunchSpec validates them, once; a bad one is a SpecError (an InputError)
# naming the keyword.
def launch(provider: str, type: str, *, region: str | None = None, name: str | None = None,
           count: int = 1, ttl: str | float | None = "4h", os: str = "ubuntu-24.04",
           hypervisor: str = "kvm", depth: int = 2, spot: bool = False,
           security_type: str = "Standard", image_generation: str | None = None,
           image: str | None = None, disk_gib: int = 30, key_name: str | None = None,
           ssh_cidr: str | None = None, allow_world_ssh: bool = False, public_ip: bool = False,
           egress: str | None = None, tags: dict[str, str] | None = None,
           user_data: str | None = None, l2_smoke: bool = False,
           instance_profile: str | None = None, dry_run: bool = False, sandbox: bool = False,
           catalog: Catalog | str | None = None) -> LaunchResult:
    """Check and launch ``count`` L1 hosts as the group ``name`` (re-running converges).

    ``ttl`` is a duration ("90m", "4h") or hours; the instances carry nestcloud:expires and
    ``nestcloud reap`` removes them after it. ``sandbox`` uses the local EC2 endpoint."""
    fields = dict(locals())  # the keywords, before anything else is bound here
    for own in ("ttl", "dry_run", "sandbox", "catalog"):
        del fields[own]
    from nestcloud.provider import open_provider
    from nestcloud.launcher import launch as _launch
    from nestcloud.spec import LaunchSpec, duration_seconds

    try:
        fields["ttl_seconds"] = None if ttl is None else duration_seconds(ttl)
    except ValueError as exc:
        raise InputError(f"ttl: {exc}") from None
    spec = LaunchSpec(**{**fields, "tags": tags or {}})
    cat = _catalog(catalog)
    prov = open_provider(provider, region, sandbox=sandbox)
    return _launch(spec, cat, prov, dry_run=dry_run)


def __getattr__(name: str) -> Any:
    # Lab pulls in pydantic and the planner: load it when first used, not on `import nestcloud`.
    if name == "Lab":
        from nestcloud.lab import Lab

        return Lab
    raise AttributeError(f"module 'nestcloud' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
