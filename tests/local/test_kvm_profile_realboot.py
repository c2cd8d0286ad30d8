"""The kvm profile for real (slow, opt-in): a Debian 12 L1 under QEMU (TCG) installs QEMU and
libvirt through our user data, without Recommends, and reports ready.

Not run by CI (``.ci/run`` runs plain ``pytest``, which skips it): it takes tens of minutes
under emulation. Run it with

    NESTCLOUD_REALBOOT_KVM=1 .venv/bin/python -m pytest -s -m slow tests/local/test_kvm_profile_realboot.py

(root, qemu-system-x86_64, qemu-img, pycdlib, and mmdebstrap unless the test image is cached;
docs/local-boot.md). It records what the profile installed (packages, dpkg's Installed-Size
sum, downloaded .deb bytes) and the time from QEMU start to the readiness marker, prints them
and writes them to the image cache as ``realboot-kvm-profile.json``; bench/README.md keeps the
numbers, before (with Recommends) and after.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nestcloud.bootstrap.marker import parse_marker
from providers.local import qemu

from .realboot import BUILD_SCRIPT, REPORT, USER_LINE, cache_dir, line_json, missing_for_boot

PKGS = "NESTCLOUD-TEST-PKGS"          # PKG_REPORT below: what apt installed
BOOT_TIMEOUT = 3600.0
# Measured before this profile dropped Recommends (Debian 12, issue 14, docs/local-boot.md):
# 405 packages (411 in a later run), 267 MB downloaded, 960 MB installed.
PACKAGES_WITH_RECOMMENDS = 405
# What the Recommends brought that an L1 never uses; none may come back.
NOT_WANTED = ("qemu-system-gui", "qemu-block-extra", "libgtk-3-0", "libgl1-mesa-dri",
              "libllvm15", "lvm2", "libvirt-daemon-driver-lxc", "libvirt-daemon-driver-vbox",
              "libvirt-daemon-driver-xen", "virt-viewer")
# What the profile names because an L1 does use it.
WANTED = ("qemu-system-x86", "qemu-utils", "libvirt-daemon-system", "libvirt-clients",
          "dnsmasq-base", "ovmf", "virtinst")


def _why_skip() -> str | None:
    if os.environ.get("NESTCLOUD_REALBOOT_KVM") != "1":
        return ("the kvm profile takes tens of minutes under TCG: set NESTCLOUD_REALBOOT_KVM=1 "
                "(README, 'Tests')")
    if sys.platform != "linux":
        return "Linux only"
    return missing_for_boot([qemu.QEMU, qemu.QEMU_IMG])


_SKIP = _why_skip()
pytestmark = [pytest.mark.slow, pytest.mark.realboot,
              pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")]

# Runs inside the L1 once cloud-final is done: what apt installed, in one console line.
PKG_REPORT = r'''
import glob, json, os, re, subprocess

def run(*argv):
    return subprocess.run(argv, capture_output=True, text=True).stdout

sizes = {}
for line in run("dpkg-query", "-W", "-f", "${db:Status-Abbrev}\t${Package}\t${Installed-Size}\n").splitlines():
    status, name, size = (line.split("\t") + ["", "", ""])[:3]
    if status.startswith("ii"):
        sizes[name] = int(size or 0)
installed = []
with open("/var/log/apt/history.log") as fh:
    for block in fh.read().split("\n\n"):   # one block per apt run; ours names libvirt
        if "libvirt-daemon-system" not in block.split("Commandline:", 1)[-1].split("\n")[0]:
            continue
        for group in re.findall(r"^Install: (.*)$", block, re.M):
            installed += [i.strip().split(":")[0].split(" ")[0] for i in group.split("),")]
debs = [p for p in glob.glob("/var/cache/apt/archives/*.deb")
        if os.path.basename(p).split("_")[0] in set(installed)]
out = {
    "installed_packages": len(installed),
    "installed_kib": sum(sizes.get(n, 0) for n in installed),
    "downloaded_bytes": sum(os.path.getsize(p) for p in debs),
    "downloaded_debs": len(debs),
    "total_packages": len(sizes),
    "total_kib": sum(sizes.values()),
    "names": sorted(installed),
    "recommends": run("apt-config", "dump", "APT::Install-Recommends").strip(),
    "networks": run("virsh", "-c", "qemu:///system", "net-list", "--all").strip(),
    "libvirtd_log": run("journalctl", "-b", "-u", "libvirtd", "-p", "warning", "-o", "cat",
                        "--no-pager").strip().splitlines()[-20:],
}
with open("/dev/console", "w") as fh:
    fh.write("\nNESTCLOUD-TEST-PKGS " + json.dumps(out, sort_keys=True) + "\n")
'''


def user_part() -> str:
    """The user's --user-data: one line proving it ran, then both reports handed to systemd
    to run once cloud-final has finished (this script runs inside cloud-final)."""
    guest_report = (Path(__file__).parent / "guest_report.py").read_text()
    for text in (guest_report, PKG_REPORT):
        assert "NCEOF" not in text
    return "\n".join([
        "#!/bin/sh",
        f'echo "{USER_LINE} user part ran as uid $(id -u)"',
        "cat > /var/tmp/nestcloud-report.py <<'NCEOF'", guest_report.rstrip("\n"), "NCEOF",
        "cat > /var/tmp/nestcloud-pkgs.py <<'NCEOF'", PKG_REPORT.strip("\n"), "NCEOF",
        "systemd-run --no-block --unit=nestcloud-test-report "
        "--property=After=cloud-final.service sh -c "
        "'python3 /var/tmp/nestcloud-pkgs.py; python3 /var/tmp/nestcloud-report.py'",
        "",
    ])


def test_kvm_profile_installs_without_recommends_and_is_ready(tmp_path: Path) -> None:
    t0 = time.monotonic()
    build = subprocess.run(["bash", str(BUILD_SCRIPT), str(cache_dir())], capture_output=True,
                           text=True, timeout=900, check=False)
    assert build.returncode == 0, f"image build failed:\n{build.stderr[-3000:]}"
    image = Path(build.stdout.strip().splitlines()[-1])
    part = tmp_path / "user-part.sh"
    part.write_text(user_part())
    exe = shutil.which("nestcloud", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "nestcloud"]
    ud = tmp_path / "user-data"
    proc = subprocess.run([*cmd, "userdata", "--provider", "aws", "--os", "debian-12",
                           "--hypervisor", "kvm", "--user-data", str(part), "--out", str(ud),
                           "--json"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "kvm"
    run.mkdir()
    seed = qemu.write_seed_iso(run / "seed.iso", ud.read_bytes(),
                               qemu.meta_data("i-kvm-profile", "l1-kvm-profile"))
    disk = qemu.create_overlay(image / "disk.qcow2", run / "disk.qcow2")
    cfg = qemu.VmConfig(disk=disk, seed=seed, serial_log=run / "serial.log",
                        pidfile=run / "qemu.pid", name="nestcloud-test-kvm-profile", vcpus=2,
                        memory_mib=3072, accel="tcg",
                        boot=qemu.DirectBoot(image / "vmlinuz", image / "initrd.img",
                                             (image / "cmdline").read_text().strip()))
    prepared = time.monotonic() - t0
    pid = qemu.start_vm(cfg)
    try:
        t1 = time.monotonic()
        got = qemu.wait_for_console(cfg.serial_log, lambda t: parse_marker(t) is not None,
                                    timeout=BOOT_TIMEOUT, pid=pid)
        to_marker = time.monotonic() - t1
        if got.matched:
            got = qemu.wait_for_console(
                cfg.serial_log,
                lambda t: line_json(t, REPORT) is not None and line_json(t, PKGS) is not None,
                timeout=600, pid=pid)
        assert got.matched, (f"{got.outcome} after {time.monotonic() - t1:.0f} s; serial log "
                             "tail:\n" + "\n".join(got.text.splitlines()[-40:]))
    finally:
        qemu.stop_vm(cfg.pidfile)
        shutil.copyfile(cfg.serial_log, cache_dir() / "realboot-kvm-profile.serial.log")
    console = got.text
    marker, report, pkgs = parse_marker(console), line_json(console, REPORT), \
        line_json(console, PKGS)
    assert marker is not None and report is not None and pkgs is not None
    record = {
        "when": time.strftime("%Y-%m-%d"),
        "image": image.name,
        "qemu_start_to_ready_s": round(to_marker, 1),
        "image_and_seed_s": round(prepared, 1),
        "load_average_after": os.getloadavg(),
        "status": marker.status,
        **{k: v for k, v in pkgs.items() if k not in ("names",)},
        "installed_mb": round(pkgs["installed_kib"] * 1024 / 1e6, 1),
        "downloaded_mb": round(pkgs["downloaded_bytes"] / 1e6, 1),
        "modules": {m: report["modules"].get(m, {}).get("result")
                    for m in sorted(set(report["activated_by_our_keys"]) | {"scripts_user"})},
        "cloud_init_problems": report["problems"],
        "packages": pkgs["names"],
    }
    text = json.dumps(record, indent=1)
    (cache_dir() / "realboot-kvm-profile.json").write_text(text + "\n")
    print(f"\nkvm profile real boot:\n{text}", file=sys.stderr)

    # Ready, with libvirt answering, and the user's own part ran after ours.
    assert marker.status == "ready", marker.failed_checks()
    assert marker.checks["libvirt"]["ok"] is True
    assert "virt_host_validate" in marker.checks
    assert f"{USER_LINE} user part ran as uid 0" in console
    # cloud-init: every module our user data uses succeeded, nothing warned.
    assert report["problems"] == []
    assert "package_update_upgrade_install" in record["modules"]
    assert set(record["modules"].values()) == {"SUCCESS"}, record["modules"]
    # apt ran without Recommends: what they dragged in is absent, what we name is there.
    assert pkgs["recommends"] == 'APT::Install-Recommends "false";'
    names = set(pkgs["names"])
    assert names.isdisjoint(NOT_WANTED), sorted(names & set(NOT_WANTED))
    assert set(WANTED) <= names, sorted(set(WANTED) - names)
    assert pkgs["installed_packages"] < PACKAGES_WITH_RECOMMENDS
    # libvirt's default NAT network (dnsmasq-base) is up for L2 guests.
    assert any(line.split()[:2] == ["default", "active"]
               for line in pkgs["networks"].splitlines()), pkgs["networks"]
