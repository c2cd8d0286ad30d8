"""What the Linux profiles make the L1 do before the readiness check: load the right KVM
module quietly, install the kvm profile without Recommends / weak dependencies."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from nestcloud.bootstrap import profiles
from nestcloud.bootstrap.profiles import linux_cloud_config, modprobe_script
from nestcloud.oses import OSES
from tests.bootstrap.conftest import FIXTURES

KVM_OSES = [o for o, info in OSES.items() if "kvm" in info.hypervisors]


# --- the KVM vendor module -------------------------------------------------------------------

def _modprobe_calls(tmp_path: Path, cpuinfo: Path) -> list[str]:
    """Run the profile's modprobe line with a recording modprobe first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "calls"
    fake = bin_dir / "modprobe"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.run(["sh", "-c", modprobe_script(str(cpuinfo))], env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stderr == ""
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("fixture, expected", [
    ("intel-vmx", ["kvm_intel"]),
    ("bare-metal-intel", ["kvm_intel"]),
    ("amd-svm", ["kvm_amd"]),                 # never kvm_intel first: no kernel error line
    ("no-flag", []),                          # nothing to load, nothing to complain about
    ("kvm-without-vmx", []),
])
def test_the_module_matching_the_cpu_flag_is_loaded(tmp_path, fixture, expected):
    assert _modprobe_calls(tmp_path, FIXTURES / fixture / "proc" / "cpuinfo") == expected


def test_a_vmx_flags_line_is_not_the_flags_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse svm\n"
                       "vmx flags\t: vnmi preemption_timer\n")
    assert _modprobe_calls(tmp_path, cpuinfo) == ["kvm_amd"]


def test_every_linux_profile_loads_the_module_first():
    for o, info in OSES.items():
        if info.family != "linux":
            continue
        for h in info.hypervisors:
            assert linux_cloud_config(o, h)["runcmd"][0] == ["sh", "-c", modprobe_script()]


# --- no Recommends -----------------------------------------------------------------------------

@pytest.mark.parametrize("os_alias", KVM_OSES)
def test_kvm_profile_turns_off_recommends_before_installing(os_alias):
    cfg = linux_cloud_config(os_alias, "kvm")
    files = cfg["write_files"]
    # write_files runs in cloud-init's init stage, packages in the final stage: this file is
    # in place before apt/dnf runs.
    assert profiles.NO_RECOMMENDS[os_alias] in files
    assert cfg["packages"] == profiles.KVM_PACKAGES[os_alias]
    for other in ("none", "firecracker"):
        if other in OSES[os_alias].hypervisors:
            paths = {f["path"] for f in linux_cloud_config(os_alias, other)["write_files"]}
            assert not paths & {profiles.APT_NO_RECOMMENDS_PATH, profiles.DNF_CONF_PATH}


@pytest.mark.skipif(shutil.which("apt-config") is None, reason="apt-config not installed")
def test_apt_reads_the_file_as_no_recommends(tmp_path):
    entry = profiles.NO_RECOMMENDS["debian-12"]
    assert entry["path"].startswith("/etc/apt/apt.conf.d/")
    conf = tmp_path / "nestcloud.conf"
    conf.write_text(entry["content"])
    proc = subprocess.run(["apt-config", "-c", str(conf), "dump", "APT::Install-Recommends"],
                          capture_output=True, text=True, timeout=30, check=True)
    assert proc.stdout == 'APT::Install-Recommends "false";\n'


def test_dnf_gets_install_weak_deps_in_main():
    entry = profiles.NO_RECOMMENDS["rhel-9"]
    assert (entry["path"], entry["append"]) == ("/etc/dnf/dnf.conf", True)
    # Appended to a [main]-only dnf.conf, even one whose last line has no newline.
    parser = configparser.ConfigParser()
    parser.read_string("[main]\ngpgcheck=1\nbest=True" + entry["content"])
    assert parser.getboolean("main", "install_weak_deps") is False
    assert parser.getboolean("main", "best") is True


def test_what_recommends_carried_that_an_l1_needs_is_named():
    for os_alias in ("debian-12", "ubuntu-24.04"):
        pkgs = profiles.KVM_PACKAGES[os_alias]
        for needed in ("dnsmasq-base", "ovmf", "qemu-utils", "libvirt-daemon-driver-qemu",
                       "libvirt-daemon-config-network"):
            assert needed in pkgs
    assert "edk2-ovmf" in profiles.KVM_PACKAGES["rhel-9"]
