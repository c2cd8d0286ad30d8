"""Rendering: every profile x OS x provider, cloud-init's own schema, sizes, gzip, MIME."""

from __future__ import annotations

import base64
import email
import email.policy
import gzip
import os
import random
import shutil
import string
import subprocess
from pathlib import Path

import pytest
import yaml

from nestcloud.bootstrap import (
    USER_MERGE_TYPE,
    dump_cloud_config,
    profiles,
    render_user_data,
)
from nestcloud.bootstrap.profiles import linux_cloud_config
from nestcloud.checks import rule_os_hypervisor
from nestcloud.errors import InputError, RefusedError
from nestcloud.oses import HYPERVISORS, OSES
from nestcloud.provider import capabilities_of
from nestcloud.spec import LaunchSpec

PROVIDERS = ("aws", "azure")
PAIRS = [(o, h) for o in OSES for h in HYPERVISORS]
SUPPORTED = [(o, h) for o, h in PAIRS if h in OSES[o].hypervisors]
UNSUPPORTED = [(o, h) for o, h in PAIRS if h not in OSES[o].hypervisors]
LINUX = [(o, h) for o, h in SUPPORTED if OSES[o].family == "linux"]
WINDOWS = [(o, h) for o, h in SUPPORTED if OSES[o].family == "windows"]
CLOUD_INIT = shutil.which("cloud-init")
# What each built-in provider declares (capabilities.user_data), as a launch renders it.
LIMITS = {p: capabilities_of(p).user_data.limit_bytes for p in PROVIDERS}


def render(provider: str, *args, **kwargs):
    return render_user_data(capabilities_of(provider).user_data, *args,
                            provider_name=provider, **kwargs)


def _text(r) -> str:
    return (gzip.decompress(r.body) if r.gzipped else r.body).decode("utf-8")


def _cloud_config(r) -> dict:
    text = _text(r)
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


# --- every combination --------------------------------------------------------------------

@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("os_alias, hypervisor", SUPPORTED)
def test_every_supported_pair_renders_within_the_limit(provider, os_alias, hypervisor):
    r = render(provider, os_alias, hypervisor)
    assert r.size <= LIMITS[provider] and r.limit == LIMITS[provider]
    assert (r.provider, r.os_alias, r.hypervisor) == (provider, os_alias, hypervisor)
    if OSES[os_alias].family == "windows":
        assert r.kind == "powershell" and not r.gzipped
        # EC2: the instance tag; Azure: the marker file, read through Run Command.
        assert r.readiness == ("tag:nestcloud:l1" if provider == "aws"
                               else "run-command:%ProgramData%\\nestcloud\\l1.json")
    else:
        assert r.kind == "cloud-config" and r.readiness == "console"
        # The shipped check is the module's own source, byte for byte.
        files = {f["path"]: f for f in _cloud_config(r)["write_files"]}
        assert files[profiles.L1CHECK_PATH]["content"] == profiles.module_source("l1check.py")
        assert _cloud_config(r)["runcmd"][-1] == ["python3", profiles.L1CHECK_PATH,
                                                  "--profile", hypervisor]


@pytest.mark.parametrize("os_alias, hypervisor", UNSUPPORTED)
def test_unsupported_pairs_are_refused_like_the_prelaunch_check(os_alias, hypervisor):
    spec = LaunchSpec(provider="aws", type="x", os=os_alias, hypervisor=hypervisor)
    expected = rule_os_hypervisor(spec, None, None)[0]  # type: ignore[arg-type]
    with pytest.raises(RefusedError) as exc:
        render("aws", os_alias, hypervisor)
    assert exc.value.exit_code == 3
    assert exc.value.message == expected.message
    assert exc.value.hint == expected.suggestion


@pytest.mark.parametrize("args, message", [
    (("aws", "fedora-40", "kvm"), "unknown OS 'fedora-40' (one of ubuntu-24.04, debian-12, "
                                  "rhel-9, al2023, windows-2022, windows-2025)"),
    (("aws", "ubuntu-24.04", "xen"), "unknown hypervisor 'xen' (one of kvm, firecracker, "
                                     "hyperv, wsl2, none)"),
])
def test_bad_names_are_input_errors(args, message):
    with pytest.raises(InputError) as exc:
        render(*args)
    assert exc.value.message == message and exc.value.exit_code == 2


