"""Windows L1 readiness on Azure: Run Command reads the marker file, no VM identity needed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import SSH_KEY
from fakes.arm_fake import ArmFake

from nestcloud.provider import LaunchRequest
from nestcloud.bootstrap.l1check import MARKER
from nestcloud.bootstrap.profiles import WINDOWS_MARKER_FILE, windows_script
from nestcloud.bootstrap.wait import WaitReport, wait_for_ready
from nestcloud.catalog import Catalog
from nestcloud.errors import CredentialsError
from nestcloud.spec import LaunchSpec
from providers.azure import plan

READY = {"status": "ready", "profile": "hyperv", "v": 1,
         "checks": {"hypervisor_present": True, "vmms": True, "probe_vm": True}}
FAILED = {"status": "failed", "profile": "hyperv", "v": 1,
          "checks": {"hypervisor_present": True, "vmms": False, "probe_vm": False}}


def spec(**kw: Any) -> LaunchSpec:
    base: dict[str, Any] = {"provider": "azure", "type": "Standard_D2s_v5", "region": "eastus",
                            "name": "win", "os": "windows-2022", "hypervisor": "hyperv"}
    base.update(kw)
    return LaunchSpec(**base)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def wait(provider: Any, name: str, timeout: float = 30, **kw: Any) -> WaitReport:
    clock = Clock()
    return wait_for_ready(provider, provider.list(name), timeout_s=timeout, interval_s=10,
                          clock=clock, sleep=clock.sleep, **kw)


def run_commands(arm: ArmFake) -> list[Any]:
    return [r for r in arm.requests
            if r.method == "POST" and r.path.lower().endswith("/runcommand")]


def stdout_line(payload: dict[str, Any]) -> str:
    # What the script prints: the marker word, then the file's compact JSON (CRLF from Windows).
    return f"{MARKER} {json.dumps(payload, separators=(',', ':'))}\r\n"


def test_windows_vm_reports_ready_through_run_command(provider: Any, arm: ArmFake,
                                                      catalog: Catalog) -> None:
    provider.launch(LaunchRequest(spec(), catalog)).result
    arm.run_command_stdout["win-0"] = stdout_line(READY)
    report = wait(provider, "win")
    [r] = report.instances
    assert (r.status, r.source, r.message) == ("ready", "console", "L1 hypervisor ready")
    assert r.checks == READY["checks"]
    assert report.exit_code() == 0
    # What was sent: one RunPowerShellScript on that VM, reading the bootstrap's file.
    [call] = run_commands(arm)
    assert call.path.endswith("/resourceGroups/nestcloud-win-eastus/providers/"
                              "Microsoft.Compute/virtualMachines/win-0/runCommand")
    assert call.body == {"commandId": "RunPowerShellScript",
                         "script": plan.read_marker_script(MARKER, WINDOWS_MARKER_FILE)}
    script = "\n".join(call.body["script"])
    assert "Join-Path $env:ProgramData 'nestcloud\\l1.json'" in script
    assert f"'{MARKER} '" in script
    # Read-only: no cmdlet that writes, removes or starts anything.
    for verb in ("Set-", "Remove-", "New-", "Out-File", "Start-", "Invoke-", "Stop-"):
        assert verb not in script, verb
    # The serial log was not needed.
    assert not [r for r in arm.requests if r.path.startswith("/blobs/")]


def test_the_bootstrap_writes_the_file_run_command_reads() -> None:
    from providers.azure import AzureProvider

    body = windows_script(AzureProvider.capabilities.user_data, "hyperv")
    assert "$NcDir = Join-Path $env:ProgramData 'nestcloud'" in body
    assert "Set-Content -Path (Join-Path $NcDir 'l1.json') -Value $json" in body
    assert WINDOWS_MARKER_FILE == "nestcloud\\l1.json"


def test_no_file_yet_keeps_waiting_then_ready_when_it_appears(provider: Any, arm: ArmFake,
                                                              catalog: Catalog) -> None:
    provider.launch(LaunchRequest(spec(), catalog)).result
    progress: list[str] = []

    def on_progress(line: str) -> None:
        progress.append(line)
        if len(progress) == 2:  # after two polls without the file, the L1 reports
            arm.run_command_stdout["win-0"] = stdout_line(READY)

    report = wait(provider, "win", timeout=60, on_progress=on_progress)
    assert [r.status for r in report.instances] == ["ready"]
    assert len(run_commands(arm)) == 3
    assert report.instances[0].waited_s == 20.0


def test_no_file_times_out(provider: Any, arm: ArmFake, catalog: Catalog) -> None:
    arm.console_text = "Windows SAC boot text, no marker\r\n"
    provider.launch(LaunchRequest(spec(), catalog)).result
    report = wait(provider, "win", timeout=20)
    [r] = report.instances
    assert (r.status, r.message) == ("timeout", "no readiness marker within 20s")
    assert report.exit_code() == 4
    assert len(run_commands(arm)) == 3  # t=0, 10, 20


@pytest.mark.parametrize("stdout", [
    f'{MARKER} {{"status": "ready", "checks": {{"vmms": tr\r\n',  # half-written file
    f'{MARKER} {{"status": "maybe", "checks": {{}}}}\r\n',        # not a status we know
    f"{MARKER} \r\n",                                              # empty file
    "nestcloud: C:\\ProgramData\\nestcloud\\l1.json holds 5000 characters\r\n",
])
def test_bad_file_contents_are_ignored(provider: Any, arm: ArmFake, catalog: Catalog,
                                       stdout: str) -> None:
    provider.launch(LaunchRequest(spec(), catalog)).result
    arm.run_command_stdout["win-0"] = stdout
    report = wait(provider, "win", timeout=10)
    assert [r.status for r in report.instances] == ["timeout"]


def test_failed_report_names_the_failed_checks(provider: Any, arm: ArmFake,
                                               catalog: Catalog) -> None:
    provider.launch(LaunchRequest(spec(), catalog)).result
    arm.run_command_stdout["win-0"] = stdout_line(FAILED)
    report = wait(provider, "win")
    [r] = report.instances
    assert (r.status, r.failed_checks) == ("failed", ["vmms", "probe_vm"])
    assert report.exit_code() == 1


def test_linux_vm_reads_only_the_serial_log(provider: Any, arm: ArmFake,
                                            catalog: Catalog) -> None:
    arm.console_text = f'boot\n{MARKER} {{"status": "ready", "checks": {{}}}}\n'
    provider.launch(LaunchRequest(spec(name="lin", os="ubuntu-24.04", hypervisor="kvm", key_name=SSH_KEY),
                    catalog)).result
    report = wait(provider, "lin")
    assert [r.status for r in report.instances] == ["ready"]
    assert run_commands(arm) == []


def test_windows_without_list_first_asks_the_vm_once(make_provider: Any, rendered: Any,
                                                     arm: ArmFake, catalog: Catalog) -> None:
    inst = make_provider().launch(LaunchRequest(spec(), catalog)).result.instances[0]
    fresh = make_provider()  # knows nothing about the VM yet
    arm.run_command_stdout["win-0"] = stdout_line(READY)
    start = len(arm.requests)
    assert fresh.console(inst).startswith(MARKER + " {")
    assert fresh.console(inst).startswith(MARKER + " {")
    gets = [r for r in arm.requests[start:] if r.method == "GET"
            and r.path.lower().endswith("/virtualmachines/win-0")]
    assert len(gets) == 1


def test_run_command_busy_falls_back_and_is_the_last_problem(provider: Any, arm: ArmFake,
                                                             catalog: Catalog) -> None:
    arm.console_text = "no marker on a Windows serial log\r\n"
    provider.launch(LaunchRequest(spec(), catalog)).result
    arm.fault("POST", r"/runCommand$", 409, "Conflict",
              message="Run command extension execution is in progress.", times=None)
    report = wait(provider, "win", timeout=10)
    [r] = report.instances
    assert r.status == "timeout"
    assert "Run command extension execution is in progress. (Conflict)" in r.message
    assert "Run Command" in r.message
    # The serial log was read as the fallback.
    assert [x for x in arm.requests if x.path.startswith("/blobs/")]


def test_run_command_marker_in_serial_log_still_counts(provider: Any, arm: ArmFake,
                                                       catalog: Catalog) -> None:
    arm.console_text = stdout_line(READY)
    provider.launch(LaunchRequest(spec(), catalog)).result
    arm.fault("POST", r"/runCommand$", 409, "Conflict", times=None)
    assert [r.status for r in wait(provider, "win").instances] == ["ready"]


def test_run_command_without_permission_stops_the_wait(provider: Any, arm: ArmFake,
                                                       catalog: Catalog) -> None:
    provider.launch(LaunchRequest(spec(), catalog)).result
    arm.fault("POST", r"/runCommand$", 403, "AuthorizationFailed",
              message="no runCommand/action", times=None)
    with pytest.raises(CredentialsError, match="AuthorizationFailed"):
        wait(provider, "win")


def test_run_command_stdout_takes_stdout_only() -> None:
    result = {"value": [
        {"code": "ComponentStatus/StdOut/succeeded", "message": "NESTCLOUD-L1 {}"},
        {"code": "ComponentStatus/StdErr/succeeded", "message": "NESTCLOUD-L1 err"}]}
    assert plan.run_command_stdout(result) == "NESTCLOUD-L1 {}"
    assert plan.run_command_stdout({"value": None}) == ""
    assert plan.run_command_stdout(None) == ""


def test_output_stays_under_the_run_command_cap() -> None:
    # FACTS.md: Run Command output is capped at 4,096 bytes. The longest marker line the script
    # prints is the marker word, a space and RUN_COMMAND_MAX_JSON characters (ASCII JSON).
    assert len(MARKER) + 1 + plan.RUN_COMMAND_MAX_JSON + 2 < 4096
    script = "\n".join(plan.read_marker_script(MARKER, WINDOWS_MARKER_FILE))
    assert f"-gt {plan.RUN_COMMAND_MAX_JSON}" in script


def test_an_aws_instance_profile_is_refused_before_any_call(provider: Any, arm: ArmFake,
                                                            catalog: Catalog) -> None:
    from nestcloud.errors import InputError

    with pytest.raises(InputError, match="instance profile 'nc-l1': that is an AWS IAM "
                                         "setting"):
        provider.launch(LaunchRequest(spec(instance_profile="nc-l1"), catalog)).result
    assert arm.requests == []


def test_cli_instance_profile_is_for_aws_only() -> None:
    from typer.testing import CliRunner

    from nestcloud.cli import app

    res = CliRunner().invoke(app, ["launch", "-p", "azure", "-t", "Standard_D2s_v5",
                                   "--region", "eastus", "--os", "windows-2022",
                                   "--hypervisor", "hyperv", "--instance-profile", "nc-l1"])
    assert res.exit_code == 2
    assert res.stderr.splitlines()[0] == ("error: --instance-profile nc-l1: provider 'azure' "
                                          "does not offer this setting")
