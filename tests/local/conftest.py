"""Fakes for the local provider's tests that boot nothing: a fake QEMU, a fake qemu-img, a
recorded host tree, and a way to find (and kill) every process a test's seats left.

The fake ``qemu-system-x86_64`` behaves like the real one where the provider looks:
``-daemonize`` leaves a long-running child whose /proc/PID/cmdline starts with
``qemu-system-x86_64`` and carries the same ``-pidfile`` (so ``down``'s pid check accepts it),
writes that pid to the pid file and "boots" at once: the serial log gets a readiness marker,
``ready`` unless the ``-cpu`` value removes svm (``failed``, with cpu_flag failing). Without
``-daemonize`` it is the KVM probe: ``NC_FAKE_KVM`` = ok | hang | fail. Every call is
appended to ``$NC_FAKE_QEMU_LOG`` as one JSON argv line.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

FAKE_QEMU = r'''
import json, os, pathlib, subprocess, sys, time
argv = sys.argv[1:]
log = os.environ.get("NC_FAKE_QEMU_LOG")
if log:
    with open(log, "a") as fh:
        fh.write(json.dumps(["qemu-system-x86_64", *argv]) + "\n")
def arg(flag):
    return argv[argv.index(flag) + 1] if flag in argv else None
fail = os.environ.get("NC_FAKE_QEMU_FAIL")
if "-daemonize" in argv:
    if fail:
        sys.stderr.write(fail + "\n")
        sys.exit(1)
    serial = arg("-chardev").split("path=", 1)[1]
    ok = "-svm" not in (arg("-cpu") or "")
    checks = {"cpu_flag": {"ok": ok, "flag": "svm"} if ok else
              {"ok": False, "detail": "no vmx or svm in /proc/cpuinfo"}}
    marker = {"v": 1, "status": "ready" if ok else "failed", "profile": "none",
              "checks": checks, "failed": [] if ok else ["cpu_flag"]}
    pathlib.Path(serial).write_text("[    0.000000] Linux version 6.1 (fake)\n"
                                    "NESTCLOUD-L1 " + json.dumps(marker) + "\n")
    child = subprocess.Popen(["qemu-system-x86_64", "-c", "import time; time.sleep(900)",
                              *argv], executable=sys.executable, start_new_session=True,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    pathlib.Path(arg("-pidfile")).write_text(f"{child.pid}\n")
    sys.exit(0)
mode = os.environ.get("NC_FAKE_KVM", "fail")
assert arg("-serial") == "stdio", argv  # the probe reads the kernel's console on stdout
if mode == "ok":
    print("Linux version 6.1\nKernel panic - not syncing: VFS", flush=True)
    sys.exit(0)
if mode == "hang":
    print("Linux version 6.1\nProbing EDD (edd=off to disable)... ok", flush=True)
    time.sleep(60)
sys.stderr.write("kvm_buf_set_msrs: Assertion failed.\n")
sys.exit(134)
'''

FAKE_QEMU_IMG = r'''
import json, os, pathlib, sys
argv = sys.argv[1:]
log = os.environ.get("NC_FAKE_QEMU_LOG")
if log:
    with open(log, "a") as fh:
        fh.write(json.dumps(["qemu-img", *argv]) + "\n")
if argv[0] == "info":
    path = pathlib.Path(argv[-1])
    if not path.is_file():
        sys.stderr.write(f"qemu-img: Could not open '{path}': No such file\n")
        sys.exit(1)
    print(json.dumps({"format": "qcow2", "virtual-size": 4 << 30, "filename": str(path)}))
    sys.exit(0)
if argv[0] == "create":
    rest = [a for a in argv[1:] if a != "-q"]
    i = 0
    pos = []
    while i < len(rest):
        if rest[i] in ("-f", "-b", "-F"):
            i += 2
            continue
        pos.append(rest[i])
        i += 1
    pathlib.Path(pos[0]).write_text(json.dumps(argv))
    sys.exit(0)
sys.exit(2)
'''


@dataclass
class FakeQemu:
    bin: Path
    log: Path

    def calls(self, tool: str = "qemu-system-x86_64") -> list[list[str]]:
        if not self.log.exists():
            return []
        rows = [json.loads(line) for line in self.log.read_text().splitlines() if line]
        return [r for r in rows if r[0] == tool]


def _script(path: Path, body: str) -> None:
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def fake_qemu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeQemu]:
    """Fake qemu-system-x86_64 and qemu-img first on PATH; every process they leave that
    belongs to this test's state dir is killed afterwards."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    _script(bindir / "qemu-system-x86_64", FAKE_QEMU)
    _script(bindir / "qemu-img", FAKE_QEMU_IMG)
    log = tmp_path / "qemu-calls.jsonl"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("NC_FAKE_QEMU_LOG", str(log))
    yield FakeQemu(bindir, log)
    kill_seats(Path(os.environ["NESTCLOUD_STATE_DIR"]))


def seat_processes(under: Path) -> list[int]:
    """Pids of live processes whose command line names a file under ``under``."""
    want = str(under)
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().decode("utf-8", "replace")
            state = (d / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if want in cmd and state != "Z":
            out.append(int(d.name))
    return out


def kill_seats(under: Path) -> None:
    for pid in seat_processes(under):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.05)


def write_host(root: Path, *, cpus: int = 64, mem_gib: int = 256, avail_gib: int | None = None,
               flags: str = "fpu vme svm hypervisor", kvm: bool = False,
               nested: dict[str, str] | None = None, modules: tuple[str, ...] = (),
               boot_id: str = "boot-1") -> Path:
    """A recorded host: /proc/cpuinfo, /proc/meminfo, the boot id, and optionally /dev/kvm
    and kvm modules."""
    (root / "proc/sys/kernel/random").mkdir(parents=True, exist_ok=True)
    (root / "proc/sys/kernel/random/boot_id").write_text(boot_id + "\n")
    (root / "proc/cpuinfo").write_text("".join(
        f"processor\t: {i}\nflags\t\t: {flags}\n\n" for i in range(cpus)))
    avail = mem_gib if avail_gib is None else avail_gib
    (root / "proc/meminfo").write_text(f"MemTotal:       {mem_gib << 20} kB\n"
                                       f"MemFree:        {avail << 20} kB\n"
                                       f"MemAvailable:   {avail << 20} kB\n")
    if kvm:
        (root / "dev").mkdir(exist_ok=True)
        (root / "dev/kvm").write_text("")
    for mod in modules:
        (root / "sys/module" / mod / "parameters").mkdir(parents=True, exist_ok=True)
    for mod, value in (nested or {}).items():
        (root / "sys/module" / mod / "parameters").mkdir(parents=True, exist_ok=True)
        (root / "sys/module" / mod / "parameters/nested").write_text(value + "\n")
    return root


@pytest.fixture
def big_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A 64-CPU, 256 GiB host without KVM, for every reader of host facts in this test."""
    from providers.local import host as hostmod

    root = write_host(tmp_path / "host")
    real = hostmod.read_host
    monkeypatch.setattr(hostmod, "read_host", lambda _root="/": real(root))
    return root


@pytest.fixture
def fake_image(tmp_path: Path) -> Path:
    """A direct-boot image directory as scripts/build-test-image.sh makes one (fake bytes)."""
    d = tmp_path / "image"
    d.mkdir()
    (d / "disk.qcow2").write_bytes(b"QFI\xfb fake")
    (d / "vmlinuz").write_bytes(b"fake kernel")
    (d / "initrd.img").write_bytes(b"fake initrd")
    (d / "cmdline").write_text("console=ttyS0 root=/dev/vda ro\n")
    return d
