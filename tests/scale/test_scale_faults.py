"""Big labs against the local EC2 endpoint with faults injected through botocore hooks.

Each test ends with the lab complete, or rolled back with nothing of it left (listed with a
plain boto3 client), and the exact attempt table. moto has no capacity model: a capacity
fault is simulated the way EC2 reports it — CreateFleet drops the blocked overrides and lists
them under ``Errors``; RunInstances answers with the error code.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from fakes.moto_server import Recorder, client_error_response, recording_session

from nestcloud.catalog import Catalog
from nestcloud.errors import CapacityError, CleanupError, NestcloudError
from nestcloud.failover import Attempt
from nestcloud.lab import Lab
from nestcloud.spec import TAG_NAME, TAG_SEAT

from .conftest import REGIONS, lab_name, leftovers, live

CAP = "InsufficientInstanceCapacity"


class World:
    """One recording session shared by the lab's providers (hooks live on the session, so
    they survive the clients being rebuilt for adaptive retries)."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.session, self.rec = recording_session()
        self.made: dict[str, Any] = {}
        self.fleet_threshold: int | None = None
        self.concurrency: int | None = None
        self.zone_of: dict[str, str] = {}
        for region in ("us-east-1", "us-west-2"):
            ec2 = boto3.client("ec2", region_name=region, endpoint_url=endpoint)
            for s in ec2.describe_subnets(Filters=[{"Name": "default-for-az",
                                                    "Values": ["true"]}])["Subnets"]:
                self.zone_of[s["SubnetId"]] = s["AvailabilityZone"]

    def provider(self, provider: str, region: str) -> Any:
        from providers.aws import AwsProvider

        assert provider == "aws"
        if region not in self.made:
            p = AwsProvider(region=region, endpoint_url=self.endpoint, session=self.session)
            p.sleep = lambda s: None
            if self.fleet_threshold is not None:
                p.fleet_threshold = self.fleet_threshold
            if self.concurrency is not None:
                p.concurrency = self.concurrency
            self.made[region] = p
        return self.made[region]

    def zones(self, region: str) -> list[str]:
        return sorted({z for z in self.zone_of.values() if z.startswith(region)})

    # -- faults ---------------------------------------------------------------------------

    def fleet_capacity(self, blocked: Callable[[str, str], bool]) -> None:
        """CreateFleet: overrides whose (type, zone) is blocked launch nothing and come back
        as Errors; when every override is blocked the fleet launches nothing at all."""
        dropped: list[dict[str, Any]] = []

        def build(params: dict[str, Any], **_: Any) -> None:
            dropped.clear()
            cfgs = []
            for cfg in params["LaunchTemplateConfigs"]:
                keep = []
                for o in cfg["Overrides"]:
                    if blocked(o["InstanceType"], self.zone_of[o["SubnetId"]]):
                        dropped.append(o)
                    else:
                        keep.append(o)
                cfgs.append({**cfg, "Overrides": keep})
            params["LaunchTemplateConfigs"] = cfgs

        def errors() -> list[dict[str, Any]]:
            return [{"LaunchTemplateAndOverrides": {"Overrides": o}, "Lifecycle": "on-demand",
                     "ErrorCode": CAP, "ErrorMessage": "no capacity (injected)"}
                    for o in dropped]

        def call(params: dict[str, Any], **_: Any) -> Any:
            if dropped and not any(k.endswith("InstanceType") and "Overrides" in k
                                   for k in params.get("body", {})):
                http = AWSResponse("http://127.0.0.1/", 200, {}, None)
                return http, {"FleetId": "fleet-injected", "Errors": errors(), "Instances": [],
                              "ResponseMetadata": {"HTTPStatusCode": 200}}
            return None

        def after(parsed: dict[str, Any], **_: Any) -> None:
            if dropped and parsed.get("FleetId") != "fleet-injected":
                parsed["Errors"] = errors() + list(parsed.get("Errors") or [])

        ev = self.session.events
        ev.register("before-parameter-build.ec2.CreateFleet", build)
        ev.register("before-call.ec2.CreateFleet", call)
        ev.register("after-call.ec2.CreateFleet", after)

    def fail_when(self, operation: str,
                  code_for: Callable[[str, dict[str, Any]], str | None]) -> list[int]:
        """``operation`` answers with AWS error ``code_for(region, params)`` when not None."""
        seen = threading.local()
        hits = [0]

        def build(params: dict[str, Any], **_: Any) -> None:
            seen.params = dict(params)

        def call(request_signer: Any, **_: Any) -> Any:
            code = code_for(request_signer.region_name, getattr(seen, "params", {}))
            if code is None:
                return None
            hits[0] += 1
            return client_error_response(code, "injected")

        self.session.events.register(f"before-parameter-build.ec2.{operation}", build)
        self.session.events.register(f"before-call.ec2.{operation}", call)
        return hits


def make_lab(catalog: Catalog, name: str, seats: int, **kw: Any) -> Lab:
    args: dict[str, Any] = dict(vcpus=2, memory_gib=4, providers=["aws"], os="al2023",
                                hypervisor="firecracker", ttl="2h", catalog=catalog)
    args.update(kw)
    return Lab(name, seats, **args)


