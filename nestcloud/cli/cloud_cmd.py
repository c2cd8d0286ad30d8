"""`nestcloud launch | ls | down`, `nestcloud sandbox ...` and `nestcloud catalog verify`.

Parse, call the library, render. No cloud SDK is imported before a command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

from nestcloud.cli._app import ProviderCommand, emit_json, info, json_mode, show
from nestcloud.errors import InputError, NestcloudError

SandboxOpt = typer.Option(False, "--sandbox",
                          help="Use the provider's local endpoint, where it has one "
                               "(also NESTCLOUD_SANDBOX=1).")
ProviderOptionOpt = typer.Option([], "--provider-option", "-o", metavar="KEY=VALUE",
                                 help="A construction option the provider declares, by name "
                                      "or flag; repeatable. Its flags work as themselves too "
                                      "(`nestcloud providers` lists them).")
RegionOpt = typer.Option(None, "--region", "-r", help="Region (default: the SDK's default).")
JsonOpt = typer.Option(False, "--json", help="One JSON document on stdout.")
CatalogOpt = typer.Option(None, "--catalog", envvar="NESTCLOUD_CATALOG",
                          help="Catalog whose regions --region is checked against.")


def open_for(ctx: Any, name: str, *, region: Optional[str], sandbox: bool) -> Any:
    """The provider ``name`` for this command's options (one factory:
    ``nestcloud.provider.open_provider``; the sandbox's start is reported on stderr)."""
    from nestcloud.cli._inputs import provider_options
    from nestcloud.provider import open_provider

    opts = provider_options(ctx, [name])[name]
    return open_provider(name, region, sandbox=sandbox, note=info, **opts)


def configured_providers(ctx: Any, sandbox: bool) -> list[str]:
    """Providers `ls`/`down` ask when --provider is not given: installed, and configured by
    their own judgement (``configured()``); with --sandbox, those with a local endpoint."""
    from nestcloud.cli._inputs import _pairs
    from nestcloud.provider import available, configured, has_local_endpoint, options_of

    if sandbox:
        return [name for name in available() if has_local_endpoint(name)]
    pairs = dict(_pairs(ctx))  # --provider-option KEY=VALUE: an option's name or flag
    given: dict[str, Any] = {}
    for name in available():
        try:
            declared = options_of(name)
        except NestcloudError:
            continue
        for o in declared:
            value = pairs.get(o.name, pairs.get(o.flag))
            if value is not None:
                given[o.name] = value
    out = configured(**given)
    if not out:
        raise InputError("no provider is configured: none of the installed providers "
                         f"({', '.join(available())}) found credentials or settings",
                         hint="pass --provider, configure credentials, or try --sandbox")
    return out


def _leftovers(provs: list[Any], name: Optional[str], instances: list[Any]
               ) -> list[dict[str, str]]:
    """What names without instances still have (security groups, launch templates...), from
    the providers that declare they can tell (``capabilities.leftovers``); `down NAME`
    removes them."""
    out: list[dict[str, str]] = []
    for prov in provs:
        if prov.capabilities.leftovers:
            mine = [i for i in instances if i.provider == prov.name]
            out += prov.leftovers(name, mine)
    return out


def _read_user_data(path: Optional[Path]) -> Optional[str]:
    if path is None:
        return None
    from nestcloud.bootstrap import read_user_data

    return read_user_data(path)  # bounded; names the file and line; nothing is sent


def _wait(provider: Any, instances: list[Any], timeout: float, sandbox: bool
          ) -> tuple[Optional[dict[str, Any]], int]:
    from nestcloud.bootstrap.wait import wait_for_ready
    from nestcloud.render import to_json

    report = wait_for_ready(provider, instances, timeout_s=timeout, sandbox=sandbox)
    text = report.summary()
    if text:
        info(text)
    return to_json(report), report.exit_code()


