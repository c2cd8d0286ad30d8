"""providers/local/qemu.py without booting anything: argv, seed ISO bytes, overlay, pid safety,
console waits and the KVM probe's verdicts (a fake qemu stands in for the real one)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from providers.local import qemu


def _cfg(tmp_path: Path, **kw: object) -> qemu.VmConfig:
    base = dict(disk=tmp_path / "disk.qcow2", serial_log=tmp_path / "serial.log",
                pidfile=tmp_path / "qemu.pid", seed=tmp_path / "seed.iso", name="nc-a")
    base.update(kw)
    return qemu.VmConfig(**base)  # type: ignore[arg-type]


def _after(argv: list[str], flag: str) -> list[str]:
    return [b for a, b in zip(argv, argv[1:]) if a == flag]


def test_command_uses_virtio_net_and_no_default_devices(tmp_path: Path) -> None:
    argv = qemu.qemu_command(_cfg(tmp_path))
    assert argv[0] == "qemu-system-x86_64"
    assert "-nodefaults" in argv                       # no default e1000 NIC
    assert _after(argv, "-nic") == ["user,model=virtio-net-pci"]
    assert _after(argv, "-accel") == ["tcg"]
    assert _after(argv, "-cpu") == ["qemu64"]
    assert _after(argv, "-smp") == ["2"] and _after(argv, "-m") == ["2048"]
    assert _after(argv, "-drive") == [
        f"file={tmp_path}/disk.qcow2,if=virtio,format=qcow2,discard=unmap",
        f"file={tmp_path}/seed.iso,if=virtio,format=raw,readonly=on"]
    assert _after(argv, "-chardev") == [f"file,id=serial0,path={tmp_path}/serial.log"]
    assert _after(argv, "-pidfile") == [f"{tmp_path}/qemu.pid"]
    assert argv[-1] == "-daemonize"
    assert "-kernel" not in argv


@pytest.mark.parametrize(("accel", "virt", "cpu"), [
    ("tcg", True, "qemu64"), ("tcg", False, "qemu64,-svm,-vmx"),
    ("kvm", True, "host"), ("kvm", False, "host,-svm,-vmx")])
def test_cpu_model_with_and_without_virtualization(tmp_path: Path, accel: qemu.Accel,
                                                   virt: bool, cpu: str) -> None:
    argv = qemu.qemu_command(_cfg(tmp_path, accel=accel, virtualization=virt))
    assert _after(argv, "-cpu") == [cpu]
    assert _after(argv, "-accel") == [accel]


def test_command_forwards_ssh_on_loopback_and_boots_a_kernel(tmp_path: Path) -> None:
    boot = qemu.DirectBoot(tmp_path / "vmlinuz", tmp_path / "initrd.img", "console=ttyS0 ro")
    argv = qemu.qemu_command(_cfg(tmp_path, ssh_port=2222, boot=boot, cpu="max",
                                  daemonize=False, vcpus=1, memory_mib=512))
    assert _after(argv, "-nic") == ["user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:2222-:22"]
    assert _after(argv, "-kernel") == [f"{tmp_path}/vmlinuz"]
    assert _after(argv, "-initrd") == [f"{tmp_path}/initrd.img"]
    assert _after(argv, "-append") == ["console=ttyS0 ro"]
    assert _after(argv, "-cpu") == ["max"]
    assert "-daemonize" not in argv


def test_command_doubles_commas_in_drive_paths_and_the_name(tmp_path: Path) -> None:
    argv = qemu.qemu_command(_cfg(tmp_path, disk=tmp_path / "a,b.qcow2", seed=None,
                                  name="lab,process=x"))
    assert _after(argv, "-name") == ["lab,,process=x"]
    assert _after(argv, "-drive") == [f"file={tmp_path}/a,,b.qcow2,if=virtio,format=qcow2,"
                                      "discard=unmap"]


def test_command_refuses_a_machine_too_small(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="too small"):
        qemu.qemu_command(_cfg(tmp_path, vcpus=0))


def test_meta_data_is_yaml_that_cloud_init_reads() -> None:
    import yaml

    text = qemu.meta_data("i-1: x", "l1-a")
    assert yaml.safe_load(text) == {"instance-id": "i-1: x", "local-hostname": "l1-a"}
    assert yaml.safe_load(qemu.meta_data("i-2")) == {"instance-id": "i-2"}


def test_seed_iso_is_labelled_cidata_and_holds_the_exact_bytes(tmp_path: Path) -> None:
    pycdlib = pytest.importorskip("pycdlib")
    user = b"\x1f\x8b gzipped or not, the bytes go in unchanged \x00\xff"
    path = qemu.write_seed_iso(tmp_path / "seed.iso", user, qemu.meta_data("i-9"),
                               network_config=b"version: 2\n")
    raw = path.read_bytes()
    # ISO 9660 primary volume descriptor: sector 16, volume identifier at byte 40 (32 bytes).
    assert raw[16 * 2048 + 1:16 * 2048 + 6] == b"CD001"
    assert raw[16 * 2048 + 40:16 * 2048 + 72].rstrip(b" ") == b"cidata"
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        got = {}
        for name in ("user-data", "meta-data", "network-config"):
            out = __import__("io").BytesIO()
            iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
            got[name] = out.getvalue()
    finally:
        iso.close()
    assert got == {"user-data": user, "meta-data": qemu.meta_data("i-9").encode(),
                   "network-config": b"version: 2\n"}
    assert not (tmp_path / "seed.iso.tmp").exists()


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img not installed")
def test_overlay_is_copy_on_write_over_the_base(tmp_path: Path) -> None:
    base = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "64M"], check=True)
    over = qemu.create_overlay(base, tmp_path / "seat.qcow2", size="128M")
    info = json.loads(subprocess.run(["qemu-img", "info", "--output", "json", str(over)],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2"
    assert info["backing-filename"] == str(base)
    assert info["backing-filename-format"] == "qcow2"
    assert info["virtual-size"] == 128 * 1024 * 1024


def test_overlay_of_a_missing_base_says_which(tmp_path: Path) -> None:
    with pytest.raises(qemu.QemuError, match="base image .*nope.qcow2 does not exist"):
        qemu.create_overlay(tmp_path / "nope.qcow2", tmp_path / "o.qcow2")


def _fake_qemu(tmp_path: Path, body: str) -> Path:
    """An executable named qemu-system-x86_64 whose behaviour is ``body`` (Python)."""
    path = tmp_path / "bin" / "qemu-system-x86_64"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!{sys.executable}\nimport sys, time, pathlib\nargv = sys.argv\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_stop_kills_only_the_qemu_that_the_pidfile_names(tmp_path: Path) -> None:
    pidfile = tmp_path / "seat" / "qemu.pid"
    pidfile.parent.mkdir()

    def fake(pid_path: Path) -> subprocess.Popen[bytes]:
        # Python run under the name qemu-system-x86_64: /proc/PID/cmdline shows exactly this.
        return subprocess.Popen(["/usr/bin/qemu-system-x86_64", "-c", "import time; "
                                 "time.sleep(60)", "-pidfile", str(pid_path)],
                                executable=sys.executable)

    ours = fake(pidfile)
    stranger = subprocess.Popen(["sleep", "60"])
    other = fake(tmp_path / "other.pid")
    try:
        time.sleep(0.3)
        pidfile.write_text(f"{stranger.pid}\n")            # a stale pid now used by sleep
        assert qemu.stop_vm(pidfile) is False
        pidfile.write_text(f"{other.pid}\n")               # a qemu, but not started for this seat
        assert qemu.stop_vm(pidfile) is False
        assert stranger.poll() is None and other.poll() is None
        pidfile.write_text(f"{ours.pid}\n")
        assert qemu.is_our_qemu(ours.pid, pidfile)
        assert qemu.stop_vm(pidfile, timeout=5) is True
        assert ours.wait(timeout=5) == -15                  # SIGTERM
    finally:
        for p in (ours, stranger, other):
            p.kill()
            p.wait()


def test_stop_without_a_pidfile_stops_nothing(tmp_path: Path) -> None:
    assert qemu.stop_vm(tmp_path / "missing.pid") is False
    (tmp_path / "junk.pid").write_text("not a pid")
    assert qemu.stop_vm(tmp_path / "junk.pid") is False


def test_start_vm_turns_a_qemu_failure_into_its_message(tmp_path: Path) -> None:
    fake = _fake_qemu(tmp_path, "sys.stderr.write('qemu: Could not access KVM kernel module: "
                                "Permission denied\\n'); sys.exit(1)")
    with pytest.raises(qemu.QemuError, match="exit 1.*Could not access KVM kernel module"):
        qemu.start_vm(_cfg(tmp_path, qemu=str(fake)))


def test_start_vm_returns_the_pid_qemu_wrote(tmp_path: Path) -> None:
    fake = _fake_qemu(tmp_path, "p = argv[argv.index('-pidfile') + 1]\n"
                                "pathlib.Path(p).write_text('4242\\n')")
    assert qemu.start_vm(_cfg(tmp_path, qemu=str(fake))) == 4242


def test_wait_for_console_matches_times_out_or_sees_qemu_exit(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.write_bytes(b"boot\r\nNESTCLOUD-L1 {}\n\xff")
    got = qemu.wait_for_console(log, lambda t: "NESTCLOUD-L1" in t, timeout=5)
    assert got.matched and got.text.endswith("\ufffd")
    got = qemu.wait_for_console(log, lambda t: "never" in t, timeout=0.3, poll=0.05)
    assert got.outcome == "timeout" and 0.3 <= got.seconds < 3
    done = subprocess.Popen(["true"])
    done.wait()
    got = qemu.wait_for_console(log, lambda t: "never" in t, timeout=30, pid=done.pid, poll=0.05)
    assert got.outcome == "exited" and got.seconds < 3
    assert qemu.wait_for_console(tmp_path / "none.log", lambda t: t == "", timeout=1).matched


def test_kvm_probe_without_a_device_runs_nothing(tmp_path: Path) -> None:
    probe = qemu.probe_kvm(tmp_path / "no-kernel", device=str(tmp_path / "kvm"),
                           qemu=str(tmp_path / "no-qemu"))
    assert not probe.usable
    assert probe.reason == f"{tmp_path}/kvm does not exist (no KVM module loaded)"


def _probe(tmp_path: Path, qemu_body: str, *, timeout: float) -> qemu.KvmProbe:
    """qemu.probe_kvm with a device and kernel that exist and a fake QEMU running
    ``qemu_body`` (argv in ``argv``)."""
    device = tmp_path / "kvm"
    device.write_text("")
    kernel = tmp_path / "vmlinuz"
    kernel.write_text("")
    fake = _fake_qemu(tmp_path, qemu_body)
    return qemu.probe_kvm(kernel, timeout=timeout, device=str(device), qemu=str(fake))


def test_kvm_probe_gives_up_on_a_guest_that_hangs(tmp_path: Path) -> None:
    """The kvm_pvm trap: QEMU starts, the kernel never gets anywhere, the probe must return."""
    start = time.monotonic()
    probe = _probe(tmp_path, "assert argv[argv.index('-serial') + 1] == 'stdio'\n"
                             "print('Linux version 6.1'); print('Probing EDD (edd=off to "
                             "disable)... ok', flush=True)\ntime.sleep(60)", timeout=1.5)
    assert time.monotonic() - start < 10
    assert not probe.usable
    assert "made no boot progress under KVM in 1.5s" in probe.reason
    assert "last: Probing EDD" in probe.reason


def test_kvm_probe_accepts_a_kernel_that_reaches_its_root_mount_panic(tmp_path: Path) -> None:
    probe = _probe(tmp_path, "assert argv[argv.index('-machine') + 1] == 'accel=kvm'\n"
                             "print('Linux version 6.1\\nKernel panic - "
                             "not syncing: VFS: Unable to mount root fs')", timeout=20)
    assert probe.usable, probe.reason
    assert probe.reason.startswith("a Linux kernel booted under KVM to the expected "
                                   "root-mount panic in ")


def test_kvm_probe_reports_why_qemu_refused(tmp_path: Path) -> None:
    probe = _probe(tmp_path, "sys.stderr.write('kvm_buf_set_msrs: Assertion failed.\\n');"
                             "sys.exit(134)", timeout=20)
    assert not probe.usable
    assert probe.reason == ("the kernel boot under KVM did not reach the root-mount stage "
                            "(exit 134): kvm_buf_set_msrs: Assertion failed.")


def test_free_loopback_port_is_bindable() -> None:
    import socket

    port = qemu.free_loopback_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_missing_tools_names_only_the_missing() -> None:
    assert qemu.missing_tools(["sh", "no-such-tool-nestcloud"]) == ["no-such-tool-nestcloud"]
    assert os.path.basename(qemu.QEMU) == "qemu-system-x86_64"