def ok(region: str, type_: str) -> Attempt:
    return Attempt("aws", region, type_, None, "ok", reason="launched")


def rows(res_or_exc: Any) -> list[Attempt]:
    from nestcloud.failover import attempts_of

    if isinstance(res_or_exc, BaseException):
        return attempts_of(res_or_exc)
    return [Attempt(**a) for a in res_or_exc.attempts]


def up(lab: Lab, world: World, **kw: Any) -> Any:
    return lab.up(sandbox=True, providers=world.provider, wait=False, **kw)


@pytest.fixture
def world(moto_endpoint: str) -> World:
    return World(moto_endpoint)


# -- the fleet path ---------------------------------------------------------------------------


def test_fleet_launch_sends_one_template_and_one_fleet(world: World, catalog: Catalog,
                                                       moto_endpoint: str) -> None:
    name = lab_name()
    res = up(make_lab(catalog, name, 6), world)
    rec: Recorder = world.rec
    [tmpl] = rec.params("CreateLaunchTemplate")
    data = tmpl["LaunchTemplateData"]
    assert data["CpuOptions"] == {"NestedVirtualization": "enabled"}
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["BlockDeviceMappings"][0]["Ebs"] | {"VolumeSize": 0} == {
        "VolumeSize": 0, "VolumeType": "gp3", "Encrypted": True, "DeleteOnTermination": True}
    for ts in data["TagSpecifications"]:
        assert {t["Key"]: t["Value"] for t in ts["Tags"]}[TAG_NAME] == name
    assert [ts["ResourceType"] for ts in data["TagSpecifications"]] == ["instance", "volume"]
    assert data["UserData"] == "I2Nsb3VkLWNvbmZpZwo="  # base64 of "#cloud-config\n"
    assert [ts["ResourceType"] for ts in tmpl["TagSpecifications"]] == ["launch-template"]
    [fleet] = rec.params("CreateFleet")
    assert fleet["Type"] == "instant"
    assert fleet["TargetCapacitySpecification"] == {"TotalTargetCapacity": 6,
                                                    "DefaultTargetCapacityType": "on-demand"}
    assert fleet["OnDemandOptions"] == {"AllocationStrategy": "prioritized",
                                        "SingleInstanceType": True, "MinTargetCapacity": 6}
    zones = world.zones("us-east-1")
    got = [(o["InstanceType"], world.zone_of[o["SubnetId"]], o["Priority"])
           for o in fleet["LaunchTemplateConfigs"][0]["Overrides"]]
    assert got == [("c8i.large", z, 0.0) for z in zones] + [("m8i.large", z, 1.0)
                                                          for z in zones]
    assert fleet["ClientToken"].startswith("ncf-")
    used = fleet["LaunchTemplateConfigs"][0]["LaunchTemplateSpecification"]
    assert rec.params("DeleteLaunchTemplate") == [{"LaunchTemplateId": used["LaunchTemplateId"]}]
    # Deleted while the new seats are read back (both after the fleet call).
    assert rec.ops().index("DeleteLaunchTemplate") > rec.ops().index("CreateFleet")
    # Every read before the first create happens once: the lab's search for its seats (one
    # per place it could be) is the listing the launch plan uses, and the plan's lookups
    # were read ahead while that search ran. The read-ahead knows the planned type only:
    # the plan asks about the fleet's equivalent in one more call (checked live, never
    # taken on the catalog's word), and only about that one.
    before = rec.ops()[:rec.ops().index("CreateSecurityGroup")]
    assert sorted(before) == sorted(["DescribeInstances"] * len(REGIONS) + [
        "GetServiceQuota", "DescribeInstanceTypes", "DescribeInstanceTypes",
        "DescribeSubnets", "GetParameter", "DescribeImages", "GetCallerIdentity"])
    assert [p["Filters"] for p in rec.params("DescribeInstanceTypes")] == [
        [{"Name": "instance-type", "Values": ["c8i.large"]}],
        [{"Name": "instance-type", "Values": ["m8i.large"]}]]
    assert not rec.params("RunInstances")
    assert rows(res) == [ok("us-east-1", "c8i.large")]
    assert len(live(moto_endpoint, name, "us-east-1")) == 6
    left = leftovers(moto_endpoint, name)
    assert list(left) == ["us-east-1"] and all(not i.startswith("lt-")
                                               for i in left["us-east-1"])
    # Re-run: everything is found by tag; nothing more is created.
    again = up(make_lab(catalog, name, 6), world)
    assert again.launch is not None and again.launch.created == []
    assert len(rec.params("CreateFleet")) == 1
    make_lab(catalog, name, 6).down(sandbox=True, providers=world.provider)
    assert leftovers(moto_endpoint, name) == {}


