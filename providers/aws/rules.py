"""EC2's own pre-launch rules (``AwsProvider.rules``): pure functions of the launch, the
catalog and its entry, run by ``check``, ``plan`` and every launch after the core's rules.
No SDK, no I/O."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nestcloud.catalog import Catalog, InstanceType
    from nestcloud.checks import Finding
    from nestcloud.spec import LaunchSpec

    Rule = Callable[[LaunchSpec, Catalog, InstanceType | None], list[Finding]]

WINDOWS_MAX_VCPUS = 192  # FACTS.md: no Windows L1 support above 192 vCPUs on AWS


def windows_vcpus(spec: LaunchSpec, catalog: Catalog, t: InstanceType | None
                  ) -> list[Finding]:
    """A nested Windows L1 on more than WINDOWS_MAX_VCPUS vCPUs is refused."""
    from nestcloud.checks import Finding
    from nestcloud.oses import OSES

    info = OSES.get(spec.os)
    if (t is None or info is None or info.family != "windows"
            or t.vcpus <= WINDOWS_MAX_VCPUS or t.nesting != "nested"):
        return []
    return [Finding(rule="windows-vcpus", severity="error",
                    message=f"{t.name} has {t.vcpus} vCPUs: AWS supports a nested Windows L1 "
                            f"only up to {WINDOWS_MAX_VCPUS} vCPUs",
                    suggestion=f"pick a size with at most {WINDOWS_MAX_VCPUS} vCPUs, or a "
                               "Linux L1")]


RULES: tuple[Rule, ...] = (windows_vcpus,)


def run(spec: LaunchSpec, catalog: Catalog, entry: InstanceType | None) -> list[Finding]:
    """Every finding of this provider's rules for the launch, in rule order."""
    return [f for rule in RULES for f in rule(spec, catalog, entry)]