def test_kvm_packages_and_services_per_distro():
    ub = linux_cloud_config("ubuntu-24.04", "kvm")
    assert ub["packages"] == ["qemu-system-x86", "qemu-utils", "libvirt-daemon-system",
                              "libvirt-daemon-driver-qemu", "libvirt-daemon-config-network",
                              "libvirt-clients", "dnsmasq-base", "ovmf", "virtinst",
                              "cpu-checker"]
    assert ["systemctl", "enable", "--now", "libvirtd"] in ub["runcmd"]
    rh = linux_cloud_config("rhel-9", "kvm")
    assert rh["packages"] == ["qemu-kvm", "libvirt", "virt-install", "edk2-ovmf"]
    assert ["systemctl", "enable", "--now", "virtqemud.socket", "virtnetworkd.socket",
            "virtstoraged.socket", "virtnodedevd.socket"] in rh["runcmd"]
    assert ub["package_update"] is True


def test_kvm_l2_defaults_are_shipped_and_explained():
    cfg = linux_cloud_config("debian-12", "kvm")
    files = {f["path"]: f["content"] for f in cfg["write_files"]}
    env = files[profiles.L2_DEFAULTS_PATH]
    assert 'L2_CPU="host-passthrough"' in env
    assert 'L2_NETWORK="network=default,model.type=virtio,driver.name=vhost"' in env
    assert 'L2_DISK_OPTS="bus=virtio,cache=none,io=native"' in env
    assert 'L2_MEMORYBACKING=""' in env
    assert "Turtles" in env and "FAST '12" in env  # the why, not just the what
    xml = files[profiles.L2_XML_EXAMPLE_PATH]
    assert "<cpu mode='host-passthrough'" in xml
    assert "<driver name='qemu' type='raw' cache='none' io='native'/>" in xml
    assert "<driver name='vhost'/>" in xml
    assert files["/etc/modules-load.d/nestcloud-vhost-net.conf"] == "vhost_net\n"
    assert profiles.HUGEPAGES_SYSCTL_PATH not in files


def test_hugepages_option():
    cfg = linux_cloud_config("ubuntu-24.04", "kvm", hugepages=512)
    files = {f["path"]: f["content"] for f in cfg["write_files"]}
    assert files[profiles.HUGEPAGES_SYSCTL_PATH] == "vm.nr_hugepages = 512\n"
    assert 'L2_MEMORYBACKING="hugepages=on"' in files[profiles.L2_DEFAULTS_PATH]
    assert ["sysctl", "-p", profiles.HUGEPAGES_SYSCTL_PATH] in cfg["runcmd"]
    with pytest.raises(InputError, match="for the kvm profile only"):
        render("aws", "al2023", "firecracker", hugepages=8)


def test_firecracker_profile_installs_the_pinned_release():
    cfg = linux_cloud_config("al2023", "firecracker")
    assert "packages" not in cfg  # stdlib python only: AL2023 has curl-minimal, no tar promise
    files = {f["path"]: f["content"] for f in cfg["write_files"]}
    assert files[profiles.FCINSTALL_PATH] == profiles.module_source("fcinstall.py")
    assert ["python3", profiles.FCINSTALL_PATH, "--version", "v1.13.1"] in cfg["runcmd"]
    assert cfg["runcmd"][-1][-2:] == ["--profile", "firecracker"]


def test_l2_smoke_is_kvm_only():
    cfg = _cloud_config(render("azure", "ubuntu-24.04", "kvm", l2_smoke=True))
    assert cfg["runcmd"][-1][-1] == "--l2-smoke"
    for os_alias, hv in (("debian-12", "firecracker"), ("windows-2022", "hyperv")):
        with pytest.raises(InputError, match="kvm profile only"):
            render("aws", os_alias, hv, l2_smoke=True)


def test_yaml_is_the_data_and_reads_back_identically():
    cfg = linux_cloud_config("rhel-9", "kvm", l2_smoke=True, hugepages=4)
    text = dump_cloud_config(cfg)
    assert yaml.safe_load(text) == cfg
    # file contents are literal blocks, not escaped one-liners
    assert "content: |" in text and "\\n" not in text.split("content: |", 1)[1][:200]


@pytest.mark.skipif(not getattr(yaml, "__with_libyaml__", False), reason="no libyaml here")
def test_libyaml_emits_the_bytes_the_pure_python_emitter_does():
    """dump_cloud_config uses libyaml's emitter when PyYAML has it; a machine without it must
    render the same user data (it goes into the launch digest and so the ClientTokens)."""
    import nestcloud.bootstrap as b

    class Pure(yaml.SafeDumper):
        pass

    Pure.add_representer(str, b._str_representer)
    assert issubclass(b._Dumper, yaml.CSafeDumper)
    cfgs = [linux_cloud_config(o, h) for o, h in LINUX]
    cfgs += [linux_cloud_config(o, "kvm", l2_smoke=True, hugepages=64)
             for o, h in LINUX if h == "kvm"]
    for cfg in cfgs:
        pure = "#cloud-config\n" + yaml.dump(cfg, Dumper=Pure, sort_keys=False,
                                             default_flow_style=False, width=100,
                                             allow_unicode=True)
        assert dump_cloud_config(cfg) == pure


