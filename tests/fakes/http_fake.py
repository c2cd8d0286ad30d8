"""The wire the local cloud fakes (arm_fake, gce_fake) share: a threaded loopback HTTP server
whose handler reads each request into a ``Request`` and answers JSON, injected ``Fault``s, and
the start/stop lifecycle. A fake keeps its own state, routes and error shape. ``JsonServer`` is
the smallest such fake: one function answers every request (price API pages, for example)."""

from __future__ import annotations

import json
import re
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlparse


@dataclass
class Request:
    """One request as the fake received it."""

    method: str
    path: str  # no query, no trailing slash
    query: dict[str, str]
    body: Any  # parsed JSON; the text when it is not JSON; None when empty
    headers: dict[str, str]


@dataclass
class Fault:
    """An injected error for requests whose method and path match: ``times`` of them (None:
    all), only every ``every``-th match."""

    method: str  # upper case, or "*"
    path: re.Pattern[str]
    status: int
    message: str
    times: int | None
    every: int = 1
    hits: int = 0
    seen: int = 0

    def fires(self, method: str, path: str) -> bool:
        """Count one request against this fault; True when it is to be answered with it."""
        if self.method not in (method, "*") or not self.path.search(path) or (
                self.times is not None and self.hits >= self.times):
            return False
        self.seen += 1
        if self.seen % self.every:
            return False
        self.hits += 1
        return True


FaultT = TypeVar("FaultT", bound=Fault)
RequestT = TypeVar("RequestT", bound=Request)


def firing(faults: list[FaultT], method: str, path: str) -> FaultT | None:
    """The first fault that fires for this request (each one before it counts the request)."""
    return next((f for f in faults if f.fires(method, path)), None)


class JsonHandler(BaseHTTPRequestHandler):
    """Reads requests and answers JSON; a fake's handler implements ``_dispatch``."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    json_content_type = "application/json"

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _dispatch(self) -> None:
        raise NotImplementedError

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _parse_query(self, query: str) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}

    def _read_request(self, cls: type[RequestT]) -> RequestT:
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        return cls(self.command, url.path.rstrip("/"), self._parse_query(url.query), body,
                   dict(self.headers))

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None,
              raw: bytes | None = None) -> None:
        """Answer ``body`` as JSON (None: no body), or ``raw`` bytes as they are."""
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if raw is None and body is not None:
            self.send_header("Content-Type", self.json_content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)  # a client hanging up is normal


FakeT = TypeVar("FakeT", bound="LoopbackFake")


class LoopbackFake:
    """``start()`` serves the fake on a free loopback port, ``url`` reaches it, ``stop()`` ends
    it; ``with Fake() as fake:`` does both."""

    thread_name = "http-fake"
    _server: ThreadingHTTPServer | None = None

    def _handler(self) -> type[JsonHandler]:
        """The handler class, bound to this fake."""
        raise NotImplementedError

    def start(self: FakeT) -> FakeT:
        self._server = _Server(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True,
                         name=self.thread_name).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self: FakeT) -> FakeT:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


Answer = Callable[[Request, str], tuple[int, Any]]


class JsonServer(LoopbackFake):
    """Answers every request with ``answer(request, url)``: a status and a JSON document.
    ``requests`` records what was received."""

    def __init__(self, answer: Answer, content_type: str = "application/json") -> None:
        self.answer = answer
        self.content_type = content_type
        self.requests: list[Request] = []

    def _handler(self) -> type[JsonHandler]:
        return type("Handler", (_AnswerHandler,), {"fake": self,
                                                   "json_content_type": self.content_type})


class _AnswerHandler(JsonHandler):
    fake: JsonServer

    def _dispatch(self) -> None:
        req = self._read_request(Request)
        self.fake.requests.append(req)
        self._send(*self.fake.answer(req, self.fake.url))
