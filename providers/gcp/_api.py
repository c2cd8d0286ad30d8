"""google-cloud-compute wiring: clients, retries, operation waits, error translation.

Imported only when a verb reaches Google (providers/gcp/provider.py imports it lazily), so
importing the provider never imports ``google.*``.

Two traps of the client (FACTS "GCP", checked on 1.57): ``insert()``'s ExtendedOperation polls
compute.googleapis.com whatever endpoint the client was given, so every write here is a
``*_unary`` call waited on with the Zone/Region/GlobalOperations client built with the same
client_options; and the generated default retry does not retry 429, so every call passes
:func:`make_retry` (429, 5xx, 403 rateLimitExceeded, connection resets), with a ``request_id``
on every write so that a retried write is the same write.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.auth import exceptions as aexc
from google.cloud import compute_v1

from nestcloud.errors import CredentialsError, NestcloudError, ProviderError
from providers.gcp import _plan
from providers.gcp._plan import PROVIDER

T = TypeVar("T")

# Waits: zoneOperations.wait answers within about two minutes even when the operation is not
# done, so its call timeout must be longer than that.
WAIT_CALL_TIMEOUT_S = 150.0
CALL_TIMEOUT_S = 60.0

_CLIENTS: dict[str, str] = {
    "instances": "InstancesClient", "region_instances": "RegionInstancesClient",
    "zone_ops": "ZoneOperationsClient", "region_ops": "RegionOperationsClient",
    "global_ops": "GlobalOperationsClient", "networks": "NetworksClient",
    "subnetworks": "SubnetworksClient", "firewalls": "FirewallsClient",
    "routers": "RoutersClient", "addresses": "AddressesClient", "regions": "RegionsClient",
    "machine_types": "MachineTypesClient",
}


def _reason(exc: gexc.GoogleAPICallError) -> str | None:
    for err in exc.errors or []:
        if isinstance(err, dict) and err.get("reason"):
            return str(err["reason"])
    return getattr(exc, "reason", None) or None


def retryable(exc: BaseException) -> bool:
    """Rate limits (429, or 403 rateLimitExceeded as GCE also answers), 5xx and dropped
    connections; every write carries a request_id, so retrying one is safe."""
    if isinstance(exc, gexc.Forbidden):
        return _reason(exc) in _plan.RATE_REASONS
    if not isinstance(exc, Exception):
        return False
    return bool(gretry.if_transient_error(exc)) or isinstance(
        exc, (gexc.BadGateway, gexc.GatewayTimeout))


def make_retry(initial: float = 1.0, maximum: float = 32.0, multiplier: float = 2.0,
               timeout: float = 600.0) -> gretry.Retry:
    return gretry.Retry(predicate=retryable, initial=initial, maximum=maximum,
                        multiplier=multiplier, timeout=timeout)


def translate(exc: BaseException, doing: str, **where: str | None) -> NestcloudError:
    """The nestcloud error for anything the client raised while ``doing``."""
    if isinstance(exc, NestcloudError):
        return exc
    if isinstance(exc, gexc.RetryError):
        cause = exc.cause
        if cause is not None:
            return translate(cause, doing, **where)
        return ProviderError(f"{doing}: gave up retrying ({exc.message})", provider=PROVIDER,
                             scope="region")
    if isinstance(exc, aexc.DefaultCredentialsError):
        return CredentialsError(f"{doing}: no Google credentials found ({exc})",
                                hint=_plan.CREDENTIALS_HINT, provider=PROVIDER)
    if isinstance(exc, aexc.RefreshError):
        return CredentialsError(f"{doing}: Google credentials were rejected or have expired "
                                f"({exc})", hint=_plan.CREDENTIALS_HINT, provider=PROVIDER)
    if isinstance(exc, gexc.GoogleAPICallError):
        status = exc.code if isinstance(exc.code, int) else None
        reason = _reason(exc)
        return _plan.translate(doing=doing, code=reason if reason in _plan.ZONE_CODES
                               | _plan.QUOTA_CODES else None,
                               message=str(exc.message or ""), status=status, reason=reason,
                               region=where.get("region"), zone=where.get("zone"),
                               type_name=where.get("type_name"), project=where.get("project"))
    if isinstance(exc, (aexc.TransportError, OSError)) or type(exc).__name__ in (
            "ConnectionError", "ChunkedEncodingError", "Timeout", "ReadTimeout"):
        return ProviderError(f"{doing}: cannot reach the Compute Engine API ({exc})",
                             hint="check the network, or --gcp-endpoint / "
                                  "NESTCLOUD_GCP_ENDPOINT if you set one", provider=PROVIDER)
    return ProviderError(f"{doing}: {type(exc).__name__}: {exc}", provider=PROVIDER)


def status_of(err: BaseException) -> int | None:
    """The HTTP status behind a translated error (None when it was not an HTTP error)."""
    cause = err.__cause__
    while isinstance(cause, gexc.RetryError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, gexc.GoogleAPICallError) and isinstance(cause.code, int):
        return cause.code
    return None


def to_dict(message: Any) -> dict[str, Any]:
    """A compute_v1 message as REST JSON (camelCase), the shape _plan's bodies have."""
    out: dict[str, Any] = json.loads(type(message).to_json(message))
    return out


