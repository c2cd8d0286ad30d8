"""Reaping: only expired nestcloud groups are selected, and only they are removed."""

from __future__ import annotations

import datetime as dt

from nestcloud.errors import CredentialsError
from nestcloud.models import DownResult, Instance
from nestcloud.reap import parse_expiry, reap, select_expired
from nestcloud.spec import TAG_EXPIRES, TAG_NAME

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.timezone.utc)


def inst(iid: str, name: str | None, expires: str | None, *, region: str = "us-east-1",
         state: str = "running", provider: str = "aws") -> Instance:
    tags = {}
    if name is not None:
        tags[TAG_NAME] = name
    if expires is not None:
        tags[TAG_EXPIRES] = expires
    return Instance(provider=provider, id=iid, name=name or "", region=region, type="c8i.large",
                    state=state, expires=expires, tags=tags)


def test_parse_expiry_forms() -> None:
    assert parse_expiry("2026-11-29T11:00:00Z") == dt.datetime(2026, 11, 29, 11,
                                                               tzinfo=dt.timezone.utc)
    assert parse_expiry("2026-11-29T13:00:00+02:00") == dt.datetime(2026, 11, 29, 11,
                                                                    tzinfo=dt.timezone.utc)
    assert parse_expiry("2026-11-29T11:00:00") == dt.datetime(2026, 11, 29, 11,
                                                              tzinfo=dt.timezone.utc)
    assert parse_expiry("tomorrow") is None


def test_select_only_expired_nestcloud_groups() -> None:
    instances = [
        inst("i-1", "old-lab", "2026-11-29T10:00:00Z"),
        inst("i-2", "old-lab", "2026-11-29T11:59:00Z"),
        inst("i-3", "fresh", "2026-11-29T12:30:00Z"),
        inst("i-4", "forever", None),
        inst("i-5", None, "2020-01-01T00:00:00Z"),           # not ours: no name tag
        inst("i-6", "garbled", "soon"),
        inst("i-7", "half", "2026-11-29T11:00:00Z"),
        inst("i-8", "half", "2026-11-29T13:00:00Z"),
        inst("i-9", "gone", "2026-11-29T10:00:00Z", state="terminated"),
        inst("vm-1", "old-lab", "2026-11-29T10:00:00Z", provider="azure", region="eastus"),
    ]
    expired, kept = select_expired(instances, NOW)
    assert [(g.provider, g.region, g.name, g.instances, g.reason) for g in expired] == [
        ("aws", "us-east-1", "old-lab", ["i-1", "i-2"], "expired 60s ago"),
        ("azure", "eastus", "old-lab", ["vm-1"], "expired 2h00m ago"),
    ]
    assert {g.name: g.reason for g in kept} == {
        "": "no nestcloud:name tag: not nestcloud's",
        "fresh": "expires in 30m",
        "forever": "no nestcloud:expires tag on every instance: kept (no TTL was set)",
        "garbled": "unreadable nestcloud:expires 'soon': kept",
        "half": "only 1 of 2 instance(s) expired; the group lives until "
                "2026-11-29T13:00:00+00:00",
    }
    assert all(not g.expired for g in kept)


class FakeProvider:
    """Lists what it was given and records down() calls."""

    def __init__(self, name: str, instances: list[Instance], fail_list: bool = False) -> None:
        self.name = name
        self.instances = instances
        self.downs: list[str] = []
        self.fail_list = fail_list

    def list(self, name: str | None = None) -> list[Instance]:
        if self.fail_list:
            raise CredentialsError("no credentials", provider=self.name)
        return [i for i in self.instances if name is None or i.tags.get(TAG_NAME) == name]

    def down(self, name: str) -> DownResult:
        self.downs.append(name)
        ids = [i.id for i in self.instances if i.tags.get(TAG_NAME) == name]
        return DownResult(provider=self.name, name=name, terminated=ids)


def test_reap_removes_expired_and_survives_a_failing_place() -> None:
    east = FakeProvider("aws", [inst("i-1", "old", "2026-11-29T10:00:00Z"),
                                inst("i-2", "new", "2026-11-30T10:00:00Z")])
    west = FakeProvider("aws", [], fail_list=True)
    provs = {("aws", "us-east-1"): east, ("aws", "us-west-2"): west}
    res = reap(list(provs), lambda p, r: provs[(p, r)], now=NOW)
    assert east.downs == ["old"]
    assert [r.terminated for r in res.removed] == [["i-1"]]
    assert res.errors == ["aws us-west-2: listing failed: no credentials"]
    assert [g.name for g in res.kept] == ["new"]


def test_reap_dry_run_removes_nothing() -> None:
    east = FakeProvider("aws", [inst("i-1", "old", "2026-11-29T10:00:00Z")])
    res = reap([("aws", "us-east-1")], lambda p, r: east, now=NOW, dry_run=True)
    assert east.downs == [] and res.removed == []
    assert [g.name for g in res.expired] == ["old"]
    assert "<td>would remove</td>" in res._repr_html_()  # the same words as the terminal
