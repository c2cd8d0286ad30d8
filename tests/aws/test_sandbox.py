"""The sandbox: state file handling, and the installed executable end to end against it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nestcloud import sandbox as sb


def write_state(**kw: Any) -> None:
    sb.state_dir().mkdir(parents=True, exist_ok=True)
    doc = {"pid": 999999, "port": 1, "url": "http://127.0.0.1:1", "started_at": 0.0}
    doc.update(kw)
    sb.state_path().write_text(json.dumps(doc), encoding="utf-8")


def test_state_lives_under_the_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NESTCLOUD_STATE_DIR", str(tmp_path))
    assert sb.state_path() == tmp_path / "sandbox.json"
    monkeypatch.delenv("NESTCLOUD_STATE_DIR")
    assert sb.state_path() == Path.home() / ".local" / "state" / "nestcloud" / "sandbox.json"


def test_stale_state_of_a_dead_process_is_removed():
    write_state(pid=2 ** 22 + 12345)  # above the default pid_max: never a live process
    assert sb.status() is None
    assert not sb.state_path().exists()


def test_state_of_a_live_process_that_is_not_the_endpoint_is_removed():
    write_state(pid=os.getpid(), url="http://127.0.0.1:1")  # nothing answers on port 1
    assert sb.status() is None
    assert not sb.state_path().exists()


def test_corrupt_state_is_ignored():
    sb.state_dir().mkdir(parents=True, exist_ok=True)
    sb.state_path().write_text("{not json", encoding="utf-8")
    assert sb.read_state() is None and sb.status() is None


def test_stop_when_nothing_runs_is_harmless():
    assert sb.stop() is None


def test_stop_never_signals_a_foreign_process():
    write_state(pid=os.getpid())  # our own pytest process: its cmdline is not the sandbox
    assert sb.stop() is not None
    assert not sb.state_path().exists()  # forgotten, and we are still alive to assert it


@pytest.mark.parametrize(("value", "on"), [("1", True), ("true", True), ("YES", True),
                                            ("0", False), ("", False), ("no", False)])
def test_env_switch(monkeypatch, value, on):
    monkeypatch.setenv("NESTCLOUD_SANDBOX", value)
    assert sb.enabled() is on
    assert sb.enabled(True) is True


def test_sandbox_session_never_carries_real_credentials():
    # The environment holds credentials (tests/conftest.py); the sandbox ignores them.
    creds = sb.session().get_credentials()
    assert creds.access_key == "nestcloud-sandbox" != os.environ["AWS_ACCESS_KEY_ID"]


@pytest.mark.slow
def test_start_reuses_and_stop_removes():
    st, started = sb.start()
    try:
        assert started and sb.healthy(st.url)
        again, started_again = sb.start()
        assert again == st and not started_again
        assert sb.ensure_endpoint() == st.url
        assert sb.status() == st
    finally:
        assert sb.stop() == st
    assert sb.status() is None and not sb.healthy(st.url)


def nestcloud_exe() -> list[str]:
    exe = shutil.which("nestcloud", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "nestcloud"]


@pytest.mark.slow
def test_installed_executable_launch_ls_down_in_the_sandbox(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    env["NESTCLOUD_STATE_DIR"] = str(tmp_path / "state")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*nestcloud_exe(), *args], capture_output=True, text=True,
                              env=env, timeout=120, check=False)

    try:
        launched = run("launch", "--sandbox", "--provider", "aws", "--type", "c8i.large",
                       "--os", "al2023", "--hypervisor", "firecracker", "--name", "e2e",
                       "--ttl", "1h", "--wait", "--json")
        assert launched.returncode == 0, launched.stderr
        doc = json.loads(launched.stdout)
        assert doc["sandbox"] is True and doc["name"] == "e2e" and doc["region"] == "us-east-1"
        [inst] = doc["instances"]
        assert inst["tags"]["nestcloud:name"] == "e2e" and inst["expires"].endswith("Z")
        # The sandbox reports the nested switch back as EC2 does: the strict read-back passed.
        assert inst["nested"] is True
        assert any(n.startswith("sandbox: this is a local EC2 endpoint") for n in doc["notes"])
        assert any(n.startswith("user data: ") and "cloud-config" in n for n in doc["notes"])
        assert "sandbox: started the local EC2 endpoint at http://127.0.0.1:" in launched.stderr
        # --wait in the sandbox says readiness cannot be shown there, rather than pretend.
        assert doc["wait"]["sandbox"] is True and doc["wait"]["exit_code"] == 0
        assert [i["status"] for i in doc["wait"]["instances"]] == ["not-verifiable"]

        status = run("sandbox", "status", "--json")
        assert status.returncode == 0 and json.loads(status.stdout)["running"] is True

        listed = run("ls", "--sandbox", "--json")  # a new process finds the same world
        assert listed.returncode == 0, listed.stderr
        assert [i["id"] for i in json.loads(listed.stdout)["instances"]] == [inst["id"]]

        down = run("down", "e2e", "--sandbox", "--yes", "--json")
        assert down.returncode == 0, down.stderr
        [res] = json.loads(down.stdout)["results"]
        assert res["terminated"] == [inst["id"]] and len(res["deleted"]) == 1

        assert json.loads(run("ls", "--sandbox", "--json").stdout) == {"instances": [],
                                                                      "leftovers": []}
    finally:
        stopped = run("sandbox", "stop")
    assert stopped.returncode == 0 and stopped.stdout.startswith("sandbox at http://127.0.0.1:")
    gone = run("sandbox", "status")
    assert gone.returncode == 1
    assert gone.stdout == "sandbox not running (the next --sandbox command starts it)\n"
