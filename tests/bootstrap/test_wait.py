"""wait_for_ready against a fake provider whose console/tags change over (fake) time."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from nestcloud.bootstrap.l1check import format_marker
from nestcloud.bootstrap.profiles import TAG_L1
from nestcloud.bootstrap.wait import SANDBOX_MESSAGE, WaitReport, wait_for_ready
from nestcloud.errors import CredentialsError, ThrottledError
from nestcloud.models import Instance

READY = format_marker({"status": "ready", "profile": "kvm", "failed": [], "v": 1,
                       "checks": {"kvm_smoke": {"ok": True, "detail": "ran"}}})
FAILED = format_marker({"status": "failed", "profile": "kvm", "failed": ["cpu_flag"], "v": 1,
                        "checks": {"cpu_flag": {"ok": False, "detail": "no vmx or svm flag"}}})
BOOT = "[    0.000000] Linux version 6.8.0\r\n[   12.0] cloud-init[900]: Reading package lists\r\n"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def inst(iid: str, name: str = "lab", state: str = "running", **tags: str) -> Instance:
    return Instance(provider="fake", id=iid, name=name, region="r1", type="m8i.large",
                    state=state, tags=tags)


class FakeProvider:
    """Console text and instance records as functions of the fake time elapsed."""

    name = "fake"

    def __init__(self, clock: FakeClock,
                 console: dict[str, Callable[[float], str]] | None = None,
                 records: Callable[[float], list[Instance]] | None = None,
                 console_errors: dict[str, list[Exception]] | None = None) -> None:
        self.clock = clock
        self.start = clock.now
        self._console = console or {}
        self._records = records
        self.console_errors = console_errors or {}
        self.console_calls: list[str] = []
        self.list_calls: list[str | None] = []

    def t(self) -> float:
        return self.clock.now - self.start

    def console(self, instance: Instance) -> str:
        self.console_calls.append(instance.id)
        errs = self.console_errors.get(instance.id)
        if errs:
            raise errs.pop(0)
        fn = self._console.get(instance.id)
        return fn(self.t()) if fn else ""

    def list(self, name: str | None = None) -> list[Instance]:
        self.list_calls.append(name)
        return self._records(self.t()) if self._records else []


def after(seconds: float, text: str, before: str = BOOT) -> Callable[[float], str]:
    return lambda t: before + text + "\r\n" if t >= seconds else before


def run(provider: FakeProvider, instances: list[Instance], clock: FakeClock,
        timeout: float = 600, interval: float = 10) -> WaitReport:
    return wait_for_ready(provider, instances, timeout_s=timeout, interval_s=interval,
                          clock=clock, sleep=clock.sleep)


def test_ready_after_some_polls():
    clock = FakeClock()
    p = FakeProvider(clock, console={"i-1": after(35, READY)})
    report = run(p, [inst("i-1")], clock)
    assert report.exit_code() == 0 and report.ok
    r = report.instances[0]
    assert (r.status, r.source, r.waited_s) == ("ready", "console", 40.0)
    assert clock.sleeps == [10, 10, 10, 10]
    assert p.console_calls == ["i-1"] * 5
    assert p.list_calls == ["lab"] * 5


def test_failed_reports_the_failed_checks_and_exit_1():
    clock = FakeClock()
    p = FakeProvider(clock, console={"i-1": after(0, FAILED), "i-2": after(20, READY)})
    report = run(p, [inst("i-1"), inst("i-2")], clock)
    assert [r.status for r in report.instances] == ["failed", "ready"]
    assert report.instances[0].failed_checks == ["cpu_flag: no vmx or svm flag"]
    assert report.instances[0].message == "L1 reported failed: cpu_flag: no vmx or svm flag"
    assert report.exit_code() == 1
    assert report.message == "1 failed, 1 ready"
    assert report.to_dict()["exit_code"] == 1


def test_timeout_is_exit_4_and_never_oversleeps():
    clock = FakeClock()
    p = FakeProvider(clock, console={"i-1": after(10_000, READY), "i-2": after(5, READY)})
    report = run(p, [inst("i-1"), inst("i-2")], clock, timeout=25, interval=10)
    assert [r.status for r in report.instances] == ["timeout", "ready"]
    assert report.instances[0].message == "no readiness marker within 25s"
    assert report.exit_code() == 4
    assert clock.sleeps == [10, 10, 5]   # the last sleep ends exactly at the deadline
    assert clock.now - 1000.0 == 25


def test_failed_wins_over_timeout():
    clock = FakeClock()
    p = FakeProvider(clock, console={"i-1": after(0, FAILED)})
    report = run(p, [inst("i-1"), inst("i-2")], clock, timeout=10)
    assert [r.status for r in report.instances] == ["failed", "timeout"]
    assert report.exit_code() == 1


def test_truncated_marker_keeps_waiting_until_complete():
    clock = FakeClock()
    partial = READY[: len(READY) - 10]
    p = FakeProvider(clock, console={"i-1": lambda t: BOOT + (partial if t < 30 else READY)})
    report = run(p, [inst("i-1")], clock)
    assert report.instances[0].status == "ready" and report.instances[0].waited_s == 30


def test_windows_reports_through_the_tag():
    clock = FakeClock()
    tag = '{"status":"ready","profile":"hyperv","checks":{"hypervisor_present":true},"v":1}'
    records = lambda t: [inst("i-w", **({TAG_L1: tag} if t >= 20 else {}))]  # noqa: E731
    p = FakeProvider(clock, console={"i-w": lambda t: "EC2 event log: nothing useful"},
                     records=records)
    report = run(p, [inst("i-w")], clock)
    r = report.instances[0]
    assert (r.status, r.source, r.checks) == ("ready", "tag", {"hypervisor_present": True})


def test_windows_failed_tag():
    clock = FakeClock()
    tag = '{"status":"failed","profile":"hyperv","checks":{"vmms":true,"probe_vm":false},"v":1}'
    p = FakeProvider(clock, records=lambda t: [inst("i-w", **{TAG_L1: tag})])
    report = run(p, [inst("i-w")], clock)
    assert report.instances[0].failed_checks == ["probe_vm"]
    assert report.exit_code() == 1
    assert p.console_calls == []  # the tag answered first


def test_instance_gone_is_failed():
    clock = FakeClock()
    p = FakeProvider(clock, records=lambda t: [inst("i-1", state="terminated" if t >= 10
                                                   else "running")])
    report = run(p, [inst("i-1")], clock)
    r = report.instances[0]
    assert (r.status, r.failed_checks) == ("failed", ["instance_state"])
    assert r.message == "instance is terminated before reporting readiness"


def test_transient_provider_errors_are_retried_and_shown_on_timeout():
    clock = FakeClock()
    p = FakeProvider(clock, console={"i-1": after(25, READY)},
                     console_errors={"i-1": [ThrottledError("Rate exceeded")]})
    report = run(p, [inst("i-1")], clock)
    assert report.instances[0].status == "ready"
    clock2 = FakeClock()
    p2 = FakeProvider(clock2, console_errors={"i-1": [ThrottledError("Rate exceeded")] * 50})
    r2 = run(p2, [inst("i-1")], clock2, timeout=20)
    assert r2.instances[0].message == ("no readiness marker within 20s (last problem: "
                                       "console: Rate exceeded)")


def test_credential_errors_are_not_swallowed():
    clock = FakeClock()
    p = FakeProvider(clock, console_errors={"i-1": [CredentialsError("expired token")]})
    with pytest.raises(CredentialsError):
        run(p, [inst("i-1")], clock)


def test_sandbox_is_honest_and_polls_nothing():
    clock = FakeClock()
    p = FakeProvider(clock, console={"i-1": after(0, READY)})
    report = wait_for_ready(p, [inst("i-1"), inst("i-2")], timeout_s=60, sandbox=True,
                            clock=clock, sleep=clock.sleep)
    assert report.sandbox and report.message == SANDBOX_MESSAGE
    assert report.message == "sandbox: no guest boots, readiness cannot be shown"
    assert [r.status for r in report.instances] == ["not-verifiable"] * 2
    assert all(r.source is None and r.checks == {} for r in report.instances)
    assert report.exit_code() == 0
    assert p.console_calls == [] and p.list_calls == [] and clock.sleeps == []


def test_summary_lines():
    clock = FakeClock()
    p = FakeProvider(clock, console={"i-1": after(0, READY)})
    assert run(p, [inst("i-1")], clock).summary() == "lab i-1: ready - L1 hypervisor ready"
