"""Hypervisor profiles: what each L1 gets installed, as data (cloud-config) or PowerShell.

Linux profiles return the cloud-config as a Python dict (dumped to YAML by the renderer); the
Windows profiles return the PowerShell script text. Sources: FACTS.md, "The L1 hypervisor".
"""

from __future__ import annotations

import base64
import json
from importlib import resources
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nestcloud.bootstrap import fcinstall
from nestcloud.spec import TAG_L1

if TYPE_CHECKING:
    from nestcloud.provider import UserDataEnvelope

L1CHECK_PATH = "/usr/local/lib/nestcloud/l1check.py"
FCINSTALL_PATH = "/usr/local/lib/nestcloud/fcinstall.py"
L2_DEFAULTS_PATH = "/etc/nestcloud/l2-defaults.env"
VIRT_INSTALL_WRAPPER_PATH = "/usr/local/bin/nestcloud-virt-install"
L2_XML_EXAMPLE_PATH = "/etc/nestcloud/l2-guest-example.xml"
HUGEPAGES_SYSCTL_PATH = "/etc/sysctl.d/80-nestcloud-hugepages.conf"

# TAG_L1 (nestcloud.spec): the instance tag a Windows L1 writes its readiness JSON to (same
# payload as the console marker). Providers read it back through list(): Instance.tags[TAG_L1].
# The same JSON as a file, under %ProgramData% (files/l1-windows.ps1, Send-NcReport), for
# providers that read it back themselves (readiness channel "run-command").
WINDOWS_MARKER_FILE = "nestcloud\\l1.json"
# A TAG_L1 value a provider sets at launch when the L1 will not be able to write the tag (e.g.
# no identity to tag itself with): the waiter reports "not-verifiable" with the reason instead of
# timing out. The L1's own report, should it ever be able to write one, replaces it.
NOT_VERIFIABLE = "not-verifiable"
TAG_VALUE_MAX = 256  # the smallest tag value a provider takes (EC2: 256 characters)


def not_verifiable_tag(reason: str) -> str:
    """The TAG_L1 value that says this L1 cannot report, and why (fits TAG_VALUE_MAX)."""
    doc = {"status": NOT_VERIFIABLE, "reason": reason}
    text = json.dumps(doc, separators=(",", ":"))
    if len(text) > TAG_VALUE_MAX:
        raise ValueError(f"not-verifiable reason too long for a tag value: {reason!r}")
    return text


def not_verifiable_reason(value: str | None) -> str | None:
    """The reason from a ``not_verifiable_tag`` value, None for anything else."""
    if not value:
        return None
    try:
        doc = json.loads(value)
    except ValueError:
        return None
    if isinstance(doc, dict) and doc.get("status") == NOT_VERIFIABLE:
        return str(doc.get("reason") or "this L1 cannot report readiness")
    return None

