"""The smoke test in a child process: an answer from any thread, and never a hang."""

from __future__ import annotations

import os
import sys
import threading
import time

from nestcloud.bootstrap import kvmprobe, l1check


def test_the_child_answers_from_any_thread(tmp_path):
    missing = str(tmp_path / "no-kvm")
    out: list = []
    t = threading.Thread(target=lambda: out.append(kvmprobe.smoke_test(missing, 2)))
    t.start()
    t.join(60)
    # The same answer the in-process test gives (the child imports the shipped l1check).
    assert out == [l1check.kvm_smoke_test(None, missing, 2)]
    assert out[0][:2] == (False, f"open {missing} failed: No such file or directory (ENOENT)")


def test_a_child_that_never_answers_is_killed(tmp_path, monkeypatch):
    hang = tmp_path / "python-that-hangs"
    hang.write_text("#!/bin/sh\nexec sleep 60\n")
    hang.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(hang))
    start = time.monotonic()
    ok, detail, facts = kvmprobe.smoke_test("/dev/kvm", 0.2, grace_s=0.3)
    assert time.monotonic() - start < 5
    assert (ok, detail, facts) == (False, "the KVM smoke test did not finish within 0.5 s and "
                                          "was killed (KVM_RUN stuck in the kernel)",
                                   {"exits": []})


def test_a_child_that_crashes_says_so(tmp_path, monkeypatch):
    bad = tmp_path / "python-that-fails"
    bad.write_text("#!/bin/sh\necho 'ImportError: no l1check' >&2\nexit 3\n")
    bad.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(bad))
    assert kvmprobe.smoke_test("/dev/kvm", 1) == (
        False, "the KVM smoke test process ended without a result (exit 3): ImportError: no "
               "l1check", {"exits": []})


def test_doctor_runs_the_real_smoke_test_in_a_child(monkeypatch):
    from nestcloud.bootstrap import doctor

    seen: list = []

    def fake(device, timeout_s):
        seen.append((device, timeout_s))
        return False, "fake child", {"exits": []}

    monkeypatch.setattr(kvmprobe, "smoke_test", fake)
    host = l1check.Host("/nonexistent-root")
    host.stat_fn = lambda p: os.stat("/dev/null")   # a character device, and usable:
    host.access_fn = lambda p, mode: True             # the smoke test runs
    report = doctor.run_doctor(host)
    assert seen == [("/nonexistent-root/dev/kvm", l1check.SMOKE_TIMEOUT_S)]
    assert report.payload["checks"]["kvm_smoke"]["detail"] == "fake child"
