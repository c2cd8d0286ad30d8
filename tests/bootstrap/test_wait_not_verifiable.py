"""An L1 that cannot report (EC2 Windows without an instance profile): not-verifiable, no timeout."""

from __future__ import annotations

import json

import pytest

from nestcloud.bootstrap.profiles import (TAG_L1, TAG_VALUE_MAX, not_verifiable_reason,
                                          not_verifiable_tag)
from tests.bootstrap.test_wait import READY, FakeClock, FakeProvider, after, inst, run

REASON = "launched without an instance profile: this Windows L1 cannot tag itself"


def test_tag_round_trip_and_size() -> None:
    value = not_verifiable_tag(REASON)
    assert json.loads(value) == {"status": "not-verifiable", "reason": REASON}
    assert not_verifiable_reason(value) == REASON
    assert len(value) <= TAG_VALUE_MAX
    with pytest.raises(ValueError, match="too long"):
        not_verifiable_tag("x" * TAG_VALUE_MAX)


@pytest.mark.parametrize("value", [None, "", "{", '{"status": "ready"}', "[1]", "plain"])
def test_other_values_are_not_a_reason(value: str | None) -> None:
    assert not_verifiable_reason(value) is None


def test_not_verifiable_is_reported_at_once_with_the_reason() -> None:
    clock = FakeClock()
    tagged = inst("i-1", **{TAG_L1: not_verifiable_tag(REASON)})
    p = FakeProvider(clock, records=lambda t: [tagged])
    report = run(p, [tagged], clock, timeout=600)
    [r] = report.instances
    assert (r.status, r.source, r.message, r.waited_s) == ("not-verifiable", "tag", REASON, 0.0)
    assert clock.now == 1000.0  # no waiting for a report that cannot come
    assert p.console_calls == ["i-1"]  # the console was still read once
    assert report.exit_code() == 0
    assert report.summary() == f"lab i-1: not-verifiable - {REASON}"


def test_a_real_report_wins_over_the_launch_note() -> None:
    clock = FakeClock()
    tagged = inst("i-1", **{TAG_L1: not_verifiable_tag(REASON)})
    p = FakeProvider(clock, console={"i-1": after(0, READY)}, records=lambda t: [tagged])
    assert [r.status for r in run(p, [tagged], clock).instances] == ["ready"]
    # ...and the L1's own tag replaces the note.
    reported = inst("i-1", **{TAG_L1: '{"status":"ready","checks":{"vmms":true}}'})
    p2 = FakeProvider(clock, records=lambda t: [reported])
    assert [r.status for r in run(p2, [tagged], clock).instances] == ["ready"]