def _providers(ctx: Any, provider: str | None, region: str | None, sandbox: bool,
               catalog_path: Optional[Path]) -> tuple[list[str], list[Any]]:
    """The providers `ls` and `down` act on: the one named, or every configured one. Their
    flags and --region are checked before any of them is made."""
    from nestcloud import sandbox as sb
    from nestcloud.cli._inputs import check_region, provider_options
    from nestcloud.provider import open_provider

    use_sandbox = sb.enabled(sandbox)
    names = [provider] if provider else configured_providers(ctx, use_sandbox)
    opts = provider_options(ctx, names)
    check_region(region, names, catalog_path)
    return names, [open_provider(p, region, sandbox=use_sandbox, note=info, **opts[p])
                   for p in names]


def register(app: typer.Typer) -> None:  # noqa: C901 - one function per command inside
    @app.command("launch", cls=ProviderCommand)
    def launch_cmd(
        ctx: typer.Context,
        provider: str = typer.Option(..., "--provider", "-p", help="A provider (`nestcloud providers` lists them)."),
        type_name: str = typer.Option(..., "--type", "-t", help="Instance type / VM size."),
        region: Optional[str] = RegionOpt,
        os_alias: str = typer.Option("ubuntu-24.04", "--os", help="OS alias of the L1."),
        hypervisor: str = typer.Option("kvm", "--hypervisor",
                                       help="kvm, firecracker, hyperv, wsl2 or none."),
        depth: int = typer.Option(2, "--depth", help="Level of the guests you will run (L2=2)."),
        security_type: str = typer.Option("Standard", "--security-type",
                                          help="Standard, TrustedLaunch or ConfidentialVM, "
                                               "where the provider offers security types."),
        image_generation: Optional[str] = typer.Option(None, "--image-generation",
                                                       help="Hyper-V image generation, where "
                                                            "the provider has them: V1 or V2."),
        name: Optional[str] = typer.Option(None, "--name", "-n",
                                           help="Group name (default: from type and "
                                                "hypervisor, so re-runs reconcile)."),
        count: int = typer.Option(1, "--count", help="Number of identical hosts (seats)."),
        image: Optional[str] = typer.Option(
            None, "--image", help="The image, as the provider names images (an AMI id, "
                                  "publisher:offer:sku:version, an image path, a local file)."),
        ssh_cidr: Optional[str] = typer.Option(None, "--ssh-cidr",
                                               help="Allow SSH from this network only."),
        allow_world_ssh: bool = typer.Option(False, "--allow-world-ssh",
                                             help="Permit --ssh-cidr 0.0.0.0/0 or ::/0."),
        key_name: Optional[str] = typer.Option(
            None, "--key-name", help="SSH key, as the provider takes one (a key pair name, or "
                                     "a public key file or text)."),
        disk_gib: int = typer.Option(30, "--disk-gib", help="Root disk size (GiB)."),
        spot: bool = typer.Option(False, "--spot", help="Spot capacity (can be reclaimed)."),
        ttl: Optional[str] = typer.Option(None, "--ttl",
                                          help="Time to live, e.g. 90m, 4h, 2d: tags "
                                               "nestcloud:expires (`nestcloud reap` removes "
                                               "expired groups) and makes a shutdown inside "
                                               "the host terminate it."),
        tag: list[str] = typer.Option([], "--tag", help="KEY=VALUE, repeatable."),
        user_data: Optional[Path] = typer.Option(None, "--user-data",
                                                 help="Your own cloud-config/script, merged "
                                                      "with the bootstrap."),
        l2_smoke: bool = typer.Option(False, "--l2-smoke",
                                      help="Boot a tiny L2 guest as part of readiness."),
        public_ip: bool = typer.Option(False, "--public-ip", help="Ask for a public IP."),
        egress: Optional[str] = typer.Option(
            None, "--egress",
            help="How hosts reach the internet, where the provider offers a choice: nat "
                 "(one NAT gateway per group), public-ip (one per VM, no inbound rule) or none "
                 "(the bootstrap cannot install packages)."),
        instance_profile: Optional[str] = typer.Option(
            None, "--instance-profile",
            help="Instance profile (IAM identity) NAME for the instances, where the provider "
                 "takes one (a Windows L1 that reports through its own tag needs one: "
                 "`nestcloud iam-policy --l1-role`)."),
        wait: bool = typer.Option(False, "--wait", help="Wait until the L1 reports ready."),
        timeout: float = typer.Option(900.0, "--timeout", help="Seconds --wait waits."),
        dry_run: bool = typer.Option(False, "--dry-run",
                                     help="Print the exact requests; create nothing."),
        sandbox: bool = SandboxOpt,
        provider_option: list[str] = ProviderOptionOpt,
        as_json: bool = JsonOpt,
        catalog_path: Optional[Path] = typer.Option(None, "--catalog",
                                                    envvar="NESTCLOUD_CATALOG"),
    ) -> None:
        """Launch NAME: COUNT hosts that can run a hypervisor. Re-running reconciles."""
        json_mode(as_json)
        from nestcloud import sandbox as sb
        from nestcloud.catalog import load_catalog
        from nestcloud.cli._inputs import check_seconds, provider_options
        from nestcloud.cli.check_cmd import spec_or_input_error
        from nestcloud.launcher import launch, prepare, tag_limits
        from nestcloud.provider import open_provider
        from nestcloud.spec import check_tags, parse_duration, parse_tags

        use_sandbox = sb.enabled(sandbox)
        opts = provider_options(ctx, [provider])[provider]
        check_seconds("--timeout", timeout)
        try:
            ttl_s = parse_duration(ttl) if ttl is not None else None
        except ValueError as exc:
            raise InputError(f"--ttl: {exc}") from None
        try:
            tags = parse_tags(tag)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        spec = spec_or_input_error(
            provider=provider, type=type_name, region=region, os=os_alias,
            hypervisor=hypervisor, depth=depth, security_type=security_type,
            image_generation=image_generation, name=name, count=count, image=image, spot=spot,
            ssh_cidr=ssh_cidr, allow_world_ssh=allow_world_ssh, key_name=key_name,
            disk_gib=disk_gib, ttl_seconds=ttl_s, tags=tags,
            user_data=_read_user_data(user_data), public_ip=public_ip, l2_smoke=l2_smoke,
            instance_profile=instance_profile, egress=egress)
        catalog = load_catalog(catalog_path)
        prepare(spec, catalog)  # refuse bad input before starting anything (sandbox included)
        check_tags(spec.tags, tag_limits(spec.provider))  # what the cloud would reject
        prov = open_provider(provider, region, sandbox=use_sandbox, note=info, **opts)
        if spec.region is None and prov.region:
            # The SDK's default region (or the sandbox's): check against it too.
            spec = spec.model_copy(update={"region": prov.region})
        try:
            result = launch(spec, catalog, prov, dry_run=dry_run)
        except KeyboardInterrupt as exc:
            for note in exc.args:  # what the interrupted launch left, or removed
                info(str(note))
            raise
        wait_doc: Optional[dict[str, Any]] = None
        code = 0
        if wait and not dry_run and result.instances:
            try:
                wait_doc, code = _wait(prov, result.instances, timeout, use_sandbox)
            except KeyboardInterrupt:
                info(f"interrupted while waiting for readiness; left running: "
                     f"{', '.join(i.id for i in result.instances)} ({result.name}): "
                     f"`nestcloud down {result.name}` removes them")
                raise
        if as_json:
            from nestcloud.render import to_json

            doc = to_json(result)
            if wait:
                doc["wait"] = wait_doc
            emit_json(doc)
        else:
            for note in result.notes:
                info(f"note: {note}")
            show(result, False)
        if code:
            raise typer.Exit(code)

    @app.command("ls", cls=ProviderCommand)
    def ls_cmd(
        ctx: typer.Context,
        provider: Optional[str] = typer.Option(None, "--provider", "-p",
                                               help="Default: every configured provider."),
        name: Optional[str] = typer.Option(None, "--name", "-n", help="Only this group."),
        region: Optional[str] = RegionOpt,
        sandbox: bool = SandboxOpt,
        provider_option: list[str] = ProviderOptionOpt,
        as_json: bool = JsonOpt,
        catalog_path: Optional[Path] = CatalogOpt,
    ) -> None:
        """List what nestcloud launched, from the cloud's tags."""
        json_mode(as_json)
        from nestcloud.models import Listing

        if name is not None:
            from nestcloud.spec import check_name

            check_name(name, "--name")
        names, provs = _providers(ctx, provider, region, sandbox, catalog_path)
        instances = [i for prov in provs for i in prov.list(name)]
        found = Listing(instances=instances, leftovers=_leftovers(provs, name, instances))
        if not instances and not as_json:
            info("no nestcloud instances" + (f" named {name!r}" if name else "")
                 + f" ({', '.join(names)})")
        show(found, as_json)

    @app.command("down", cls=ProviderCommand)
    def down_cmd(
        ctx: typer.Context,
        name: str = typer.Argument(..., metavar="NAME", help="The group to remove."),
        provider: Optional[str] = typer.Option(None, "--provider", "-p",
                                               help="Default: every configured provider."),
        region: Optional[str] = RegionOpt,
        yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
        sandbox: bool = SandboxOpt,
        provider_option: list[str] = ProviderOptionOpt,
        as_json: bool = JsonOpt,
        catalog_path: Optional[Path] = CatalogOpt,
    ) -> None:
        """Terminate every instance of NAME and remove its network rules. Safe to re-run."""
        json_mode(as_json)
        from nestcloud.models import DownResults, Listing
        from nestcloud.render import to_table
        from nestcloud.spec import check_name

        check_name(name, "NAME")  # never empty, never a pattern: it selects what is removed
        _, provs = _providers(ctx, provider, region, sandbox, catalog_path)
        found = [i for prov in provs for i in prov.list(name)]
        if found and not yes:
            if as_json or not sys.stdin.isatty():
                raise InputError(f"refusing to remove {len(found)} instance(s) of {name!r} "
                                 "without --yes (no terminal to ask on)")
            typer.echo(to_table(Listing(instances=found)), err=True)
            if not typer.confirm(f"terminate these {len(found)} instance(s)?", err=True):
                raise typer.Exit(1)
        res = DownResults(results=[prov.down(name) for prov in provs])
        show(res, as_json)
        if not as_json:
            for n in (n for r in res.results for n in r.notes):
                info(n)

    sandbox_app = typer.Typer(help="The providers' local endpoints behind --sandbox.",
                              no_args_is_help=True)
    app.add_typer(sandbox_app, name="sandbox")
    SandboxProviderOpt = typer.Option(None, "--provider", "-p",
                                      help="Whose local endpoint (default: every provider "
                                           "that has one).")

    def _endpoint_providers(provider: str | None) -> list[str]:
        from nestcloud.cli._inputs import check_provider_name
        from nestcloud.provider import available, has_local_endpoint

        if provider is not None:
            check_provider_name(provider)
            if not has_local_endpoint(provider):
                raise InputError(f"--provider {provider!r} has no local endpoint")
            return [provider]
        names = [n for n in available() if has_local_endpoint(n)]
        if not names:
            raise InputError("no installed provider has a local endpoint")
        return names

    def _endpoint_doc(name: str, ep: Any, running: bool) -> dict[str, Any]:
        doc: dict[str, Any] = {"provider": name, "running": running}
        if ep is not None:
            doc.update(state_file=ep.state_file, limits=ep.limits)
            if running:
                doc.update(url=ep.url, pid=ep.pid, **dict(ep.detail))
        return doc

    def _control(action: str, provider: str | None) -> list[tuple[str, Any]]:
        from nestcloud.provider import load_factory

        return [(name, load_factory(name).endpoint_control(action, info))
                for name in _endpoint_providers(provider)]

    def _emit_endpoints(docs: list[dict[str, Any]], provider: str | None) -> None:
        # One endpoint (asked for, or the only one installed): its document itself.
        emit_json(docs[0] if len(docs) == 1 else {"endpoints": docs})

    @sandbox_app.command("start")
    def sandbox_start(provider: Optional[str] = SandboxProviderOpt,
                      as_json: bool = JsonOpt) -> None:
        """Start the local endpoint (a no-op when it already runs)."""
        json_mode(as_json)
        results = _control("start", provider)
        if as_json:
            _emit_endpoints([{**_endpoint_doc(n, ep, True), "started": ep.started}
                             for n, ep in results], provider)
            return
        for name, ep in results:
            typer.echo(f"{name}: sandbox {'started' if ep.started else 'already running'} at "
                       f"{ep.url} (pid {ep.pid})")
            info(ep.limits)

    @sandbox_app.command("status")
    def sandbox_status(provider: Optional[str] = SandboxProviderOpt,
                       as_json: bool = JsonOpt) -> None:
        """Is the local endpoint running? Exit 0 when it is (every one asked), 1 when not."""
        json_mode(as_json)
        results = [(n, ep, ep is not None and ep.running) for n, ep in
                   _control("status", provider)]
        if as_json:
            _emit_endpoints([_endpoint_doc(n, ep, up) for n, ep, up in results], provider)
        for name, ep, up in ([] if as_json else results):
            if not up:
                typer.echo(f"{name}: sandbox not running (the next --sandbox command starts it)")
            else:
                more = "".join(f", {k} {v}" for k, v in ep.detail if k != "port" and v)
                typer.echo(f"{name}: sandbox running at {ep.url} (pid {ep.pid}{more})")
        if not all(up for _, _, up in results):
            raise typer.Exit(1)

    @sandbox_app.command("stop")
    def sandbox_stop(provider: Optional[str] = SandboxProviderOpt,
                     as_json: bool = JsonOpt) -> None:
        """Stop the local endpoint; everything launched in it is gone."""
        json_mode(as_json)
        results = _control("stop", provider)
        if as_json:
            _emit_endpoints([{"provider": n, "stopped": ep is not None,
                              **({"url": ep.url, "pid": ep.pid} if ep else {})}
                             for n, ep in results], provider)
            return
        for name, ep in results:
            if ep is None:
                typer.echo(f"{name}: sandbox was not running")
            else:  # a server found by its command line that no longer answers has no URL
                typer.echo(f"{name}: sandbox at {ep.url} stopped" if ep.url
                           else f"{name}: sandbox server (pid {ep.pid}) stopped")

    from nestcloud.cli.catalog_cmd import catalog_app

    @catalog_app.command("verify", cls=ProviderCommand)
    def catalog_verify(
        ctx: typer.Context,
        provider: str = typer.Option(..., "--provider", "-p", help="A provider (`nestcloud providers` lists them)."),
        region: str = typer.Option(..., "--region", "-r"),
        sandbox: bool = SandboxOpt,
        provider_option: list[str] = ProviderOptionOpt,
        as_json: bool = JsonOpt,
        catalog_path: Optional[Path] = typer.Option(None, "--catalog",
                                                    envvar="NESTCLOUD_CATALOG"),
    ) -> None:
        """Compare the catalog with the live API; exit 1 when they disagree."""
        json_mode(as_json)
        from nestcloud import sandbox as sb
        from nestcloud.catalog import load_catalog
        from nestcloud.cli._inputs import check_region, provider_options
        from nestcloud.provider import open_provider

        opts = provider_options(ctx, [provider])[provider]
        check_region(region, [provider], catalog_path)
        cat = load_catalog(catalog_path)
        prov = open_provider(provider, region, sandbox=sb.enabled(sandbox), note=info, **opts)
        res = prov.verify_catalog(cat, region)
        show(res, as_json)
        if not res.ok:
            raise typer.Exit(1)

