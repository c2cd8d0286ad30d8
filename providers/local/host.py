"""What this machine can give local L1 seats: CPUs, memory, and how KVM looks (cheaply).

Everything is read from files under a root (``/`` by default; tests pass a recorded tree),
never by running anything: ``check`` and ``plan`` call :func:`read_host` through the
provider's ``rules`` and must stay fast. Whether KVM really runs a guest is a different,
slower question (a kernel boot): ``qemu.probe_kvm``, asked only by a launch.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

# The vendor modules whose ``nested`` parameter says whether a KVM guest sees vmx/svm.
KVM_VENDOR_MODULES = ("kvm_intel", "kvm_amd")


@dataclass(frozen=True)
class HostFacts:
    """This machine, as local seats see it."""

    cpus: int                     # CPUs this process may run on
    memory_mib: int               # MemTotal
    available_mib: int            # MemAvailable: what new seats can take without swapping
    flags: frozenset[str] = field(default_factory=frozenset)  # /proc/cpuinfo flags
    kvm_modules: tuple[str, ...] = ()   # loaded kvm* modules (kvm, kvm_intel, kvm_pvm...)
    nested: dict[str, bool] = field(default_factory=dict)  # vendor module -> nested on?
    dev_kvm: bool = False         # /dev/kvm exists
    platform: str = "linux"       # sys.platform-like: only "linux" can host seats

    @property
    def is_vm(self) -> bool:
        """This machine is itself a virtual machine (the CPU says so)."""
        return "hypervisor" in self.flags

    @property
    def virt_flag(self) -> str | None:
        """vmx or svm when the CPU carries one (KVM can then accelerate seats)."""
        return next((f for f in ("vmx", "svm") if f in self.flags), None)

    @property
    def kvm_nesting(self) -> bool | None:
        """Whether a seat under KVM would see vmx/svm: the vendor module's ``nested``
        parameter. None when no vendor module is loaded (then KVM, if any, is something
        else, e.g. kvm_pvm, and only a probe can tell what it runs)."""
        if not self.nested:
            return None
        return any(self.nested.values())


def _read(root: Path, rel: str) -> str | None:
    try:
        return (root / rel).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _meminfo(text: str | None) -> dict[str, int]:
    """/proc/meminfo as {key: KiB}."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key.strip()] = int(parts[0])
    return out


def _flags(cpuinfo: str | None) -> frozenset[str]:
    for line in (cpuinfo or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def _cpus(root: Path) -> int:
    if root == Path("/"):
        try:
            return len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            return os.cpu_count() or 1
    # A recorded tree: the processors /proc/cpuinfo lists.
    text = _read(root, "proc/cpuinfo") or ""
    return max(1, sum(1 for line in text.splitlines()
                      if line.partition(":")[0].strip() == "processor"))


def read_host(root: str | os.PathLike[str] = "/") -> HostFacts:
    """The facts under ``root`` (a live machine at ``/``, or a recorded tree)."""
    base = Path(root)
    mem = _meminfo(_read(base, "proc/meminfo"))
    total = mem.get("MemTotal", 0) // 1024
    modules_dir = base / "sys/module"
    try:
        loaded = tuple(sorted(m for m in os.listdir(modules_dir) if m.startswith("kvm")))
    except OSError:
        loaded = ()
    nested: dict[str, bool] = {}
    for mod in KVM_VENDOR_MODULES:
        value = _read(base, f"sys/module/{mod}/parameters/nested")
        if value is not None:
            nested[mod] = value.strip() in ("Y", "y", "1")
    return HostFacts(cpus=_cpus(base), memory_mib=total,
                     available_mib=mem.get("MemAvailable", mem.get("MemFree", 0)) // 1024,
                     flags=_flags(_read(base, "proc/cpuinfo")), kvm_modules=loaded,
                     nested=nested, dev_kvm=os.path.exists(base / "dev/kvm"),
                     platform=sys.platform if base == Path("/") else "linux")
