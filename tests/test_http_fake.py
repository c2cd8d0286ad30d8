"""tests/fakes/http_fake.py, the wire the cloud fakes share, on its own."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

import pytest

from fakes.http_fake import Fault, JsonServer, Request, firing


def _echo(req: Request, url: str) -> tuple[int, Any]:
    return 200, {"path": req.path, "query": req.query, "body": req.body}


def _call(url: str, method: str = "GET", data: bytes | None = None) -> tuple[int, Any, str]:
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
            return resp.status, json.loads(resp.read()), resp.headers["Content-Type"]
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), err.headers["Content-Type"]


def test_a_request_is_read_recorded_and_answered_as_json() -> None:
    with JsonServer(_echo) as server:
        assert server.url.startswith("http://127.0.0.1:")
        status, answer, ctype = _call(f"{server.url}/a/b/?x=1&x=2&y=", "PUT", b'{"k": 1}')
        assert (status, ctype) == (200, "application/json")
        assert answer == {"path": "/a/b", "query": {"x": "2", "y": ""}, "body": {"k": 1}}
        _call(f"{server.url}/c", "POST", b"not json")
        [put, post] = server.requests
        assert (put.method, put.path, put.body) == ("PUT", "/a/b", {"k": 1})
        assert put.headers["Content-Length"] == "8"
        assert (post.method, post.body) == ("POST", "not json")
    with pytest.raises(AssertionError, match="start"):
        server.url  # noqa: B018 - stopped: no address to give


def test_the_content_type_is_the_servers() -> None:
    with JsonServer(_echo, "application/x-amz-json-1.1") as server:
        assert _call(server.url)[2] == "application/x-amz-json-1.1"


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
    got = [firing([every_other, always], "GET", "/x") for _ in range(3)]
    assert got == [always, every_other, None]  # `always` is used up after one
    assert (every_other.seen, always.hits) == (3, 1)
