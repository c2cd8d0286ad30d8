"""`nestcloud doctor`: the L1 readiness checks on this machine, each explained, and whether
this machine can host local L1s (QEMU guests) with KVM, only with emulation, or not at all.

Pure inspection of files under a root (plus the KVM smoke test through l1check's ioctl layer,
and, where KVM passed it, one bounded QEMU boot of this machine's kernel), so tests feed
recorded /proc and /sys trees and fake commands.
"""

from __future__ import annotations

import os
import platform as _platform
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from nestcloud.bootstrap import kvmprobe, l1check
from nestcloud.render import Block, Rendered, to_table

AZURE_CHASSIS_ASSET_TAG = "7783-7084-3265-9085-8269-3286-77"  # as cloud-init identifies Azure
_CLOCKSOURCES = {"kvm-clock": "KVM (includes AWS Nitro)",
                 "hyperv_clocksource_tsc_page": "Hyper-V (includes Azure)",
                 "xen": "Xen"}


class DoctorItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    ok: bool | None          # None: information, not a pass/fail
    optional: bool = False   # a supporting signal: a failure here does not make it not-ready
    summary: str
    explanation: str


class Placement(BaseModel):
    model_config = ConfigDict(extra="forbid")

    is_vm: bool
    platform: str
    depth: str
    evidence: list[str] = Field(default_factory=list)