def test_capacity_gone_in_one_zone(world: World, catalog: Catalog, moto_endpoint: str) -> None:
    name = lab_name()
    world.fleet_capacity(lambda t, z: z == "us-east-1a")
    res = up(make_lab(catalog, name, 8), world)
    insts = live(moto_endpoint, name, "us-east-1")
    assert len(insts) == 8
    assert all(i["Placement"]["AvailabilityZone"] != "us-east-1a" for i in insts)
    assert rows(res) == [
        Attempt("aws", "us-east-1", "c8i.large", "us-east-1a", "failed", "zone", CAP,
                "no capacity (injected)"),
        Attempt("aws", "us-east-1", "m8i.large", "us-east-1a", "failed", "zone", CAP,
                "no capacity (injected)"),
        ok("us-east-1", "c8i.large")]
    make_lab(catalog, name, 8).down(sandbox=True, providers=world.provider)


def test_capacity_gone_for_one_type(world: World, catalog: Catalog, moto_endpoint: str) -> None:
    name = lab_name()
    world.fleet_capacity(lambda t, z: t == "c8i.large")
    res = up(make_lab(catalog, name, 8), world)
    insts = live(moto_endpoint, name, "us-east-1")
    assert len(insts) == 8 and {i["InstanceType"] for i in insts} == {"m8i.large"}
    assert res.launch is not None and res.launch.type == "m8i.large"
    assert res.cost.option.type == "m8i.large"
    assert rows(res) == [
        *[Attempt("aws", "us-east-1", "c8i.large", z, "failed", "zone", CAP,
                  "no capacity (injected)") for z in world.zones("us-east-1")],
        ok("us-east-1", "m8i.large")]
    # A re-run reconciles with the type the fleet chose.
    again = up(make_lab(catalog, name, 8), world)
    assert again.launch is not None and again.launch.created == []
    make_lab(catalog, name, 8).down(sandbox=True, providers=world.provider)


def test_no_capacity_anywhere_rolls_back_to_nothing(world: World, catalog: Catalog,
                                                    moto_endpoint: str) -> None:
    name = lab_name()
    world.fleet_capacity(lambda t, z: True)
    with pytest.raises(CapacityError) as ei:
        up(make_lab(catalog, name, 8), world)
    got = rows(ei.value)
    assert [(a.region, a.outcome, a.scope) for a in got if a.zone is None] == [
        ("us-east-1", "failed", "zone"), ("us-west-2", "failed", "zone")]
    assert len([a for a in got if a.zone]) == 2 * len(world.zones("us-east-1")) + 2 * len(
        world.zones("us-west-2"))
    assert "all or nothing" in (ei.value.hint or "")
    assert leftovers(moto_endpoint, name) == {}


def test_quota_error_in_one_region(world: World, catalog: Catalog, moto_endpoint: str) -> None:
    name = lab_name()
    hits = world.fail_when("CreateFleet", lambda region, p: "VcpuLimitExceeded"
                           if region == "us-east-1" else None)
    res = up(make_lab(catalog, name, 8), world)
    assert hits == [1]
    got = rows(res)
    assert [(a.region, a.type, a.outcome, a.scope, a.code) for a in got] == [
        ("us-east-1", "c8i.large", "failed", "region", "VcpuLimitExceeded"),
        ("us-west-2", "c8i.large", "ok", None, None)]
    assert got[0].reason.startswith("your AWS account limit in us-east-1 does not allow")
    assert len(live(moto_endpoint, name, "us-west-2")) == 8
    # The failed region was cleaned (its security group and template too).
    assert list(leftovers(moto_endpoint, name)) == ["us-west-2"]
    make_lab(catalog, name, 8).down(sandbox=True, providers=world.provider)
    assert leftovers(moto_endpoint, name) == {}


def test_quota_check_skips_a_region_before_launching(world: World, catalog: Catalog,
                                                     moto_endpoint: str) -> None:
    name = lab_name()

    def quota(request_signer: Any, **_: Any) -> Any:
        value = 8.0 if request_signer.region_name == "us-east-1" else 1000.0
        return AWSResponse("http://127.0.0.1/", 200, {}, None), {
            "Quota": {"QuotaCode": "L-1216C47A", "Value": value}}

    world.session.events.register("before-call.service-quotas.GetServiceQuota", quota)
    res = up(make_lab(catalog, name, 5), world)
    asked = world.rec.params("GetServiceQuota")
    assert asked == [{"ServiceCode": "ec2", "QuotaCode": "L-1216C47A"}] * 2
    # us-east-1's quota is read alongside the tag search, and answered before any write.
    ops = world.rec.ops()
    assert ops.index("GetServiceQuota") < min(i for i, op in enumerate(ops)
                                              if op.startswith(("Create", "Run")))
    assert rows(res) == [
        Attempt("aws", "us-east-1", "c8i.large", None, "failed", "region", "quota-check",
                "needs 10 vCPUs (5 x c8i.large); the on-demand vCPU quota in us-east-1 is 8 "
                "(Service Quotas)"),
        ok("us-west-2", "c8i.large")]
    assert len(world.rec.params("CreateFleet")) == 1
    assert len(live(moto_endpoint, name, "us-west-2")) == 5
    assert live(moto_endpoint, name, "us-east-1") == []
    make_lab(catalog, name, 5).down(sandbox=True, providers=world.provider)


