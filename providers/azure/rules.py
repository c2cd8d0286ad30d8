"""Azure's own pre-launch rules (``Capabilities.rules``): pure functions from
(LaunchSpec, Catalog, catalog entry) to findings, run by ``check``, ``plan`` and every launch
after the core's. No SDK, no network."""

from __future__ import annotations

from collections.abc import Callable

from nestcloud.catalog import Catalog, InstanceType
from nestcloud.checks import Finding
from nestcloud.spec import LaunchSpec

Rule = Callable[[LaunchSpec, Catalog, "InstanceType | None"], list[Finding]]


def rule_trusted_launch(spec: LaunchSpec, catalog: Catalog, t: InstanceType | None
                        ) -> list[Finding]:
    """Trusted Launch (and Confidential VMs) block nesting (FACTS.md): only Standard works."""
    if spec.security_type == "Standard":
        return []
    return [Finding(rule="trusted-launch", severity="error",
                    message=f"security type {spec.security_type} blocks nesting on Azure: "
                            "Hyper-V and WSL2 in the L1 report that virtualization is not "
                            "enabled in the BIOS",
                    suggestion="use security type Standard (nestcloud's default)")]


RULES: tuple[Rule, ...] = (rule_trusted_launch,)


def rules(spec: LaunchSpec, catalog: Catalog, entry: InstanceType | None) -> list[Finding]:
    """Every Azure finding for this launch, in rule order."""
    return [f for rule in RULES for f in rule(spec, catalog, entry)]