class LocalHost(BaseModel):
    """This machine as a host for local L1s (QEMU guests on this machine)."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["kvm", "emulation", "none"]
    summary: str
    qemu: str | None = None
    missing: list[str] = Field(default_factory=list)
    # Whether L1s started here with KVM see vmx/svm themselves (the host module's nested=).
    l1_virtualization: bool | None = None
    evidence: list[str] = Field(default_factory=list)


class DoctorReport(Rendered, BaseModel):
    model_config = ConfigDict(extra="forbid")
    columns: ClassVar[tuple[str, ...]] = ("check", "result", "summary", "why it matters")

    ready: bool
    verdict: str
    placement: Placement
    items: list[DoctorItem]
    payload: dict[str, Any]
    local_host: LocalHost

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def rows(self) -> list[list[str]]:
        return [[i.name, _mark(i).strip(), i.summary, i.explanation] for i in self.items]

    def caption(self) -> str:
        return f"nestcloud doctor: {self.verdict}"

    def text(self, **options: Any) -> list[Block]:
        lines: list[Block] = [self.caption(), ""]
        for item in self.items:
            lines.append(f"[{_mark(item)}] {item.name}: {item.summary}")
            if item.explanation:
                lines.append(f"       {item.explanation}")
        return lines


def _mark(item: DoctorItem) -> str:
    return {True: "ok  ", False: "warn" if item.optional else "FAIL", None: "info"}[item.ok]


def _dmi(host: l1check.Host, key: str) -> str | None:
    value = host.read(f"/sys/class/dmi/id/{key}")
    return value.strip() if value and value.strip() else None


def placement(host: l1check.Host) -> Placement:
    """Is this machine a VM, on what, and at which nesting depth it likely sits."""
    cpu = l1check.cpu_info(host)
    flags = set(cpu["flags"])
    evidence: list[str] = []
    in_vm = "hypervisor" in flags
    evidence.append("cpuinfo has the 'hypervisor' flag" if in_vm
                    else "cpuinfo has no 'hypervisor' flag")
    vendor, product = _dmi(host, "sys_vendor"), _dmi(host, "product_name")
    uuid, asset = _dmi(host, "product_uuid"), _dmi(host, "chassis_asset_tag")
    platform = "unknown"
    if vendor or product:
        evidence.append(f"DMI: {vendor or '?'} / {product or '?'}")
    elif in_vm:
        evidence.append("no DMI table (microVMs such as Firecracker expose none)")
        platform = "a microVM without DMI (e.g. Firecracker)"
    if (uuid or "").lower().startswith("ec2") or (vendor or "") == "Amazon EC2":
        platform = "AWS EC2"
    elif asset == AZURE_CHASSIS_ASSET_TAG:
        platform = "Azure"
    elif vendor:
        platform = {"QEMU": "QEMU/KVM", "Microsoft Corporation": "Hyper-V",
                    "VMware, Inc.": "VMware", "innotek GmbH": "VirtualBox",
                    "Xen": "Xen", "Google": "Google Compute Engine"}.get(vendor, vendor)
    clock = (host.read("/sys/devices/system/clocksource/clocksource0/available_clocksource")
             or "").split()
    for name, what in _CLOCKSOURCES.items():
        if name in clock:
            evidence.append(f"clocksource {name}: the hypervisor is {what}")
    if not in_vm:
        return Placement(is_vm=False, platform="bare metal", evidence=evidence,
                         depth="L0 (bare metal): guests you start here are L1")
    if platform in ("AWS EC2", "Azure", "Google Compute Engine"):
        depth = (f"L1 (a VM on {platform}; clouds run customer VMs at L1): guests you "
                 "start here are L2")
    else:
        depth = ("L1 or deeper (a VM; from inside, nestcloud cannot tell an L1 from an L2): "
                 "guests you start here are at least L2")
    return Placement(is_vm=True, platform=platform, depth=depth, evidence=evidence)


_EXPLAIN = {
    "cpu_flag": "A hypervisor needs VT-x (vmx) or AMD-V (svm) from the CPU. Inside a cloud VM "
                "the flag appears only when the cloud turns nested virtualization on for a "
                "type that supports it.",
    "kvm_module": "kvm_intel/kvm_amd drive the hardware virtualization. Their 'nested' "
                  "parameter is about the NEXT level: whether guests of this machine may run "
                  "hypervisors themselves.",
    "dev_kvm": "/dev/kvm is how QEMU, libvirt and Firecracker reach KVM; it must be a "
               "character device the user can read and write.",
    "kvm_smoke": "The proof: create a VM and a vCPU, run 40 million guest instructions "
                 "(milliseconds with hardware virtualization), see an I/O exit then HLT, "
                 "within a few seconds. A /dev/kvm has been seen backed by a paravirtual "
                 "module (kvm_pvm) that runs a few instructions fine but emulates a stock "
                 "guest one by one, so nestcloud trusts neither the device node nor a few "
                 "instructions.",
    "libvirt": "libvirt must answer on qemu:///system for virsh/virt-install guests.",
    "virt_host_validate": "A supporting signal: only FAIL lines count; WARN (e.g. no IOMMU) "
                          "is normal in clouds.",
    "firecracker": "The Firecracker binary must run.",
    "l2_boot": "A tiny guest booted for real under KVM.",
    "local_l1_host": "Local L1s are QEMU guests on this machine: with KVM they run at "
                     "hardware speed; without it QEMU emulates every instruction (TCG), which "
                     "works but is slow. Under TCG an L1 still gets AMD-V (QEMU's default CPU "
                     "model carries svm), so it can run KVM guests itself.",
}

QEMU_SYSTEM = "qemu-system-x86_64"
QEMU_IMG = "qemu-img"
KERNEL_PROBE_TIMEOUT_S = 30.0
# Measured under TCG on 2 shared cores (docs/local-boot.md, bench/README.md).
_TCG_COST = ("every instruction of an L1 is emulated: about 1-2 minutes to a ready Debian 12 "
             "L1 with --hypervisor none, much longer for the kvm profile (it installs QEMU and "
             "libvirt inside the L1)")
_INSTALL = "Debian/Ubuntu: apt-get install qemu-system-x86 qemu-utils"


def _readable_kernel(host: l1check.Host) -> str | None:
    """This machine's kernel, if this user may read it (Ubuntu keeps it root-only)."""
    for path in ("/boot/vmlinuz-" + _platform.release(), "/boot/vmlinuz"):
        full = host.path(path)
        if os.path.isfile(full) and host.access_fn(full, os.R_OK):
            return full
    return None


