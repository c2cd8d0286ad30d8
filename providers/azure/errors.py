"""Azure failures as nestcloud errors, with the scope failover reads (``nestcloud.provider.Scope``).

``translate_code`` maps an ARM error code (and its target) to the error a user can act on; it
is pure. ``translate`` and ``errors`` take the SDK's exceptions: they import
``azure.core.exceptions`` only when a failure is being translated, which happens only after the
SDK raised it, so importing this module never loads the SDK.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from nestcloud.errors import (CapacityError, CredentialsError, NestcloudError, ProviderError,
                              QuotaError, ThrottledError, UnsupportedError)
from providers.azure.auth import ENV_ENDPOINT
from providers.azure.plan import PROVIDER

_CAPACITY = {"skunotavailable", "allocationfailed", "zonalallocationfailed",
             "overconstrainedallocationrequest", "overconstrainedzonalallocationrequest"}
_QUOTA = {"quotaexceeded", "operationnotallowed", "totalregionalcoresquotaexceeded",
          "spotquotaexceeded", "lowpriorityquotaexceeded"}
_AUTH = {"authorizationfailed", "authenticationfailed", "invalidauthenticationtoken",
         "expiredauthenticationtoken", "invalidauthenticationtokentenant",
         "linkedauthorizationfailed"}
# Failures that a second create of the same resource can cure.
TRANSIENT = {"internalservererror", "internalexecutionerror", "osprovisioningtimedout",
             "osprovisioninginternalerror", "retryableerror", "anotheroperationinprogress",
             "conflictingoperation", "vmstartinternalerror", "provisioningfailed"}


def translate_code(code: str | None, message: str, status: int | None, doing: str, *,
                   target: str | None = None) -> ProviderError:
    """An ARM error code (and its target) -> the nestcloud error a user can act on."""
    low = (code or "").lower()
    text = f"{doing}: {message}" if message else doing
    if code:
        text += f" ({code})"
    if (target or "").lower().endswith("disksizegb"):
        # OperationNotAllowed is also a quota code: the target says it is the disk's size,
        # which no other size or region cures.
        return UnsupportedError(text, hint="the OS disk must be at least as big as the "
                                           "image's own: pass a larger --disk-gib",
                                code=code, provider=PROVIDER, scope="request")
    if low in _CAPACITY:
        return CapacityError(text, hint="Azure has no capacity for this size there now: try "
                                        "another region or an equivalent size, or retry later",
                             code=code, provider=PROVIDER)
    if low in _QUOTA:
        return QuotaError(text, hint="raise the vCPU quota for this family in the region "
                                     "(portal: Quotas > Compute) or pick another region/size",
                          code=code, provider=PROVIDER)
    if low in _AUTH or status in (401, 403):
        return CredentialsError(text, hint="sign in with `az login` (or set AZURE_CLIENT_ID/"
                                           "AZURE_TENANT_ID/AZURE_CLIENT_SECRET) and make sure "
                                           "the identity has Contributor on the subscription",
                                code=code, provider=PROVIDER)
    if low in {"subscriptionnotfound", "invalidsubscriptionid"}:
        return CredentialsError(text, hint="check --subscription / AZURE_SUBSCRIPTION_ID "
                                           "(`az account list`)", code=code, provider=PROVIDER)
    if low == "resourcegroupbeingdeleted":
        return ProviderError(text, hint="a previous `nestcloud down` is still deleting this "
                                        "group: wait for it to finish, then launch again",
                             code=code, provider=PROVIDER)
    if low == "nicreservedforanothervm":
        return ProviderError(text, hint="Azure keeps a NIC reserved ~180 s after its VM is "
                                        "deleted: wait a few minutes and run again",
                             code=code, provider=PROVIDER)
    if status == 429 or low in {"toomanyrequests", "throttled"}:
        return ThrottledError(text, hint="Azure Resource Manager kept throttling after "
                                         "retries: wait a minute and run again",
                              code=code, provider=PROVIDER)
    if "securitytype" in message.lower().replace(" ", ""):
        # Some subscriptions must opt in before sending securityType Standard explicitly
        # (FACTS.md, unconfirmed); nesting needs Standard, so say so rather than drop it. The
        # subscription is the obstacle: no other size or region of it would take the request.
        return UnsupportedError(text, hint="nesting needs security type Standard (Trusted "
                                           "Launch blocks it); this subscription may need a "
                                           "Microsoft.Compute feature registration to send "
                                           "it: see `az feature list --namespace "
                                           "Microsoft.Compute`", code=code, provider=PROVIDER,
                                scope="account")
    if low in {"invalidparameter", "badrequest", "invalidrequestcontent"}:
        return UnsupportedError(text, hint="Azure rejected a parameter of this launch",
                                code=code, provider=PROVIDER)
    return ProviderError(text, code=code, provider=PROVIDER)


def code_message(exc: Any) -> tuple[str | None, str]:
    """(ARM error code or None, first line of its message) of an ``HttpResponseError``."""
    err = getattr(exc, "error", None)
    code = getattr(err, "code", None) if err is not None else None
    message = getattr(err, "message", None) if err is not None else None
    return code, str(message or exc.message or exc).splitlines()[0]


def translate(exc: Exception, doing: str) -> NestcloudError:
    """Any exception a verb met -> the nestcloud error to raise ``from`` it."""
    if isinstance(exc, NestcloudError):
        return exc
    from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError,
                                       ServiceRequestError)

    if isinstance(exc, ClientAuthenticationError) and getattr(exc, "response", None) is None:
        # Raised by the credential itself: no login at all, or an expired one.
        return CredentialsError(f"{doing}: no usable Azure credentials "
                                f"({str(exc).splitlines()[0]})",
                                hint="run `az login`, or set AZURE_CLIENT_ID/AZURE_TENANT_ID/"
                                     "AZURE_CLIENT_SECRET for a service principal",
                                provider=PROVIDER)
    if isinstance(exc, HttpResponseError):
        code, message = code_message(exc)
        target = getattr(getattr(exc, "error", None), "target", None)
        return translate_code(code, message, exc.status_code, doing,
                              target=str(target) if target else None)
    if isinstance(exc, ServiceRequestError):
        return ProviderError(f"{doing}: cannot reach Azure Resource Manager ({exc})",
                             hint="check the network, or --arm-endpoint / "
                                  f"{ENV_ENDPOINT} if you set one", provider=PROVIDER)
    return ProviderError(f"{doing}: {type(exc).__name__}: {exc}", provider=PROVIDER)


@contextmanager
def errors(doing: str) -> Iterator[None]:
    """Every SDK failure inside leaves as a nestcloud error (``from`` the SDK's)."""
    try:
        yield
    except NestcloudError:
        raise
    except Exception as exc:
        raise translate(exc, doing) from exc


def code_of(exc: BaseException) -> str:
    """The lower-cased ARM error code of an ``HttpResponseError`` ("" for anything else)."""
    from azure.core.exceptions import HttpResponseError

    if isinstance(exc, HttpResponseError):
        return (code_message(exc)[0] or "").lower()
    return ""

