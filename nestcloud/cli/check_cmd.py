"""`nestcloud check`: the pre-launch rules, without launching."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nestcloud.cli._app import json_mode, show
from nestcloud.errors import InputError


# Where a flag's name is not the field's with '-' for '_'.
SPEC_FLAGS = {"ttl_seconds": "--ttl", "tags": "--tag"}


def spec_or_input_error(**fields: object):  # type: ignore[no-untyped-def]
    """Build a LaunchSpec from flag values; a bad value becomes one InputError naming each
    bad flag (the same rules as lab files and the Python API: nestcloud.spec)."""
    from nestcloud._yamlio import pydantic_problems
    from nestcloud.errors import SpecError
    from nestcloud.spec import LaunchSpec

    try:
        return LaunchSpec(**fields)  # type: ignore[arg-type]
    except SpecError as exc:
        raise InputError("; ".join(pydantic_problems(exc.errors(), style="flag",
                                                     flags=SPEC_FLAGS))) from None


# Literal strings, not imports: the help must not cost an import of the OS table.
_OS_HELP = "L1 OS: ubuntu-24.04, debian-12, rhel-9, al2023, windows-2022 or windows-2025."
_HV_HELP = "L1 hypervisor: kvm, firecracker, hyperv, wsl2 or none."


def register(app: typer.Typer) -> None:
    @app.command("check")
    def check(
        provider: str = typer.Option(..., "--provider", "-p", help="A provider (`nestcloud providers` lists them)."),
        type_name: str = typer.Option(..., "--type", "-t", help="Instance type / VM size."),
        region: Optional[str] = typer.Option(None, "--region", "-r"),
        os_alias: str = typer.Option("ubuntu-24.04", "--os", help=_OS_HELP),
        hypervisor: str = typer.Option("kvm", "--hypervisor", help=_HV_HELP),
        depth: int = typer.Option(2, "--depth", help="Level of the guests you will run (L2=2)."),
        spot: bool = typer.Option(False, "--spot"),
        security_type: str = typer.Option("Standard", "--security-type",
                                          help="Standard, TrustedLaunch or ConfidentialVM, "
                                               "where the provider offers security types."),
        image_generation: Optional[str] = typer.Option(None, "--image-generation",
                                                       help="Hyper-V image generation, where "
                                                            "the provider has them: V1 or V2."),
        as_json: bool = typer.Option(False, "--json"),
        catalog_path: Optional[Path] = typer.Option(None, "--catalog",
                                                    envvar="NESTCLOUD_CATALOG"),
    ) -> None:
        """Would this launch work? Exit 0 when launchable, 3 when refused."""
        json_mode(as_json)
        from nestcloud.catalog import load_catalog
        from nestcloud.checks import CheckResult, refused, run_checks
        from nestcloud.provider import available

        if provider not in available():
            raise InputError(f"--provider {provider!r}: unknown provider "
                             f"(known: {', '.join(available())})")
        spec = spec_or_input_error(provider=provider, type=type_name, region=region,
                                   os=os_alias, hypervisor=hypervisor, depth=depth, spot=spot,
                                   security_type=security_type,
                                   image_generation=image_generation)
        findings = run_checks(spec, load_catalog(catalog_path))
        res = CheckResult(ok=not refused(findings), provider=provider, type=type_name,
                          region=region, findings=findings)
        show(res, as_json)
        if not res.ok:
            raise typer.Exit(3)
