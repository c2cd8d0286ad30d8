"""`nestcloud iam-policy`: the least-privilege policy each provider needs (its own hook)."""

from __future__ import annotations

from typing import Any, Optional

import typer

from nestcloud.cli._app import emit_json, info, json_mode
from nestcloud.errors import InputError, NestcloudError


def _writers() -> dict[str, Any]:
    """Installed providers that declare ``capabilities.access_policy``, by name (their
    classes are loaded, no SDK is imported and nothing is made)."""
    from nestcloud.provider import describe, load_factory

    out: dict[str, Any] = {}
    for row in describe():
        try:
            cls = load_factory(row["name"])
        except NestcloudError:
            continue  # a broken plugin: `nestcloud providers` says why
        if cls.capabilities.access_policy:
            out[row["name"]] = cls
    return out


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""

    @app.command("iam-policy")
    def iam_policy(
        provider: str = typer.Option("all", "--provider", "-p",
                                     help="A provider that writes a policy, or all."),
        instance_role: Optional[str] = typer.Option(
            None, "--instance-role",
            help="Also let the operator hand this role to hosts (e.g. the role in the "
                 "instance profile given to `launch --instance-profile`)."),
        l1_role: bool = typer.Option(False, "--l1-role",
                                     help="Print the L1 host's own role (where the provider "
                                          "needs one) instead."),
        as_json: bool = typer.Option(False, "--json",
                                     help="Only the JSON document on stdout, no notes."),
    ) -> None:
        """Print the least-privilege policy (or role) nestcloud needs, per provider."""
        json_mode(as_json)
        if l1_role and instance_role is not None:
            raise InputError("--l1-role prints the instance role itself: use --instance-role "
                             "separately, for the operator policy")
        writers = _writers()
        choice = provider.strip().lower()
        if choice != "all" and choice not in writers:
            raise InputError(f"--provider {provider!r}: expected one of "
                             f"{', '.join([*writers, 'all'])}")
        names = list(writers) if choice == "all" else [choice]
        docs: dict[str, Any] = {}
        notes: list[str] = []
        for name in names:
            try:
                policy = writers[name].access_policy(instance_role=instance_role, l1=l1_role)
            except InputError as exc:
                if choice != "all":
                    raise
                if l1_role:  # no L1 role there: `all` lists the providers that have one
                    notes.append(f"{name}: {exc.message}")
                    continue
                # `all` with --instance-role: a provider without a use for it gets its plain
                # policy, and the user hears why.
                notes.append(f"{name}: {exc.message}")
                policy = writers[name].access_policy()
            docs[name] = policy
        if not docs:
            raise InputError("no provider here writes such a policy: " + "; ".join(notes))
        if choice != "all":
            emit_json(docs[choice].document)
        else:
            emit_json({name: p.document for name, p in docs.items()})
        if not as_json:
            for name, p in docs.items():
                info(p.explain + (f" (the {name!r} key above)" if choice == "all" else ""))
            for note in notes:
                info(note)
