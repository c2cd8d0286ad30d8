"""GCP's own pre-launch rules (``capabilities.rules``): what the catalog cannot say alone.

Pure: no SDK, no network. ``check``, ``plan`` and every launch run these after the core's
rules (nestcloud.checks), which already refuse what the catalog marks ``nesting: none`` and
suggest the cheapest nested-capable type with its price and price date. Facts are from
shared/FACTS.md "GCP (Compute Engine)":

- the L1 hypervisor must be Linux KVM: Hyper-V as L1 is not supported and Windows Server
  images cannot be used for nested virtualization (so neither can WSL2, which needs a
  Windows L1);
- (C2, C3 and N4 fit the nested-virtualization overview's rule but are not confirmed by name:
  the catalog puts them under a source marked ``unconfirmed``, which the core's own rule
  turns into a warning, and its suggestions prefer confirmed types);
- a refused type's reason on GCP (the E2 trap, AMD, Arm) is the catalog entry's ``notes``,
  which the core's refusal does not show;
- the public images nestcloud uses there (:data:`IMAGES`).
"""

from __future__ import annotations

from nestcloud.catalog import Catalog, InstanceType
from nestcloud.checks import Finding
from nestcloud.oses import OSES
from nestcloud.spec import LaunchSpec

PROVIDER = "gcp"

# OS alias -> public image (project/family), FACTS.md "GCP": "Images (project/family)".
IMAGES: dict[str, str] = {
    "ubuntu-24.04": "ubuntu-os-cloud/ubuntu-2404-lts-amd64",
    "debian-12": "debian-cloud/debian-12",
    "rhel-9": "rhel-cloud/rhel-9",
}

_WINDOWS_HYPERVISORS = {"hyperv": "Hyper-V", "wsl2": "WSL2"}
_ONLY_KVM = ("Compute Engine supports only Linux KVM as the L1 hypervisor (Hyper-V as L1 is "
             "not supported), and Windows Server images cannot be used for nested "
             "virtualization")


def rules(spec: LaunchSpec, catalog: Catalog, entry: InstanceType | None) -> list[Finding]:
    """GCP's findings for this launch (``entry``: the catalog's type, or None if unknown)."""
    return [*_l1(spec), *_image(spec), *_refused_reason(entry)]


def _l1(spec: LaunchSpec) -> list[Finding]:
    info = OSES.get(spec.os)
    windows_os = info is not None and info.family == "windows"
    hv = _WINDOWS_HYPERVISORS.get(spec.hypervisor)
    if not windows_os and hv is None:
        return []
    if hv == "WSL2":
        what = "WSL2 cannot run in a GCP L1: it needs a Windows L1, and"
    elif hv is not None:
        what = "Hyper-V cannot be the L1 hypervisor on GCP:"
    else:
        title = info.title if info is not None else spec.os
        what = f"{title} cannot be a GCP L1:"
    return [Finding(rule="gcp-l1", severity="error", message=f"{what} {_ONLY_KVM}",
                    suggestion="use a Linux L1 with KVM (--os ubuntu-24.04 --hypervisor kvm), "
                               "or --provider aws or --provider azure for a Windows L1")]


def _image(spec: LaunchSpec) -> list[Finding]:
    info = OSES.get(spec.os)
    if spec.image is not None or info is None or info.family != "linux" or spec.os in IMAGES:
        return []
    return [Finding(rule="gcp-image", severity="error",
                    message=f"nestcloud knows no Compute Engine public image for {info.title} "
                            f"(it uses {', '.join(IMAGES.values())})",
                    suggestion="use --os " + ", ".join(IMAGES)
                               + ", or --image with an image of your own")]


def _refused_reason(entry: InstanceType | None) -> list[Finding]:
    if entry is None or entry.nesting != "none" or not entry.notes:
        return []
    return [Finding(rule="gcp-nesting", severity="error",
                    message=f"{entry.name}: " + "; ".join(entry.notes))]


