"""`nestcloud catalog ...` and `nestcloud providers`."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Optional

import typer

from nestcloud.cli._app import emit_json, info, json_mode, table
from nestcloud.errors import CatalogError, InputError

catalog_app = typer.Typer(help="Inspect, validate and verify the instance-type catalog.",
                          no_args_is_help=True)

CatalogOpt = typer.Option(None, "--catalog", envvar="NESTCLOUD_CATALOG",
                          help="Catalog file to use instead of the built-in one.")


def _load(path: Optional[Path]):  # type: ignore[no-untyped-def]
    from nestcloud.catalog import load_catalog

    return load_catalog(path)


def _price_cell(t, region: Optional[str]) -> str:  # type: ignore[no-untyped-def]
    if region:
        p = t.price(region)
        return f"{p:.4f}" if p is not None else "-"
    vals = [p.on_demand for p in t.prices.values() if p.on_demand is not None]
    return f"{min(vals):.4f}+" if vals else "-"


@catalog_app.command("list")
def catalog_list(
    provider: Optional[str] = typer.Option(None, "--provider", "-p", help="A provider (`nestcloud providers` lists them)."),
    region: Optional[str] = typer.Option(None, "--region", "-r",
                                         help="Only types offered in this region."),
    nested_only: bool = typer.Option(False, "--nested-only",
                                     help="Only types that can run a hypervisor."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
    catalog_path: Optional[Path] = CatalogOpt,
) -> None:
    """List instance types, with nesting mode and on-demand USD/hour."""
    json_mode(as_json)
    cat = _load(catalog_path)
    if provider is not None and provider not in cat.providers:
        raise InputError(f"--provider {provider!r}: the catalog has no such provider "
                         f"(known: {', '.join(cat.providers)})")
    if region is not None:
        known = {r for p in ([provider] if provider else cat.providers) for r in cat.regions(p)}
        if region not in known:
            close = difflib.get_close_matches(region, sorted(known), n=3, cutoff=0.6)
            where = f" for provider {provider!r}" if provider else ""
            raise InputError(f"--region {region!r}: unknown region{where}; no catalog type "
                             "is offered there",
                             hint=(f"did you mean {', '.join(close)}?" if close else
                                   f"known regions: {', '.join(sorted(known))}"))
    rows = [t for t in cat.types
            if (provider is None or t.provider == provider)
            and (region is None or region in t.regions)
            and (not nested_only or t.nesting != "none")]
    if as_json:
        emit_json({"types": [
            {"provider": t.provider, "name": t.name, "family": t.family, "vcpus": t.vcpus,
             "memory_gib": t.memory_gib, "arch": t.arch, "nesting": t.nesting,
             "usd_per_hour": t.price(region) if region else None,
             "price_date": (cat.source_date(t.prices[region].source)
                            if region and region in t.prices else None)}
            for t in rows]})
        return
    price_head = f"USD/h {region}" if region else "USD/h from"
    typer.echo(table([[t.provider, t.name, str(t.vcpus), f"{t.memory_gib:g}", t.arch,
                       t.nesting, _price_cell(t, region)] for t in rows],
                     ["provider", "type", "vcpus", "GiB", "arch", "nesting", price_head]))
    typer.echo(f"{len(rows)} type(s). Prices: Linux on-demand; see `catalog show` for dates.",
               err=True)


@catalog_app.command("show")
def catalog_show(
    type_name: str = typer.Argument(..., metavar="TYPE"),
    provider: Optional[str] = typer.Option(None, "--provider", "-p"),
    as_json: bool = typer.Option(False, "--json"),
    catalog_path: Optional[Path] = CatalogOpt,
) -> None:
    """Everything the catalog knows about one type, with sources and price dates."""
    json_mode(as_json)
    cat = _load(catalog_path)
    hits = cat.find(type_name, provider)
    if not hits:
        close = cat.closest_names(type_name, provider)
        hint = f"did you mean {', '.join(close)}?" if close else None
        raise InputError(f"unknown instance type {type_name!r}"
                         + (f" for provider {provider!r}" if provider else ""), hint=hint)
    if len(hits) > 1:
        raise InputError(f"{type_name!r} exists for several providers; add --provider",
                         hint="one of " + ", ".join(sorted(h.provider for h in hits)))
    t = hits[0]
    doc = t.to_dict(mode="json")
    doc["nesting_source_description"] = cat.sources[t.nesting_source].description
    doc["price_dates"] = {r: cat.source_date(p.source) for r, p in t.prices.items()}
    if as_json:
        emit_json(doc)
        return
    lines = [f"{t.provider}/{t.name}  ({t.family} family)",
             f"  vCPUs {t.vcpus}, memory {t.memory_gib:g} GiB, {t.arch}, {t.cpu_vendor}",
             f"  nesting: {t.nesting}  (source: {doc['nesting_source_description']}; "
             f"verified {t.verified})"]
    if t.hyperv_generations:
        lines.append(f"  Hyper-V generations: {', '.join(t.hyperv_generations)}")
    if t.security_type:
        lines.append(f"  security type: {t.security_type} (Trusted Launch must be off)")
    lines.append(f"  regions: {', '.join(t.regions) or 'unknown'}")
    for region, p in sorted(t.prices.items()):
        od = f"${p.on_demand:.4f}/h" if p.on_demand is not None else "-"
        sp = f"spot ${p.spot:.4f}/h" if p.spot is not None else "spot -"
        lines.append(f"  {region}: {od}, {sp} (price date: {cat.source_date(p.source)})")
    lines += [f"  note: {n}" for n in t.notes]
    typer.echo("\n".join(lines))


@catalog_app.command("validate")
def catalog_validate(
    file: Optional[Path] = typer.Argument(None, help="Catalog file (default: the built-in one)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Check a catalog file; exit 0 when valid, 2 listing every problem when not."""
    json_mode(as_json)
    from nestcloud.catalog import default_catalog_path, load_catalog

    path = file or default_catalog_path()
    try:
        cat = load_catalog(path)
    except CatalogError as exc:
        if as_json:
            emit_json({"ok": False, "file": str(path), "problems": exc.problems})
            info(f"error: {exc}")
            raise typer.Exit(exc.exit_code) from None
        raise
    if as_json:
        emit_json({"ok": True, "file": str(path), "types": len(cat.types)})
    else:
        typer.echo(f"{path}: valid ({len(cat.types)} types)")


def register(app: typer.Typer) -> None:
    app.add_typer(catalog_app, name="catalog")

    @app.command("providers")
    def providers(as_json: bool = typer.Option(False, "--json")) -> None:
        """List the providers that are installed (built-in and plugins)."""
        json_mode(as_json)
        from nestcloud.errors import NestcloudError
        from nestcloud.provider import describe, options_of

        rows = describe()
        for r in rows:  # the flags each provider adds to the commands that reach it
            try:
                r["options"] = [{"name": o.name, "flag": o.flag, "help": o.help,
                                 "envvar": o.envvar} for o in options_of(r["name"])]
            except NestcloudError as exc:
                r["options"], r["problem"] = [], exc.message
        if as_json:
            emit_json({"providers": rows})
            return
        typer.echo(table([[r["name"], "yes" if r["installed"] else
                           f"no: pip install 'nestcloud[{r['extra']}]'", r["origin"],
                           " ".join(o["flag"] for o in r["options"]) or "-"]
                          for r in rows], ["provider", "sdk installed", "from", "flags"]))
