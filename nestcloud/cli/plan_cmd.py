"""`nestcloud plan`, `nestcloud lab up|status|down`, `nestcloud reap` and
`nestcloud catalog refresh-prices`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from nestcloud.cli._app import ProviderCommand, info, json_mode, show
from nestcloud.cli.cloud_cmd import ProviderOptionOpt
from nestcloud.errors import InputError

CatalogOpt = typer.Option(None, "--catalog", envvar="NESTCLOUD_CATALOG",
                          help="Catalog file to use instead of the built-in one.")


def _csv(value: Optional[str]) -> Optional[list[str]]:
    if value is None:
        return None
    items = [x.strip() for x in value.split(",") if x.strip()]
    return items or None


def _check_names(cat: Any, providers: Optional[list[str]], regions: Optional[list[str]]
                 ) -> None:
    import difflib

    for p in providers or []:
        if p not in cat.providers:
            raise InputError(f"--providers {p!r}: the catalog has no such provider "
                             f"(known: {', '.join(cat.providers)})")
    known = sorted({r for p in (providers or cat.providers) for r in cat.regions(p)})
    for r in regions or []:
        if r not in known:
            close = difflib.get_close_matches(r, known, n=3, cutoff=0.5)
            raise InputError(f"--regions {r!r}: no catalog type of "
                             f"{', '.join(providers or cat.providers)} is offered there",
                             hint=("did you mean " + ", ".join(close) + "?") if close else
                             "known regions: " + ", ".join(known))


def _request(**fields: Any) -> Any:
    from pydantic import ValidationError

    from nestcloud.planner import PlanRequest

    try:
        return PlanRequest(**fields)
    except ValidationError as exc:
        from nestcloud._yamlio import pydantic_problems

        parts = pydantic_problems(exc.errors(include_url=False), style="flag",
                                  flags={"memory_gib": "--memory"})
        raise InputError("; ".join(p.replace("vcpus and memory_gib", "--vcpus and --memory")
                                   .replace("an explicit type", "--type")
                                   for p in parts)) from None


def _lab(file: Path, catalog_path: Optional[Path]) -> Any:
    from nestcloud.catalog import load_catalog
    from nestcloud.lab import Lab

    lab = Lab.from_file(file)
    lab._catalog = load_catalog(catalog_path)
    return lab


def _attempt_table(attempts: list[Any]) -> None:
    """Every failover attempt and why it failed, on stderr."""
    from nestcloud.failover import Attempts
    from nestcloud.render import to_table

    info(to_table(Attempts.of(attempts)))


lab_app = typer.Typer(help="Labs: many identical seats from one lab file, with TTL and budget.",
                      no_args_is_help=True)


@lab_app.command("up", cls=ProviderCommand)
def lab_up(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="The lab file (YAML)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan and cost; create "
                                                          "nothing, call no cloud."),
    sandbox: bool = typer.Option(False, "--sandbox", help="Launch on the providers' local endpoints."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Do not wait for readiness."),
    timeout: float = typer.Option(1200.0, "--timeout", help="Seconds to wait for readiness."),
    keep_partial: bool = typer.Option(False, "--keep-partial",
                                      help="If a first launch fails part-way, keep what it "
                                           "created instead of removing it."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
    catalog_path: Optional[Path] = CatalogOpt,
    provider_option: list[str] = ProviderOptionOpt,
) -> None:
    """Plan, check and budget the lab, then launch every missing seat and wait until ready.

    Exit 3 (nothing created) when the lab costs more than its budget."""
    json_mode(as_json)
    from nestcloud._progress import progress
    from nestcloud.sandbox import enabled

    from nestcloud.cli._inputs import check_seconds
    from nestcloud.errors import NestcloudError
    from nestcloud.failover import attempts_of

    check_seconds("--timeout", timeout)
    lab = _lab(file, catalog_path)
    sandbox = enabled(sandbox)
    make = _lab_providers(ctx, lab, sandbox)
    try:
        with progress(as_json) as prog:
            res = lab.up(dry_run=dry_run, sandbox=sandbox, wait=not no_wait,
                         timeout_s=timeout, progress=prog, keep_partial=keep_partial,
                         providers=make)
    except NestcloudError as exc:
        rows = attempts_of(exc)
        if rows:  # the --json error document (exc.to_dict()) carries them too
            _attempt_table(rows)
        raise
    except KeyboardInterrupt as exc:
        for note in exc.args:  # the rollback's note: what was removed, or what is left
            info(str(note))
        raise
    if res.attempts:
        _attempt_table(res.attempts)
    ready = res.ready if isinstance(res.ready, dict) else {}
    # The seats exist either way; a readiness timeout (4) or failure (1) is the exit code.
    code = int(ready.get("exit_code", 0) or 0)
    show(res, as_json)
    if not as_json:
        for n in res.notes:
            info(f"note: {n}")
    if code:
        raise typer.Exit(code)


@lab_app.command("status", cls=ProviderCommand)
def lab_status(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="The lab file (YAML)."),
    sandbox: bool = typer.Option(False, "--sandbox"),
    as_json: bool = typer.Option(False, "--json"),
    catalog_path: Optional[Path] = CatalogOpt,
    provider_option: list[str] = ProviderOptionOpt,
) -> None:
    """The lab's seats as the cloud reports them (found by tag)."""
    json_mode(as_json)
    from nestcloud.sandbox import enabled

    lab = _lab(file, catalog_path)
    sandbox = enabled(sandbox)
    st = lab.status(sandbox=sandbox, providers=_lab_providers(ctx, lab, sandbox))
    show(st, as_json)
    if not as_json:
        for n in st.notes:
            info(f"note: {n}")


