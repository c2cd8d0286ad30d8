"""QEMU building blocks for local L1 hosts: seed, overlay, command line, KVM probe, start/stop.

No provider contract here, only functions a provider calls: each takes paths and settings and
either returns data or runs one program. Sources: FACTS.md, "A local L1 under QEMU" (virtio-net
because Debian's cloud kernel has no e1000 driver; TCG's default CPU exposes AMD-V; a /dev/kvm
that accepts ``-accel kvm`` may still hang a stock kernel) and docs/local-boot.md.

Every QEMU process started here carries ``-pidfile <absolute path>`` on its command line, and
``stop_vm`` kills a pid only when its command line is a qemu-system binary with exactly that
``-pidfile`` argument: a stale pid file can never make us kill someone else's process.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

QEMU = "qemu-system-x86_64"
QEMU_IMG = "qemu-img"
Accel = Literal["kvm", "tcg"]

# Every x86 virtualization extension a CPU model can carry: AMD-V and VT-x.
VIRT_FLAGS = ("svm", "vmx")
# QEMU's default x86 model under TCG: it carries svm, so an emulated L1 can run KVM guests.
TCG_CPU = "qemu64"
# Under KVM the guest sees the host CPU (and its vmx/svm when the host allows nesting).
KVM_CPU = "host"


class QemuError(RuntimeError):
    """A QEMU tool failed or is missing; the message says which and why (for the user)."""


@dataclass(frozen=True)
class DirectBoot:
    """Boot a kernel directly (``-kernel/-initrd/-append``): no firmware, no boot loader."""

    kernel: Path
    initrd: Path | None
    append: str


@dataclass(frozen=True)
class VmConfig:
    """One L1 as QEMU runs it. ``pidfile``'s absolute path identifies the process later."""

    disk: Path
    serial_log: Path
    pidfile: Path
    seed: Path | None = None
    name: str = "nestcloud"
    memory_mib: int = 2048
    vcpus: int = 2
    accel: Accel = "tcg"
    # False: no vmx/svm in the guest (an L1 that cannot run a hypervisor; tests the failure).
    virtualization: bool = True
    cpu: str | None = None           # a QEMU -cpu value; overrides ``virtualization``
    ssh_port: int | None = None      # 127.0.0.1:ssh_port forwards to the guest's port 22
    boot: DirectBoot | None = None   # None: the firmware (SeaBIOS) boots the disk
    daemonize: bool = True
    qemu: str = QEMU


def cpu_model(accel: Accel, virtualization: bool = True) -> str:
    """The ``-cpu`` value: host under KVM, qemu64 under TCG; minus vmx and svm when asked."""
    base = KVM_CPU if accel == "kvm" else TCG_CPU
    if virtualization:
        return base
    return ",".join([base] + [f"-{flag}" for flag in VIRT_FLAGS])


def qemu_command(cfg: VmConfig) -> list[str]:
    """The full qemu-system-x86_64 argv for ``cfg`` (no shell quoting needed: it is a list)."""
    if cfg.vcpus < 1 or cfg.memory_mib < 128:
        raise ValueError(f"vcpus {cfg.vcpus} / memory {cfg.memory_mib} MiB: too small for an L1")
    # -nodefaults: no default e1000 NIC (no driver in Debian's cloud kernel), no VGA, no
    # monitor on a virtual console; each device we need is added explicitly below.
    cmd = [cfg.qemu, "-name", cfg.name.replace(",", ",,"), "-nodefaults", "-display", "none",
           "-accel", cfg.accel, "-cpu", cfg.cpu or cpu_model(cfg.accel, cfg.virtualization),
           "-smp", str(cfg.vcpus), "-m", str(cfg.memory_mib),
           "-chardev", f"file,id=serial0,path={Path(cfg.serial_log).absolute()}",
           "-serial", "chardev:serial0",
           "-drive", f"file={_drive_path(cfg.disk)},if=virtio,format=qcow2,discard=unmap"]
    if cfg.seed is not None:
        # A second virtio disk: cloud-init finds the NoCloud seed by its label (cidata).
        cmd += ["-drive", f"file={_drive_path(cfg.seed)},if=virtio,format=raw,readonly=on"]
    nic = "user,model=virtio-net-pci"
    if cfg.ssh_port is not None:
        nic += f",hostfwd=tcp:127.0.0.1:{int(cfg.ssh_port)}-:22"
    cmd += ["-nic", nic, "-device", "virtio-rng-pci"]
    if cfg.boot is not None:
        cmd += ["-kernel", str(Path(cfg.boot.kernel).absolute()), "-append", cfg.boot.append]
        if cfg.boot.initrd is not None:
            cmd += ["-initrd", str(Path(cfg.boot.initrd).absolute())]
    cmd += ["-pidfile", str(Path(cfg.pidfile).absolute())]
    if cfg.daemonize:
        cmd.append("-daemonize")
    return cmd