def from_dict(cls: Any, body: dict[str, Any]) -> Any:
    return cls.from_json(json.dumps(body))


def request_id() -> str:
    return str(uuid.uuid4())


class Api:
    """The clients of one project at one endpoint, and calls made the one way."""

    def __init__(self, project: str, credentials: Any, endpoint: str | None, *,
                 retry: gretry.Retry | None = None, op_timeout_s: float = 1800.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.project = project
        self.credentials = credentials
        self.endpoint = endpoint
        self.retry = retry or make_retry()
        self.op_timeout_s = op_timeout_s
        self.sleep = sleep
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def client(self, kind: str) -> Any:
        made = self._clients.get(kind)
        if made is not None:
            return made
        with self._lock:
            if kind not in self._clients:
                from google.api_core.client_options import ClientOptions

                opts = ClientOptions(api_endpoint=self.endpoint) if self.endpoint else None
                cls = getattr(compute_v1, _CLIENTS[kind])
                self._clients[kind] = cls(credentials=self.credentials, client_options=opts)
            return self._clients[kind]

    def call(self, doing: str, fn: Callable[..., T], /, *, timeout: float = CALL_TIMEOUT_S,
             where: dict[str, str | None] | None = None, **kw: Any) -> T:
        """``fn(**kw)`` with our retry and timeout; failures leave as nestcloud errors."""
        try:
            return fn(**kw, retry=self.retry, timeout=timeout)
        except Exception as exc:
            raise translate(exc, doing, **{"project": self.project, **(where or {})}) from exc

    def wait(self, op: Any, doing: str, *, zone: str | None = None, region: str | None = None,
             type_name: str | None = None) -> Any:
        """Wait with the operations client of the op's scope until DONE; an operation error
        leaves as the nestcloud error for its first error code."""
        if zone:
            ops, scope = self.client("zone_ops"), {"zone": zone}
        elif region:
            ops, scope = self.client("region_ops"), {"region": region}
        else:
            ops, scope = self.client("global_ops"), {}
        deadline = time.monotonic() + self.op_timeout_s
        where = {"zone": zone, "region": region or (zone and _plan.region_of_zone(zone)),
                 "type_name": type_name}
        while op.status != compute_v1.Operation.Status.DONE:
            if time.monotonic() > deadline:
                raise ProviderError(f"{doing}: operation {op.name} not done after "
                                    f"{self.op_timeout_s:g}s", provider=PROVIDER)
            op = self.call(doing, ops.wait, timeout=WAIT_CALL_TIMEOUT_S, where=where,
                           project=self.project, operation=op.name, **scope)
        errors = list(op.error.errors) if op.error else []
        if errors:
            first = errors[0]
            status = op.http_error_status_code or None
            message = "; ".join(e.message for e in errors[:3] if e.message)
            raise _plan.translate(doing=doing, code=first.code or None, message=message,
                                  status=status, region=where["region"], zone=zone,
                                  type_name=type_name, project=self.project)
        return op