@lab_app.command("down", cls=ProviderCommand)
def lab_down(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="The lab file (YAML)."),
    sandbox: bool = typer.Option(False, "--sandbox"),
    as_json: bool = typer.Option(False, "--json"),
    catalog_path: Optional[Path] = CatalogOpt,
    provider_option: list[str] = ProviderOptionOpt,
) -> None:
    """Remove every seat of the lab; harmless when nothing is left."""
    json_mode(as_json)
    from nestcloud._progress import progress
    from nestcloud.sandbox import enabled

    with progress(as_json) as prog:
        prog.step("removing the lab's seats")
        lab = _lab(file, catalog_path)
        sandbox = enabled(sandbox)
        res = lab.down(sandbox=sandbox, providers=_lab_providers(ctx, lab, sandbox))
    show(res, as_json)
    if not as_json:
        for n in res.notes:
            info(n)


def refresh_prices_cmd(
    provider: str = typer.Option(..., "--provider", "-p", help="A provider (`nestcloud providers` lists them)."),
    region: Optional[list[str]] = typer.Option(None, "--region", "-r",
                                               help="Region to refresh (repeatable; default: "
                                                    "every region in the catalog)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Write here instead of over the catalog."),
    as_json: bool = typer.Option(False, "--json"),
    catalog_path: Optional[Path] = CatalogOpt,
) -> None:
    """Update catalog prices from the AWS Price List / Azure Retail Prices APIs, dated today."""
    json_mode(as_json)
    from nestcloud.catalog import default_catalog_path, load_catalog
    from nestcloud.prices import dump, refresh_prices

    path = catalog_path or default_catalog_path()
    cat = load_catalog(path)
    new, res = refresh_prices(cat, provider, region or None)
    target = output or path
    text = dump(new)
    try:
        Path(target).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write the catalog to {target}: {exc}") from None
    show(res, as_json, file=str(target))
    if as_json:
        return
    if res.not_found:
        info(f"no price returned for {len(res.not_found)} entr(ies), kept as they were: "
             + ", ".join(res.not_found[:10]) + (" ..." if len(res.not_found) > 10 else ""))
    for n in res.notes:
        info(f"note: {n}")


def _open(ctx: Any, names: list[str], sandbox: bool) -> Any:
    """One factory for the places of ``names``, with the provider flags of this command."""
    from nestcloud.cli._inputs import provider_options
    from nestcloud.lab import provider_cache
    from nestcloud.provider import available

    opts = provider_options(ctx, [n for n in names if n in available()], tolerant=True)
    return provider_cache(sandbox, opts)


