"""Everything of the Azure SDK the provider uses, imported here and only here.

``providers.azure.provider`` imports this module inside the verbs that reach Azure, so importing
the provider (the registry, ``check``, ``plan``, the class hooks) never loads the SDK. The two
classes below subclass or stand in for SDK types, which is why they cannot live in ``auth``.
"""

from __future__ import annotations

from typing import Any

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError,
                                   ResourceNotFoundError, ServiceRequestError)
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import RunCommandInput
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient

__all__ = ["AccessToken", "ClientAuthenticationError", "ComputeManagementClient",
           "HttpResponseError", "LoopbackAuthPolicy", "LoopbackCredential",
           "NetworkManagementClient", "ResourceManagementClient", "ResourceNotFoundError",
           "RunCommandInput", "ServiceRequestError", "TokenCredential", "CLIENTS",
           "default_credential"]

CLIENTS: dict[str, Any] = {"resource": ResourceManagementClient,
                           "network": NetworkManagementClient,
                           "compute": ComputeManagementClient}


class LoopbackCredential:
    """A placeholder token for an ARM endpoint on this machine (a local fake or emulator)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("nestcloud-loopback", 2**31 - 1)


class LoopbackAuthPolicy(SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Bearer auth for a plain-http loopback endpoint, which azure-core's policy refuses."""

    def __init__(self, credential: TokenCredential, scope: str) -> None:
        self._credential = credential
        self._scope = scope

    def on_request(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        token = self._credential.get_token(self._scope).token
        request.http_request.headers["Authorization"] = f"Bearer {token}"


def default_credential() -> TokenCredential:
    """The Azure CLI login, environment, managed identity... (it probes nothing until a token
    is needed)."""
    from azure.identity import DefaultAzureCredential

    credential: TokenCredential = DefaultAzureCredential()
    return credential