# --- cloud-init's own schema validator ------------------------------------------------------

def _all_cloud_configs() -> dict[str, str]:
    """Every distinct cloud-config nestcloud renders (identical texts validated once)."""
    out: dict[str, str] = {}
    seen: set[str] = set()
    renders = [(f"{o}-{h}", render("azure", o, h)) for o, h in LINUX]
    renders.append(("ubuntu-kvm-l2-hugepages", render(
        "azure", "ubuntu-24.04", "kvm", l2_smoke=True, hugepages=64)))
    for name, r in renders:
        text = _text(r)
        if text not in seen:
            seen.add(text)
            out[name] = text
    return out


@pytest.fixture(scope="module")
def schema_results(tmp_path_factory) -> dict[str, tuple[int, str]]:
    if CLOUD_INIT is None:
        pytest.skip("cloud-init is not installed (apt-get install cloud-init): its schema "
                    "validator is what these tests run")
    d = tmp_path_factory.mktemp("cloud-config")
    procs = {}
    for name, text in _all_cloud_configs().items():
        path = d / f"{name}.yaml"
        path.write_text(text)
        procs[name] = subprocess.Popen([CLOUD_INIT, "schema", "--config-file", str(path)],
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True)
    return {n: (p.wait(timeout=120), p.stdout.read()) for n, p in procs.items()}


@pytest.mark.parametrize("name", list(_all_cloud_configs()))
def test_cloud_init_schema_accepts(schema_results, name):
    rc, out = schema_results[name]
    assert rc == 0 and "Valid cloud-config" in out, out


