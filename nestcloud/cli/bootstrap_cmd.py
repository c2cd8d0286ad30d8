"""`nestcloud userdata | doctor | wait`: the L1 bootstrap, local diagnosis, readiness.

Exit codes: userdata 0 printed, 2 bad input or too big, 3 an OS that cannot host the
hypervisor; doctor 0 whenever it ran (a report, not a gate; --require-ready makes "not
ready" exit 1); wait 0 ready (or sandbox: not verifiable), 1 a host reported failed, 4 timed out.
"""

from __future__ import annotations

import base64
import math
import sys
from pathlib import Path
from typing import Optional

import typer

from nestcloud.cli._app import ProviderCommand, emit_json, info, json_mode, show
from nestcloud.cli.cloud_cmd import ProviderOptionOpt
from nestcloud.errors import InputError


def parse_timeout(text: str) -> float:
    """'20m', '1h30m', '900s'; a bare number is seconds (like launch --timeout)."""
    from nestcloud.spec import parse_duration

    t = text.strip()
    try:
        value = float(t)
    except ValueError:
        try:
            return float(parse_duration(t))
        except ValueError as exc:
            raise InputError(f"--timeout {text!r}: {exc}") from None
    if not (math.isfinite(value) and value > 0):  # float() also reads "nan" and "inf"
        raise InputError(f"--timeout {text!r}: must be a positive, finite number of seconds")
    return value


def register(app: typer.Typer) -> None:
    @app.command("userdata")
    def userdata(
        provider: str = typer.Option(..., "--provider", "-p",
                                     help="Provider name (see `nestcloud providers`)."),
        os_alias: str = typer.Option(..., "--os", help="OS alias of the L1."),
        hypervisor: str = typer.Option(..., "--hypervisor",
                                       help="kvm, firecracker, hyperv, wsl2 or none."),
        user_data: Optional[Path] = typer.Option(None, "--user-data",
                                                 help="Your cloud-config or script, merged "
                                                      "in (MIME multipart)."),
        l2_smoke: bool = typer.Option(False, "--l2-smoke",
                                      help="Readiness also boots a tiny L2 guest (kvm)."),
        hugepages: int = typer.Option(0, "--hugepages",
                                      help="Reserve N 2 MiB hugepages for L2 guests (kvm)."),
        out: Optional[Path] = typer.Option(None, "--out", "-o",
                                           help="Write the exact bytes to this file."),
        as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
    ) -> None:
        """Print exactly the user data a launch would send (gzipped: as base64, or --out)."""
        json_mode(as_json)
        from nestcloud.bootstrap import read_user_data, render_user_data
        from nestcloud.provider import capabilities_of

        # The envelope the provider declares (its class is loaded, nothing is made; an
        # unknown name is bad input, exit 2).
        envelope = capabilities_of(provider).user_data
        # The same reader and checks as `launch --user-data` (secrets included).
        extra = read_user_data(user_data) if user_data is not None else None
        r = render_user_data(envelope, os_alias, hypervisor, provider_name=provider,
                             extra=extra, l2_smoke=l2_smoke, hugepages=hugepages)
        what = (f"{r.kind}, {r.size} bytes" + (f" gzipped from {r.raw_size}" if r.gzipped
                                               else "") + f"; {provider} limit {r.limit}")
        if out is not None:
            try:
                out.write_bytes(r.body)
            except OSError as exc:
                raise InputError(f"--out {str(out)!r}: cannot write it ({exc})") from None
        if as_json:
            emit_json({"provider": provider, "os": os_alias, "hypervisor": hypervisor,
                       "kind": r.kind, "gzipped": r.gzipped, "size": r.size,
                       "raw_size": r.raw_size, "limit": r.limit, "parts": list(r.parts),
                       "readiness": r.readiness, "out": str(out) if out else None,
                       "body": None if r.gzipped else r.body.decode("utf-8"),
                       "body_base64": base64.b64encode(r.body).decode("ascii")})
            return
        if out is not None:
            info(f"wrote {out} ({what})")
            return
        if r.gzipped:
            info(f"gzipped ({what}): printing it as base64; decode with `base64 -d | gunzip`, "
                 "or use --out FILE for the raw bytes")
            typer.echo(base64.b64encode(r.body).decode("ascii"))
            return
        info(what)
        sys.stdout.buffer.write(r.body)
        sys.stdout.flush()

    @app.command("doctor")
    def doctor(
        profile: str = typer.Option("none", "--profile",
                                    help="Also check what a profile needs: kvm (libvirt), "
                                         "firecracker, or none."),
        l2_smoke: bool = typer.Option(False, "--l2-smoke",
                                      help="Also boot a tiny guest with QEMU (kvm profile)."),
        require_ready: bool = typer.Option(False, "--require-ready",
                                           help="Exit 1 when this machine is not ready."),
        as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
    ) -> None:
        """Can this machine run hypervisor guests? Runs the L1 checks here, explained.

        Exit 0 whenever the report was produced; with --require-ready, 1 when not ready.
        """
        json_mode(as_json)
        from nestcloud.bootstrap.doctor import run_doctor
        from nestcloud.bootstrap.l1check import PROFILES

        if profile not in PROFILES:
            raise InputError(f"--profile {profile!r}: one of {', '.join(PROFILES)}")
        report = run_doctor(profile=profile, l2_smoke=l2_smoke)
        show(report, as_json)
        if require_ready and not report.ready:
            raise typer.Exit(1)

    @app.command("wait", cls=ProviderCommand)
    def wait(
        ctx: typer.Context,
        name: str = typer.Argument(..., help="Group name given at launch."),
        provider: str = typer.Option(..., "--provider", "-p", help="A provider (`nestcloud providers` lists them)."),
        region: Optional[str] = typer.Option(None, "--region", "-r"),
        timeout: str = typer.Option("20m", "--timeout",
                                    help="How long to wait: 20m, 1h, 900 (seconds)."),
        interval: float = typer.Option(10.0, "--interval", help="Seconds between polls."),
        sandbox: bool = typer.Option(False, "--sandbox",
                                     help="The provider's local endpoint (no guest boots there)."),
        provider_option: list[str] = ProviderOptionOpt,
        as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
        catalog_path: Optional[Path] = typer.Option(
            None, "--catalog", envvar="NESTCLOUD_CATALOG",
            help="Catalog whose regions --region is checked against."),
    ) -> None:
        """Wait until NAME's hosts report their hypervisor ready (serial console or tag).

        Exit 0 ready, 1 a host reported failed (the failed checks are shown), 4 timed out.
        """
        json_mode(as_json)
        from nestcloud.bootstrap.wait import wait_for_ready
        from nestcloud.cli import cloud_cmd
        from nestcloud.cli._inputs import check_region, check_seconds, provider_options
        from nestcloud.spec import check_name

        check_name(name, "NAME")
        timeout_s = parse_timeout(timeout)
        check_seconds("--interval", interval)
        provider_options(ctx, [provider])  # flags the provider does not declare: exit 2 now
        check_region(region, [provider], catalog_path)
        prov = cloud_cmd.open_for(ctx, provider, region=region, sandbox=sandbox)
        instances = prov.list(name)
        if not instances:
            raise InputError(f"no instances named {name!r} on {provider}"
                             + (f" in {region}" if region else ""),
                             hint="`nestcloud ls` lists what runs")
        report = wait_for_ready(prov, instances, timeout_s=timeout_s, interval_s=interval,
                                sandbox=sandbox, on_progress=None if as_json else info)
        show(report, as_json)
        if report.sandbox and not as_json:
            info(report.message)
        code = report.exit_code()
        if code:
            raise typer.Exit(code)
