"""Helpers around the local moto endpoint: record what boto3 sent, inject AWS errors.

Both work through botocore's event system on a boto3 Session, so the real client code path
runs; only the wire answer is replaced when an error is injected.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse


@dataclass
class Recorder:
    """Every API call made through a session: (operation, params as the caller passed them)."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, copy.deepcopy(params)))

    def ops(self) -> list[str]:
        return [op for op, _ in self.calls]

    def params(self, op: str) -> list[dict[str, Any]]:
        return [p for o, p in self.calls if o == op]


_loader: list[Any] = []


def recording_session(region: str = "us-east-1") -> tuple[boto3.Session, Recorder]:
    session = boto3.Session(region_name=region)
    # Share one botocore data loader across tests: parsing the EC2 model costs ~0.3 s.
    if _loader:
        session._session.register_component("data_loader", _loader[0])
    else:
        _loader.append(session._session.get_component("data_loader"))
    rec = Recorder()
    session.events.register("provide-client-params.*.*", rec)
    return session, rec


def client_error_response(code: str, message: str = "injected", status: int = 400
                          ) -> tuple[AWSResponse, dict[str, Any]]:
    http = AWSResponse("http://127.0.0.1/", status, {}, None)
    return http, {"Error": {"Code": code, "Message": message},
                  "ResponseMetadata": {"HTTPStatusCode": status}}


def _events(target: Any) -> Any:
    """A session's emitter (for clients made later) or an existing client's own copy."""
    return target.meta.events if hasattr(target, "meta") else target.events


def inject_error(session: Any, service: str, operation: str, code: str, *,
                 message: str = "injected", times: int | None = None) -> list[int]:
    """Make ``operation`` answer with AWS error ``code`` (``times`` times, or always)."""
    hits = [0]

    def handler(**_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if times is not None and hits[0] >= times:
            return None
        hits[0] += 1
        return client_error_response(code, message)

    _events(session).register(f"before-call.{service}.{operation}", handler)
    return hits


def on_response(session: Any, service: str, operation: str,
                edit: Callable[[dict[str, Any]], None]) -> None:
    """Edit the parsed response of ``operation`` in place (what the SDK hands back)."""

    def handler(parsed: dict[str, Any], **_: Any) -> None:
        edit(parsed)

    _events(session).register(f"after-call.{service}.{operation}", handler)


@contextlib.contextmanager
def moto_server(*, echo: bool = True, client_tokens: bool = True) -> Iterator[str]:
    """moto's real HTTP server on a free loopback port, stopped on exit; yields its URL.

    Like the sandbox, it echoes CpuOptions.NestedVirtualization as EC2 does (``echo``); and
    RunInstances honours ClientToken as EC2 does (``client_tokens``, see ClientTokens),
    which moto alone ignores."""
    from fakes.ec2_tokens import ClientTokens

    from providers.aws.sandbox import CpuOptionsEcho, LocalEc2Server

    layers: list[Any] = []
    if client_tokens:
        layers.append(ClientTokens)
    if echo:
        layers.append(CpuOptionsEcho)
    server = LocalEc2Server(ip_address="127.0.0.1", port=0, layers=layers)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