# -- throttling ------------------------------------------------------------------------------


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


THROTTLED = (b"<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request "
             b"limit exceeded.</Message></Error></Errors><RequestID>t</RequestID></Response>")


@pytest.mark.parametrize("seats", [3, 6])
def test_throttling_a_third_of_calls_never_fails_a_lab(world: World, catalog: Catalog,
                                                       moto_endpoint: str, seats: int) -> None:
    """Every third EC2 request on the wire answers RequestLimitExceeded; botocore's retries
    (not nestcloud code) absorb it, on the seat-by-seat path (3) and the fleet path (6)."""
    name = lab_name()
    sent = [0]
    throttled = [0]
    lock = threading.Lock()

    def every_third(request: Any, **_: Any) -> Any:
        with lock:
            sent[0] += 1
            if sent[0] % 3:
                return None
            throttled[0] += 1
        return AWSResponse(request.url, 400, {}, _Raw(THROTTLED))

    world.session.events.register("before-send.ec2", every_third)
    res = up(make_lab(catalog, name, seats), world)
    assert len(live(moto_endpoint, name, "us-east-1")) == seats
    assert res.launch is not None and len(res.launch.instances) == seats
    assert throttled[0] == sent[0] // 3 and throttled[0] >= 4
    assert rows(res) == [ok("us-east-1", "c8i.large")]
    # Big labs add client-side rate limiting (adaptive); small ones keep standard mode.
    mode = world.made["us-east-1"].config.retries["mode"]
    assert mode == ("adaptive" if seats > 4 else "standard")
    make_lab(catalog, name, seats).down(sandbox=True, providers=world.provider)


# -- seat by seat: a failure at seat 37 of 50 ------------------------------------------------


def _seat(params: dict[str, Any]) -> int | None:
    for ts in params.get("TagSpecifications", []):
        for t in ts["Tags"]:
            if t["Key"] == TAG_SEAT:
                return int(t["Value"])
    return None


def _seat_by_seat(world: World, lab: Lab) -> Lab:
    world.fleet_threshold = 1000
    # One at a time, so "a failure at seat 37" means exactly seats 0-35 ran before it.
    world.concurrency = 1
    lab.fleet_threshold = 1000
    return lab


def test_failure_at_seat_37_of_50_fails_over_to_the_next_region(
        world: World, catalog: Catalog, moto_endpoint: str) -> None:
    name = lab_name()
    lab = _seat_by_seat(world, make_lab(catalog, name, 50))
    world.fail_when("RunInstances", lambda region, p: CAP if region == "us-east-1"
                    and _seat(p) == 36 else None)
    res = up(lab, world)
    got = rows(res)
    assert [(a.region, a.type, a.outcome, a.scope, a.code) for a in got] == [
        ("us-east-1", "c8i.large", "failed", "zone", CAP),
        ("us-east-1", "m8i.large", "failed", "zone", CAP),
        ("us-west-2", "c8i.large", "ok", None, None)]
    assert live(moto_endpoint, name, "us-east-1") == []
    assert len(live(moto_endpoint, name, "us-west-2")) == 50
    # 36 seats per failed attempt, then 50.
    assert len(world.rec.params("RunInstances")) == 37 + 37 + 50
    lab.down(sandbox=True, providers=world.provider)
    assert leftovers(moto_endpoint, name) == {}


def test_failure_at_seat_37_everywhere_rolls_back_everything(
        world: World, catalog: Catalog, moto_endpoint: str) -> None:
    name = lab_name()
    lab = _seat_by_seat(world, make_lab(catalog, name, 50))
    world.fail_when("RunInstances", lambda region, p: CAP if _seat(p) == 36 else None)
    with pytest.raises(CapacityError) as ei:
        up(lab, world)
    assert [(a.region, a.type, a.outcome) for a in rows(ei.value)] == [
        ("us-east-1", "c8i.large", "failed"), ("us-east-1", "m8i.large", "failed"),
        ("us-west-2", "c8i.large", "failed"), ("us-west-2", "m8i.large", "failed")]
    assert leftovers(moto_endpoint, name) == {}
    hint = ei.value.hint or ""
    assert hint.count("all or nothing") == 4 and "removed what this run created (i-" in hint


def test_keep_partial_keeps_seats_and_does_not_fail_over(
        world: World, catalog: Catalog, moto_endpoint: str) -> None:
    name = lab_name()
    lab = _seat_by_seat(world, make_lab(catalog, name, 50))
    world.fail_when("RunInstances", lambda region, p: CAP if _seat(p) == 36 else None)
    with pytest.raises(CapacityError) as ei:
        up(lab, world, keep_partial=True)
    assert [(a.region, a.outcome, a.scope) for a in rows(ei.value)] == [
        ("us-east-1", "failed", "fatal")]
    assert len(live(moto_endpoint, name, "us-east-1")) == 36
    lab.down(sandbox=True, providers=world.provider)
    assert leftovers(moto_endpoint, name) == {}


