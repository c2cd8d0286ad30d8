"""RunInstances ClientToken semantics in front of moto, which ignores ClientToken.

As the EC2 API reference ("Ensuring idempotency") describes them: a request repeated with
the same client token returns the original answer (only the instances' state may differ) and
launches nothing; the same token with any other parameter changed is answered with
IdempotentParameterMismatch; a token stays bound for at least 24 hours after its instance is
terminated (here: for the life of the server); tokens are per region. A WSGI layer on the
wire (see providers/aws/sandbox.py), so nestcloud's real client code runs unchanged.
"""

from __future__ import annotations

import io
import re
import threading
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from providers.aws.sandbox import (
    EC2_API_VERSION,
    WsgiApp,
    call,
    instance_items,
    ns_of,
    read_params,
    respond,
    to_xml,
)

MISMATCH_MESSAGE = ("Arguments on this idempotent request are inconsistent with arguments "
                    "used in previous request(s).")
_REGION = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/,\s]+)/")


@dataclass
class _Bound:
    params: tuple[tuple[str, str], ...]
    headers: list[tuple[str, str]]
    body: bytes
    ids: list[str]


def region_of(environ: dict[str, Any]) -> str:
    m = _REGION.search(str(environ.get("HTTP_AUTHORIZATION") or ""))
    return m.group(1) if m else "us-east-1"


class ClientTokens:
    """RunInstances with a ClientToken, answered as EC2 answers it."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        # One RunInstances at a time: a concurrent twin of a request waits, then replays.
        self._lock = threading.Lock()
        self.bound: dict[tuple[str, str], _Bound] = {}
        self.mismatches = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        params = read_params(environ)
        token = params.get("ClientToken")
        if (params.get("Version") != EC2_API_VERSION or params.get("Action") != "RunInstances"
                or not token):
            return self.app(environ, start_response)
        key = (region_of(environ), token)
        asked = tuple(sorted((k, v) for k, v in params.items() if k != "ClientToken"))
        with self._lock:
            bound = self.bound.get(key)
            if bound is None:
                status, headers, body = call(self.app, environ)
                if status.startswith("200"):
                    root = ET.fromstring(body)
                    ns = ns_of(root)
                    ids = [i.findtext(f"{ns}instanceId") or "" for i in instance_items(root)]
                    self.bound[key] = _Bound(asked, headers, body, ids)
                return respond(start_response, status, headers, body)
            if bound.params != asked:
                self.mismatches += 1
                return respond(start_response, "400 Bad Request",
                               [("Content-Type", "text/xml")],
                               _error("IdempotentParameterMismatch", MISMATCH_MESSAGE))
            return respond(start_response, "200 OK", bound.headers,
                           self._replay(environ, bound))

    def _replay(self, environ: dict[str, Any], bound: _Bound) -> bytes:
        """The original answer with each instance's current state (it may be terminated)."""
        states = self._states(environ, bound.ids)
        root = ET.fromstring(bound.body)
        ns = ns_of(root)
        for item in instance_items(root):
            now = states.get(item.findtext(f"{ns}instanceId") or "")
            state = item.find(f"{ns}instanceState")
            if now is None or state is None:
                continue
            for tag, value in zip(("code", "name"), now):
                el = state.find(f"{ns}{tag}")
                if el is not None:
                    el.text = value
        return to_xml(root)

    def _states(self, environ: dict[str, Any], ids: list[str]) -> dict[str, tuple[str, str]]:
        form = "&".join([f"Action=DescribeInstances&Version={EC2_API_VERSION}",
                         *(f"InstanceId.{n}={i}" for n, i in enumerate(ids, 1))]).encode()
        env = dict(environ)
        env.update({"REQUEST_METHOD": "POST", "QUERY_STRING": "",
                    "CONTENT_TYPE": "application/x-www-form-urlencoded; charset=utf-8",
                    "CONTENT_LENGTH": str(len(form)), "wsgi.input": io.BytesIO(form)})
        status, _, body = call(self.app, env)
        if not status.startswith("200"):
            return {}
        root = ET.fromstring(body)
        ns = ns_of(root)
        return {i.findtext(f"{ns}instanceId") or "":
                (i.findtext(f"{ns}instanceState/{ns}code") or "",
                 i.findtext(f"{ns}instanceState/{ns}name") or "")
                for i in instance_items(root)}


def _error(code: str, message: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}'
            f"</Code><Message>{message}</Message></Error></Errors>"
            f"<RequestID>{uuid.uuid4()}</RequestID></Response>").encode()
