"""The in-guest readiness check: recorded hosts, the KVM smoke test, commands, the marker."""

from __future__ import annotations

import ast
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nestcloud.bootstrap import l1check as k
from nestcloud.bootstrap.marker import parse_marker
from tests.bootstrap.conftest import FIXTURES, FakeCommands
from tests.bootstrap.fakekvm import FakeKvm

VIRSH_OK = {"virsh": (0, "Compiled against library: libvirt 10.0.0\n"),
            "virt-host-validate": (0, "  QEMU: Checking for hardware virtualization : PASS\n"
                                      "  QEMU: Checking for device assignment IOMMU support "
                                      ": WARN (No ACPI DMAR table found)\n")}


# --- recorded hosts ------------------------------------------------------------------------

def test_intel_with_vmx_is_ready(fixture_host):
    payload = k.run_checks(fixture_host("intel-vmx"), "none")
    assert payload["status"] == "ready"
    assert payload["failed"] == []
    c = payload["checks"]
    assert c["cpu_flag"]["ok"] is True and c["cpu_flag"]["flag"] == "vmx"
    assert c["kvm_module"]["module"] == "kvm_intel" and c["kvm_module"]["nested"] == "Y"
    assert c["dev_kvm"]["device"] == "10:232"
    smoke = c["kvm_smoke"]
    assert (smoke["ok"], smoke["exits"]) == (True, ["IO", "HLT"])
    assert smoke["detail"] == ("a real guest ran 40 million instructions under KVM in %.2f s: "
                               "exits OUT 0x3f8 then HLT" % smoke["seconds"])


def test_amd_with_svm_is_ready(fixture_host):
    payload = k.run_checks(fixture_host("amd-svm"), "none")
    assert payload["status"] == "ready"
    assert payload["checks"]["cpu_flag"]["flag"] == "svm"
    assert payload["checks"]["kvm_module"]["module"] == "kvm_amd"
    assert payload["checks"]["kvm_module"]["nested"] == "1"


def test_no_flag_fails_with_every_reason(fixture_host):
    kvm = FakeKvm()
    payload = k.run_checks(fixture_host("no-flag", kvm=kvm), "none")
    assert payload["status"] == "failed"
    assert payload["failed"] == ["cpu_flag", "kvm_module", "dev_kvm", "kvm_smoke"]
    assert "nested virtualization is off or unsupported" in payload["checks"]["cpu_flag"][
        "detail"]
    assert payload["checks"]["dev_kvm"]["detail"] == "/dev/kvm does not exist"
    assert payload["checks"]["kvm_smoke"]["detail"] == "not run: /dev/kvm is missing"
    assert kvm.calls == []  # no device, no ioctl


def test_dev_kvm_without_vmx_is_not_ready_even_when_guests_run(fixture_host):
    # Recorded: /dev/kvm from kvm_pvm. Were its guests to run at hardware speed, the CPU flag
    # and the module would still say no.
    payload = k.run_checks(fixture_host("kvm-without-vmx"), "none")
    assert payload["status"] == "failed"
    assert payload["failed"] == ["cpu_flag", "kvm_module"]
    assert payload["checks"]["kvm_smoke"]["ok"] is True
    assert "only kvm_pvm" in payload["checks"]["kvm_module"]["detail"]
    assert payload["checks"]["dev_kvm"]["ok"] is True


def test_kvm_pvm_emulating_a_stock_guest_fails_the_smoke_test(fixture_host):
    # As measured on kvm_pvm: every step passes, but the guest's loop runs at about 1 us per
    # iteration (instruction emulation), so the bounded run times out.
    kvm = FakeKvm(emulated_s_per_loop=1e-6)
    host = fixture_host("kvm-without-vmx", kvm=kvm)
    host.smoke_timeout_s = 0.3
    payload = k.run_checks(host, "none")
    assert payload["failed"] == ["cpu_flag", "kvm_module", "kvm_smoke"]
    assert payload["checks"]["kvm_smoke"]["detail"] == (
        "KVM_RUN did not return within 0.3s: 40 million guest instructions take milliseconds "
        "with hardware virtualization; this KVM emulates them (as kvm_pvm does for a stock "
        "kernel, which then seems to hang)")
    assert kvm.calls[-1] == ("ioctl", k.KVM_RUN)  # it got as far as running: only speed told