@pytest.mark.skipif(CLOUD_INIT is None, reason="cloud-init is not installed")
def test_cloud_init_schema_catches_a_broken_config(tmp_path):
    """The validator really validates (so the passes above mean something)."""
    cfg = linux_cloud_config("ubuntu-24.04", "kvm")
    cfg["packages"] = "qemu-system-x86"  # a string where cloud-init wants a list
    path = tmp_path / "bad.yaml"
    path.write_text(dump_cloud_config(cfg))
    proc = subprocess.run([CLOUD_INIT, "schema", "--config-file", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "packages" in proc.stdout + proc.stderr


# --- sizes and gzip --------------------------------------------------------------------------

def test_aws_linux_is_gzipped_to_fit_and_azure_is_not():
    aws = render("aws", "ubuntu-24.04", "kvm")
    azure = render("azure", "ubuntu-24.04", "kvm")
    assert azure.raw_size > LIMITS["aws"], "the premise: the kvm profile is over 16 KB raw"
    assert aws.gzipped and not azure.gzipped
    assert aws.body[:2] == b"\x1f\x8b"
    assert gzip.decompress(aws.body) == azure.body
    assert aws.raw_size == len(azure.body)
    # deterministic: the same input gives the same bytes (no gzip timestamp)
    assert render("aws", "ubuntu-24.04", "kvm").body == aws.body


def _incompressible(n: int) -> str:
    rnd = random.Random(4)
    line = lambda: "".join(rnd.choice(string.ascii_letters) for _ in range(76))  # noqa: E731
    return "#!/bin/sh\n" + "\n".join(f"# {line()}" for _ in range(n // 79)) + "\n"


def test_too_big_even_gzipped_names_the_sizes():
    with pytest.raises(InputError) as exc:
        render("aws", "debian-12", "none", extra=_incompressible(20000))
    msg = exc.value.message
    assert msg.startswith("the user data is ")
    raw, gz = [int(w.strip("(")) for w in msg.split() if w.strip("(").isdigit()][:2]
    assert raw > gz > 16384
    assert "over the aws user-data limit of 16384 bytes even gzipped" in msg


def test_azure_gzips_when_needed():
    extra = "#!/bin/sh\n" + "echo the same line again and again\n" * 1500  # ~50 KB, compressible
    r = render("azure", "ubuntu-24.04", "kvm", extra=extra)
    assert r.raw_size > LIMITS["azure"] and r.gzipped and r.size <= LIMITS["azure"]


def test_windows_cannot_be_gzipped():
    with pytest.raises(InputError) as exc:
        render("aws", "windows-2022", "hyperv", extra="Write-Output hi\n" * 1200)
    assert "cannot be gzipped: Windows does not unpack it" in exc.value.message
    assert "over the aws user-data limit of 16384 bytes" in exc.value.message


# --- the MIME merge ---------------------------------------------------------------------------

USER_CC = "#cloud-config\npackages: [htop]\nruncmd:\n  - [echo, user]\n"


def _parts(body: bytes):
    msg = email.message_from_bytes(body, policy=email.policy.default)
    assert msg.is_multipart() and msg.get_content_type() == "multipart/mixed"
    assert msg["MIME-Version"] == "1.0"
    return [p for p in msg.walk() if not p.is_multipart()]


def test_mime_merge_with_a_user_cloud_config():
    r = render("azure", "debian-12", "kvm", extra=USER_CC)
    assert r.kind == "mime" and r.parts == ("text/cloud-config", "text/cloud-config")
    ours, theirs = _parts(r.body)
    alone = render("azure", "debian-12", "kvm").body.decode()
    assert ours.get_content() == alone
    assert ours["Merge-Type"] is None
    assert theirs.get_content() == USER_CC
    assert theirs["Merge-Type"] == USER_MERGE_TYPE == "list(append)+dict(recurse_array)+str()"
    assert theirs.get_filename() == "user-cloud-config.yaml"


def test_mime_merge_with_a_user_script_and_gzip_on_aws():
    script = "#!/bin/bash\necho hello from the user\n"
    r = render("aws", "ubuntu-24.04", "kvm", extra=script)
    assert r.kind == "mime" and r.gzipped
    ours, theirs = _parts(gzip.decompress(r.body))
    assert ours.get_content_type() == "text/cloud-config"
    assert theirs.get_content_type() == "text/x-shellscript"
    assert theirs.get_content() == script


def test_mime_merge_keeps_the_parts_of_a_user_mime_document():
    r1 = render("azure", "rhel-9", "none", extra="#!/bin/sh\necho a\n")
    _, script = _parts(r1.body)
    user_mime = ("Content-Type: multipart/mixed; boundary=XYZ\nMIME-Version: 1.0\n\n"
                 "--XYZ\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho one\n"
                 "--XYZ\nContent-Type: text/cloud-config\n\n#cloud-config\nruncmd: [[echo, two]]\n"
                 "--XYZ--\n")
    r = render("azure", "rhel-9", "none", extra=user_mime)
    parts = _parts(r.body)
    assert [p.get_content_type() for p in parts] == ["text/cloud-config", "text/x-shellscript",
                                                     "text/cloud-config"]
    assert parts[1].get_content().strip() == "#!/bin/sh\necho one"
    assert parts[2]["Merge-Type"] == USER_MERGE_TYPE
    assert script.get_content() == "#!/bin/sh\necho a\n"


def test_mime_non_ascii_user_data_survives():
    extra = "#cloud-config\nruncmd:\n  - [echo, 'grüße 🐢']\n"
    r = render("azure", "debian-12", "none", extra=extra)
    _, theirs = _parts(r.body)
    assert theirs.get_content() == extra


@pytest.mark.parametrize("extra, message", [
    ("echo hi\n", "--user-data: cloud-init would not know what 'echo hi' is"),
    ("#cloud-config\nruncmd: [\n", "--user-data:3:1: malformed YAML: did not find expected "
                                   "node content"),
    ("#cloud-config\nruncmd: [a]\nruncmd: [b]\n",
     "--user-data:3: duplicate key 'runcmd' (first at line 2)"),
    ("#cloud-config\n- a\n- b\n", "--user-data: a #cloud-config must be a YAML mapping (got list)"),
])
def test_unusable_user_data(extra, message):
    with pytest.raises(InputError) as exc:
        render("aws", "ubuntu-24.04", "none", extra=extra)
    assert exc.value.message.startswith(message)


def test_blank_user_data_is_ignored():
    assert render("azure", "debian-12", "none", extra="  \n").kind == "cloud-config"


# --- Windows --------------------------------------------------------------------------------

@pytest.mark.parametrize("os_alias, hypervisor", WINDOWS)
def test_windows_aws_wrapping(os_alias, hypervisor):
    text = render("aws", os_alias, hypervisor).body.decode()
    assert text.startswith("<powershell>\n")
    assert text.endswith("</powershell>\n<persist>true</persist>\n")
    assert "$NcDelivery = 'user-data'\n" in text and f"$NcProfile = '{hypervisor}'\n" in text
    assert "$NcTag = 'nestcloud:l1'\n" in text and "$NcUserScript = $null\n" in text


def test_windows_hyperv_script_content():
    text = render("aws", "windows-2025", "hyperv").body.decode()
    assert "Install-WindowsFeature -Name Hyper-V -IncludeManagementTools -Restart" in text
    for needle in ("HypervisorPresent", "(Get-Service vmms).Status -eq 'Running'",
                   "New-VM -Name $p -Generation 2", "Start-VM -Name $p",
                   "New-EC2Tag -Region $region -Resource $id", "NESTCLOUD-L1 $json",
                   "New-NetNat"):
        assert needle in text, needle


def test_windows_azure_runs_without_rebooting_inside_the_extension():
    text = render("azure", "windows-2022", "hyperv").body.decode()
    assert "<powershell>" not in text
    head, body = text.split("@'\n", 1)
    body, tail = body.split("\n'@\n", 1)
    assert "$NcDelivery = 'provider'" in body
    # The one -Restart is on the user-data branch (persist re-runs the script after the
    # reboot); delivered by the provider, a delayed shutdown lets the extension finish first.
    assert body.count("-Restart") == 1
    assert ("if ($NcDelivery -eq 'user-data') {\n      Install-WindowsFeature -Name Hyper-V "
            "-IncludeManagementTools -Restart") in body
    assert "else { shutdown.exe /r /t 30" in body
    assert "Register-ScheduledTask -TaskName 'nestcloud-l1'" in tail
    assert "New-ScheduledTaskTrigger -AtStartup" in tail
    assert "providers/Microsoft.Resources/tags/default?api-version=2021-04-01" in body


def test_windows_user_script_is_carried_base64_and_strips_ec2_tags():
    user = "<powershell>\nWrite-Output 'it''s mine'\n'@ tricky\n</powershell>\n"
    text = render("aws", "windows-2022", "wsl2", extra=user).body.decode()
    line = next(x for x in text.splitlines() if x.startswith("$NcUserScript = "))
    payload = line.split("'")[1]
    assert base64.b64decode(payload).decode() == "Write-Output 'it''s mine'\n'@ tricky\n"
    assert text.count("<powershell>") == 1
    with pytest.raises(InputError, match="Windows L1s take a PowerShell script"):
        render("azure", "windows-2022", "hyperv", extra=USER_CC)


# --- the virt-install wrapper shipped with the kvm profile ----------------------------------

@pytest.fixture
def wrapper(tmp_path: Path):
    if shutil.which("sh") is None:
        pytest.skip("no POSIX sh")
    cfg = linux_cloud_config("ubuntu-24.04", "kvm", hugepages=16)
    files = {f["path"]: f["content"] for f in cfg["write_files"]}
    env = tmp_path / "l2-defaults.env"
    env.write_text(files[profiles.L2_DEFAULTS_PATH])
    script = tmp_path / "nestcloud-virt-install"
    script.write_text(files[profiles.VIRT_INSTALL_WRAPPER_PATH])
    fake = tmp_path / "virt-install"
    fake.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    fake.chmod(0o755)

    def run(*args: str) -> list[str]:
        proc = subprocess.run(["sh", str(script), *args], capture_output=True, text=True,
                              env={**os.environ, "NESTCLOUD_L2_DEFAULTS": str(env),
                                   "VIRT_INSTALL": str(fake)}, timeout=30)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.splitlines()
    return run


def test_wrapper_adds_the_l2_defaults(wrapper):
    assert wrapper("--name", "g1", "--disk", "size=10", "--import") == [
        "--name", "g1", "--disk", "size=10,bus=virtio,cache=none,io=native,format=raw",
        "--import", "--cpu", "host-passthrough",
        "--network", "network=default,model.type=virtio,driver.name=vhost",
        "--memorybacking", "hugepages=on"]


def test_wrapper_keeps_what_the_user_chose(wrapper):
    out = wrapper("--cpu", "host-model", "--network=bridge=br0",
                  "--disk=/var/lib/x.qcow2,cache=writeback", "--disk", "/srv/y.img",
                  "--disk", "device=cdrom,path=/iso")
    assert out == ["--cpu", "host-model", "--network=bridge=br0",
                   "--disk=/var/lib/x.qcow2,cache=writeback",
                   "--disk", "/srv/y.img,bus=virtio,cache=none,io=native",
                   "--disk", "device=cdrom,path=/iso", "--memorybacking", "hugepages=on"]
