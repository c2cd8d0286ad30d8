"""The sandbox (the AWS provider's local endpoint): state file handling, the endpoint_control
hook, and the installed executable end to end against it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from providers.aws import sandbox as sb


def write_state(**kw: Any) -> None:
    sb.state_dir().mkdir(parents=True, exist_ok=True)
    doc = {"pid": 999999, "port": 1, "url": "http://127.0.0.1:1", "started_at": 0.0}
    doc.update(kw)
    sb.state_path().write_text(json.dumps(doc), encoding="utf-8")


def test_state_lives_under_the_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NESTCLOUD_STATE_DIR", str(tmp_path))
    assert sb.state_path() == tmp_path / "sandbox.json"
    monkeypatch.delenv("NESTCLOUD_STATE_DIR")
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    if sys.platform.startswith("linux"):
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
    assert sb.stop() is None  # nothing was running: it must not say it stopped something
    assert not sb.state_path().exists()  # forgotten, and we are still alive to assert it


@pytest.mark.parametrize(("value", "on"), [("1", True), ("true", True), ("YES", True),
                                            ("0", False), ("", False), ("no", False)])
def test_env_switch(monkeypatch, value, on):
    from nestcloud.sandbox import enabled  # the core's switch; the endpoint is the provider's

    monkeypatch.setenv("NESTCLOUD_SANDBOX", value)
    assert enabled() is on
    assert enabled(True) is True


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
def test_installed_executable_launch_ls_down_in_the_sandbox(tmp_path, monkeypatch):
    env = {k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"}
    env["NESTCLOUD_STATE_DIR"] = str(tmp_path / "state")
    monkeypatch.setenv("NESTCLOUD_STATE_DIR", env["NESTCLOUD_STATE_DIR"])  # sb sees it too

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

        status = run("sandbox", "status", "-p", "aws", "--json")
        assert status.returncode == 0, status.stderr
        doc = json.loads(status.stdout)
        assert (doc["provider"], doc["running"], doc["state_file"]) == (
            "aws", True, str(Path(env["NESTCLOUD_STATE_DIR"]) / "sandbox.json"))

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
        stopped = run("sandbox", "stop", "-p", "aws")
        left = sb.stop(note=quiet)  # whatever the command did, no server outlives the test
    assert stopped.returncode == 0, stopped.stderr
    assert left is None
    assert stopped.stdout.startswith("aws: sandbox at http://127.0.0.1:")
    gone = run("sandbox", "status", "-p", "aws")
    assert gone.returncode == 1
    # Not running, the document still says where its state would be and what it cannot do.
    doc = json.loads(run("sandbox", "status", "--json").stdout)
    assert doc == {"provider": "aws", "running": False,
                   "state_file": str(Path(env["NESTCLOUD_STATE_DIR"]) / "sandbox.json"),
                   "limits": sb.LIMITS}
    assert gone.stdout == "aws: sandbox not running (the next --sandbox command starts it)\n"


# -- a corrupted or foreign state file ------------------------------------------------------
# Whatever sandbox.json holds, no sandbox server is left where `sandbox stop` cannot reach it,
# no foreign process or endpoint is taken for ours, and reading it is bounded and never hangs.


def quiet(_text: str) -> None:
    pass


@pytest.mark.parametrize("change", [
    {"pid": "1"}, {"pid": True}, {"pid": -1}, {"pid": 0}, {"pid": 1.5}, {"pid": None},
    {"port": "1"}, {"port": 0}, {"port": 70000},
    {"url": "http://example.com:1"},  # requests would leave the machine
    {"url": "http://127.0.0.1:2"},  # not the port the state names
    {"started_at": "yesterday"}, {"moto_version": 5}, {"extra": 1},
])
def test_a_state_with_wrong_fields_or_types_is_not_trusted(change: dict[str, Any]) -> None:
    write_state(**change)
    assert sb.read_state() is None
    assert sb.status(note=quiet) is None and sb.stop(note=quiet) is None
    assert not sb.state_path().exists()


@pytest.mark.parametrize("text", ["[1, 2]", "null", '"x"', "{}", "{not json", "\x00\xff"])
def test_a_state_that_is_not_a_state_object_is_not_trusted(text: str) -> None:
    sb.state_dir().mkdir(parents=True, exist_ok=True)
    sb.state_path().write_text(text, encoding="latin-1")
    assert sb.read_state() is None and sb.status(note=quiet) is None
    assert sb.stop(note=quiet) is None


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_a_live_foreign_endpoint_is_not_taken_for_the_sandbox(moto_endpoint: str) -> None:
    # A live pid (ours: pytest) and a healthy moto endpoint that is not the sandbox server.
    write_state(pid=os.getpid(), port=_port(moto_endpoint), url=moto_endpoint)
    assert sb.status(note=quiet) is None
    assert not sb.state_path().exists()


def test_an_oversized_state_file_is_not_read() -> None:
    sb.state_dir().mkdir(parents=True, exist_ok=True)
    doc = {"pid": 1, "port": 1, "url": "http://127.0.0.1:1", "started_at": 0.0}
    sb.state_path().write_text(json.dumps(doc) + " " * (1 << 20), encoding="utf-8")
    assert sb.read_state() is None


@pytest.mark.skipif(os.name != "posix", reason="symlinks and FIFOs")
def test_a_state_file_that_is_a_link_is_not_followed(tmp_path: Path, moto_endpoint: str
                                                      ) -> None:
    target = tmp_path / "elsewhere.json"
    target.write_text(json.dumps({"pid": os.getpid(), "port": _port(moto_endpoint),
                                  "url": moto_endpoint, "started_at": 0.0}))
    sb.state_dir().mkdir(parents=True, exist_ok=True)
    sb.state_path().symlink_to(target)
    assert sb.read_state() is None and sb.status(note=quiet) is None
    assert not sb.state_path().is_symlink() and target.exists()  # the link went, not its target


@pytest.mark.skipif(os.name != "posix", reason="symlinks and FIFOs")
def test_a_fifo_state_file_does_not_hang() -> None:
    import threading

    sb.state_dir().mkdir(parents=True, exist_ok=True)
    os.mkfifo(sb.state_path())
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(sb.status(note=quiet)), daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():
        os.close(os.open(sb.state_path(), os.O_WRONLY | os.O_NONBLOCK))
    assert got == [None] and not sb.state_path().exists()


def test_a_state_path_that_cannot_be_used_is_one_clear_message() -> None:
    from typer.testing import CliRunner

    from nestcloud.cli import app

    sb.state_path().mkdir(parents=True)  # a directory where the state file should be
    runner = CliRunner()
    for args in (["status"], ["start"], ["status", "--json"]):
        res = runner.invoke(app, ["sandbox", *args, "-p", "aws"])
        assert isinstance(res.exception, SystemExit) and res.exit_code == 2, res.output
        assert "Traceback" not in res.output
        assert str(sb.state_path()) in res.output and "not a regular file" in res.output
    res = runner.invoke(app, ["sandbox", "stop", "-p", "aws"])  # stop still works: nothing ran
    assert res.exit_code == 0 and res.stdout == "aws: sandbox was not running\n", res.output
    assert "not a regular file" in res.stderr


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _kill(pid: int) -> None:
    import contextlib
    import signal

    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.waitpid(pid, 0)


@pytest.mark.slow
def test_a_garbage_state_file_never_strands_the_server() -> None:
    st, started = sb.start()
    try:
        assert started
        sb.state_path().write_text("{garbage", encoding="utf-8")
        notes: list[str] = []
        found = sb.status(note=notes.append)  # found by its command line, state rewritten
        assert found is not None and (found.pid, found.url) == (st.pid, st.url)
        assert sb.read_state() == found and any("sandbox.json" in n for n in notes)
        sb.state_path().write_text('{"pid": "x"}', encoding="utf-8")
        stopped = sb.stop(note=quiet)
        assert stopped is not None and stopped.pid == st.pid
        assert not _alive(st.pid) and not sb.healthy(st.url)
    finally:
        _kill(st.pid)


@pytest.mark.slow
def test_a_deleted_state_file_does_not_start_a_second_server() -> None:
    st, _ = sb.start()
    pids = [st.pid]
    try:
        sb.state_path().unlink()
        again, started = sb.start(note=quiet)
        pids.append(again.pid)
        assert (again.pid, again.url, started) == (st.pid, st.url, False)
        assert sb.stop(note=quiet) is not None
        assert not _alive(st.pid)
    finally:
        for pid in pids:
            _kill(pid)


@pytest.mark.slow
def test_the_request_log_is_capped_and_every_state_file_is_private(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import stat
    import urllib.request

    monkeypatch.setattr(sb, "LOG_MAX_BYTES", 4096, raising=False)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    d = sb.state_dir()
    d.mkdir(parents=True, exist_ok=True)
    (d / "sandbox.tmp").symlink_to(victim)  # where a naive atomic write would go through
    old = os.umask(0)  # the server inherits it: modes must not depend on it
    try:
        st, _ = sb.start()
    finally:
        os.umask(old)
    try:
        for _ in range(300):
            with urllib.request.urlopen(f"{st.url}/moto-api/", timeout=5) as r:  # noqa: S310
                assert r.status == 200
        logs = sorted(d.glob("sandbox.log*"))
        text = b"".join(p.read_bytes() for p in logs)
        assert b"GET /moto-api/" in text  # still a request log...
        assert sum(p.stat().st_size for p in logs) <= 2 * 4096 + 1024  # ...of bounded size
        assert victim.read_text() == "precious"
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
        files = [p for p in d.iterdir() if not p.is_symlink()]
        assert {p.name for p in files} >= {"sandbox.json", "sandbox.log"}
        assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {
            p.name: 0o700 if p.is_dir() else 0o600 for p in files}
    finally:
        try:
            sb.stop(note=quiet)
        finally:
            _kill(st.pid)


# -- the provider's endpoint_control hook -----------------------------------------------------


def test_control_status_and_stop_when_nothing_runs_say_so() -> None:
    from nestcloud.provider import LocalEndpoint
    from providers.aws import AwsProvider

    notes: list[str] = []
    assert AwsProvider.endpoint_control("status", notes.append) == LocalEndpoint(
        url="", pid=None, limits=sb.LIMITS, running=False, state_file=str(sb.state_path()))
    assert AwsProvider.endpoint_control("stop", notes.append) is None
    assert notes == []


def test_control_refuses_an_unknown_action() -> None:
    from nestcloud.errors import InputError
    from providers.aws import AwsProvider

    with pytest.raises(InputError, match="unknown action 'restart'"):
        AwsProvider.endpoint_control("restart", quiet)  # type: ignore[arg-type]


@pytest.mark.slow
def test_control_start_status_stop() -> None:
    from nestcloud.provider import LocalEndpoint
    from providers.aws import AwsProvider

    ep = AwsProvider.endpoint_control("start", quiet)
    try:
        assert isinstance(ep, LocalEndpoint) and ep.started
        st = sb.read_state()
        assert st is not None and (ep.url, ep.pid) == (st.url, st.pid)
        assert ep.state_file == str(sb.state_path()) and ep.limits == sb.LIMITS
        assert dict(ep.detail) == {"port": st.port, "moto_version": st.moto_version}
        assert st.moto_version and sb.healthy(ep.url)
        again = AwsProvider.endpoint_control("start", quiet)
        assert again == LocalEndpoint(url=ep.url, pid=ep.pid, limits=ep.limits, started=False,
                                      state_file=ep.state_file, detail=ep.detail)
        assert AwsProvider.endpoint_control("status", quiet) == again
        # --sandbox points the provider at the same endpoint, with the sandbox's credentials.
        opts = AwsProvider.local_endpoint(None)
        assert (opts["endpoint_url"], opts["region"]) == (ep.url, "us-east-1")
        assert opts["session"].get_credentials().access_key == "nestcloud-sandbox"
    finally:
        stopped = AwsProvider.endpoint_control("stop", quiet)
    assert stopped is not None and (stopped.url, stopped.pid) == (ep.url, ep.pid)
    assert not _alive(ep.pid)
    gone = AwsProvider.endpoint_control("status", quiet)
    assert gone is not None and not gone.running


# -- a slow server is not a hung one -----------------------------------------------------------
# Under load moto can take longer than one health check allows: a server of ours that is alive
# and still listening is waited for (up to BUSY_WAIT_S), not replaced by an empty one (which
# would lose its world and leave the old server running).


def _servers_of_this_state_dir() -> list[int]:
    return sorted(p.pid for p in sb._servers())


def _resume(pid: int) -> None:
    import contextlib
    import signal

    with contextlib.suppress(ProcessLookupError):  # gone: it was replaced
        os.kill(pid, signal.SIGCONT)


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="SIGSTOP/SIGCONT")
def test_a_slow_server_is_waited_for_not_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    import signal
    import threading

    import boto3

    st, _ = sb.start(note=quiet)
    try:
        ec2 = boto3.Session(region_name="us-east-1", **sb.FAKE_CREDENTIALS).client(
            "ec2", endpoint_url=st.url)
        made = ec2.create_security_group(GroupName="kept", Description="its world")["GroupId"]
        monkeypatch.setattr(sb, "ANSWER_TIMEOUT_S", 0.5)  # one check gives up quickly...
        os.kill(st.pid, signal.SIGSTOP)  # ...and the server answers nothing for a while
        resume = threading.Timer(2.0, _resume, (st.pid,))
        resume.start()
        try:
            notes: list[str] = []
            again, started = sb.start(note=notes.append)
        finally:
            resume.cancel()
            _resume(st.pid)
        assert (again, started) == (st, False) and notes == []
        assert _servers_of_this_state_dir() == [st.pid]  # no second server
        groups = ec2.describe_security_groups(GroupIds=[made])["SecurityGroups"]
        assert [g["GroupName"] for g in groups] == ["kept"]  # its world is still there
        # status waits the same way, and keeps the state file.
        os.kill(st.pid, signal.SIGSTOP)
        resume = threading.Timer(2.0, _resume, (st.pid,))
        resume.start()
        try:
            assert sb.status(note=quiet) == st
        finally:
            resume.cancel()
            _resume(st.pid)
        assert sb.read_state() == st
    finally:
        sb.stop(note=quiet)
        _kill(st.pid)


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="SIGSTOP/SIGCONT")
def test_a_server_that_never_answers_is_replaced_after_the_wait(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import signal
    import time

    st, _ = sb.start(note=quiet)
    pids = [st.pid]
    try:
        monkeypatch.setattr(sb, "ANSWER_TIMEOUT_S", 0.3)
        monkeypatch.setattr(sb, "BUSY_WAIT_S", 1.5)
        monkeypatch.setattr(sb, "STOP_TIMEOUT_S", 2.0)
        os.kill(st.pid, signal.SIGSTOP)  # hung for good
        notes: list[str] = []
        t0 = time.monotonic()
        again, started = sb.start(note=notes.append)
        pids.append(again.pid)
        assert started and again.pid != st.pid and sb.healthy(again.url)
        assert time.monotonic() - t0 >= 1.5  # it was waited for first
        assert any(f"stopping server(s) {st.pid}" in n for n in notes)
        assert not _alive(st.pid)  # the hung one was stopped, not left behind
        assert _servers_of_this_state_dir() == [again.pid]
    finally:
        sb.stop(note=quiet)
        for pid in pids:
            _kill(pid)