def _lab_providers(ctx: Any, lab: Any, sandbox: bool) -> Any:
    """The lab's provider factory: its providers get the command's provider flags."""
    return _open(ctx, list(lab.spec.providers or lab.catalog.providers), sandbox)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    from nestcloud.cli.catalog_cmd import catalog_app

    catalog_app.command("refresh-prices")(refresh_prices_cmd)
    app.add_typer(lab_app, name="lab")

    @app.command("plan")
    def plan_cmd(
        vcpus: Optional[int] = typer.Option(None, "--vcpus", help="vCPUs per seat."),
        memory: Optional[float] = typer.Option(None, "--memory", help="GiB of memory per seat."),
        type_name: Optional[str] = typer.Option(None, "--type", "-t",
                                                help="Price one explicit type instead."),
        providers: Optional[str] = typer.Option(None, "--providers",
                                                help="Comma-separated, e.g. aws,azure."),
        regions: Optional[str] = typer.Option(None, "--regions",
                                              help="Comma-separated, e.g. us-east-1,eastus."),
        hypervisor: str = typer.Option("kvm", "--hypervisor"),
        os_alias: str = typer.Option("ubuntu-24.04", "--os"),
        hours: float = typer.Option(1.0, "--hours", help="How long the seats run."),
        seats: int = typer.Option(1, "--seats", help="How many identical seats."),
        spot: bool = typer.Option(False, "--spot", help="Price spot capacity."),
        max_hourly: Optional[float] = typer.Option(None, "--max-hourly",
                                                   help="Ceiling in USD/hour per seat."),
        budget: Optional[float] = typer.Option(None, "--budget",
                                               help="Ceiling in USD for all seats and hours."),
        pack_metal: bool = typer.Option(False, "--pack-metal",
                                        help="Count several seats per bare-metal host (you "
                                             "run the seat VMs on it yourself)."),
        egress: Optional[str] = typer.Option(None, "--egress",
                                             help="Outbound path to price where the provider "
                                                  "offers one: nat, public-ip or none (default: "
                                                  "each provider's own)."),
        explain: bool = typer.Option(False, "--explain", help="Also list every rejected "
                                                              "candidate and why."),
        limit: int = typer.Option(10, "--limit", help="Rows to print (0: all); JSON has all."),
        as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
        catalog_path: Optional[Path] = CatalogOpt,
    ) -> None:
        """Where to run it, cheapest first. Exit 3 when nothing fits or the budget is short."""
        json_mode(as_json)
        from nestcloud.catalog import load_catalog
        from nestcloud.planner import plan

        req = _request(vcpus=vcpus, memory_gib=memory, type=type_name,
                       providers=_csv(providers), regions=_csv(regions), hypervisor=hypervisor,
                       os=os_alias, hours=hours, seats=seats, spot=spot,
                       max_hourly=max_hourly, budget=budget, pack_metal=pack_metal,
                       egress=egress)
        cat = load_catalog(catalog_path)
        _check_names(cat, req.providers, req.regions)
        res = plan(cat, req)
        if not res.options:
            if explain and not as_json:
                from nestcloud.render import to_table

                info(to_table(res, limit=limit, explain=True))
            raise res.refusal()
        show(res, as_json, limit=limit, explain=explain)

    @app.command("reap", cls=ProviderCommand)
    def reap_cmd(
        ctx: typer.Context,
        dry_run: bool = typer.Option(False, "--dry-run", help="Say what would go; remove "
                                                              "nothing."),
        providers: Optional[str] = typer.Option(None, "--providers",
                                                help="Comma-separated (default: every "
                                                     "installed provider)."),
        regions: Optional[str] = typer.Option(None, "--regions",
                                              help="Comma-separated (default: every region "
                                                   "the catalog knows for each provider)."),
        sandbox: bool = typer.Option(False, "--sandbox", help="Reap the local endpoint of "
                                                              "providers that have one."),
        as_json: bool = typer.Option(False, "--json"),
        catalog_path: Optional[Path] = CatalogOpt,
        provider_option: list[str] = ProviderOptionOpt,
) -> None:
        """Remove every nestcloud group whose nestcloud:expires has passed. Safe for cron:
        it never touches anything without nestcloud's tags. Exit 1 if any place failed."""
        json_mode(as_json)
        import datetime as dt

        from nestcloud.catalog import load_catalog
        from nestcloud.provider import describe
        from nestcloud.reap import reap
        from nestcloud.sandbox import enabled

        sandbox = enabled(sandbox)
        cat = load_catalog(catalog_path)
        chosen = _csv(providers)
        installed = [d["name"] for d in describe() if d["installed"]
                     and d["name"] in cat.providers]
        if sandbox:
            from nestcloud.provider import has_local_endpoint

            local = [p for p in installed if has_local_endpoint(p)]
            if chosen is not None and not set(chosen) <= set(local):
                raise InputError("--sandbox reaps the local endpoint: --providers "
                                 f"{', '.join(local) or '(none has one)'} only")
            chosen = chosen or local
        elif chosen is None:
            chosen = installed
        wanted = _csv(regions)
        if wanted:  # the sandbox too: its regions are AWS's, and nothing else reaches it
            known = {r for p in chosen for r in cat.regions(p)}
            bad = [r for r in wanted if r not in known]
            if bad:
                raise InputError(f"--regions {', '.join(bad)}: no catalog region of "
                                 f"{', '.join(chosen)} (known: {', '.join(sorted(known))})")
        places = [(p, r) for p in chosen for r in (wanted or cat.regions(p))
                  if wanted is None or r in cat.regions(p) or sandbox]
        res = reap(places, _open(ctx, chosen, sandbox), now=dt.datetime.now(dt.timezone.utc),
                   dry_run=dry_run)
        show(res, as_json)
        if not as_json:
            for e in res.errors:
                info(f"error: {e}")
        if res.errors:
            raise typer.Exit(1)
