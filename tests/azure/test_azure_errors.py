"""ARM error codes become nestcloud errors whose ``scope`` says what the failure rules out: the
core's failover reads that scope, never an Azure code."""

from __future__ import annotations

import pytest

from nestcloud import failover
from nestcloud.errors import CredentialsError, NestcloudError, ProviderError
from providers.azure import errors


@pytest.mark.parametrize(("code", "status", "scope"), [
    # No capacity for the size there now: another size or region may work.
    ("SkuNotAvailable", 409, "zone"), ("AllocationFailed", 200, "zone"),
    ("ZonalAllocationFailed", 200, "zone"), ("OverconstrainedAllocationRequest", 200, "zone"),
    # The subscription's regional quota: skip the region.
    ("QuotaExceeded", 409, "region"), ("OperationNotAllowed", 409, "region"),
    ("LowPriorityQuotaExceeded", 409, "region"), ("TooManyRequests", 429, "region"),
    # The sign-in or the subscription: stop.
    ("AuthorizationFailed", 403, "credentials"), (None, 401, "credentials"),
    ("ExpiredAuthenticationToken", 401, "credentials"),
    ("SubscriptionNotFound", 404, "credentials"),
    # A parameter of this launch the size does not take.
    ("InvalidParameter", 400, "type"),
    # Nothing known: no scope, so failover stops rather than guess.
    ("Conflict", 409, None), ("ResourceGroupBeingDeleted", 409, None),
])
def test_codes_carry_the_scope_failover_reads(code: str | None, status: int,
                                              scope: str | None) -> None:
    err = errors.translate_code(code, "boom", status, "doing x")
    assert err.scope == scope
    assert err.provider == "azure" and err.code == code
    assert err.message == "doing x: boom" + (f" ({code})" if code else "")


def test_a_disk_smaller_than_the_image_is_the_request_not_the_size() -> None:
    # OperationNotAllowed is also a quota code: the target says it is the disk's size, which
    # no other size or region cures.
    err = errors.translate_code("OperationNotAllowed", "The specified disk size 30 GB is "
                                "smaller than the size of the corresponding disk in the VM "
                                "image: 64 GB.", 409, "creating", target="osDisk.diskSizeGB")
    assert err.scope == "request"
    assert failover.classify(err) == "fatal"
    assert "--disk-gib" in (err.hint or "")


def test_a_subscription_that_cannot_send_security_type_stops_the_launch() -> None:
    # Some subscriptions must register a feature before sending securityType Standard
    # (FACTS.md, unconfirmed): no other size or region of that subscription will take it.
    err = errors.translate_code("BadRequest", "Use of Security Type Standard is not allowed "
                                "for this subscription", 400, "creating")
    assert err.scope == "account"
    assert failover.classify(err) == "fatal"
    assert "az feature list --namespace Microsoft.Compute" in (err.hint or "")


def test_sdk_exceptions_are_translated_and_never_leak() -> None:
    from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError,
                                       ServiceRequestError)

    no_login = errors.translate(ClientAuthenticationError("DefaultAzureCredential failed"),
                                "listing")
    assert isinstance(no_login, CredentialsError) and no_login.scope == "credentials"
    assert no_login.message.startswith("listing: no usable Azure credentials")
    unreachable = errors.translate(ServiceRequestError("connection refused"), "listing")
    assert type(unreachable) is ProviderError
    assert unreachable.message == ("listing: cannot reach Azure Resource Manager "
                                   "(connection refused)")
    http = errors.translate(HttpResponseError("server said no"), "listing")
    assert type(http) is ProviderError and http.message == "listing: server said no"
    other = errors.translate(ValueError("odd"), "listing")
    assert other.message == "listing: ValueError: odd"
    with pytest.raises(ProviderError) as raised:
        with errors.errors("reading"):
            raise ServiceRequestError("down")
    assert isinstance(raised.value.__cause__, ServiceRequestError)
    mine = NestcloudError("already ours")
    assert errors.translate(mine, "x") is mine