def test_ctrl_c_during_a_launch_cleans_up(world: World, catalog: Catalog,
                                          moto_endpoint: str) -> None:
    name = lab_name()
    lab = _seat_by_seat(world, make_lab(catalog, name, 10))

    def interrupt(params: dict[str, Any], **_: Any) -> None:
        if _seat(params) == 4:
            raise KeyboardInterrupt

    world.session.events.register("before-parameter-build.ec2.RunInstances", interrupt)
    with pytest.raises(KeyboardInterrupt) as ei:
        up(lab, world)
    assert any("removed what this run created (i-" in str(a) for a in ei.value.args)
    assert leftovers(moto_endpoint, name) == {}


def test_failed_cleanup_names_exactly_what_is_left(world: World, catalog: Catalog,
                                                   moto_endpoint: str) -> None:
    name = lab_name()
    lab = _seat_by_seat(world, make_lab(catalog, name, 6))
    world.fail_when("RunInstances", lambda region, p: CAP if _seat(p) == 3 else None)
    broken = [True]
    world.fail_when("TerminateInstances",
                    lambda region, p: "InternalError" if broken[0] else None)
    with pytest.raises(CleanupError) as ei:
        up(lab, world)
    left = sorted(i["InstanceId"] for i in live(moto_endpoint, name, "us-east-1"))
    assert len(left) == 3 and sorted(ei.value.leftovers) == left
    assert f"still there in us-east-1: {', '.join(ei.value.leftovers)}" in ei.value.message
    assert f"nestcloud down {name}" in (ei.value.hint or "")
    # Failover stopped: nothing was tried in another region.
    assert live(moto_endpoint, name, "us-west-2") == []
    broken[0] = False
    for p in world.made.values():
        p.down(name)
    assert leftovers(moto_endpoint, name) == {}


# -- idempotency -----------------------------------------------------------------------------


def test_two_concurrent_ups_do_not_double(world: World, catalog: Catalog,
                                          moto_endpoint: str) -> None:
    """moto ignores ClientToken, so this checks nestcloud's own guard (the per-lab lock and
    the re-read of tags), not AWS's token dedup."""
    name = lab_name()
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(up(make_lab(catalog, name, 6), world))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert len(live(moto_endpoint, name, "us-east-1")) == 6
    created = sorted(len(r.launch.created) for r in results)
    assert created == [0, 6]
    assert len(world.rec.params("CreateFleet")) == 1
    make_lab(catalog, name, 6).down(sandbox=True, providers=world.provider)


# -- what the user sees ----------------------------------------------------------------------


def _cli_lab(tmp_path: Any, name: str, seats: int) -> tuple[Any, Any]:
    from .conftest import CATALOG_YAML

    cat = tmp_path / "catalog.yaml"
    cat.write_text(CATALOG_YAML)
    labfile = tmp_path / "lab.yaml"
    labfile.write_text(f"name: {name}\nseats: {seats}\nseat: {{vcpus: 2, memory_gib: 4}}\n"
                       "providers: [aws]\nos: al2023\nhypervisor: firecracker\nttl: 1h\n")
    return labfile, cat


def test_cli_prints_the_attempt_table_and_json_attempts(
        world: World, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
        moto_endpoint: str) -> None:
    import json

    from typer.testing import CliRunner

    from nestcloud.cli import app

    monkeypatch.setattr("nestcloud.lab.open_provider",
                        lambda p, r, sandbox=False: world.provider(p, r))
    world.fleet_capacity(lambda t, z: z == "us-east-1a")
    name = lab_name()
    labfile, cat = _cli_lab(tmp_path, name, 5)
    r = CliRunner().invoke(app, ["lab", "up", str(labfile), "--sandbox", "--no-wait",
                                 "--json", "--catalog", str(cat)])
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["attempts"] == [
        {"provider": "aws", "region": "us-east-1", "type": "c8i.large", "zone": "us-east-1a",
         "outcome": "failed", "scope": "zone", "code": CAP,
         "reason": "no capacity (injected)"},
        {"provider": "aws", "region": "us-east-1", "type": "m8i.large", "zone": "us-east-1a",
         "outcome": "failed", "scope": "zone", "code": CAP,
         "reason": "no capacity (injected)"},
        {"provider": "aws", "region": "us-east-1", "type": "c8i.large", "zone": None,
         "outcome": "ok", "scope": None, "code": None, "reason": "launched"}]
    table = r.stderr[r.stderr.index("attempts:"):].splitlines()
    assert table[1].split() == ["provider", "region", "type", "zone", "outcome", "scope",
                                "code", "reason"]
    cells = [line.split() for line in table[2:] if line.startswith("aws")]
    assert [c[:7] for c in cells] == [
        ["aws", "us-east-1", "c8i.large", "us-east-1a", "failed", "zone", CAP],
        ["aws", "us-east-1", "m8i.large", "us-east-1a", "failed", "zone", CAP],
        ["aws", "us-east-1", "c8i.large", "-", "ok", "-", "-"]]
    make_lab_down = Lab.from_file(labfile)
    make_lab_down.down(sandbox=True, providers=world.provider)
    assert leftovers(moto_endpoint, name) == {}


