"""tests/fakes/http_fake.py, the wire the ARM and Compute Engine fakes share, on its own."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

import pytest

from fakes.http_fake import Fault, JsonHandler, LoopbackFake, Request, firing


class _EchoHandler(JsonHandler):
    fake: _Echo

    def _dispatch(self) -> None:
        req = self._read_request(Request)
        self.fake.requests.append(req)
        f = firing(self.fake.faults, req.method, req.path)
        if f is not None:
            return self._send(f.status, {"error": f.message})
        self._send(200, {"path": req.path, "query": req.query, "body": req.body})


class _Echo(LoopbackFake):
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.faults: list[Fault] = []

    def _handler(self) -> type[JsonHandler]:
        return type("Handler", (_EchoHandler,), {"fake": self})


def _call(url: str, method: str = "GET", data: bytes | None = None) -> tuple[int, Any, str]:
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
            return resp.status, json.loads(resp.read()), resp.headers["Content-Type"]
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), err.headers["Content-Type"]


def test_a_request_is_read_recorded_and_answered_as_json() -> None:
    with _Echo() as fake:
        assert fake.url.startswith("http://127.0.0.1:")
        status, answer, ctype = _call(f"{fake.url}/a/b/?x=1&x=2&y=", "PUT", b'{"k": 1}')
        assert (status, ctype) == (200, "application/json")
        assert answer == {"path": "/a/b", "query": {"x": "2", "y": ""}, "body": {"k": 1}}
        _call(f"{fake.url}/c", "POST", b"not json")
        [put, post] = fake.requests
        assert (put.method, put.path, put.body) == ("PUT", "/a/b", {"k": 1})
        assert put.headers["Content-Length"] == "8"
        assert (post.method, post.body) == ("POST", "not json")
    with pytest.raises(AssertionError, match="start"):
        fake.url  # noqa: B018 - stopped: no address to give


def test_a_fault_answers_every_nth_match_until_it_is_used_up() -> None:
    f = Fault("GET", re.compile("/vms"), 429, "slow down", times=2, every=3)
    assert [f.fires("GET", "/vms/1") for _ in range(9)] == [False, False, True] * 2 + [False] * 3
    assert (f.seen, f.hits) == (6, 2)
    assert not Fault("GET", re.compile("/vms"), 429, "", None).fires("POST", "/vms")
    assert not Fault("*", re.compile("/vms"), 429, "", None).fires("GET", "/disks")
    assert Fault("*", re.compile("/vms"), 429, "", None).fires("DELETE", "/vms/1")


def test_the_first_fault_that_fires_answers_and_those_before_it_count_the_request() -> None:
    every_other = Fault("*", re.compile("."), 503, "busy", None, every=2)
    always = Fault("GET", re.compile("/x"), 500, "broken", 1)
    with _Echo() as fake:
        fake.faults += [every_other, always]
        assert _call(f"{fake.url}/x")[:2] == (500, {"error": "broken"})
        assert _call(f"{fake.url}/x")[:2] == (503, {"error": "busy"})
        assert _call(f"{fake.url}/x")[0] == 200  # `always` is used up
        assert (every_other.seen, always.hits) == (3, 1)
