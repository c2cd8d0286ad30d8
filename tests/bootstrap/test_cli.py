"""`nestcloud userdata | doctor | wait` through typer's CliRunner: bytes, text, JSON, exit codes."""

from __future__ import annotations

import base64
import gzip
import json
import os
import types

import pytest
from typer.testing import CliRunner

from nestcloud.bootstrap import l1check
from nestcloud.cli import app
from tests.bootstrap.fakekvm import FakeKvm
from tests.bootstrap.test_render import render
from tests.bootstrap.test_wait import FAILED, READY, FakeClock, FakeProvider, after, inst


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


# --- userdata ------------------------------------------------------------------------------

def test_userdata_prints_exactly_the_bytes():
    r = invoke("userdata", "-p", "azure", "--os", "ubuntu-24.04", "--hypervisor", "kvm")
    expected = render("azure", "ubuntu-24.04", "kvm")
    assert r.exit_code == 0
    assert r.stdout_bytes == expected.body
    assert r.stderr == f"cloud-config, {expected.size} bytes; azure limit 65535\n"


def test_userdata_gzipped_is_base64_on_stdout_and_said_on_stderr():
    r = invoke("userdata", "-p", "aws", "--os", "debian-12", "--hypervisor", "kvm")
    expected = render("aws", "debian-12", "kvm")
    assert r.exit_code == 0
    assert base64.b64decode(r.stdout) == expected.body
    assert r.stdout.count("\n") == 1
    assert r.stderr == (f"gzipped (cloud-config, {expected.size} bytes gzipped from "
                        f"{expected.raw_size}; aws limit 16384): printing it as base64; decode "
                        "with `base64 -d | gunzip`, or use --out FILE for the raw bytes\n")


def test_userdata_out_writes_the_raw_bytes(tmp_path):
    out = tmp_path / "ud.bin"
    r = invoke("userdata", "-p", "aws", "--os", "al2023", "--hypervisor", "firecracker",
               "--out", str(out))
    assert r.exit_code == 0 and r.stdout == ""
    assert out.read_bytes() == render("aws", "al2023", "firecracker").body
    assert gzip.decompress(out.read_bytes()).startswith(b"#cloud-config\n")
    assert r.stderr.startswith(f"wrote {out} (cloud-config, ")


def test_userdata_json_with_user_data(tmp_path):
    ud = tmp_path / "mine.sh"
    ud.write_text("#!/bin/sh\necho mine\n")
    r = invoke("userdata", "-p", "azure", "--os", "rhel-9", "--hypervisor", "none",
               "--user-data", str(ud), "--json")
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    expected = render("azure", "rhel-9", "none", extra="#!/bin/sh\necho mine\n")
    assert doc["kind"] == "mime" and doc["parts"] == ["text/cloud-config", "text/x-shellscript"]
    assert doc["body"].encode() == expected.body
    assert base64.b64decode(doc["body_base64"]) == expected.body
    assert (doc["size"], doc["limit"], doc["gzipped"]) == (expected.size, 65535, False)


def test_userdata_windows_is_the_script():
    r = invoke("userdata", "-p", "aws", "--os", "windows-2025", "--hypervisor", "wsl2")
    assert r.exit_code == 0
    assert r.stdout.startswith("<powershell>\n")
    assert r.stdout.endswith("</powershell>\n<persist>true</persist>\n")


def test_userdata_refuses_an_unsupported_pair_with_exit_3():
    r = invoke("userdata", "-p", "aws", "--os", "windows-2022", "--hypervisor", "kvm")
    assert r.exit_code == 3 and r.stdout == ""
    # The same words as the pre-launch check (checks.rule_os_hypervisor owns them).
    from nestcloud.checks import rule_os_hypervisor
    from nestcloud.spec import LaunchSpec

    f = rule_os_hypervisor(LaunchSpec(provider="aws", type="x", os="windows-2022",
                                      hypervisor="kvm"), None, None)[0]  # type: ignore[arg-type]
    assert "Windows Server 2022" in f.message
    assert r.stderr == f"error: {f.message}\n  hint: {f.suggestion}\n"
    rj = invoke("userdata", "-p", "aws", "--os", "windows-2022", "--hypervisor", "kvm", "--json")
    doc = json.loads(rj.stdout)
    assert rj.exit_code == 3 and doc["error"] == "RefusedError" and doc["exit_code"] == 3