def test_cli_failure_carries_the_attempts_in_the_json_error(
        world: World, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
        moto_endpoint: str) -> None:
    import json

    from typer.testing import CliRunner

    from nestcloud.cli import app

    monkeypatch.setattr("nestcloud.lab.open_provider",
                        lambda p, r, sandbox=False: world.provider(p, r))
    world.fail_when("CreateFleet", lambda region, p: "VcpuLimitExceeded")
    name = lab_name()
    labfile, cat = _cli_lab(tmp_path, name, 5)
    r = CliRunner().invoke(app, ["lab", "up", str(labfile), "--sandbox", "--no-wait",
                                 "--json", "--catalog", str(cat)])
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["error"] == "CapacityError"
    assert [(a["region"], a["outcome"], a["scope"], a["code"]) for a in doc["attempts"]] == [
        ("us-east-1", "failed", "region", "VcpuLimitExceeded"),
        ("us-west-2", "failed", "region", "VcpuLimitExceeded")]
    assert "attempts:" in r.stderr and "Traceback" not in r.stderr
    assert leftovers(moto_endpoint, name) == {}


# -- the provider on its own ------------------------------------------------------------------


def test_dry_run_shows_the_fleet_requests_and_creates_nothing(world: World,
                                                              catalog: Catalog) -> None:
    from nestcloud.launcher import launch
    from nestcloud.spec import LaunchSpec

    name = lab_name()
    spec = LaunchSpec(provider="aws", type="c8i.large", region="us-east-1", os="al2023",
                      hypervisor="firecracker", name=name, count=6)
    res = launch(spec, catalog, world.provider("aws", "us-east-1"), dry_run=True,
                 types=("m8i.large",))
    assert [r.operation for r in res.requests] == [
        "CreateSecurityGroup", "CreateLaunchTemplate", "CreateFleet", "DeleteLaunchTemplate"]
    fleet = res.requests[2].params
    assert {o["InstanceType"] for o in fleet["LaunchTemplateConfigs"][0]["Overrides"]} == {
        "c8i.large", "m8i.large"}
    assert all(op.startswith(("Describe", "Get")) for op in world.rec.ops())


def test_a_template_left_behind_is_noted_and_removed_by_down(
        world: World, catalog: Catalog, moto_endpoint: str) -> None:
    name = lab_name()
    broken = [True]
    world.fail_when("DeleteLaunchTemplate",
                    lambda region, p: "InternalError" if broken[0] else None)
    res = up(make_lab(catalog, name, 5), world)
    assert res.launch is not None and len(res.launch.instances) == 5
    [note] = [n for n in res.launch.notes if n.startswith("launch template lt-")]
    assert note.endswith(f"`nestcloud down {name}` removes it")
    assert any(i.startswith("lt-") for i in leftovers(moto_endpoint, name)["us-east-1"])
    broken[0] = False
    make_lab(catalog, name, 5).down(sandbox=True, providers=world.provider)
    assert leftovers(moto_endpoint, name) == {}


def test_fleet_client_token_is_deterministic_per_request() -> None:
    from providers.aws.fleet import fleet_client_token

    a = fleet_client_token("lab", "us-east-1", "d" * 16, [0, 1, 2], ("c8i.large",), "lt-1")
    assert a == fleet_client_token("lab", "us-east-1", "d" * 16, [0, 1, 2], ("c8i.large",),
                                   "lt-1")
    assert len(a) <= 64 and a.startswith("ncf-")
    assert a != fleet_client_token("lab", "us-east-1", "d" * 16, [0, 1], ("c8i.large",),
                                   "lt-1")
    assert a != fleet_client_token("lab", "us-east-1", "d" * 16, [0, 1, 2], ("c8i.large",),
                                   "lt-2")


def test_a_fleet_without_the_nested_switch_is_removed_with_its_template(
        world: World, catalog: Catalog, moto_endpoint: str) -> None:
    """The read-back finds the nested switch dropped: the seats are terminated, the lab is
    rolled back and the launch template (deleted while the seats were read back) is gone."""
    from fakes.moto_server import on_response

    def disabled(parsed: dict[str, Any]) -> None:
        for r in parsed.get("Reservations", []):
            for i in r["Instances"]:
                i["CpuOptions"] = {"NestedVirtualization": "disabled"}

    on_response(world.session, "ec2", "DescribeInstances", disabled)
    name = lab_name()
    with pytest.raises(CapacityError) as err:
        up(make_lab(catalog, name, 6, regions=["us-east-1"]), world)
    [row] = rows(err.value)
    assert row.outcome == "failed" and "NestedVirtualization = disabled" in row.reason
    assert len(world.rec.params("DeleteLaunchTemplate")) == 1
    assert world.rec.ops().index("DeleteLaunchTemplate") > world.rec.ops().index("CreateFleet")
    assert leftovers(moto_endpoint, name) == {}


