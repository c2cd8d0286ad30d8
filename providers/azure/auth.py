"""Which subscription and endpoint a provider talks to, and who owns what it creates.

Pure: the credential objects themselves (and the loopback auth policy, which subclasses an
SDK type) are in ``providers.azure._sdk``, imported only when a verb reaches Azure.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from nestcloud.errors import InputError

ENV_ENDPOINT = "NESTCLOUD_AZURE_ARM_ENDPOINT"
ENV_SUBSCRIPTION = "AZURE_SUBSCRIPTION_ID"


def resolve_subscription(explicit: str | None) -> str:
    """--subscription, then AZURE_SUBSCRIPTION_ID, then the Azure CLI's default subscription."""
    if explicit:
        return explicit
    env = os.environ.get(ENV_SUBSCRIPTION)
    if env:
        return env
    config_dir = Path(os.environ.get("AZURE_CONFIG_DIR") or Path.home() / ".azure")
    profile = config_dir / "azureProfile.json"
    try:
        # The Azure CLI writes this file with a UTF-8 byte-order mark.
        data = json.loads(profile.read_text(encoding="utf-8-sig"))
        for sub in data.get("subscriptions") or []:
            if sub.get("isDefault") and sub.get("id"):
                return str(sub["id"])
    except (OSError, ValueError, AttributeError):
        pass
    raise InputError("no Azure subscription: pass --subscription, set AZURE_SUBSCRIPTION_ID, or "
                     "choose a default with `az account set --subscription <id>`")