# FACTS.md: Ubuntu 24.04 / Debian 12 "qemu-kvm (-> qemu-system-x86), libvirt-daemon-system,
# libvirt-clients, virtinst, cpu-checker"; RHEL 9 "qemu-kvm libvirt virt-install".
# qemu-kvm is only a virtual name on Debian and Ubuntu, so the real package is named.
# Installed WITHOUT Recommends / weak dependencies (NO_RECOMMENDS below): with them, Debian 12
# pulled 405 packages, 960 MB (QEMU's GUI, GTK, mesa/LLVM, spice, the Xen/LXC/VirtualBox
# libvirt drivers, lvm2), none of which an L1 needs. What those Recommends carried that an L1
# does need is named here instead (docs/bootstrap.md has the list and why):
# - dnsmasq-base: DHCP/DNS of libvirt's default NAT network (runcmd starts it);
# - ovmf (RHEL: edk2-ovmf): UEFI firmware for L2 guests (without it only SeaBIOS boots);
# - qemu-utils: qemu-img for L2 disk images;
# - libvirt-daemon-driver-qemu, libvirt-daemon-config-network: the QEMU driver and the
#   "default" network, named so a distribution that demotes them to Recommends still has them.
KVM_PACKAGES: dict[str, list[str]] = {
    "ubuntu-24.04": ["qemu-system-x86", "qemu-utils", "libvirt-daemon-system",
                     "libvirt-daemon-driver-qemu", "libvirt-daemon-config-network",
                     "libvirt-clients", "dnsmasq-base", "ovmf", "virtinst", "cpu-checker"],
    "debian-12": ["qemu-system-x86", "qemu-utils", "libvirt-daemon-system",
                  "libvirt-daemon-driver-qemu", "libvirt-daemon-config-network",
                  "libvirt-clients", "dnsmasq-base", "ovmf", "virtinst", "cpu-checker"],
    "rhel-9": ["qemu-kvm", "libvirt", "virt-install", "edk2-ovmf"],
}
# cloud-init's `packages` module takes no install flags, so the package manager is told
# before it runs: write_files (init stage) lands long before package_update_upgrade_install
# (final stage). apt reads every file in apt.conf.d; dnf 4 (RHEL 9) has no drop-in directory
# for [main], so the setting is appended to dnf.conf, whose only section is [main] (the CIS
# RHEL 9 benchmark's own remedy, 1.2.1.5). Both stay on the L1: later installs skip
# Recommends too (delete the file / the line to get them back).
APT_NO_RECOMMENDS_PATH = "/etc/apt/apt.conf.d/90nestcloud-no-recommends"
DNF_CONF_PATH = "/etc/dnf/dnf.conf"
NO_RECOMMENDS: dict[str, dict[str, Any]] = {
    "ubuntu-24.04": {"path": APT_NO_RECOMMENDS_PATH, "permissions": "0644",
                     "content": "// nestcloud: an L1 hosts VMs; it needs no Recommends (GUI, "
                                "GTK, mesa...)\nAPT::Install-Recommends \"false\";\n"},
    "rhel-9": {"path": DNF_CONF_PATH, "append": True,
               "content": "\n# nestcloud: an L1 hosts VMs; it needs no weak dependencies\n"
                          "install_weak_deps=False\n"},
}
NO_RECOMMENDS["debian-12"] = NO_RECOMMENDS["ubuntu-24.04"]
# RHEL 9 runs libvirt as modular, socket-activated daemons; Debian and Ubuntu as libvirtd.
LIBVIRT_UNITS: dict[str, list[str]] = {
    "ubuntu-24.04": ["libvirtd"],
    "debian-12": ["libvirtd"],
    "rhel-9": ["virtqemud.socket", "virtnetworkd.socket", "virtstoraged.socket",
               "virtnodedevd.socket"],
}

HUGEPAGE_MIB = 2


def module_source(name: str) -> str:
    """Source text of a stdlib-only module in this package (shipped verbatim to the L1)."""
    return resources.files("nestcloud.bootstrap").joinpath(name).read_text(encoding="utf-8")


def _file(name: str) -> str:
    return resources.files("nestcloud.bootstrap").joinpath("files", name).read_text(
        encoding="utf-8")


def l2_defaults_env(hugepages: int) -> str:
    """/etc/nestcloud/l2-defaults.env: the settings and why (FACTS.md, overheads)."""
    return "\n".join([
        "# nestcloud: defaults for the L2 guests this L1 creates",
        "# (used by nestcloud-virt-install; the same settings as libvirt XML are in",
        f"# {L2_XML_EXAMPLE_PATH}).",
        "#",
        "# Why: guests of this machine run nested (L2), where every exit to a hypervisor is",
        "# dearer than on bare metal. Nested guests measured within 6-8% of single-level for",
        "# common work (Turtles, OSDI '10); GCP documents >=10% for CPU-bound work and more for",
        "# I/O. The often-quoted 67% I/O loss (FAST '12) comes from file systems stacked on",
        "# image files, which is why L2 disks here are raw.",
        "# - CPU host-passthrough: the L2 sees the real CPU model and flags; nothing emulated.",
        "# - virtio disk and network, vhost-net: paravirtual devices, packets handled in the",
        "#   L1 kernel instead of the QEMU process.",
        "# - raw disks, cache=none, io=native: no image-format layer, no second page cache,",
        "#   asynchronous I/O (io=io_uring is the other good choice where QEMU supports it).",
        "# - hugepages (optional, nestcloud userdata --hugepages N): fewer TLB misses for",
        "#   guest memory; the pages are reserved at boot and unavailable to anything else.",
        'L2_CPU="host-passthrough"',
        'L2_NETWORK="network=default,model.type=virtio,driver.name=vhost"',
        'L2_DISK_OPTS="bus=virtio,cache=none,io=native"',
        'L2_MEMORYBACKING="%s"' % ("hugepages=on" if hugepages else ""),
        "",
    ])