def test_dev_kvm_not_a_char_device(tmp_path, fixture_host):
    root = tmp_path / "root"
    (root / "dev").mkdir(parents=True)
    (root / "dev" / "kvm").write_text("")
    host = k.Host(str(root))
    assert k.check_dev_kvm(host) == {"ok": False,
                                     "detail": "/dev/kvm exists but is not a character device"}


def test_dev_kvm_without_permission_blocks_the_smoke_test(fixture_host):
    kvm = FakeKvm()
    payload = k.run_checks(fixture_host("intel-vmx", kvm=kvm, rw=False), "none")
    assert payload["checks"]["dev_kvm"]["ok"] is True
    assert "add the user to the 'kvm' group" in payload["checks"]["dev_kvm"]["detail"]
    assert payload["checks"]["kvm_smoke"]["ok"] is False
    assert payload["failed"] == ["kvm_smoke"]
    assert kvm.calls == []


def test_vmx_flags_line_is_not_the_flags_line(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\nvmx flags\t: ept vpid\nflags\t\t: fpu sse\n")
    info = k.cpu_info(k.Host(str(tmp_path)))
    assert info["flags"] == ["fpu", "sse"]
    assert k.check_virt_flag(k.Host(str(tmp_path)))["ok"] is False


def test_unreadable_cpuinfo(tmp_path):
    assert k.check_virt_flag(k.Host(str(tmp_path))) == {
        "ok": False, "detail": "/proc/cpuinfo is not readable"}


# --- the KVM smoke test through the fake ioctl layer -----------------------------------------

def test_smoke_test_sends_the_real_abi():
    kvm = FakeKvm()
    ok, detail, facts = k.kvm_smoke_test(kvm, "/dev/kvm", timeout_s=0)
    assert ok, detail
    assert facts == {"api_version": 12, "exits": ["IO", "HLT"], "seconds": facts["seconds"]}
    requests = [arg for what, arg in kvm.calls if what == "ioctl"]
    assert requests == [0xAE00, 0xAE01, 0xAE47, 0x4020AE46, 0xAE41, 0xAE04, 0x8138AE83,
                        0x4138AE84, 0x4090AE82, 0xAE80, 0xAE80]
    assert kvm.regions == [(0x1000, 0x1000, 0x7F0000000000)]
    assert kvm.loops_run == k.SMOKE_LOOPS == 20_000_000
    assert sorted(kvm.closed) == [101, 102, 103]  # system, VM and vCPU descriptors


SMOKE_ASM = """
.code16
    mov     $20000000, %ecx
1:  dec     %ecx
    jnz     1b
    mov     $0x3f8, %dx
    mov     $0x4e, %al
    out     %al, %dx
    hlt
"""


@pytest.mark.skipif(not (shutil.which("as") and shutil.which("ld")),
                    reason="GNU as/ld (binutils) not installed")
def test_the_smoke_guest_is_the_documented_assembly(tmp_path):
    src = tmp_path / "smoke.S"
    src.write_text(SMOKE_ASM)
    subprocess.run(["as", "--32", "-o", str(tmp_path / "smoke.o"), str(src)], check=True)
    subprocess.run(["ld", "-m", "elf_i386", "-Ttext=0x1000", "--oformat", "binary", "-o",
                    str(tmp_path / "smoke.bin"), str(tmp_path / "smoke.o")], check=True)
    assert (tmp_path / "smoke.bin").read_bytes() == k.SMOKE_CODE


@pytest.mark.parametrize("fake, expected", [
    (FakeKvm(api_version=11), "KVM API version 11, expected 12"),
    (FakeKvm(fail={k.KVM_CREATE_VM: errno.ENODEV}),
     "KVM_CREATE_VM failed: fake failure (ENODEV)"),
    (FakeKvm(fail={k.KVM_CREATE_VCPU: errno.EINVAL}),
     "KVM_CREATE_VCPU failed: fake failure (EINVAL)"),
    (FakeKvm(run_exit=17), "guest stopped with exit INTERNAL_ERROR (expected IO then HLT)"),
    (FakeKvm(run_exit=9), "guest stopped with exit FAIL_ENTRY (expected IO then HLT)"),
    (FakeKvm(run_exit=k.KVM_EXIT_HLT), "guest halted without the expected OUT exit"),
    (FakeKvm(out_byte=0x41), "unexpected I/O exit (dir 1 port 0x3f8 size 1 data 65)"),
    (FakeKvm(open_error=errno.EACCES), "open /dev/kvm failed: fake open failure (EACCES)"),
])
def test_smoke_test_failures_are_results(fake, expected):
    ok, detail, _ = k.kvm_smoke_test(fake, "/dev/kvm", timeout_s=0)
    assert (ok, detail) == (False, expected)


def test_smoke_test_times_out_a_hanging_run():
    class Hanging(FakeKvm):
        def _run(self) -> int:
            import time
            time.sleep(5)
            return 0

    ok, detail, _ = k.kvm_smoke_test(Hanging(), "/dev/kvm", timeout_s=0.2)
    assert not ok and detail.startswith("KVM_RUN did not return within 0.2s: 40 million guest "
                                         "instructions take milliseconds")


@pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK),
                    reason="no usable /dev/kvm on this machine: the real smoke test needs one")
