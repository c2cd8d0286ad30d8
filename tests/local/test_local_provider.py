"""The local provider through the CLI and its class hooks, booting nothing: a fake QEMU
(conftest.py) stands in for qemu-system-x86_64 and qemu-img, a recorded host tree for /proc.
What is asserted: what we ran (QEMU argv, seed bytes), what the user sees (exit codes, tables,
JSON) and what is left (processes, files)."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from nestcloud.catalog import load_catalog
from nestcloud.provider import LaunchRequest
from nestcloud.spec import TAG_EXPIRES, TAG_NAME, TAG_OWNER, LaunchSpec
from providers.local import LocalProvider
from providers.local import host as hostmod
from providers.local.provider import seats_root

from .conftest import FakeQemu, seat_processes, write_host

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli() -> Any:
    from nestcloud.cli import app

    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(app, list(args), env={"NESTCLOUD_DEBUG": ""})

    return run


def _launch(cli: Any, image: Path, *extra: str, name: str = "lab1", size: str = "1c-2g") -> Any:
    return cli("launch", "-p", "local", "-t", size, "--os", "debian-12", "--hypervisor",
               "none", "--image", str(image), "--name", name, "-o", "accel=tcg", *extra)


def _after(argv: list[str], flag: str) -> list[str]:
    return [b for a, b in zip(argv, argv[1:]) if a == flag]


def _starts(fake: FakeQemu) -> list[list[str]]:
    return [c for c in fake.calls() if "-daemonize" in c]


def _iso_file(path: Path, name: str) -> bytes:
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        out = io.BytesIO()
        iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
        return out.getvalue()
    finally:
        iso.close()


# -- registration ----------------------------------------------------------------------------


def test_importing_the_provider_imports_no_iso_library_and_it_is_registered() -> None:
    code = ("import sys, providers.local as m; "
            "assert 'pycdlib' not in sys.modules, 'pycdlib imported'; "
            "from nestcloud.provider import load_factory; "
            "assert load_factory('local') is m.LocalProvider")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


def test_options_are_declared_once_and_refused_when_unknown() -> None:
    assert [(o.name, o.flag) for o in LocalProvider.options] == [("cpu", "--local-cpu"),
                                                                 ("accel", "--local-accel")]
    from nestcloud.errors import InputError
    from nestcloud.provider import open_provider

    with pytest.raises(InputError, match=r"-o cpu=fast: one of default, novirt"):
        open_provider("local", cpu="fast")
    with pytest.raises(InputError, match=r"one region, 'local'"):
        open_provider("local", "us-east-1")


# -- launch, ls, wait, down --------------------------------------------------------------------


def test_launch_runs_qemu_with_the_seed_a_cloud_would_get(cli: Any, fake_qemu: FakeQemu,
                                                          fake_image: Path, big_host: Path,
                                                          tmp_path: Path) -> None:
    part = tmp_path / "part.sh"
    part.write_text("#!/bin/sh\necho user part ran > /var/tmp/nc-user\n")
    res = _launch(cli, fake_image, "--user-data", str(part), "--ssh-cidr", "127.0.0.1/32",
                  "--ttl", "2h", "--tag", "team=blue", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    [inst] = doc["instances"]
    assert doc["created"] == [inst["id"]] and doc["reused"] == []
    assert inst["zone"] == "tcg (emulated)" and inst["state"] == "running"
    assert inst["region"] == "local" and inst["type"] == "1c-2g" and inst["nested"] is True
    assert inst["tags"]["team"] == "blue" and inst["tags"][TAG_NAME] == "lab1"
    assert inst["tags"][TAG_OWNER] and inst["tags"][TAG_EXPIRES] == inst["expires"]
    assert any("EMULATED (TCG)" in n for n in doc["notes"])
    [argv] = _starts(fake_qemu)
    port = int(inst["public_ip"].rsplit(":", 1)[1])
    assert inst["public_ip"] == f"127.0.0.1:{port}"
    seat = seats_root() / "lab1" / "0"
    assert _after(argv, "-nic") == [f"user,model=virtio-net-pci,"
                                    f"hostfwd=tcp:127.0.0.1:{port}-:22"]
    assert _after(argv, "-accel") == ["tcg"] and _after(argv, "-cpu") == ["qemu64"]
    assert _after(argv, "-smp") == ["1"] and _after(argv, "-m") == ["2048"]
    assert _after(argv, "-kernel") == [str(fake_image / "vmlinuz")]
    assert _after(argv, "-append") == ["console=ttyS0 root=/dev/vda ro"]
    assert _after(argv, "-drive") == [
        f"file={seat}/disk.qcow2,if=virtio,format=qcow2,discard=unmap",
        f"file={seat}/seed.iso,if=virtio,format=raw,readonly=on"]
    assert _after(argv, "-pidfile") == [str(seat / "qemu.pid")]
    # The overlay is copy-on-write over the image, grown to --disk-gib (30 by default).
    [create] = [c for c in fake_qemu.calls("qemu-img") if c[1] == "create"]
    assert create[1:] == ["create", "-q", "-f", "qcow2", "-b", str(fake_image / "disk.qcow2"),
                          "-F", "qcow2", str(seat / "disk.qcow2"), str(30 << 30)]
    # The seed carries exactly what the renderer gives for this provider's envelope,
    # with the user's part merged in (the same MIME merge a cloud gets).
    from nestcloud.bootstrap import read_user_data, render_user_data

    want = render_user_data(LocalProvider.capabilities.user_data, "debian-12", "none",
                            provider_name="local", extra=read_user_data(part))
    assert want.parts == ("text/cloud-config", "text/x-shellscript")
    assert _iso_file(seat / "seed.iso", "user-data") == want.body
    meta = json.loads(_iso_file(seat / "seed.iso", "meta-data"))
    assert meta == {"instance-id": inst["id"], "local-hostname": "lab1-0"}

    ls = cli("ls", "-p", "local")
    assert ls.exit_code == 0, ls.output
    row = [line for line in ls.stdout.splitlines() if inst["id"] in line]
    assert len(row) == 1 and "tcg (emulated)" in row[0] and f"127.0.0.1:{port}" in row[0]

    again = _launch(cli, fake_image, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["reused"] == [inst["id"]]
    assert len(_starts(fake_qemu)) == 1


def test_wait_reads_the_marker_on_the_serial_log_and_down_leaves_nothing(
        cli: Any, fake_qemu: FakeQemu, fake_image: Path, big_host: Path) -> None:
    assert _launch(cli, fake_image, name="ok").exit_code == 0
    novirt = _launch(cli, fake_image, "-o", "cpu=novirt", name="novirt")
    assert novirt.exit_code == 0, novirt.output
    assert _after(_starts(fake_qemu)[-1], "-cpu") == ["qemu64,-svm,-vmx"]
    ready = cli("wait", "ok", "-p", "local", "--interval", "0.1", "--timeout", "30", "--json")
    assert ready.exit_code == 0, ready.output
    [r] = json.loads(ready.stdout)["instances"]
    assert r["status"] == "ready" and r["source"] == "console"
    assert r["checks"] == {"cpu_flag": {"ok": True, "flag": "svm"}}
    failed = cli("wait", "novirt", "-p", "local", "--interval", "0.1", "--timeout", "30")
    assert failed.exit_code == 1, failed.output
    assert "cpu_flag: no vmx or svm in /proc/cpuinfo" in failed.stdout
    ls = json.loads(cli("ls", "-p", "local", "--json").stdout)["instances"]
    assert [(i["name"], i["nested"]) for i in ls] == [("novirt", False), ("ok", True)]
    for name in ("ok", "novirt"):
        d = seats_root() / name
        assert seat_processes(d)
        down = cli("down", name, "-p", "local", "--yes")
        assert down.exit_code == 0, down.output
        assert f"local: {name}: terminated 1 instance(s)" in down.stdout
        assert not d.exists() and seat_processes(d) == []
    again = cli("down", "ok", "-p", "local", "--yes")
    assert again.exit_code == 0 and "local: ok: nothing to remove" in again.stdout


def test_down_kills_only_the_qemu_it_started(fake_qemu: FakeQemu, fake_image: Path,
                                            tmp_path: Path) -> None:
    p = LocalProvider(accel="tcg", host_root=write_host(tmp_path / "host"))
    spec = LaunchSpec(provider="local", type="1c-2g", name="mine", os="debian-12",
                      hypervisor="none", image=str(fake_image))
    p.launch(LaunchRequest(spec, load_catalog()))
    seat = seats_root() / "mine" / "0"
    [ours] = seat_processes(seat)
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        (seat / "qemu.pid").write_text(f"{stranger.pid}\n")   # a stale pid, now reused
        assert [i.state for i in p.list("mine")] == ["stopped"]
        res = p.down("mine")
        assert len(res.terminated) == 1
        assert stranger.poll() is None                        # not ours: left alone
        assert not seat.exists()
    finally:
        stranger.kill()
        stranger.wait()
        os.kill(ours, 9)


def test_a_seat_whose_qemu_exited_is_started_again_on_its_own_disk(
        fake_qemu: FakeQemu, fake_image: Path, tmp_path: Path) -> None:
    p = LocalProvider(accel="tcg", host_root=write_host(tmp_path / "host"))
    spec = LaunchSpec(provider="local", type="1c-2g", name="again", os="debian-12",
                      hypervisor="none", image=str(fake_image))
    first = p.launch(LaunchRequest(spec, load_catalog())).result
    assert first is not None
    [pid] = seat_processes(seats_root() / "again")
    os.kill(pid, 9)
    import time

    deadline = time.monotonic() + 5
    while p.list("again")[0].state != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [i.state for i in p.list("again")] == ["stopped"]
    out = p.launch(LaunchRequest(spec, load_catalog())).result
    assert out is not None
    assert out.created == first.created and out.reused == []
    assert any("started it again on its own disk" in n for n in out.notes)
    assert [i.state for i in p.list("again")] == ["running"]
    assert len([c for c in fake_qemu.calls("qemu-img") if c[1] == "create"]) == 1
    p.down("again")


def test_a_stopped_seat_of_another_size_is_refused_not_restarted(
        fake_qemu: FakeQemu, fake_image: Path, tmp_path: Path) -> None:
    from nestcloud.errors import InputError

    p = LocalProvider(accel="tcg", host_root=write_host(tmp_path / "host"))
    spec = _spec(type="1c-2g", name="sized", image=str(fake_image))
    p.launch(LaunchRequest(spec, load_catalog()))
    [pid] = seat_processes(seats_root() / "sized")
    os.kill(pid, 9)
    with pytest.raises(InputError, match="'sized' already runs 1c-2g"):
        p.launch(LaunchRequest(spec.model_copy(update={"type": "2c-4g"}), load_catalog()))
    assert len(_starts(fake_qemu)) == 1
    p.down("sized")


def test_another_size_under_a_running_name_is_refused(cli: Any, fake_qemu: FakeQemu,
                                                      fake_image: Path, big_host: Path) -> None:
    assert _launch(cli, fake_image).exit_code == 0
    res = _launch(cli, fake_image, size="2c-4g")
    assert res.exit_code == 2
    assert "'lab1' already runs 1c-2g" in res.output


@pytest.mark.parametrize(("flag", "why"), [
    (("--spot",), "--spot: provider 'local' offers no spot capacity"),
    (("--egress", "nat"), "--egress nat: provider 'local' does not offer this setting"),
    (("--public-ip",), "--public-ip: seats use QEMU's user-mode network"),
])
def test_cloud_only_flags_are_bad_input(cli: Any, fake_qemu: FakeQemu, fake_image: Path,
                                        big_host: Path, flag: tuple[str, ...], why: str) -> None:
    res = _launch(cli, fake_image, *flag)
    assert res.exit_code == 2, res.output
    assert why in res.output
    assert _starts(fake_qemu) == []


def test_dry_run_shows_the_qemu_command_and_starts_nothing(cli: Any, fake_qemu: FakeQemu,
                                                          fake_image: Path,
                                                          big_host: Path) -> None:
    res = _launch(cli, fake_image, "--count", "2", "--dry-run", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["dry_run"] is True and doc["created"] == []
    ops = [(r["service"], r["operation"]) for r in doc["requests"]]
    assert ops == [("qemu", "qemu-img create"), ("qemu", "start")] * 2
    argv = doc["requests"][1]["params"]["argv"]
    assert argv[0] == "qemu-system-x86_64" and _after(argv, "-accel") == ["tcg"]
    assert _starts(fake_qemu) == [] and not (seats_root() / "lab1").exists()


def test_dry_run_of_an_alias_names_the_download_it_would_make(cli: Any, fake_qemu: FakeQemu,
                                                             big_host: Path) -> None:
    res = cli("launch", "-p", "local", "-t", "1c-2g", "--os", "ubuntu-24.04", "--hypervisor",
              "none", "--name", "u", "-o", "accel=tcg", "--dry-run", "--json")
    assert res.exit_code == 0, res.output
    first = json.loads(res.stdout)["requests"][0]
    assert first["operation"] == "download"
    assert first["params"]["url"] == ("https://cloud-images.ubuntu.com/releases/noble/release/"
                                      "ubuntu-24.04-server-cloudimg-amd64.img")
    assert first["params"]["checksums"].endswith("/noble/release/SHA256SUMS")


# -- room on this machine -----------------------------------------------------------------------


def test_seats_beyond_the_free_cpus_are_refused_with_what_fits(cli: Any, fake_qemu: FakeQemu,
                                                               fake_image: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    root = write_host(tmp_path / "host4", cpus=4, mem_gib=64)
    real = hostmod.read_host
    monkeypatch.setattr(hostmod, "read_host", lambda _r="/": real(root))
    assert _launch(cli, fake_image, name="first", size="2c-2g").exit_code == 0
    res = _launch(cli, fake_image, "--count", "2", name="second", size="2c-2g")
    assert res.exit_code == 3, res.output
    assert ("2 seat(s) of 2c-2g (2 vCPU, 2 GiB) need 4 vCPUs and 4 GiB; this machine has 4 "
            "CPUs, 2 of them given to 1 running local seat(s)") in res.output
    assert "1 seat(s) of 2c-2g fit now (nothing was started)" in res.output
    assert len(_starts(fake_qemu)) == 1 and not (seats_root() / "second").exists()


def test_seats_beyond_the_available_memory_are_refused(cli: Any, fake_qemu: FakeQemu,
                                                       fake_image: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_host(tmp_path / "host", cpus=64, mem_gib=64, avail_gib=5)
    real = hostmod.read_host
    monkeypatch.setattr(hostmod, "read_host", lambda _r="/": real(root))
    res = _launch(cli, fake_image, "--count", "3", size="2c-2g")
    assert res.exit_code == 3, res.output
    assert "5.0 GiB of memory available: 2 seat(s) of 2c-2g fit now" in res.output


def test_a_lab_larger_than_the_machine_is_refused_before_anything_starts(
        cli: Any, fake_qemu: FakeQemu, fake_image: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_host(tmp_path / "host4", cpus=4, mem_gib=64)
    real = hostmod.read_host
    monkeypatch.setattr(hostmod, "read_host", lambda _r="/": real(root))
    lab = tmp_path / "lab.yaml"
    lab.write_text(f"name: class\nseats: 3\nseat: {{vcpus: 2, memory_gib: 2}}\n"
                   f"providers: [local]\nos: debian-12\nhypervisor: none\n"
                   f"image: {fake_image}\nttl: 2h\n")
    res = cli("lab", "up", str(lab), "-o", "accel=tcg", "--no-wait")
    assert res.exit_code == 3, res.output
    assert "3 seat(s) of 2c-2g" in res.output and "2 seat(s) of 2c-2g fit now" in res.output
    assert _starts(fake_qemu) == [] and not (seats_root() / "class").exists()


def test_a_lab_that_fits_launches_and_reports_ready(cli: Any, fake_qemu: FakeQemu,
                                                   fake_image: Path, big_host: Path,
                                                   tmp_path: Path) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text(f"name: class\nseats: 2\nseat: {{vcpus: 2, memory_gib: 4}}\n"
                   f"providers: [local]\nos: debian-12\nhypervisor: none\n"
                   f"image: {fake_image}\nttl: 2h\n")
    res = cli("lab", "up", str(lab), "-o", "accel=tcg", "--timeout", "60", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["launch"]["provider"] == "local" and len(doc["launch"]["instances"]) == 2
    assert {r["status"] for r in doc["ready"]["instances"]} == {"ready"}
    assert cli("lab", "down", str(lab)).exit_code == 0
    assert not (seats_root() / "class").exists()


# -- ttl and reap ------------------------------------------------------------------------------


def test_reap_ends_expired_seats(cli: Any, fake_qemu: FakeQemu, fake_image: Path,
                                 tmp_path: Path) -> None:
    host = write_host(tmp_path / "host")
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=3)
    old = LocalProvider(accel="tcg", host_root=host, clock=lambda: past)
    spec = LaunchSpec(provider="local", type="1c-2g", name="old", os="debian-12",
                      hypervisor="none", image=str(fake_image), ttl_seconds=3600)
    old.launch(LaunchRequest(spec, load_catalog()))
    fresh = LocalProvider(accel="tcg", host_root=host)
    fresh.launch(LaunchRequest(spec.model_copy(update={"name": "fresh"}), load_catalog()))
    res = cli("reap", "--providers", "local", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [g["name"] for g in doc["expired"]] == ["old"]
    assert "fresh" in [g["name"] for g in doc["kept"]]
    assert not (seats_root() / "old").exists() and seat_processes(seats_root() / "old") == []
    assert [i.name for i in fresh.list()] == ["fresh"]
    fresh.down("fresh")


# -- the accelerator ---------------------------------------------------------------------------


def _kvm_provider(tmp_path: Path, **host: Any) -> LocalProvider:
    root = write_host(tmp_path / "kvmhost", kvm=True, **host)
    return LocalProvider(host_root=root, probe_timeout=2)


def _boot(fake_image: Path) -> Any:
    from providers.local import images

    return images.resolve(images.plan_image(str(fake_image), "debian-12"), Path("/nonexistent"))


def test_kvm_is_used_only_when_a_probe_boot_runs_and_nests(fake_qemu: FakeQemu,
                                                          fake_image: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    boot = _boot(fake_image)
    monkeypatch.setenv("NC_FAKE_KVM", "ok")
    yes = _kvm_provider(tmp_path, nested={"kvm_intel": "Y"})._choose_accel(boot)
    assert yes.accel == "kvm" and yes.reason.startswith("a Linux kernel booted under KVM")
    probe = [c for c in fake_qemu.calls() if "-daemonize" not in c][-1]
    assert _after(probe, "-kernel") == [str(fake_image / "vmlinuz")]
    off = _kvm_provider(tmp_path, nested={"kvm_intel": "N"})._choose_accel(boot)
    assert off.accel == "tcg" and "nesting is off" in off.reason
    monkeypatch.setenv("NC_FAKE_KVM", "fail")
    bad = _kvm_provider(tmp_path, nested={"kvm_intel": "Y"})._choose_accel(boot)
    assert (bad.accel, bad.reason) == ("tcg", "the kernel boot under KVM did not reach the "
                                              "root-mount stage (exit 134): kvm_buf_set_msrs: "
                                              "Assertion failed.")


def test_a_kvm_that_hangs_the_guest_falls_back_to_tcg_in_bounded_time(
        fake_qemu: FakeQemu, fake_image: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("NC_FAKE_KVM", "hang")
    start = time.monotonic()
    got = _kvm_provider(tmp_path, modules=("kvm", "kvm_pvm"))._choose_accel(_boot(fake_image))
    assert time.monotonic() - start < 15
    assert got.accel == "tcg" and "made no boot progress under KVM in 2s" in got.reason
    assert "last: Probing EDD" in got.reason


def test_the_probe_verdict_is_remembered_until_the_machine_reboots(
        fake_qemu: FakeQemu, fake_image: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("NC_FAKE_KVM", "hang")
    boot = _boot(fake_image)
    root = write_host(tmp_path / "kvmhost", kvm=True, modules=("kvm", "kvm_pvm"))
    first = LocalProvider(host_root=root, probe_timeout=2)._choose_accel(boot)
    start = time.monotonic()
    again = LocalProvider(host_root=root, probe_timeout=2)._choose_accel(boot)
    assert time.monotonic() - start < 1.5
    assert again.accel == "tcg"
    assert again.reason == first.reason + " (probed earlier since this boot)"
    probes = [c for c in fake_qemu.calls() if "-daemonize" not in c]
    assert len(probes) == 1
    (root / "proc/sys/kernel/random/boot_id").write_text("boot-2\n")
    LocalProvider(host_root=root, probe_timeout=2)._choose_accel(boot)
    assert len([c for c in fake_qemu.calls() if "-daemonize" not in c]) == 2


def test_without_dev_kvm_no_probe_runs(fake_qemu: FakeQemu, fake_image: Path,
                                      tmp_path: Path) -> None:
    p = LocalProvider(host_root=write_host(tmp_path / "nokvm"))
    got = p._choose_accel(_boot(fake_image))
    assert (got.accel, got.reason) == ("tcg", "no /dev/kvm (no KVM module loaded)")
    assert fake_qemu.calls() == []


def test_accel_kvm_on_a_host_where_it_does_not_work_is_a_provider_error(
        cli: Any, fake_qemu: FakeQemu, fake_image: Path, big_host: Path) -> None:
    res = cli("launch", "-p", "local", "-t", "1c-2g", "--os", "debian-12", "--hypervisor",
              "none", "--image", str(fake_image), "-o", "accel=kvm")
    assert res.exit_code == 1, res.output
    assert "-o accel=kvm: KVM cannot run seats here: no /dev/kvm" in res.output
    assert _starts(fake_qemu) == []


# -- rules, catalog ------------------------------------------------------------------------------


def _rules(spec: LaunchSpec) -> dict[str, Any]:
    cat = load_catalog()
    return {f.rule: f for f in LocalProvider.rules(spec, cat, cat.get("local", spec.type))}


def _spec(**kw: Any) -> LaunchSpec:
    base: dict[str, Any] = dict(provider="local", type="2c-4g", os="debian-12",
                                hypervisor="none")
    base.update(kw)
    return LaunchSpec(**base)


def test_rules_refuse_what_this_machine_cannot_give(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_host(tmp_path / "host", cpus=4, mem_gib=6)
    real = hostmod.read_host
    monkeypatch.setattr(hostmod, "read_host", lambda _r="/": real(root))
    found = _rules(_spec(type="8c-16g"))
    assert found["local-vcpus"].severity == "error"
    assert found["local-vcpus"].message == "8c-16g has 8 vCPUs; this machine has 4 CPUs"
    assert found["local-vcpus"].suggestion == ("use 2c-4g (2 vCPU, 4 GiB), the largest local "
                                               "size this machine can give")
    assert found["local-memory"].message == ("8c-16g has 16 GiB of memory; this machine has "
                                             "6.0 GiB")
    assert "local-vcpus" not in _rules(_spec(type="2c-4g"))


@pytest.mark.parametrize(("kw", "rule"), [
    ({"hypervisor": "hyperv", "os": "windows-2022"}, "local-windows"),
    ({"hypervisor": "wsl2", "os": "windows-2025"}, "local-windows"),
    ({"os": "rhel-9"}, "local-image"),
])
def test_rules_refuse_what_local_seats_cannot_be(big_host: Path, kw: dict[str, str],
                                                 rule: str) -> None:
    found = _rules(_spec(**kw))
    assert found[rule].severity == "error"


def test_rules_accept_another_os_with_its_own_image(big_host: Path) -> None:
    found = _rules(_spec(os="rhel-9", image="/images/rhel.qcow2"))
    assert [r for r, f in found.items() if f.severity == "error"] == []
    assert "local-image" in _rules(_spec(os="rhel-9"))


def test_rules_say_how_seats_get_virtualization(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    real = hostmod.read_host
    for name, kwargs, rule, severity in (
            ("a", {}, "local-emulated", "warning"),
            ("b", {"kvm": True, "nested": {"kvm_amd": "0"}}, "local-emulated", "warning"),
            ("c", {"kvm": True, "modules": ("kvm", "kvm_pvm")}, "local-kvm-probe", "info")):
        root = write_host(tmp_path / name, **kwargs)
        monkeypatch.setattr(hostmod, "read_host", lambda _r="/", root=root: real(root))
        found = _rules(_spec())
        assert list(found) == [rule] and found[rule].severity == severity
    root = write_host(tmp_path / "d", kvm=True, nested={"kvm_intel": "Y"})
    monkeypatch.setattr(hostmod, "read_host", lambda _r="/": real(root))
    assert _rules(_spec()) == {}
    assert "nesting is off (kvm_amd nested=N)" in "".join(
        f.message for f in LocalProvider._depth_findings(
            real(write_host(tmp_path / "e", kvm=True, nested={"kvm_amd": "N"}))))


def test_check_refuses_a_size_larger_than_this_machine(cli: Any, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_host(tmp_path / "host", cpus=2, mem_gib=8)
    real = hostmod.read_host
    monkeypatch.setattr(hostmod, "read_host", lambda _r="/": real(root))
    res = cli("check", "-p", "local", "-t", "8c-16g", "--os", "debian-12", "--hypervisor",
              "none")
    assert res.exit_code == 3
    assert "8c-16g has 8 vCPUs; this machine has 2 CPUs" in res.output


def test_the_catalog_offers_local_sizes_as_vcpu_memory_pairs() -> None:
    sizes = {t.name: (t.vcpus, t.memory_gib) for t in load_catalog().of("local")}
    assert sizes["2c-4g"] == (2, 4.0) and sizes["1c-2g"] == (1, 2.0)
    assert all(name == f"{v}c-{m:g}g" for name, (v, m) in sizes.items())
    assert {tuple(t.regions) for t in load_catalog().of("local")} == {("local",)}


def test_catalog_verify_compares_local_sizes_to_this_machine(cli: Any, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    real = hostmod.read_host
    root = write_host(tmp_path / "small", cpus=4, mem_gib=12)
    monkeypatch.setattr(hostmod, "read_host", lambda _r="/": real(root))
    res = cli("catalog", "verify", "-p", "local", "-r", "local", "--json")
    assert res.exit_code == 1, res.output
    doc = json.loads(res.stdout)
    big = sorted(t.name for t in load_catalog().of("local") if t.vcpus > 4 or t.memory_gib > 12)
    assert sorted(doc["missing_live"]) == big and "8c-16g" in big and "2c-4g" not in big
    root = write_host(tmp_path / "large", cpus=64, mem_gib=512)
    monkeypatch.setattr(hostmod, "read_host", lambda _r="/": real(root))
    assert cli("catalog", "verify", "-p", "local", "-r", "local").exit_code == 0


def test_configured_once_something_was_launched(fake_qemu: FakeQemu, fake_image: Path,
                                                tmp_path: Path) -> None:
    assert LocalProvider.configured() is False
    p = LocalProvider(accel="tcg", host_root=write_host(tmp_path / "host"))
    p.launch(LaunchRequest(_spec(type="1c-2g", name="c", image=str(fake_image)),
                           load_catalog()))
    assert LocalProvider.configured() is True
    p.down("c")
    assert LocalProvider.configured() is False


def test_key_name_becomes_the_seats_ssh_key(fake_qemu: FakeQemu, fake_image: Path,
                                            tmp_path: Path) -> None:
    key = tmp_path / "id.pub"
    key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0 me@host\n")
    p = LocalProvider(accel="tcg", host_root=write_host(tmp_path / "host"))
    p.launch(LaunchRequest(_spec(type="1c-2g", name="k", image=str(fake_image),
                                 key_name=str(key)), load_catalog()))
    meta = json.loads(_iso_file(seats_root() / "k" / "0" / "seed.iso", "meta-data"))
    assert meta["public-keys"] == ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0 me@host"]
    p.down("k")
    from nestcloud.errors import InputError

    (tmp_path / "id").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    with pytest.raises(InputError, match="not an SSH public key"):
        p.launch(LaunchRequest(_spec(type="1c-2g", name="k", image=str(fake_image),
                                     key_name=str(tmp_path / "id")), load_catalog()))
    assert not (seats_root() / "k").exists()


def test_a_qemu_that_cannot_start_leaves_no_seat(cli: Any, fake_qemu: FakeQemu,
                                                 fake_image: Path, big_host: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NC_FAKE_QEMU_FAIL", "qemu-system-x86_64: -nic user: Could not set up "
                                            "host forwarding rule")
    res = _launch(cli, fake_image, "--ssh-cidr", "127.0.0.1/32")
    assert res.exit_code == 1, res.output
    assert "local seat 0 of 'lab1': qemu failed (exit 1): qemu-system-x86_64: -nic user: " \
           "Could not set up host forwarding rule" in res.output
    assert not (seats_root() / "lab1" / "0").exists()


def test_plan_offers_only_the_local_sizes_this_machine_can_give(cli: Any, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    root = write_host(tmp_path / "host", cpus=2, mem_gib=8)
    real = hostmod.read_host
    monkeypatch.setattr(hostmod, "read_host", lambda _r="/": real(root))
    res = cli("plan", "--providers", "local", "--vcpus", "1", "--memory", "2", "--json")
    assert res.exit_code == 0, res.output
    offered = sorted(o["type"] for o in json.loads(res.stdout)["options"])
    assert offered == ["1c-2g", "2c-2g", "2c-4g"]


def test_a_plan_that_names_no_provider_leaves_this_machine_out(cli: Any, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    # Room for every local size: only the declaration keeps them out of an unnamed plan.
    root = write_host(tmp_path / "host", cpus=64, mem_gib=256)
    real = hostmod.read_host
    monkeypatch.setattr(hostmod, "read_host", lambda _r="/": real(root))
    res = cli("plan", "--vcpus", "1", "--memory", "2", "--json")
    assert res.exit_code == 0, res.output
    providers = {o["provider"] for o in json.loads(res.stdout)["options"]}
    assert "local" not in providers and providers  # clouds still planned
    res = cli("plan", "--providers", "local,aws", "--vcpus", "1", "--memory", "2", "--json")
    assert "local" in {o["provider"] for o in json.loads(res.stdout)["options"]}
