"""`nestcloud doctor`: this machine as a host for local L1s (KVM, emulation only, or none)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nestcloud.bootstrap import doctor, l1check
from nestcloud.cli import app
from tests.bootstrap.conftest import FakeCommands
from tests.bootstrap.fakekvm import FakeKvm

BOOT_OK = ("[    0.000000] Linux version 6.1.0-28-cloud-amd64 ...\n"
           "[    0.912000] Kernel panic - not syncing: VFS: Unable to mount root fs on "
           "unknown-block(0,0)\n")
TOOLS = {"qemu-system-x86_64": (0, BOOT_OK), "qemu-img": (0, "")}


def _doctor(monkeypatch, fixture_host, name: str, *, kernel: str | None = "/k/vmlinuz",
            **kw) -> dict:
    host = fixture_host(name, **kw)
    host.smoke_timeout_s = 0.3
    monkeypatch.setattr(l1check, "Host", lambda root: host)
    monkeypatch.setattr(doctor, "_readable_kernel", lambda h: kernel)
    r = CliRunner().invoke(app, ["doctor", "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _item(doc: dict) -> dict:
    return next(i for i in doc["items"] if i["name"] == "local_l1_host")


def test_no_qemu_means_no_local_l1s(monkeypatch, fixture_host):
    doc = _doctor(monkeypatch, fixture_host, "intel-vmx")
    assert doc["local_host"] == {
        "mode": "none", "qemu": None, "missing": ["qemu-system-x86_64", "qemu-img"],
        "l1_virtualization": None, "evidence": [],
        "summary": "this machine cannot host local L1s: qemu-system-x86_64 and qemu-img are "
                   "not installed (Debian/Ubuntu: apt-get install qemu-system-x86 qemu-utils)"}
    assert (_item(doc)["ok"], _item(doc)["optional"]) == (False, True)
    assert doc["ready"] is True   # the L1 verdict is not this item's business


def test_kvm_with_nesting_boots_this_machines_kernel(monkeypatch, fixture_host):
    cmds = FakeCommands(dict(TOOLS))
    doc = _doctor(monkeypatch, fixture_host, "intel-vmx", commands=cmds)
    local = doc["local_host"]
    assert local["mode"] == "kvm" and local["l1_virtualization"] is True
    assert local["summary"] == ("this machine can host local L1s with KVM; nested=Y, so its "
                                "L1s see vmx/svm and can run KVM guests themselves")
    boot = [c for c in cmds.calls if c[0] == "qemu-system-x86_64"]
    assert boot == [l1check.kernel_boot_argv("qemu-system-x86_64", "/k/vmlinuz")]
    assert local["evidence"][1].startswith("qemu-system-x86_64: a Linux kernel booted under "
                                           "KVM to the expected root-mount panic in ")
    assert _item(doc)["ok"] is True


def test_kvm_that_hangs_a_kernel_means_emulation(monkeypatch, fixture_host):
    # The smoke test passes, but QEMU's kernel boot makes no progress and is killed.
    cmds = FakeCommands({**TOOLS, "qemu-system-x86_64": (124, "\n(timed out after 30.0s)")})
    doc = _doctor(monkeypatch, fixture_host, "amd-svm", commands=cmds)
    local = doc["local_host"]
    assert local["mode"] == "emulation"
    assert local["summary"].startswith(
        "this machine can host local L1s only with emulation (TCG; KVM is not usable: "
        "qemu-system-x86_64 with KVM: a Linux kernel made no boot progress under KVM in 30.0s "
        "(it printed nothing): this KVM cannot run a stock kernel); every instruction of an "
        "L1 is emulated")


def test_kvm_pvm_means_emulation_without_a_qemu_boot(monkeypatch, fixture_host):
    cmds = FakeCommands(dict(TOOLS))
    doc = _doctor(monkeypatch, fixture_host, "kvm-without-vmx", commands=cmds,
                  kvm=FakeKvm(emulated_s_per_loop=1e-6))
    assert doc["local_host"]["mode"] == "emulation"
    assert "KVM is not usable: its KVM smoke test failed, see kvm_smoke" in \
        doc["local_host"]["summary"]
    assert [c for c in cmds.calls if c[0] == "qemu-system-x86_64"] == []


def test_no_dev_kvm_means_emulation(monkeypatch, fixture_host):
    doc = _doctor(monkeypatch, fixture_host, "no-flag", commands=FakeCommands(dict(TOOLS)))
    assert doc["local_host"]["mode"] == "emulation"
    assert "KVM is not usable: /dev/kvm does not exist" in doc["local_host"]["summary"]


def test_no_readable_kernel_trusts_the_smoke_test_and_says_so(monkeypatch, fixture_host):
    cmds = FakeCommands(dict(TOOLS))
    doc = _doctor(monkeypatch, fixture_host, "amd-svm", commands=cmds, kernel=None)
    assert doc["local_host"]["mode"] == "kvm"
    assert doc["local_host"]["evidence"][-1] == ("no readable kernel under /boot: the QEMU "
                                                 "boot check was skipped")
    assert [c for c in cmds.calls if c[0] == "qemu-system-x86_64"] == []


@pytest.mark.parametrize("nested, virt, tail", [
    ("N", False, "but nested=N: its L1s boot at hardware speed yet see no vmx/svm, so they "
                 "are not ready to host VMs (load kvm_intel with nested=1)"),
    (None, None, "no kvm_intel/kvm_amd nested setting found: whether its L1s see vmx/svm is "
                 "unknown"),
])
def test_kvm_without_nesting_is_said(fixture_host, nested, virt, tail):
    host = fixture_host("intel-vmx", commands=FakeCommands(dict(TOOLS)))
    checks = l1check.run_checks(host, "none")["checks"]
    checks["kvm_module"] = {**checks["kvm_module"], "nested": nested}
    local = doctor.local_host(host, checks)
    assert (local.mode, local.l1_virtualization) == ("kvm", virt)
    assert local.summary == "this machine can host local L1s with KVM; " + tail


def test_readable_kernel_needs_read_access(tmp_path: Path):
    import platform

    (tmp_path / "boot").mkdir()
    kernel = tmp_path / "boot" / ("vmlinuz-" + platform.release())
    kernel.write_bytes(b"MZ")
    assert doctor._readable_kernel(l1check.Host(str(tmp_path))) == str(kernel)
    denied = l1check.Host(str(tmp_path), access_fn=lambda p, mode: False)
    assert doctor._readable_kernel(denied) is None


def test_no_cloud_or_provider_named_in_the_local_host_wording():
    import inspect

    src = inspect.getsource(doctor.local_host) + doctor._EXPLAIN["local_l1_host"]
    for word in ("aws", "azure", "gcp", "local provider", "--provider"):
        assert word not in src.lower()