def test_real_kvm_smoke_test():
    ok, detail, facts = k.kvm_smoke_test(None, "/dev/kvm")
    # Whatever KVM this machine has, the result is an answer, and a pass means IO then HLT.
    assert isinstance(ok, bool) and detail
    if ok:
        assert facts["exits"] == ["IO", "HLT"] and facts["seconds"] < 10


# --- kvm / firecracker profile commands -------------------------------------------------------

def test_kvm_profile_runs_libvirt_and_virt_host_validate(fixture_host):
    cmds = FakeCommands(dict(VIRSH_OK))
    payload = k.run_checks(fixture_host("intel-vmx", commands=cmds), "kvm")
    assert payload["status"] == "ready"
    assert payload["checks"]["libvirt"]["ok"] is True
    assert payload["checks"]["virt_host_validate"] == {
        "ok": True, "optional": True, "detail": "no FAIL (1 WARN, normal in clouds)"}
    assert ["virsh", "--connect", "qemu:///system", "version"] in cmds.calls
    assert ["virt-host-validate", "qemu"] in cmds.calls


def test_virt_host_validate_fail_is_a_warning_not_a_failure(fixture_host):
    answers = dict(VIRSH_OK)
    answers["virt-host-validate"] = (1, "  QEMU: Checking if device /dev/kvm exists : PASS\n"
                                        "  QEMU: Checking for cgroup 'cpu' controller support "
                                        ": FAIL (Enable 'cpu' in kernel Kconfig)\n")
    payload = k.run_checks(fixture_host("intel-vmx", commands=FakeCommands(answers)), "kvm")
    assert payload["status"] == "ready"
    assert payload["warnings"] == ["virt_host_validate"]
    assert payload["checks"]["virt_host_validate"]["detail"] == (
        "FAIL: QEMU: Checking for cgroup 'cpu' controller support")


def test_libvirt_down_fails_the_kvm_profile(fixture_host):
    answers = dict(VIRSH_OK)
    answers["virsh"] = (1, "error: failed to connect to the hypervisor\nerror: Failed to "
                           "connect socket to '/var/run/libvirt/virtqemud-sock': No such file")
    payload = k.run_checks(fixture_host("intel-vmx", commands=FakeCommands(answers)), "kvm")
    assert payload["status"] == "failed" and payload["failed"] == ["libvirt"]
    assert payload["checks"]["libvirt"]["detail"].startswith(
        "libvirt does not answer: virsh exit 1: error: failed to connect to the hypervisor")


def test_missing_virsh_and_validate(fixture_host):
    payload = k.run_checks(fixture_host("intel-vmx"), "kvm")
    assert payload["failed"] == ["libvirt"]
    assert payload["checks"]["virt_host_validate"]["ok"] is None


def test_firecracker_profile(fixture_host):
    ok = FakeCommands({"firecracker": (0, "Firecracker v1.13.1\n\n")})
    payload = k.run_checks(fixture_host("amd-svm", commands=ok), "firecracker")
    assert payload["status"] == "ready"
    assert payload["checks"]["firecracker"]["detail"] == "Firecracker v1.13.1"
    missing = k.run_checks(fixture_host("amd-svm"), "firecracker")
    assert missing["failed"] == ["firecracker"]