def _drive_path(path: Path) -> str:
    # QEMU's -drive splits options on commas; a comma in a file name is written doubled.
    return str(Path(path).absolute()).replace(",", ",,")


def meta_data(instance_id: str, hostname: str | None = None) -> str:
    """NoCloud meta-data. JSON is YAML, so every value is quoted safely."""
    doc = {"instance-id": instance_id}
    if hostname:
        doc["local-hostname"] = hostname
    return json.dumps(doc, indent=1) + "\n"


def write_seed_iso(path: Path, user_data: bytes, meta: str | bytes, *,
                   network_config: bytes | None = None) -> Path:
    """A NoCloud seed: an ISO 9660 volume labelled ``cidata`` with user-data and meta-data.

    Written with pycdlib (pure Python; the ``local`` extra), with Rock Ridge and Joliet names
    so Linux sees ``user-data`` and ``meta-data`` exactly. ``user_data`` may be gzipped:
    cloud-init unpacks it.
    """
    try:
        import pycdlib
    except ImportError:
        raise QemuError("writing a NoCloud seed needs pycdlib: pip install "
                        "'nestcloud[local]'") from None
    files: list[tuple[str, str, bytes]] = [
        ("USERDATA", "user-data", user_data),
        ("METADATA", "meta-data", meta.encode("utf-8") if isinstance(meta, str) else meta),
    ]
    if network_config is not None:
        files.append(("NETCFG", "network-config", network_config))
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    try:
        for iso_name, name, data in files:
            iso.add_fp(io.BytesIO(data), len(data), f"/{iso_name}.;1", rr_name=name,
                       joliet_path=f"/{name}")
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        iso.write(str(tmp))
    finally:
        iso.close()
    os.replace(tmp, path)
    return path


def create_overlay(base: Path, path: Path, *, size: str | None = None,
                   base_format: str = "qcow2", qemu_img: str = QEMU_IMG) -> Path:
    """A copy-on-write qcow2 over ``base`` (which is never written; ``base_format`` is its
    format, qcow2 or raw). ``size`` grows the disk."""
    base = Path(base).absolute()
    if not base.is_file():
        raise QemuError(f"base image {base} does not exist")
    cmd = [qemu_img, "create", "-q", "-f", "qcow2", "-b", str(base), "-F", base_format,
           str(path)]
    if size:
        cmd.append(size)
    _run(cmd, what="qemu-img create")
    return Path(path)


