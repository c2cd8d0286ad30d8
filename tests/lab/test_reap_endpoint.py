"""Reaping against a real local EC2 endpoint: expired nestcloud groups go, everything else
(unexpired, untagged, someone else's) stays. Checked by listing the endpoint directly."""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from nestcloud._progress import Progress, progress
from nestcloud.spec import TAG_EXPIRES, TAG_NAME, TAG_OWNER

AMI = "ami-12c6146b"  # one of moto's built-in images


def run_instance(ec2: Any, tags: dict[str, str]) -> str:
    kw: dict[str, Any] = dict(ImageId=AMI, InstanceType="c8i.large", MinCount=1, MaxCount=1)
    if tags:
        kw["TagSpecifications"] = [{"ResourceType": "instance", "Tags": [
            {"Key": k, "Value": v} for k, v in tags.items()]}]
    return ec2.run_instances(**kw)["Instances"][0]["InstanceId"]  # type: ignore[no-any-return]


def states(ec2: Any, ids: list[str]) -> dict[str, str]:
    out = {}
    for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]:
        for i in r["Instances"]:
            out[i["InstanceId"]] = i["State"]["Name"]
    return out


def iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_reap_with_the_aws_provider(moto_endpoint: str) -> None:
    import boto3

    from nestcloud.reap import reap
    from providers.aws import AwsProvider

    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_endpoint)
    now = dt.datetime.now(dt.timezone.utc)
    old, fresh = "old" + uuid.uuid4().hex[:6], "new" + uuid.uuid4().hex[:6]
    expired_ids = [run_instance(ec2, {TAG_NAME: old, TAG_OWNER: "t",
                                      TAG_EXPIRES: iso(now - dt.timedelta(hours=1))})
                   for _ in range(2)]
    fresh_id = run_instance(ec2, {TAG_NAME: fresh, TAG_EXPIRES: iso(now + dt.timedelta(hours=1))})
    # Not nestcloud's: an expiry-looking tag but no nestcloud:name, and an untagged instance.
    foreign = [run_instance(ec2, {"expires": iso(now - dt.timedelta(days=9))}),
               run_instance(ec2, {})]

    def open_(provider: str, region: str) -> Any:
        p = AwsProvider(region=region, endpoint_url=moto_endpoint)
        p.sleep = lambda s: None
        return p

    dry = reap([("aws", "us-east-1")], open_, now=now, dry_run=True)
    assert [g.name for g in dry.expired] == [old]
    assert set(states(ec2, expired_ids).values()) == {"running"}

    res = reap([("aws", "us-east-1")], open_, now=now)
    assert res.errors == []
    assert [g.name for g in res.expired] == [old]
    assert sorted(res.removed[0].terminated) == sorted(expired_ids)
    assert set(states(ec2, expired_ids).values()) == {"terminated"}
    assert states(ec2, [fresh_id, *foreign]) == {fresh_id: "running", foreign[0]: "running",
                                                 foreign[1]: "running"}
    assert fresh in [g.name for g in res.kept]


REGIONS = ["--regions", "us-east-1,us-west-2"]


def test_cli_reap_on_the_sandbox(tmp_path: Path) -> None:
    import boto3

    from providers.aws import sandbox
    from nestcloud.cli import app

    try:
        url = sandbox.ensure_endpoint()
        ec2 = boto3.client("ec2", region_name="us-west-2", endpoint_url=url,
                           aws_access_key_id="x", aws_secret_access_key="x")
        now = dt.datetime.now(dt.timezone.utc)
        gone = run_instance(ec2, {TAG_NAME: "stale", TAG_EXPIRES: iso(now - dt.timedelta(
            minutes=5))})
        keep = run_instance(ec2, {"Name": "not-ours"})
        runner = CliRunner()
        r = runner.invoke(app, ["reap", "--sandbox", "--dry-run", "--json", *REGIONS])
        assert r.exit_code == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["dry_run"] is True and doc["errors"] == []
        assert [(g["region"], g["name"], g["instances"]) for g in doc["expired"]] == [
            ("us-west-2", "stale", [gone])]
        assert r.stderr == ""  # --json: no progress, nothing else
        r = runner.invoke(app, ["reap", "--sandbox", *REGIONS])
        assert r.exit_code == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0].split() == ["provider", "region", "name", "instances", "expires",
                                    "action", "why"]
        assert lines[2].split()[:6] == ["aws", "us-west-2", "stale", "1",
                                        lines[2].split()[4], "removed"]
        assert lines[-1] == "1 expired group(s) removed, 0 kept; scanned 2 place(s)"
        assert states(ec2, [gone, keep]) == {gone: "terminated", keep: "running"}
        # Again: nothing left to do, still exit 0 (cron-safe).
        r = runner.invoke(app, ["reap", "--sandbox", *REGIONS])
        assert (r.exit_code, r.stdout) == (0, "0 expired group(s) removed, 0 kept; scanned 2 "
                                              "place(s)\n")
    finally:
        sandbox.stop()


def test_progress_only_for_a_person_at_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    pipe = io.StringIO()
    with progress(False, pipe) as p:
        p.step("launching")
    assert pipe.getvalue() == ""
    tty = Tty()
    with progress(True, tty) as p:  # --json
        p.step("launching")
    assert tty.getvalue() == ""
    plain = Tty()
    with Progress(True, plain, use_rich=False) as p:  # rich not installed
        p.step("launching 3 seat(s)")
    assert plain.getvalue() == "... launching 3 seat(s)\n"
    fancy = Tty()
    with Progress(True, fancy) as p:
        p.step("launching 3 seat(s)")
    assert "launching 3 seat(s)" in fancy.getvalue()


def test_progress_without_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def no_rich(name: str, *a: Any, **k: Any) -> Any:
        if name.startswith("rich"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_rich)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    with progress(False, out) as p:
        p.step("waiting")
    assert out.getvalue() == "... waiting\n"
