"""`nestcloud iam-policy`: the least-privilege AWS policy and Azure role nestcloud needs."""

from __future__ import annotations

from typing import Any

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
        as_json: bool = typer.Option(False, "--json",
                                     help="Only the JSON document on stdout, no notes."),
    ) -> None:
        """Print the least-privilege AWS IAM policy and/or Azure custom role nestcloud needs."""
        json_mode(as_json)
        from nestcloud import iam

        choice = provider.strip().lower()
        if choice not in PROVIDERS:
            raise InputError(f"--provider {provider!r}: expected one of {', '.join(PROVIDERS)}")
        doc: dict[str, Any]
        if choice == "aws":
            doc = iam.aws_policy()
        elif choice == "azure":
            doc = iam.azure_role_definition()
        else:
            doc = {"aws": iam.aws_policy(), "azure": iam.azure_role_definition()}
        emit_json(doc)
        if not as_json:
            for name in (("aws", "azure") if choice == "all" else (choice,)):
                info(iam.explain(name) + (f" (the {name!r} key above)" if choice == "all"
                                          else ""))
