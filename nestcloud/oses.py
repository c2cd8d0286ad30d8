"""Operating systems nestcloud knows by alias, and what each can host as an L1."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Family = Literal["linux", "windows"]
Hypervisor = Literal["kvm", "firecracker", "hyperv", "wsl2", "none"]
HYPERVISORS: tuple[str, ...] = ("kvm", "firecracker", "hyperv", "wsl2", "none")


# A dataclass, not a pydantic model: this fixed table is read on every `check`, and building a
# pydantic model class costs start-up time for no validation we need.
@dataclass(frozen=True)
class OsInfo:
    alias: str
    family: Family
    title: str
    hypervisors: tuple[str, ...]
    why_not: dict[str, str] = field(default_factory=dict)


_LINUX_ALL = ("kvm", "firecracker", "none")
_WINDOWS = ("hyperv", "wsl2", "none")

OSES: dict[str, OsInfo] = {
    o.alias: o
    for o in (
        OsInfo(alias="ubuntu-24.04", family="linux", title="Ubuntu 24.04 LTS",
               hypervisors=_LINUX_ALL),
        OsInfo(alias="debian-12", family="linux", title="Debian 12", hypervisors=_LINUX_ALL),
        OsInfo(alias="rhel-9", family="linux", title="Red Hat Enterprise Linux 9",
               hypervisors=_LINUX_ALL),
        OsInfo(alias="al2023", family="linux", title="Amazon Linux 2023",
               hypervisors=("firecracker", "none"),
               why_not={"kvm": "Amazon Linux 2023 ships no qemu or libvirt, so it cannot "
                               "host KVM guests the libvirt way (Firecracker works there)"}),
        OsInfo(alias="windows-2022", family="windows", title="Windows Server 2022",
               hypervisors=_WINDOWS),
        OsInfo(alias="windows-2025", family="windows", title="Windows Server 2025",
               hypervisors=_WINDOWS),
    )
}


def os_info(alias: str) -> OsInfo | None:
    return OSES.get(alias)