def _run(cmd: Sequence[str], *, what: str, timeout: float = 60.0) -> str:
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                              check=False)
    except FileNotFoundError:
        raise QemuError(f"{what}: {cmd[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise QemuError(f"{what} did not finish within {timeout:g} s") from None
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise QemuError(f"{what} failed (exit {proc.returncode}): "
                        f"{detail[-1] if detail else 'no message'}")
    return proc.stdout


def missing_tools(names: Sequence[str] = (QEMU, QEMU_IMG)) -> list[str]:
    """The programs among ``names`` that are not on PATH."""
    return [name for name in names if shutil.which(name) is None]


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a hostfwd; QEMU fails loudly if taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- processes ---------------------------------------------------------------------------

def start_vm(cfg: VmConfig, *, timeout: float = 60.0) -> int:
    """Start a daemonized QEMU for ``cfg`` and return its pid (read from the pid file).

    QEMU's foreground part exits once the VM is set up, with a message and a non-zero status
    when it cannot start (no KVM access, a taken port, a missing file): that becomes QemuError.
    """
    if not cfg.daemonize:
        raise ValueError("start_vm runs a daemonized QEMU; use qemu_command for a foreground one")
    Path(cfg.pidfile).unlink(missing_ok=True)
    _run(qemu_command(cfg), what="qemu", timeout=timeout)
    pid = read_pid(cfg.pidfile)
    if pid is None:
        raise QemuError(f"qemu started but wrote no pid to {cfg.pidfile}")
    return pid


def read_pid(pidfile: Path) -> int | None:
    """The pid in ``pidfile``, or None when it is missing or not a number."""
    try:
        text = Path(pidfile).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [arg.decode("utf-8", "surrogateescape") for arg in raw.split(b"\0") if arg]


def is_our_qemu(pid: int, pidfile: Path) -> bool:
    """True when ``pid`` is a running qemu-system process started with ``-pidfile pidfile``."""
    argv = _cmdline(pid)
    if not argv or not os.path.basename(argv[0]).startswith("qemu-system"):
        return False
    want = str(Path(pidfile).absolute())
    return any(a == "-pidfile" and b == want for a, b in zip(argv, argv[1:]))


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # A zombie (state Z after the last ')') has exited; only its parent's wait() is missing.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def stop_vm(pidfile: Path, *, timeout: float = 10.0) -> bool:
    """Stop the QEMU that ``pidfile`` names, if it is ours: SIGTERM, then SIGKILL after
    ``timeout``. Returns True when a process was stopped, False when none of ours ran.

    SIGTERM makes QEMU exit at once (like pulling the power): right for a seat whose disk
    overlay is deleted next.
    """
    pid = read_pid(pidfile)
    if pid is None or not is_our_qemu(pid, pidfile):
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return True
            time.sleep(0.05)
    raise QemuError(f"qemu pid {pid} did not exit after SIGKILL")


# --- console -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ConsoleWait:
    """How a wait on the serial log ended: ``matched``, ``exited`` (QEMU gone) or ``timeout``."""

    outcome: Literal["matched", "exited", "timeout"]
    text: str
    seconds: float

    @property
    def matched(self) -> bool:
        return self.outcome == "matched"


def read_console(path: Path) -> str:
    """The serial log so far (bytes that are not UTF-8 replaced), '' when there is none yet."""
    try:
        return Path(path).read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def wait_for_console(path: Path, predicate: Callable[[str], bool], *, timeout: float,
                     pid: int | None = None, poll: float = 0.5) -> ConsoleWait:
    """Poll the serial log until ``predicate(text)`` holds, QEMU ``pid`` exits, or timeout."""
    start = time.monotonic()
    while True:
        text = read_console(path)
        took = time.monotonic() - start
        if predicate(text):
            return ConsoleWait("matched", text, took)
        if pid is not None and not _alive(pid):
            return ConsoleWait("exited", read_console(path), took)
        if took >= timeout:
            return ConsoleWait("timeout", text, took)
        time.sleep(poll)


# --- KVM probe ---------------------------------------------------------------------------

@dataclass(frozen=True)
class KvmProbe:
    """Whether KVM really runs a Linux guest here; ``reason`` says why (for doctor and ls)."""

    usable: bool
    reason: str
    seconds: float


def probe_kvm(kernel: Path, *, timeout: float = 30.0, device: str = "/dev/kvm",
              qemu: str = QEMU) -> KvmProbe:
    """Whether KVM here really runs a guest: ``kernel`` booted under ``-accel kvm`` to its
    root-mount panic, killed after ``timeout`` seconds (the readiness check's own probe,
    nestcloud.bootstrap.l1check.probe_kernel_boot).

    A /dev/kvm that exists, opens and even runs a few real-mode instructions can still hang a
    stock kernel at 100% CPU forever (kvm_pvm, FACTS.md): only a real kernel boot tells.
    A real KVM boots to the panic in about a second.
    """
    from nestcloud.bootstrap.l1check import probe_kernel_boot

    if not os.path.exists(device):
        return KvmProbe(False, f"{device} does not exist (no KVM module loaded)", 0.0)
    if not os.access(device, os.R_OK | os.W_OK):
        return KvmProbe(False, f"{device} is not readable and writable by this user "
                               "(add the user to the kvm group)", 0.0)
    if not Path(kernel).is_file():
        raise QemuError(f"KVM probe kernel {kernel} does not exist")
    if shutil.which(qemu) is None:
        raise QemuError(f"KVM probe: {qemu} is not installed")
    start = time.monotonic()
    found = probe_kernel_boot(qemu, str(kernel), timeout_s=timeout)
    return KvmProbe(bool(found["ok"]), str(found["detail"]), time.monotonic() - start)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:160] if lines else ""