def test_l2_smoke_only_after_a_passing_smoke_test(fixture_host):
    payload = k.run_checks(fixture_host("no-flag"), "kvm", l2_smoke=True)
    assert payload["checks"]["l2_boot"]["detail"] == "not run: the KVM smoke test failed"


def test_l2_boot_reads_the_guest_console(fixture_host, monkeypatch, tmp_path):
    boot = ("[    0.000000] Linux version 6.8.0-1015-aws (buildd@lcy02) ...\n"
            "[    0.912000] Kernel panic - not syncing: VFS: Unable to mount root fs on "
            "unknown-block(0,0)\n")
    cmds = FakeCommands({**VIRSH_OK, "qemu-system-x86_64": (0, boot)})
    host = fixture_host("intel-vmx", commands=cmds)
    kernel = Path(host.root) / "boot"
    monkeypatch.setattr(k, "_guest_kernel", lambda h: str(kernel / "vmlinuz-test"))
    payload = k.run_checks(host, "kvm", l2_smoke=True)
    assert payload["checks"]["l2_boot"]["ok"] is True
    qemu = [c for c in cmds.calls if c[0].endswith("qemu-system-x86_64")][0]
    assert qemu[1:3] == ["-machine", "accel=kvm"]  # no silent fallback to emulation
    assert "-kernel" in qemu and qemu[qemu.index("-kernel") + 1].endswith("vmlinuz-test")
    cmds.answers["qemu-system-x86_64"] = (1, "qemu-system-x86_64: failed to initialize kvm: "
                                             "Permission denied\n")
    payload = k.run_checks(host, "kvm", l2_smoke=True)
    assert payload["status"] == "failed" and payload["failed"] == ["l2_boot"]
    assert "failed to initialize kvm" in payload["checks"]["l2_boot"]["detail"]


def test_unknown_profile():
    with pytest.raises(ValueError, match="unknown profile 'xen'"):
        k.run_checks(k.Host("/nonexistent"), "xen")


# --- the marker and the script as shipped -------------------------------------------------------

def test_main_prints_exactly_one_marker_line(fixture_host, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(k, "Host", lambda root: fixture_host("amd-svm"))
    state = tmp_path / "state" / "l1.json"
    rc = k.main(["--profile", "none", "--console", "", "--state", str(state)])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.count("\n") == 1 and out.startswith("NESTCLOUD-L1 {")
    marker = parse_marker(out)
    assert marker is not None and marker.status == "ready"
    assert json.loads(state.read_text()) == json.loads(out.split(" ", 1)[1])


def test_main_reports_a_crashing_check_as_failed(monkeypatch, capsys):
    def boom(*a, **kw):
        raise RuntimeError("cannot read /proc")
    monkeypatch.setattr(k, "run_checks", boom)
    assert k.main(["--console", "", "--state", ""]) == 1
    marker = parse_marker(capsys.readouterr().out)
    assert marker is not None and marker.status == "failed"
    assert marker.failed_checks() == ["check_error"]


def test_script_runs_standalone_with_the_system_python(tmp_path):
    """As on the L1: `python3 l1check.py`, no nestcloud installed, reading a given root."""
    py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    src = Path(k.__file__)
    proc = subprocess.run([py, "-I", str(src), "--root", str(FIXTURES / "no-flag"),
                           "--profile", "none", "--console", "", "--state", ""],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    marker = parse_marker(proc.stdout)
    assert marker is not None and marker.status == "failed"
    assert marker.failed[:2] == ["cpu_flag", "kvm_module"]
    # Why cloud-init will call scripts-user failed, said where its warning shows up.
    assert proc.stderr == ("nestcloud: this L1 cannot host VMs (failed checks: cpu_flag, "
                           "kvm_module, dev_kvm, kvm_smoke); exit 1, so cloud-init reports "
                           "scripts-user as failed\n")
    assert "NESTCLOUD-L1" not in proc.stderr


def test_script_is_python39_and_stdlib_only():
    src = Path(k.__file__).read_text()
    tree = ast.parse(src, feature_version=(3, 9))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
