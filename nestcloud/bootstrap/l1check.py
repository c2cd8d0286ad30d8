#!/usr/bin/env python3
"""nestcloud L1 readiness check: can this machine really run KVM guests?

This file is shipped verbatim inside the user data (cloud-init ``write_files``) and run on
the L1 at the end of boot, and ``nestcloud doctor`` imports it to run the same checks on the
machine you are on. So it uses the Python standard library only and stays compatible with the
oldest python3 among the supported L1 images (3.9 on RHEL 9 and Amazon Linux 2023).

It prints exactly one marker line to stdout (and, best effort, to /dev/console)::

    NESTCLOUD-L1 {"status": "ready" | "failed", "checks": {...}, "failed": [...], ...}

Why each check exists (see FACTS.md, "The L1 hypervisor"): a visible /dev/kvm alone has been
seen backed by a paravirtual module with no vmx, so "ready" needs the CPU flag, the vendor KVM
module, the device node AND a real guest that runs instructions under KVM.

Every file access goes through ``Host`` with a configurable root, and every KVM system call
through ``KvmSys``: tests feed recorded /proc and /sys trees and a fake ioctl layer.
"""

from __future__ import annotations

import argparse
import errno
import glob
import json
import mmap
import os
import platform
import shutil
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

MARKER = "NESTCLOUD-L1"
PAYLOAD_VERSION = 1
PROFILES = ("kvm", "firecracker", "none")
DETAIL_MAX = 240  # keep the console line short: GetConsoleOutput only keeps the last 64 KB

# --- KVM ABI (x86_64, include/uapi/linux/kvm.h) -----------------------------------------
KVMIO = 0xAE


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (KVMIO << 8) | nr


KVM_API_VERSION = 12
KVM_GET_API_VERSION = _ioc(0, 0x00, 0)
KVM_CREATE_VM = _ioc(0, 0x01, 0)
KVM_GET_VCPU_MMAP_SIZE = _ioc(0, 0x04, 0)
KVM_CREATE_VCPU = _ioc(0, 0x41, 0)
KVM_SET_USER_MEMORY_REGION = _ioc(1, 0x46, 32)   # struct kvm_userspace_memory_region
KVM_SET_TSS_ADDR = _ioc(0, 0x47, 0)
KVM_RUN = _ioc(0, 0x80, 0)
KVM_GET_REGS = _ioc(2, 0x81, 144)                # struct kvm_regs: 18 x u64
KVM_SET_REGS = _ioc(1, 0x82, 144)
KVM_GET_SREGS = _ioc(2, 0x83, 312)               # struct kvm_sregs
KVM_SET_SREGS = _ioc(1, 0x84, 312)

KVM_EXIT_IO = 2
KVM_EXIT_HLT = 5
KVM_EXIT_IO_OUT = 1
EXIT_NAMES = {0: "UNKNOWN", 1: "EXCEPTION", 2: "IO", 3: "HYPERCALL", 4: "DEBUG", 5: "HLT",
              6: "MMIO", 8: "SHUTDOWN", 9: "FAIL_ENTRY", 17: "INTERNAL_ERROR"}

# struct kvm_userspace_memory_region: slot, flags, guest_phys_addr, memory_size, userspace_addr
MEMORY_REGION = struct.Struct("<IIQQQ")
RUN_EXIT_REASON_OFFSET = 8                # struct kvm_run: u8 x2, pad[6], then __u32 exit_reason
# kvm_run's exit union at offset 32, for KVM_EXIT_IO: direction, size, port, count, data_offset
RUN_IO = struct.Struct("<BBHIQ")
RUN_UNION_OFFSET = 32
REGS_RIP, REGS_RFLAGS = 16, 17            # indexes in struct kvm_regs (rax..r15, rip, rflags)

