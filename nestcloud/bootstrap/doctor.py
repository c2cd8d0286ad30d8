"""`nestcloud doctor`: the L1 readiness checks on this machine, each explained.

Pure inspection of files under a root (plus the KVM smoke test through l1check's ioctl layer),
so tests feed recorded /proc and /sys trees.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from nestcloud.bootstrap import l1check
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


class DoctorReport(Rendered, BaseModel):
    model_config = ConfigDict(extra="forbid")
    columns: ClassVar[tuple[str, ...]] = ("check", "result", "summary", "why it matters")

    ready: bool
    verdict: str
    placement: Placement
    items: list[DoctorItem]
    payload: dict[str, Any]

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
    "kvm_smoke": "The proof: create a VM and a vCPU, run four real-mode instructions, see an "
                 "I/O exit then HLT. A /dev/kvm alone has been seen backed by a paravirtual "
                 "module without vmx, so nestcloud does not trust the device node by itself.",
    "libvirt": "libvirt must answer on qemu:///system for virsh/virt-install guests.",
    "virt_host_validate": "A supporting signal: only FAIL lines count; WARN (e.g. no IOMMU) "
                          "is normal in clouds.",
    "firecracker": "The Firecracker binary must run.",
    "l2_boot": "A tiny guest booted for real under KVM.",
}


def run_doctor(host: l1check.Host | None = None, *, profile: str = "none",
               l2_smoke: bool = False) -> DoctorReport:
    """Run the readiness checks here and explain each one."""
    host = host or l1check.Host("/")
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
    ready = payload["status"] == "ready"
    if ready:
        verdict = "this machine can run hardware-virtualized KVM guests"
    elif checks["kvm_smoke"]["ok"] and not checks["cpu_flag"]["ok"]:
        verdict = ("KVM guests do run here, but not on hardware virtualization (no vmx/svm: "
                   "a paravirtual KVM): not ready as a nested-virtualization L1")
    else:
        verdict = "this machine cannot run KVM guests: " + ", ".join(payload["failed"])
    return DoctorReport(ready=ready, verdict=verdict, placement=where, items=items,
                        payload=payload)


def render_text(report: DoctorReport) -> str:
    """The report for a terminal (``nestcloud.render.to_table``)."""
    return to_table(report)