# -- two machines: the name's launch template is the lock ----------------------------------


def _machine(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> World:
    """A second 'machine': its own session and providers, and no shared local lock file."""
    import contextlib
    import time

    monkeypatch.setattr("nestcloud.lab._lab_lock", lambda name: contextlib.nullcontext())
    w = World(moto_endpoint)
    make = w.provider

    def provider(provider: str, region: str) -> Any:
        p = make(provider, region)
        p.sleep, p.waiter_delay = time.sleep, 0.05
        return p

    w.provider = provider  # type: ignore[method-assign]
    return w


@pytest.mark.parametrize("seats,create", [(6, "CreateFleet"), (3, "RunInstances")])
def test_two_machines_do_not_double_a_lab(catalog: Catalog, moto_endpoint: str,
                                          monkeypatch: pytest.MonkeyPatch, seats: int,
                                          create: str) -> None:
    """A holds the lock and is held inside its first create until B has searched, found
    nothing, and is waiting for the lock; then A finishes, and B finds A's seats under the
    lock and launches nothing (moto ignores ClientTokens: only the lock prevents doubling)."""
    import time

    a, b = _machine(moto_endpoint, monkeypatch), _machine(moto_endpoint, monkeypatch)
    name = lab_name()

    def hold(**_: Any) -> None:
        deadline = time.monotonic() + 20
        while "DescribeLaunchTemplates" not in b.rec.ops() and time.monotonic() < deadline:
            time.sleep(0.02)

    a.session.events.register(f"before-call.ec2.{create}", hold)
    locked = threading.Event()
    a.session.events.register("after-call.ec2.CreateLaunchTemplate",
                              lambda **_: locked.set())
    lab = dict(regions=["us-east-1"])
    out: dict[str, Any] = {}

    def run_a() -> None:
        out["a"] = up(make_lab(catalog, name, seats, **lab), a)

    t = threading.Thread(target=run_a)
    t.start()
    assert locked.wait(timeout=20)  # A holds the lock before B starts
    res_b = up(make_lab(catalog, name, seats, **lab), b)
    t.join(timeout=60)
    res_a = out["a"]

    assert len(live(moto_endpoint, name, "us-east-1")) == seats
    assert len(res_a.launch.created) == seats
    assert res_b.launch.created == [] and len(res_b.launch.instances) == seats
    notes = " ".join(res_b.launch.notes)
    assert "waited for another launch" in notes and "appeared meanwhile" in notes
    assert create not in b.rec.ops()
    # B searched before A's seats existed: its first answer was "nothing there".
    assert b.rec.ops().index("DescribeInstances") < b.rec.ops().index("CreateLaunchTemplate")
    assert not any(i.startswith("lt-") for i in leftovers(moto_endpoint, name)["us-east-1"])
    make_lab(catalog, name, seats, **lab).down(sandbox=True, providers=a.provider)
    assert leftovers(moto_endpoint, name) == {}


def _lock_template(endpoint: str, name: str, holder: str) -> str:
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=endpoint)
    return str(ec2.create_launch_template(
        LaunchTemplateName=f"nestcloud-{name}",
        LaunchTemplateData={"MetadataOptions": {"HttpTokens": "required"}},
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": [
            {"Key": TAG_NAME, "Value": name}, {"Key": "nestcloud:lock", "Value": holder}]}],
    )["LaunchTemplate"]["LaunchTemplateId"])


@pytest.mark.parametrize("holder", ["dead process", "this process, no longer held"])
def test_a_lock_left_by_a_dead_local_run_is_taken_over(world: World, catalog: Catalog,
                                                       moto_endpoint: str, holder: str) -> None:
    import os
    import socket
    import subprocess
    import sys

    pid = (subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
           if holder == "dead process" else str(os.getpid()))
    name = lab_name()
    old = _lock_template(moto_endpoint, name, f"{socket.gethostname()}:{pid}")
    res = up(make_lab(catalog, name, 3, regions=["us-east-1"]), world)
    assert len(res.launch.instances) == 3
    [note] = [n for n in res.launch.notes if n.startswith("took over")]
    assert old in note and "is gone" in note
    assert not any(i.startswith("lt-") for i in leftovers(moto_endpoint, name)["us-east-1"])
    make_lab(catalog, name, 3).down(sandbox=True, providers=world.provider)


def test_a_lock_another_machine_holds_stops_the_lab_and_removes_nothing(
        world: World, catalog: Catalog, moto_endpoint: str) -> None:
    from nestcloud.errors import ProviderError

    name = lab_name()
    held = _lock_template(moto_endpoint, name, "elsewhere.example:4242")
    world.provider("aws", "us-east-1").lock_wait_s = 0.0
    with pytest.raises(ProviderError, match="another launch of .* is running") as err:
        up(make_lab(catalog, name, 6), world)
    assert held in str(err.value) and "elsewhere.example:4242" in str(err.value)
    [row] = rows(err.value)  # failover stopped: no other region was tried
    assert row.region == "us-east-1" and row.outcome == "failed"
    assert not {"CreateFleet", "RunInstances", "DeleteLaunchTemplate",
                "TerminateInstances"} & set(world.rec.ops())
    assert held in leftovers(moto_endpoint, name)["us-east-1"]  # the other run's lock stays