GUEST_PHYS = 0x1000
GUEST_SIZE = 0x1000
SMOKE_PORT = 0x3F8
SMOKE_BYTE = ord("N")
# 40 million instructions: milliseconds on hardware virtualization, ~20 s where KVM emulates
# the guest one instruction at a time (kvm_pvm with a stock guest; docs/bootstrap.md).
SMOKE_LOOPS = 20000000
# Real mode, at GUEST_PHYS: mov ecx, LOOPS; 1: dec ecx; jnz 1b; mov dx, 0x3f8; mov al, 'N';
# out dx, al; hlt
SMOKE_CODE = (b"\x66\xb9" + struct.pack("<I", SMOKE_LOOPS) + b"\x66\x49\x75\xfc"
              + bytes([0xBA, SMOKE_PORT & 0xFF, SMOKE_PORT >> 8, 0xB0, SMOKE_BYTE, 0xEE, 0xF4]))
# The TSS pages KVM needs for real mode on Intel without "unrestricted guest"; anywhere that
# does not overlap guest memory (fcntl.ioctl passes a signed C int, hence below 2**31).
TSS_ADDR = 0x7FFFD000
SMOKE_TIMEOUT_S = 5.0  # hardware KVM: milliseconds; instruction by instruction: ~20 s


class KvmSys:
    """The real system calls used by the smoke test. Tests pass an object with these methods."""

    def open(self, path: str) -> int:
        return os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))

    def close(self, fd: int) -> None:
        os.close(fd)

    def ioctl(self, fd: int, request: int, arg: int = 0) -> int:
        import fcntl

        return int(fcntl.ioctl(fd, request, arg))

    def ioctl_buf(self, fd: int, request: int, buf: bytearray) -> int:
        """An ioctl whose argument is a struct; ``buf`` is read and updated in place."""
        import fcntl

        return int(fcntl.ioctl(fd, request, buf, True))

    def guest_memory(self, size: int) -> Tuple[Any, int]:
        """Anonymous memory for the guest: (writable buffer, its user-space address)."""
        import ctypes

        mem = mmap.mmap(-1, size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                        mmap.PROT_READ | mmap.PROT_WRITE)
        address = ctypes.addressof(ctypes.c_char.from_buffer(mem))
        return mem, address

    def map_vcpu(self, fd: int, size: int) -> Any:
        """The vCPU's shared ``struct kvm_run``."""
        return mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)


class _SmokeTimeout(Exception):
    pass


def _exit_name(reason: int) -> str:
    return EXIT_NAMES.get(reason, str(reason))