# Where the check saves its payload (l1check --state's default), for a provider's report script.
L1_STATE_PATH = "/var/lib/nestcloud/l1.json"


def _check_cmd(profile: str, l2_smoke: bool) -> list[str]:
    return ["python3", L1CHECK_PATH, "--profile", profile] + (["--l2-smoke"] if l2_smoke
                                                              else [])




def modprobe_script(cpuinfo: str = "/proc/cpuinfo") -> str:
    """Shell: load the KVM vendor module the CPU's flag asks for (vmx: kvm_intel, svm:
    kvm_amd), nothing without either. Trying kvm_intel first on AMD made the kernel log
    "kvm: already loaded vendor module 'kvm_amd'" on the console (2>/dev/null hides only
    modprobe's own stderr). A real failure to load the right module still prints."""
    return ("f=$(grep -m1 '^flags' %s); case \" $f \" in *' vmx '*) m=kvm_intel;; "
            "*' svm '*) m=kvm_amd;; *) m=;; esac; [ -z \"$m\" ] || modprobe \"$m\"; true"
            % cpuinfo)


# Most kernels load the vendor module from the CPU flag; loading it explicitly costs nothing.
_MODPROBE = ["sh", "-c", modprobe_script()]
# The default cloud user (uid 1000) may use /dev/kvm (and libvirt) without sudo.
_GROUPS = 'u=$(id -nu 1000 2>/dev/null) && for g in {groups}; do getent group "$g" ' \
          '>/dev/null && usermod -aG "$g" "$u"; done; true'


def linux_cloud_config(os_alias: str, hypervisor: str, *, l2_smoke: bool = False,
                       hugepages: int = 0, report: str = "") -> dict[str, Any]:
    """The cloud-config (as data) for a Linux L1; ``report`` (the provider's
    ``linux_report_script``) runs after the check, which has saved its payload to
    ``L1_STATE_PATH``."""
    write_files: list[dict[str, Any]] = [
        {"path": L1CHECK_PATH, "owner": "root:root", "permissions": "0755",
         "content": module_source("l1check.py")},
    ]
    runcmd: list[Any] = [_MODPROBE]
    cfg: dict[str, Any] = {}
    if hypervisor == "kvm":
        cfg["package_update"] = True
        cfg["packages"] = list(KVM_PACKAGES[os_alias])
        write_files += [
            dict(NO_RECOMMENDS[os_alias]),
            {"path": L2_DEFAULTS_PATH, "permissions": "0644",
             "content": l2_defaults_env(hugepages)},
            {"path": VIRT_INSTALL_WRAPPER_PATH, "permissions": "0755",
             "content": _file("nestcloud-virt-install")},
            {"path": L2_XML_EXAMPLE_PATH, "permissions": "0644",
             "content": _file("l2-guest-example.xml")},
            {"path": "/etc/modules-load.d/nestcloud-vhost-net.conf", "permissions": "0644",
             "content": "vhost_net\n"},
        ]
        if hugepages:
            write_files.append({"path": HUGEPAGES_SYSCTL_PATH, "permissions": "0644",
                                "content": f"vm.nr_hugepages = {hugepages}\n"})
            runcmd.append(["sysctl", "-p", HUGEPAGES_SYSCTL_PATH])
        runcmd += [
            ["modprobe", "vhost_net"],
            ["systemctl", "enable", "--now", *LIBVIRT_UNITS[os_alias]],
            # Debian does not autostart libvirt's NAT network; L2 guests need it.
            ["sh", "-c", "virsh -c qemu:///system net-autostart default; "
                         "virsh -c qemu:///system net-start default; true"],
            ["sh", "-c", _GROUPS.format(groups="kvm libvirt")],
        ]
    elif hypervisor == "firecracker":
        write_files.append({"path": FCINSTALL_PATH, "owner": "root:root", "permissions": "0755",
                            "content": module_source("fcinstall.py")})
        runcmd += [
            ["python3", FCINSTALL_PATH, "--version", fcinstall.FIRECRACKER_VERSION],
            ["sh", "-c", _GROUPS.format(groups="kvm")],
        ]
    check = _check_cmd(hypervisor, l2_smoke)
    if report.strip():
        # The report runs whatever the check found, and the check's exit status stays the
        # step's: a failed L1 still fails cloud-init (docs/bootstrap.md).
        # On lines of its own: a report ending in a comment cannot swallow the parenthesis.
        check = ["sh", "-c", " ".join(check) + "; rc=$?; (\n" + report.strip() + "\n); exit $rc"]
    runcmd.append(check)
    cfg["write_files"] = write_files
    cfg["runcmd"] = runcmd
    return cfg