def test_ctrl_c_while_waiting_for_another_machines_lock_removes_nothing(
        world: World, catalog: Catalog, moto_endpoint: str) -> None:
    name = lab_name()
    held = _lock_template(moto_endpoint, name, "elsewhere.example:4242")

    def interrupt(_s: float) -> None:
        raise KeyboardInterrupt

    world.provider("aws", "us-east-1").sleep = interrupt
    with pytest.raises(KeyboardInterrupt):
        up(make_lab(catalog, name, 6), world)
    assert "DescribeLaunchTemplates" in world.rec.ops()
    assert not {"CreateFleet", "RunInstances", "DeleteLaunchTemplate", "TerminateInstances",
                "DeleteSecurityGroup"} & set(world.rec.ops())
    assert held in leftovers(moto_endpoint, name)["us-east-1"]


def test_a_failed_run_rolls_back_under_its_lock_before_a_waiting_machine_goes_on(
        catalog: Catalog, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """B launches seats 0-1, then seat 2 fails while C waits for B's lock. B removes its two
    seats before it releases the lock, so C (which reads the seats again under the lock)
    launches all three itself instead of counting two seats that are about to go."""
    import time

    b, c = _machine(moto_endpoint, monkeypatch), _machine(moto_endpoint, monkeypatch)
    name = lab_name()
    one = dict(regions=["us-east-1"], type="c8i.large", vcpus=None, memory_gib=None)  # no failover
    lab = _seat_by_seat(b, make_lab(catalog, name, 3, **one))

    def hold(params: dict[str, Any], **_: Any) -> None:
        deadline = time.monotonic() + 20
        while (_seat(params) == 2 and "DescribeLaunchTemplates" not in c.rec.ops()
               and time.monotonic() < deadline):
            time.sleep(0.02)

    b.session.events.register("before-parameter-build.ec2.RunInstances", hold)
    b.fail_when("RunInstances", lambda region, p: CAP if _seat(p) == 2 else None)
    # B's rollback is slow: were the lock released before it, C would read the seats in
    # the meantime and count the two that are about to go.
    b.session.events.register("before-call.ec2.TerminateInstances",
                              lambda **_: time.sleep(0.5))
    locked = threading.Event()
    b.session.events.register("after-call.ec2.CreateLaunchTemplate", lambda **_: locked.set())
    out: dict[str, BaseException] = {}

    def run_b() -> None:
        try:
            up(lab, b)
        except CapacityError as exc:
            out["b"] = exc

    t = threading.Thread(target=run_b)
    t.start()
    assert locked.wait(timeout=20)
    res_c = up(make_lab(catalog, name, 3, **one), c)
    t.join(timeout=60)

    assert [a.outcome for a in rows(out["b"])] == ["failed"]
    assert b.rec.ops().count("TerminateInstances") >= 1  # B removed its own seats
    assert len(res_c.launch.created) == 3 and res_c.launch.reused == []
    # B's rollback removed the group C had found before it waited: C made it again.
    assert any(n.startswith("created security group") and "again" in n
               for n in res_c.launch.notes)
    assert sorted(i["InstanceId"] for i in live(moto_endpoint, name, "us-east-1")) == sorted(
        res_c.launch.created)
    make_lab(catalog, name, 3).down(sandbox=True, providers=c.provider)
    assert leftovers(moto_endpoint, name) == {}


def test_a_lab_that_fails_before_creating_anything_removes_nothing(
        world: World, catalog: Catalog, moto_endpoint: str) -> None:
    """A seat another machine launched after this run's search is not this run's to remove:
    a run that fails on a read (before its first create) rolls nothing back."""
    name = lab_name()
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_endpoint)
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    other: list[str] = []

    def meanwhile(**_: Any) -> None:  # right after this run's search answered "nothing"
        if not other:
            other.append(ec2.run_instances(
                ImageId=ami, MinCount=1, MaxCount=1, InstanceType="c8i.large",
                TagSpecifications=[{"ResourceType": "instance", "Tags": [
                    {"Key": TAG_NAME, "Value": name}, {"Key": TAG_SEAT, "Value": "0"}]}],
            )["Instances"][0]["InstanceId"])

    world.session.events.register("after-call.ec2.DescribeInstances", meanwhile)
    world.fail_when("DescribeSubnets", lambda region, p: "SubnetLookupBroke")
    with pytest.raises(NestcloudError, match="SubnetLookupBroke"):
        up(make_lab(catalog, name, 3, regions=["us-east-1"], type="c8i.large", vcpus=None,
                    memory_gib=None), world)
    assert [i["InstanceId"] for i in live(moto_endpoint, name, "us-east-1")] == other
    assert not {"TerminateInstances", "CreateSecurityGroup"} & set(world.rec.ops())
    ec2.terminate_instances(InstanceIds=other)
