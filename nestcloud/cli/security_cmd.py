"""`nestcloud iam-policy`: the least-privilege AWS policy and Azure role nestcloud needs."""

from __future__ import annotations

from typing import Any, Optional

import typer

from nestcloud.cli._app import emit_json, info, json_mode
from nestcloud.errors import InputError

PROVIDERS = ("aws", "azure", "all")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""

    @app.command("iam-policy")
    def iam_policy(
        provider: str = typer.Option("all", "--provider", "-p",
                                     help="aws (IAM policy), azure (custom role) or all."),
        instance_role: Optional[str] = typer.Option(
            None, "--instance-role",
            help="AWS: also let the operator pass this IAM role (the one in the instance "
                 "profile given to `launch --instance-profile`)."),
        l1_role: bool = typer.Option(False, "--l1-role",
                                     help="AWS: print the Windows L1's instance role (trust "
                                          "and permissions policy) instead."),
        as_json: bool = typer.Option(False, "--json",
                                     help="Only the JSON document on stdout, no notes."),
    ) -> None:
        """Print the least-privilege AWS IAM policy and/or Azure custom role nestcloud needs."""
        json_mode(as_json)
        from nestcloud import iam

        choice = provider.strip().lower()
        if choice not in PROVIDERS:
            raise InputError(f"--provider {provider!r}: expected one of {', '.join(PROVIDERS)}")
        if (instance_role is not None or l1_role) and choice == "azure":
            raise InputError("--instance-role and --l1-role are AWS IAM settings: not for "
                             "--provider azure (Azure VMs need no identity for readiness)")
        if l1_role and instance_role is not None:
            raise InputError("--l1-role prints the instance role itself: use --instance-role "
                             "separately, for the operator policy")
        if l1_role:
            emit_json(iam.aws_l1_role())
            if not as_json:
                info(iam.explain("aws-l1"))
            return
        try:
            aws = iam.aws_policy(instance_role)
        except ValueError as exc:
            raise InputError(f"--instance-role: {exc}") from None
        doc: dict[str, Any]
        if choice == "aws":
            doc = aws
        elif choice == "azure":
            doc = iam.azure_role_definition()
        else:
            doc = {"aws": aws, "azure": iam.azure_role_definition()}
        emit_json(doc)
        if not as_json:
            for name in (("aws", "azure") if choice == "all" else (choice,)):
                info(iam.explain(name) + (f" (the {name!r} key above)" if choice == "all"
                                          else ""))