@pytest.mark.parametrize("args, message", [
    (["--os", "fedora", "--hypervisor", "kvm"], "error: unknown OS 'fedora' (one of "),
    (["--os", "debian-12", "--hypervisor", "firecracker", "--l2-smoke"],
     "error: --l2-smoke boots a tiny L2 guest with QEMU: it exists for the kvm profile only, "
     "not firecracker\n"),
    (["--os", "debian-12", "--hypervisor", "kvm", "--user-data", "/nonexistent/ud.yaml"],
     "error: --user-data '/nonexistent/ud.yaml': cannot read it ("),
])
def test_userdata_bad_input_is_exit_2(args, message):
    r = invoke("userdata", "-p", "aws", *args)
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.startswith(message)
    assert "Traceback" not in r.stderr


def test_userdata_unknown_provider_is_exit_2():
    r = invoke("userdata", "-p", "oci", "--os", "ubuntu-24.04", "--hypervisor", "kvm")
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.startswith("error: unknown provider 'oci' (known: ")
    assert "Traceback" not in r.stderr


# --- doctor --------------------------------------------------------------------------------

def test_doctor_runs_on_this_machine():
    r = invoke("doctor")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith("nestcloud doctor: ")
    for name in ("placement", "cpu_flag", "kvm_module", "dev_kvm", "kvm_smoke", "local_l1_host"):
        assert f"] {name}: " in r.stdout
    rj = invoke("doctor", "--json")
    doc = json.loads(rj.stdout)
    assert rj.exit_code == 0
    assert set(doc) == {"ready", "verdict", "placement", "items", "payload", "local_host"}
    assert doc["payload"]["status"] in ("ready", "failed")
    assert doc["local_host"]["mode"] in ("kvm", "emulation", "none")
    assert doc["local_host"]["summary"].startswith("this machine ")


@pytest.fixture
def as_host(monkeypatch, fixture_host):
    def use(name: str, **kw):
        monkeypatch.setattr(l1check, "Host", lambda root: fixture_host(name, **kw))
    return use


def test_doctor_on_an_ec2_l1_with_nesting(as_host):
    as_host("intel-vmx")
    r = invoke("doctor")
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert lines[0] == ("nestcloud doctor: this machine can run hardware-virtualized KVM "
                        "guests")
    assert lines[2] == ("[info] placement: a VM (AWS EC2); depth L1 (a VM on AWS EC2; clouds "
                        "run customer VMs at L1): guests you start here are L2")
    assert any(line.startswith("[ok  ] kvm_smoke: a real guest ran 40 million instructions "
                               "under KVM in ") and line.endswith(" s: exits OUT 0x3f8 then HLT")
               for line in lines), lines


def test_doctor_on_azure_amd_and_bare_metal(as_host):
    as_host("amd-svm")
    doc = json.loads(invoke("doctor", "--json").stdout)
    assert doc["placement"]["platform"] == "Azure" and doc["ready"] is True
    assert "clocksource hyperv_clocksource_tsc_page: the hypervisor is Hyper-V (includes " \
           "Azure)" in doc["placement"]["evidence"]
    as_host("bare-metal-intel")
    doc = json.loads(invoke("doctor", "--json").stdout)
    assert doc["placement"] == {
        "is_vm": False, "platform": "bare metal",
        "depth": "L0 (bare metal): guests you start here are L1",
        "evidence": ["cpuinfo has no 'hypervisor' flag", "DMI: Dell Inc. / Precision 7960 "
                                                         "Tower"]}


def test_doctor_not_ready_exit_codes(as_host):
    as_host("no-flag")
    r = invoke("doctor")
    assert r.exit_code == 0  # a report, not a failure
    assert r.stdout.splitlines()[0] == ("nestcloud doctor: this machine cannot run KVM "
                                        "guests: cpu_flag, kvm_module, dev_kvm, kvm_smoke")
    assert invoke("doctor", "--require-ready").exit_code == 1


def test_doctor_explains_the_paravirtual_kvm(as_host):
    as_host("kvm-without-vmx")
    r = invoke("doctor", "--json")
    doc = json.loads(r.stdout)
    assert doc["ready"] is False
    assert doc["verdict"].startswith("KVM guests do run here, but not on hardware "
                                     "virtualization")
    assert doc["placement"]["platform"] == "a microVM without DMI (e.g. Firecracker)"