def kvm_smoke_test(kvm: Optional[KvmSys] = None, device: str = "/dev/kvm",
                   timeout_s: float = SMOKE_TIMEOUT_S) -> Tuple[bool, str, Dict[str, Any]]:
    """Create a VM and a vCPU, run 40 million real-mode instructions, expect an OUT exit then
    HLT within ``timeout_s`` (a SIGALRM interrupts KVM_RUN: main thread only; elsewhere use
    nestcloud.bootstrap.kvmprobe, which runs this in a child process).

    Returns (ok, human detail, facts). Never raises for KVM failures: they are the result.
    """
    kvm = kvm or KvmSys()
    facts: Dict[str, Any] = {"exits": []}
    fds: List[int] = []
    step = "open " + device
    old_handler = None
    use_alarm = threading.current_thread() is threading.main_thread() and timeout_s > 0
    started = time.monotonic()

    def _on_alarm(signum: int, frame: Any) -> None:
        raise _SmokeTimeout()

    try:
        if use_alarm:
            old_handler = signal.signal(signal.SIGALRM, _on_alarm)
            signal.setitimer(signal.ITIMER_REAL, timeout_s)
        sys_fd = kvm.open(device)
        fds.append(sys_fd)
        step = "KVM_GET_API_VERSION"
        api = kvm.ioctl(sys_fd, KVM_GET_API_VERSION, 0)
        facts["api_version"] = api
        if api != KVM_API_VERSION:
            return False, "KVM API version %s, expected %s" % (api, KVM_API_VERSION), facts
        step = "KVM_CREATE_VM"
        vm_fd = kvm.ioctl(sys_fd, KVM_CREATE_VM, 0)
        fds.append(vm_fd)
        try:
            kvm.ioctl(vm_fd, KVM_SET_TSS_ADDR, TSS_ADDR)
        except OSError:
            pass  # AMD and unrestricted-guest Intel do not need it
        step = "guest memory"
        mem, address = kvm.guest_memory(GUEST_SIZE)
        mem[0:len(SMOKE_CODE)] = SMOKE_CODE
        step = "KVM_SET_USER_MEMORY_REGION"
        region = bytearray(MEMORY_REGION.pack(0, 0, GUEST_PHYS, GUEST_SIZE, address))
        kvm.ioctl_buf(vm_fd, KVM_SET_USER_MEMORY_REGION, region)
        step = "KVM_CREATE_VCPU"
        vcpu_fd = kvm.ioctl(vm_fd, KVM_CREATE_VCPU, 0)
        fds.append(vcpu_fd)
        step = "KVM_GET_VCPU_MMAP_SIZE"
        run_size = kvm.ioctl(sys_fd, KVM_GET_VCPU_MMAP_SIZE, 0)
        step = "mmap kvm_run"
        run = kvm.map_vcpu(vcpu_fd, run_size)
        step = "KVM_GET_SREGS"
        sregs = bytearray(312)
        kvm.ioctl_buf(vcpu_fd, KVM_GET_SREGS, sregs)
        struct.pack_into("<Q", sregs, 0, 0)    # cs.base = 0
        struct.pack_into("<H", sregs, 12, 0)   # cs.selector = 0
        step = "KVM_SET_SREGS"
        kvm.ioctl_buf(vcpu_fd, KVM_SET_SREGS, sregs)
        regs = bytearray(144)
        struct.pack_into("<Q", regs, REGS_RIP * 8, GUEST_PHYS)
        struct.pack_into("<Q", regs, REGS_RFLAGS * 8, 0x2)
        step = "KVM_SET_REGS"
        kvm.ioctl_buf(vcpu_fd, KVM_SET_REGS, regs)
        saw_out = False
        for _ in range(4):
            step = "KVM_RUN"
            kvm.ioctl(vcpu_fd, KVM_RUN, 0)
            reason = struct.unpack_from("<I", run, RUN_EXIT_REASON_OFFSET)[0]
            facts["exits"].append(_exit_name(reason))
            if reason == KVM_EXIT_IO:
                direction, size, port, count, offset = RUN_IO.unpack_from(run, RUN_UNION_OFFSET)
                data = run[offset] if size == 1 and offset < len(run) else None
                if (direction == KVM_EXIT_IO_OUT and port == SMOKE_PORT and size == 1
                        and data == SMOKE_BYTE):
                    saw_out = True
                    continue
                return False, ("unexpected I/O exit (dir %s port %#x size %s data %r)"
                               % (direction, port, size, data)), facts
            if reason == KVM_EXIT_HLT:
                if saw_out:
                    facts["seconds"] = round(time.monotonic() - started, 3)
                    return True, ("a real guest ran 40 million instructions under KVM in "
                                  "%.2f s: exits OUT %#x then HLT" % (facts["seconds"],
                                                                      SMOKE_PORT)), facts
                return False, "guest halted without the expected OUT exit", facts
            return False, ("guest stopped with exit %s (expected IO then HLT)"
                           % _exit_name(reason)), facts
        return False, "guest never halted (exits: %s)" % ", ".join(facts["exits"]), facts
    except _SmokeTimeout:
        detail = "%s did not return within %ss" % (step, timeout_s)
        if step == "KVM_RUN":
            detail += (": 40 million guest instructions take milliseconds with hardware "
                       "virtualization; this KVM emulates them (as kvm_pvm does for a stock "
                       "kernel, which then seems to hang)")
        return False, detail, facts
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        return False, "%s failed: %s (%s)" % (step, exc.strerror or exc, name), facts
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            if old_handler is not None:
                signal.signal(signal.SIGALRM, old_handler)
        for fd in reversed(fds):
            try:
                kvm.close(fd)
            except OSError:
                pass


