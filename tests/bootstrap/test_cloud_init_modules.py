"""Every cloud-init module our Linux profiles use is exercised by at least one real boot.

Which modules a cloud-config uses comes from cloud-init's own module metadata
(``activate_by_schema_keys``, read from the installed cloud-init, as the real-boot guest report
does inside the L1), plus ``scripts_user``, which runs runcmd's script. Two real boots exist:
the fast one CI runs (tests/local/test_real_boot.py: debian-12, --hypervisor none) and the slow
opt-in one (tests/local/test_kvm_profile_realboot.py: debian-12, --hypervisor kvm). A profile
that starts using a module neither boots reaches fails here until a real boot covers it.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from nestcloud.bootstrap.profiles import linux_cloud_config
from nestcloud.oses import OSES

_META = r"""
import importlib, json, pkgutil
import cloudinit.config as cc
out = {}
for info in pkgutil.iter_modules(cc.__path__):
    if info.name.startswith("cc_"):
        meta = getattr(importlib.import_module("cloudinit.config." + info.name), "meta", {})
        out[info.name[3:]] = sorted(meta.get("activate_by_schema_keys") or ())
print(json.dumps(out))
"""


def _python_with_cloud_init() -> str | None:
    """The interpreter cloud-init is installed for (Debian: the system python3)."""
    exe = shutil.which("cloud-init")
    if exe is None:
        return None
    with open(exe, encoding="utf-8", errors="replace") as fh:
        first = fh.readline()
    return first[2:].strip().split()[0] if first.startswith("#!") else None


@pytest.fixture(scope="module")
def activation() -> dict[str, list[str]]:
    py = _python_with_cloud_init()
    if py is None:
        pytest.skip("cloud-init is not installed (.ci/run installs Debian's)")
    proc = subprocess.run([py, "-c", _META], capture_output=True, text=True, timeout=120,
                          check=True)
    return dict(json.loads(proc.stdout))


def used_modules(cfg: dict, activation: dict[str, list[str]]) -> set[str]:
    keys = set(cfg)
    used = {m for m, by in activation.items() if set(by) & keys}
    if "runcmd" in keys:
        used.add("scripts_user")   # runcmd only writes the script; scripts_user runs it
    return used


BOOTED = {"fast (CI)": ("debian-12", "none"), "slow (opt-in)": ("debian-12", "kvm")}


def test_the_booted_profiles_use_these_modules(activation):
    fast = used_modules(linux_cloud_config(*BOOTED["fast (CI)"]), activation)
    slow = used_modules(linux_cloud_config(*BOOTED["slow (opt-in)"]), activation)
    assert fast == {"write_files", "write_files_deferred", "runcmd", "scripts_user"}
    # Only the slow boot reaches the package module (apt inside the L1).
    assert slow - fast == {"package_update_upgrade_install"}


@pytest.mark.parametrize("os_alias, hypervisor", [
    (o, h) for o, info in OSES.items() if info.family == "linux" for h in info.hypervisors])
def test_every_profile_uses_only_modules_a_real_boot_ran(activation, os_alias, hypervisor):
    covered = set().union(*(used_modules(linux_cloud_config(o, h), activation)
                            for o, h in BOOTED.values()))
    cfg = linux_cloud_config(os_alias, hypervisor, l2_smoke=hypervisor == "kvm",
                             hugepages=8 if hypervisor == "kvm" else 0)
    assert used_modules(cfg, activation) <= covered