def local_host(host: l1check.Host, checks: dict[str, Any], *,
               probe_timeout_s: float = KERNEL_PROBE_TIMEOUT_S) -> LocalHost:
    """Can this machine host local L1s with KVM, only with emulation, or not at all?

    KVM needs /dev/kvm usable by this user and the KVM smoke test passed (its guest runs at
    hardware speed); then, if this machine's kernel is readable, one real QEMU boot of it
    under KVM (bounded by ``probe_timeout_s``) must reach its root-mount panic too."""
    qemu = host.which(QEMU_SYSTEM)
    missing = [name for name in (QEMU_SYSTEM, QEMU_IMG) if host.which(name) is None]
    if missing:
        return LocalHost(mode="none", missing=missing, qemu=qemu,
                         summary=f"this machine cannot host local L1s: {' and '.join(missing)} "
                                 f"{'is' if len(missing) == 1 else 'are'} not installed "
                                 f"({_INSTALL})")
    assert qemu is not None
    evidence: list[str] = []
    dev, smoke = checks["dev_kvm"], checks["kvm_smoke"]
    why_not = None
    if not dev["ok"]:
        why_not = dev["detail"]
    elif not dev.get("rw", True):
        why_not = dev["detail"]
    elif not smoke["ok"]:
        why_not = "its KVM smoke test failed, see kvm_smoke"
    else:
        evidence.append("KVM smoke test: " + smoke["detail"])
        kernel = _readable_kernel(host)
        if kernel is None:
            evidence.append("no readable kernel under /boot: the QEMU boot check was skipped")
        else:
            boot = l1check.probe_kernel_boot(qemu, kernel, timeout_s=probe_timeout_s,
                                             run=host.run)
            if boot["ok"]:
                evidence.append(f"{QEMU_SYSTEM}: {boot['detail']} ({kernel})")
            else:
                why_not = f"{QEMU_SYSTEM} with KVM: {boot['detail']}"
    if why_not is not None:
        return LocalHost(mode="emulation", qemu=qemu, evidence=evidence,
                         summary=f"this machine can host local L1s only with emulation (TCG; "
                                 f"KVM is not usable: {why_not}); {_TCG_COST}")
    nested = checks["kvm_module"].get("nested")
    l1_virt = None if nested is None else nested in ("Y", "1")
    if l1_virt:
        tail = f"nested={nested}, so its L1s see vmx/svm and can run KVM guests themselves"
    elif l1_virt is False:
        tail = (f"but nested={nested}: its L1s boot at hardware speed yet see no vmx/svm, so "
                f"they are not ready to host VMs (load {checks['kvm_module'].get('module')} "
                "with nested=1)")
    else:
        tail = ("no kvm_intel/kvm_amd nested setting found: whether its L1s see vmx/svm is "
                "unknown")
    return LocalHost(mode="kvm", qemu=qemu, l1_virtualization=l1_virt, evidence=evidence,
                     summary=f"this machine can host local L1s with KVM; {tail}")


def run_doctor(host: l1check.Host | None = None, *, profile: str = "none",
               l2_smoke: bool = False) -> DoctorReport:
    """Run the readiness checks here and explain each one."""
    host = host or l1check.Host("/")
    if host.kvm is None and host.smoke is None:
        host.smoke = kvmprobe.smoke_test   # a child process: bounded in any thread
    where = placement(host)
    payload = l1check.run_checks(host, profile, l2_smoke=l2_smoke)
    checks = payload["checks"]
    items = [DoctorItem(name="placement", ok=None,
                        summary=f"{'a VM' if where.is_vm else 'not a VM'} "
                                f"({where.platform}); depth {where.depth}",
                        explanation="; ".join(where.evidence))]
    for name, check in checks.items():
        items.append(DoctorItem(name=name, ok=check["ok"], summary=check["detail"],
                                optional=bool(check.get("optional")),
                                explanation=_EXPLAIN.get(name, "")))
    local = local_host(host, checks)
    items.append(DoctorItem(name="local_l1_host",
                            ok=local.mode == "kvm" and local.l1_virtualization is not False,
                            optional=True, summary=local.summary,
                            explanation=_EXPLAIN["local_l1_host"]
                            + ("" if not local.evidence else " " + "; ".join(local.evidence))))
    ready = payload["status"] == "ready"
    if ready:
        verdict = "this machine can run hardware-virtualized KVM guests"
    elif checks["kvm_smoke"]["ok"] and not checks["cpu_flag"]["ok"]:
        verdict = ("KVM guests do run here, but not on hardware virtualization (no vmx/svm: "
                   "a paravirtual KVM): not ready as a nested-virtualization L1")
    else:
        verdict = "this machine cannot run KVM guests: " + ", ".join(payload["failed"])
    return DoctorReport(ready=ready, verdict=verdict, placement=where, items=items,
                        payload=payload, local_host=local)


def render_text(report: DoctorReport) -> str:
    """The report for a terminal (``nestcloud.render.to_table``)."""
    return to_table(report)