def test_doctor_on_kvm_pvm_emulating_a_stock_guest(as_host, fixture_host, monkeypatch):
    # As measured on the machine the fixture was recorded on: the guest runs, but at about
    # 1 us per loop iteration.
    host = fixture_host("kvm-without-vmx", kvm=FakeKvm(emulated_s_per_loop=1e-6))
    host.smoke_timeout_s = 0.3
    monkeypatch.setattr(l1check, "Host", lambda root: host)
    doc = json.loads(invoke("doctor", "--json").stdout)
    assert doc["verdict"] == ("this machine cannot run KVM guests: cpu_flag, kvm_module, "
                              "kvm_smoke")


def test_doctor_kvm_profile_and_bad_profile(as_host):
    as_host("intel-vmx")
    r = invoke("doctor", "--profile", "kvm")
    assert "[FAIL] libvirt: virsh is not installed (libvirt client packages missing)" in r.stdout
    assert "[info] virt_host_validate: virt-host-validate is not installed: skipped" in r.stdout
    bad = invoke("doctor", "--profile", "xen")
    assert bad.exit_code == 2 and bad.stderr == ("error: --profile 'xen': one of kvm, "
                                                 "firecracker, none\n")


# --- wait ----------------------------------------------------------------------------------

@pytest.fixture
def fake_cloud(monkeypatch):
    """open_for -> a FakeProvider on a fake clock; wait's sleeping advances the clock. What
    the command would have built the provider with is recorded (the real option routing)."""
    from nestcloud.cli._inputs import provider_options

    clock = FakeClock()
    state: dict = {}

    def make(ctx, name, *, region, sandbox):
        state["made"] = (name, {"region": region, "sandbox": sandbox,
                                **provider_options(ctx, [name])[name]})
        return state["provider"]

    monkeypatch.setattr("nestcloud.cli.cloud_cmd.open_for", make)
    monkeypatch.setattr("nestcloud.bootstrap.wait.time",
                        types.SimpleNamespace(monotonic=clock, sleep=clock.sleep))

    def setup(console, names=("i-1",)):
        p = FakeProvider(clock, console=console,
                         records=lambda t: [inst(i) for i in names])
        state["provider"] = p
        return p
    setup.state = state  # type: ignore[attr-defined]
    setup.clock = clock  # type: ignore[attr-defined]
    return setup


def test_wait_ready_table(fake_cloud):
    fake_cloud({"i-1": after(15, READY)})
    r = invoke("wait", "lab", "-p", "aws", "--region", "eu-west-1", "--timeout", "2m")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines() == [
        "name  id   status  from     detail",
        "----  ---  ------  -------  -------------------",
        "lab   i-1  ready   console  L1 hypervisor ready",
    ]
    # AZURE_SUBSCRIPTION_ID is set in this environment: a setting AWS does not declare, so it
    # does not reach the AWS provider.
    assert os.environ.get("AZURE_SUBSCRIPTION_ID")
    assert fake_cloud.state["made"] == ("aws", {"region": "eu-west-1", "sandbox": False})
    assert fake_cloud.clock.sleeps == [10, 10]


def test_wait_failed_json_exit_1(fake_cloud):
    fake_cloud({"i-1": after(0, FAILED)})
    r = invoke("wait", "lab", "-p", "aws", "--json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["exit_code"] == 1
    assert doc["instances"][0]["failed_checks"] == ["cpu_flag: no vmx or svm flag"]


def test_wait_timeout_exit_4(fake_cloud):
    fake_cloud({"i-1": lambda t: "still booting"})
    r = invoke("wait", "lab", "-p", "aws", "--timeout", "30s", "--interval", "10")
    assert r.exit_code == 4
    assert "no readiness marker within 30s" in r.stdout
    assert fake_cloud.clock.sleeps == [10, 10, 10]


def test_wait_sandbox_says_it_cannot_verify(fake_cloud):
    p = fake_cloud({"i-1": after(0, READY)})
    r = invoke("wait", "lab", "-p", "aws", "--sandbox")
    assert r.exit_code == 0
    assert "not-verifiable" in r.stdout
    assert r.stderr.endswith("sandbox: no guest boots, readiness cannot be shown\n")
    assert p.console_calls == []
    assert fake_cloud.state["made"][1]["sandbox"] is True


def test_wait_unknown_name_and_bad_timeout(fake_cloud):
    fake_cloud({}, names=())
    r = invoke("wait", "nope", "-p", "aws")
    assert r.exit_code == 2
    assert r.stderr == ("error: no instances named 'nope' on aws\n"
                        "  hint: `nestcloud ls` lists what runs\n")
    r = invoke("wait", "lab", "-p", "aws", "--timeout", "soon")
    assert r.exit_code == 2
    assert r.stderr.startswith("error: --timeout 'soon': not a duration")