def _ps_quote(value: str) -> str:
    """A PowerShell single-quoted string literal (no expansion; ' doubled)."""
    return "'" + value.replace("'", "''") + "'"


# A provider that declares no way for the L1 to tag itself: the report skips the tag.
_NO_TAG = "function Set-NcTag([string]$Value) { }"


def windows_script(envelope: UserDataEnvelope, hypervisor: str, *,
                   user_script: str | None = None) -> str:
    """The PowerShell bootstrap for a Windows L1 (the body; wrapping is per delivery kind).

    ``envelope`` is the provider's: its ``windows`` delivery becomes ``$NcDelivery`` (how the
    script reboots and re-runs) and its ``windows_tag_script`` defines ``Set-NcTag``, how the
    L1 writes its readiness tag through that cloud's metadata service (files/l1-windows.ps1)."""
    header = [
        "# Set by nestcloud:",
        f"$NcDelivery = {_ps_quote(envelope.windows)}",
        f"$NcProfile = {_ps_quote(hypervisor)}",
        f"$NcTag = {_ps_quote(TAG_L1)}",
        "$NcUserScript = " + (_ps_quote(base64.b64encode(user_script.encode("utf-8"))
                                        .decode("ascii")) if user_script else "$null"),
        envelope.windows_tag_script.strip() or _NO_TAG,
    ]
    return "\n".join(header) + "\n" + _file("l1-windows.ps1")


def user_data_windows_wrapper(body: str) -> str:
    """Delivery "user-data": the guest agent runs ``<powershell>`` from user data, and again
    at every boot with ``<persist>true</persist>`` until the script reports (EC2Launch)."""
    return f"<powershell>\n{body}</powershell>\n<persist>true</persist>\n"


def provider_windows_wrapper(body: str) -> str:
    """Delivery "provider": the provider runs this script itself (Azure: the
    CustomScriptExtension; its words stay in the text, which is what the VM gets). It saves
    the bootstrap, runs it at every startup until it reports, and runs it now."""
    if "\n'@" in body:
        raise ValueError("the script body would end the here-string early")
    return "\n".join([
        "# nestcloud: run by CustomScriptExtension. Saves the L1 bootstrap and registers it",
        "# as a startup task, because enabling Hyper-V/WSL2 needs a reboot and the extension",
        "# must not reboot inside itself.",
        "$ErrorActionPreference = 'Stop'",
        "$NcScript = Join-Path $env:ProgramData 'nestcloud\\l1.ps1'",
        "New-Item -ItemType Directory -Force -Path (Split-Path $NcScript) | Out-Null",
        "Set-Content -Path $NcScript -Encoding UTF8 -Value @'",
        body.rstrip("\n"),
        "'@",
        "$a = New-ScheduledTaskAction -Execute 'powershell.exe' -Argument "
        "\"-NoProfile -ExecutionPolicy Bypass -File `\"$NcScript`\"\"",
        "Register-ScheduledTask -TaskName 'nestcloud-l1' -Action $a "
        "-Trigger (New-ScheduledTaskTrigger -AtStartup) -User 'SYSTEM' -RunLevel Highest "
        "-Force | Out-Null",
        "& powershell.exe -NoProfile -ExecutionPolicy Bypass -File $NcScript",
        "exit $LASTEXITCODE",
        "",
    ])




# How a Windows L1's script is wrapped, by the delivery a provider's UserDataEnvelope declares
# (``windows``); "unsupported" has no entry: the renderer refuses a Windows L1 there.
WINDOWS_WRAPPERS: dict[str, Callable[[str], str]] = {
    "user-data": user_data_windows_wrapper,
    "provider": provider_windows_wrapper,
}