# --- the host: files under a root, commands --------------------------------------------

RunResult = Tuple[int, str]


def _run_real(argv: Sequence[str], timeout_s: float) -> Optional[RunResult]:
    """(exit code, stdout+stderr), or None when the program is not installed."""
    if shutil.which(argv[0]) is None and not os.path.exists(argv[0]):
        return None
    try:
        # stdin closed: a QEMU with -serial stdio must not take over the caller's terminal.
        proc = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        out = exc.output or b""
        return 124, out.decode("utf-8", "replace") + "\n(timed out after %ss)" % timeout_s
    except OSError as exc:
        return 127, str(exc)
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


class Host:
    """The machine being checked: files under ``root`` and commands it can run."""

    def __init__(self, root: str = "/", *, stat_fn: Callable[[str], os.stat_result] = os.stat,
                 access_fn: Callable[[str, int], bool] = os.access,
                 run: Callable[[Sequence[str], float], Optional[RunResult]] = _run_real,
                 which: Callable[[str], Optional[str]] = shutil.which,
                 kvm: Optional[KvmSys] = None,
                 smoke_timeout_s: float = SMOKE_TIMEOUT_S) -> None:
        self.root = root
        self.smoke_timeout_s = smoke_timeout_s
        # (device, timeout) -> kvm_smoke_test's result; None: run it in this process.
        self.smoke: Optional[Callable[[str, float], Tuple[bool, str, Dict[str, Any]]]] = None
        self.which = which
        self.stat_fn = stat_fn
        self.access_fn = access_fn
        self.run = run
        self.kvm = kvm

    def path(self, p: str) -> str:
        return os.path.join(self.root, p.lstrip("/"))

    def read(self, p: str) -> Optional[str]:
        try:
            with open(self.path(p), "r", encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:
            return None

    def exists(self, p: str) -> bool:
        return os.path.exists(self.path(p))

    def listdir(self, p: str) -> List[str]:
        try:
            return sorted(os.listdir(self.path(p)))
        except OSError:
            return []


def _check(ok: Optional[bool], detail: str, *, optional: bool = False,
           **facts: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {"ok": ok, "detail": detail[:DETAIL_MAX]}
    if optional:
        out["optional"] = True
    out.update({k: v for k, v in facts.items() if v is not None})
    return out


def cpu_info(host: Host) -> Dict[str, Any]:
    """Vendor and flags of the first CPU in /proc/cpuinfo."""
    text = host.read("/proc/cpuinfo") or ""
    vendor, model, flags = None, None, []  # type: Optional[str], Optional[str], List[str]
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and vendor is None:
            vendor = value.strip()
        elif key == "model name" and model is None:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = value.split()
    return {"vendor": vendor, "model": model, "flags": flags, "readable": bool(text)}


def check_virt_flag(host: Host) -> Dict[str, Any]:
    cpu = cpu_info(host)
    if not cpu["readable"]:
        return _check(False, "/proc/cpuinfo is not readable")
    flags = set(cpu["flags"])
    if "vmx" in flags:
        return _check(True, "vmx: Intel VT-x is exposed to this machine", flag="vmx")
    if "svm" in flags:
        return _check(True, "svm: AMD-V is exposed to this machine", flag="svm")
    where = ("this is a VM ('hypervisor' flag) and its hypervisor does not pass "
             "virtualization through: nested virtualization is off or unsupported here"
             if "hypervisor" in flags else "the CPU or firmware has virtualization off")
    return _check(False, "no vmx or svm flag in /proc/cpuinfo: " + where)


def _module_param(host: Host, module: str, param: str) -> Optional[str]:
    value = host.read("/sys/module/%s/parameters/%s" % (module, param))
    return value.strip() if value is not None else None


def check_kvm_module(host: Host) -> Dict[str, Any]:
    loaded = [m for m in ("kvm_intel", "kvm_amd") if host.exists("/sys/module/" + m)]
    others = [m for m in host.listdir("/sys/module")
              if m.startswith("kvm_") and m not in ("kvm_intel", "kvm_amd")]
    if loaded:
        nested = _module_param(host, loaded[0], "nested")
        detail = "%s is loaded" % loaded[0]
        if nested is not None:
            detail += ("; its nested=%s only decides whether guests of this machine can "
                       "run hypervisors themselves" % nested)
        return _check(True, detail, module=loaded[0], nested=nested)
    if others:
        return _check(False, "neither kvm_intel nor kvm_amd is loaded, only %s: /dev/kvm (if "
                             "any) is backed by a paravirtual module, not hardware "
                             "virtualization" % ", ".join(others), module=others[0])
    return _check(False, "neither kvm_intel nor kvm_amd is loaded")


def check_dev_kvm(host: Host) -> Dict[str, Any]:
    path = host.path("/dev/kvm")
    try:
        st = host.stat_fn(path)
    except OSError:
        return _check(False, "/dev/kvm does not exist")
    if not stat.S_ISCHR(st.st_mode):
        return _check(False, "/dev/kvm exists but is not a character device")
    dev = "%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
    rw = host.access_fn(path, os.R_OK | os.W_OK)
    detail = "/dev/kvm is a character device (%s)" % dev
    if not rw:
        detail += ("; not readable and writable by uid %d: add the user to the 'kvm' group"
                   % os.getuid())
    return _check(True, detail, device=dev, rw=rw)


def check_smoke(host: Host, dev_kvm: Dict[str, Any]) -> Dict[str, Any]:
    if not dev_kvm["ok"]:
        return _check(False, "not run: /dev/kvm is missing")
    if not dev_kvm.get("rw", True):
        return _check(False, "not run: /dev/kvm is not readable and writable by this user")
    dev = host.path("/dev/kvm")
    ok, detail, facts = (host.smoke(dev, host.smoke_timeout_s) if host.smoke else
                         kvm_smoke_test(host.kvm, dev, host.smoke_timeout_s))
    return _check(ok, detail, exits=facts.get("exits") or None, seconds=facts.get("seconds"))


def check_libvirt(host: Host) -> Dict[str, Any]:
    # virsh answering proves the daemon (libvirtd on Debian/Ubuntu, socket-activated virtqemud
    # on RHEL 9) is up and can talk to QEMU, whatever the distribution calls the service.
    res = host.run(["virsh", "--connect", "qemu:///system", "version"], 60)
    if res is None:
        return _check(False, "virsh is not installed (libvirt client packages missing)")
    rc, out = res
    if rc != 0:
        return _check(False, "libvirt does not answer: virsh exit %d: %s"
                             % (rc, " ".join(out.split())[:160]))
    return _check(True, "libvirt answers on qemu:///system")


def parse_virt_host_validate(output: str) -> Tuple[List[str], List[str]]:
    """(FAIL lines, WARN lines) from `virt-host-validate qemu` output."""
    fails, warns = [], []
    for line in output.splitlines():
        name, sep, verdict = line.rpartition(":")
        if not sep:
            continue
        verdict = verdict.strip()
        label = " ".join(name.split())
        if verdict.startswith("FAIL"):
            fails.append(label)
        elif verdict.startswith("WARN"):
            warns.append(label)
    return fails, warns


def check_virt_host_validate(host: Host) -> Dict[str, Any]:
    # A supporting signal: it exits non-zero only on FAIL; WARN (e.g. no IOMMU) is normal in
    # clouds and must not fail the L1.
    res = host.run(["virt-host-validate", "qemu"], 120)
    if res is None:
        return _check(None, "virt-host-validate is not installed: skipped", optional=True)
    rc, out = res
    fails, warns = parse_virt_host_validate(out)
    if rc != 0 or fails:
        return _check(False, "FAIL: " + "; ".join(fails or ["exit %d" % rc]), optional=True)
    detail = "no FAIL"
    if warns:
        detail += " (%d WARN, normal in clouds)" % len(warns)
    return _check(True, detail, optional=True)


def check_firecracker(host: Host) -> Dict[str, Any]:
    res = host.run(["firecracker", "--version"], 30)
    if res is None:
        return _check(False, "firecracker is not on PATH (the download at boot failed?)")
    rc, out = res
    first = out.strip().splitlines()[0] if out.strip() else ""
    if rc != 0 or not first.lower().startswith("firecracker"):
        return _check(False, "firecracker --version: exit %d %s" % (rc, first[:120]))
    return _check(True, first)


def _guest_kernel(host: Host) -> Optional[str]:
    mine = host.path("/boot/vmlinuz-" + platform.release())
    if os.path.exists(mine):
        return mine
    kernels = sorted(glob.glob(host.path("/boot/vmlinuz-*")))
    return kernels[-1] if kernels else None


QEMU_BINARIES = ("/usr/libexec/qemu-kvm", "qemu-system-x86_64")  # RHEL's, everyone else's


def kernel_boot_argv(qemu: str, kernel: str, *, memory_mib: int = 256) -> List[str]:
    """QEMU booting ``kernel`` alone (no initrd, no disk) under KVM, which has no software
    fallback; ``panic=-1 -no-reboot``: QEMU exits at the root-mount panic."""
    return [qemu, "-machine", "accel=kvm", "-cpu", "host", "-m", str(memory_mib), "-smp", "1",
            "-nodefaults", "-display", "none", "-no-reboot", "-serial", "stdio",
            "-kernel", kernel, "-append", "console=ttyS0 panic=-1"]


def probe_kernel_boot(qemu: str, kernel: str, *, timeout_s: float = 30.0,
                      run: Callable[[Sequence[str], float], Optional[RunResult]] = _run_real,
                      ) -> Dict[str, Any]:
    """Boot ``kernel`` under KVM to its root-mount panic (its whole early boot ran), killed
    after ``timeout_s``: a /dev/kvm can hang a stock kernel (FACTS.md). A check dict; used by
    ``--l2-smoke``, ``nestcloud doctor`` and providers choosing KVM or emulation."""
    started = time.monotonic()
    res = run(kernel_boot_argv(qemu, kernel), timeout_s)
    took = round(time.monotonic() - started, 1)
    if res is None:
        return _check(False, "could not run " + qemu)
    rc, out = res
    booted = "Linux version" in out
    reached = "Kernel panic" in out or "VFS: Unable to mount root" in out
    if booted and reached:
        return _check(True, "a Linux kernel booted under KVM to the expected root-mount panic "
                            "in %ss" % took, seconds=took)
    if rc == 124:
        lines = [ln.strip() for ln in out.splitlines()
                 if ln.strip() and not ln.startswith("(timed out")]
        return _check(False, "a Linux kernel made no boot progress under KVM in %ss (%s): "
                             "this KVM cannot run a stock kernel"
                             % (timeout_s, "it printed nothing" if not booted else
                                "it never reached the root-mount stage; last: %s"
                                % lines[-1][:120] if lines else "?"), seconds=took)
    tail = " ".join(out.split())[-160:]
    return _check(False, "the kernel boot under KVM did not reach the root-mount stage "
                         "(exit %d): %s" % (rc, tail), seconds=took)


def check_l2_boot(host: Host, timeout_s: float = 180) -> Dict[str, Any]:
    """Boot this machine's own kernel as a tiny L2 guest under KVM, with no disk."""
    qemu = next((q for q in QEMU_BINARIES if host.which(q)), None)
    if qemu is None:
        return _check(False, "no QEMU binary found for the L2 boot")
    kernel = _guest_kernel(host)
    if kernel is None:
        return _check(False, "no kernel under /boot to boot as the L2 guest")
    return probe_kernel_boot(qemu, kernel, timeout_s=timeout_s, run=host.run)


def run_checks(host: Host, profile: str = "kvm", *, l2_smoke: bool = False) -> Dict[str, Any]:
    """All checks for ``profile``; returns the marker payload."""
    if profile not in PROFILES:
        raise ValueError("unknown profile %r (one of %s)" % (profile, ", ".join(PROFILES)))
    checks: Dict[str, Dict[str, Any]] = {}
    checks["cpu_flag"] = check_virt_flag(host)
    checks["kvm_module"] = check_kvm_module(host)
    checks["dev_kvm"] = check_dev_kvm(host)
    checks["kvm_smoke"] = check_smoke(host, checks["dev_kvm"])
    if profile == "kvm":
        checks["libvirt"] = check_libvirt(host)
        checks["virt_host_validate"] = check_virt_host_validate(host)
    if profile == "firecracker":
        checks["firecracker"] = check_firecracker(host)
    if l2_smoke:
        if checks["kvm_smoke"]["ok"] and profile == "kvm":
            checks["l2_boot"] = check_l2_boot(host)
        elif profile != "kvm":
            checks["l2_boot"] = _check(False, "the L2 boot test is available for the kvm "
                                              "profile only")
        else:
            checks["l2_boot"] = _check(False, "not run: the KVM smoke test failed")
    failed = [name for name, c in checks.items() if c["ok"] is False and not c.get("optional")]
    warnings = [name for name, c in checks.items() if c["ok"] is False and c.get("optional")]
    payload: Dict[str, Any] = {
        "status": "failed" if failed else "ready",
        "profile": profile,
        "checks": checks,
        "failed": failed,
        "v": PAYLOAD_VERSION,
    }
    if warnings:
        payload["warnings"] = warnings
    return payload


def format_marker(payload: Dict[str, Any]) -> str:
    """The one console line: the marker word, a space, the JSON payload (always one line)."""
    return MARKER + " " + json.dumps(payload, sort_keys=True)


def _emit(line: str, console: Optional[str]) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    if console:
        # cloud-final's output already reaches the console; writing there too makes the line
        # visible on images whose cloud-init output goes to the journal only.
        try:
            with open(console, "w") as fh:
                fh.write(line + "\n")
        except OSError:
            pass


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="nestcloud L1 readiness check")
    ap.add_argument("--profile", choices=PROFILES, default="kvm")
    ap.add_argument("--l2-smoke", action="store_true", help="also boot a tiny L2 guest")
    ap.add_argument("--root", default="/", help="read /proc and /sys under this root")
    ap.add_argument("--console", default="/dev/console",
                    help="also write the marker here ('' to skip)")
    ap.add_argument("--state", default="/var/lib/nestcloud/l1.json",
                    help="also save the payload here ('' to skip)")
    args = ap.parse_args(argv)
    try:
        payload = run_checks(Host(args.root), args.profile, l2_smoke=args.l2_smoke)
    except Exception as exc:  # the marker must come out even when the check itself breaks
        payload = {"status": "failed", "profile": args.profile, "checks": {},
                   "failed": ["check_error"], "error": ("%s: %s" % (type(exc).__name__,
                                                                     exc))[:DETAIL_MAX],
                   "v": PAYLOAD_VERSION}
    if args.state:
        try:
            os.makedirs(os.path.dirname(args.state), exist_ok=True)
            with open(args.state, "w") as fh:
                json.dump(payload, fh, indent=2, sort_keys=True)
        except OSError:
            pass
    _emit(format_marker(payload), args.console or None)
    if payload["status"] == "ready":
        return 0
    # Exit 1 on purpose: cloud-init then calls this L1 failed too, as `nestcloud wait` does
    # (docs/bootstrap.md); this line says why, beside cloud-init's scripts-user warning.
    sys.stderr.write("nestcloud: this L1 cannot host VMs (failed checks: %s); exit 1, so "
                     "cloud-init reports scripts-user as failed\n"
                     % ", ".join(payload.get("failed") or ["?"]))
    return 1


if __name__ == "__main__":
    sys.exit(main())
