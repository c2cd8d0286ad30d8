"""The L1's readiness report on GCP goes through the core's hook (``linux_report_script``).

What a GCP VM gets is what `nestcloud userdata --provider gcp` prints (Ubuntu), and the same
check step on Debian and RHEL (startup-script). The step runs the check, then the report, and
exits with the check's status; the report PUTs the saved check result to the guest attribute
``nestcloud/l1`` on the metadata server (FACTS "GCP": the URL, the ``Metadata-Flavor: Google``
header), where `nestcloud wait` reads it through instances.getGuestAttributes.

Nothing here runs as the L1: the check and the PUT are stubs (a ``python3`` on PATH, a loopback
metadata server), and only the lines from the check step on run, never the file writes.
"""

from __future__ import annotations

import http.server
import json
import os
import shlex
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import gcp_catalog
from fakes.gce_fake import GceFake
from typer.testing import CliRunner

from nestcloud._catalog_dump import dump as dump_catalog
from nestcloud.bootstrap.profiles import L1_STATE_PATH, L1CHECK_PATH
from nestcloud.cli import app

REGION = "us-central1"
# FACTS "GCP": where the guest PUTs a guest attribute (namespace nestcloud, key l1).
METADATA = "http://metadata.google.internal"
GUEST_URL = f"{METADATA}/computeMetadata/v1/instance/guest-attributes/nestcloud/l1"
READY = {"status": "ready", "profile": "kvm", "checks": {"kvm": {"ok": True}}, "failed": [],
         "v": 1}


def _envelope() -> Any:
    from providers.gcp import GcpProvider

    return GcpProvider.capabilities.user_data


@pytest.fixture
def cli(gce: GceFake, tmp_path: Path) -> Callable[..., Any]:
    catalog_file = tmp_path / "catalog.yaml"
    catalog_file.write_text(dump_catalog(gcp_catalog()), encoding="utf-8")
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(app, list(args), env={
            "NESTCLOUD_CATALOG": str(catalog_file), "NESTCLOUD_GCP_ENDPOINT": gce.url,
            "GOOGLE_CLOUD_PROJECT": gce.project})

    return run


def _launch(cli: Callable[..., Any], *extra: str) -> Any:
    return cli("launch", "--provider", "gcp", "--type", "n2-standard-4", "--region", REGION,
               "--name", "lab", *extra)


def _meta(body: dict[str, Any]) -> dict[str, str]:
    return {i["key"]: i["value"] for i in body["metadata"]["items"]}


# -- Ubuntu: the user data a launch sends is `nestcloud userdata`'s --------------------------

USER_DATA = {
    "none": None,
    "script": "#!/bin/sh\necho hello-from-user\n",
    "cloud-config": "#cloud-config\npackages: [htop]\n",
}


@pytest.mark.parametrize("hypervisor", ["kvm", "firecracker"])
@pytest.mark.parametrize("user", list(USER_DATA))
def test_ubuntu_gets_exactly_what_nestcloud_userdata_prints(
        cli: Callable[..., Any], gce: GceFake, tmp_path: Path, hypervisor: str,
        user: str) -> None:
    args = ["--os", "ubuntu-24.04", "--hypervisor", hypervisor]
    if USER_DATA[user] is not None:
        path = tmp_path / "user-data"
        path.write_text(USER_DATA[user])
        args += ["--user-data", str(path)]
    shown = cli("userdata", "--provider", "gcp", *args)
    assert shown.exit_code == 0, shown.output
    dry = _launch(cli, *args, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    [insert] = [r for r in json.loads(dry.stdout)["requests"]
                if r["operation"] == "instances.insert"]
    assert _meta(insert["params"]["body"])["user-data"] == shown.stdout
    done = _launch(cli, *args, "--json")
    assert done.exit_code == 0, done.output
    [sent] = gce.sent_instances()
    assert _meta(sent)["user-data"] == shown.stdout
    assert _meta(sent)["enable-guest-attributes"] == "TRUE"


def test_ubuntu_user_data_over_the_metadata_limit_is_refused_as_userdata_refuses_it(
        cli: Callable[..., Any], gce: GceFake, tmp_path: Path) -> None:
    path = tmp_path / "big.sh"
    path.write_text("#!/bin/sh\n" + "# padding\n" * 30_000)  # ~300 KB: over 256 KiB (FACTS)
    args = ["--os", "ubuntu-24.04", "--hypervisor", "kvm", "--user-data", str(path)]
    shown = cli("userdata", "--provider", "gcp", *args)
    res = _launch(cli, *args)
    assert (shown.exit_code, res.exit_code) == (2, 2)
    error = shown.stderr.splitlines()[0]
    assert error.startswith("error: the user data is ") and "262144 bytes" in error
    assert res.stderr.splitlines()[0] == error
    assert gce.requests == []


def test_userdata_json_says_readiness_comes_back_as_a_console_marker(
        cli: Callable[..., Any]) -> None:
    res = cli("userdata", "--provider", "gcp", "--os", "ubuntu-24.04", "--hypervisor", "kvm",
              "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    # console() turns the guest attribute into the marker line; no extra MIME part of ours.
    assert (doc["kind"], doc["parts"], doc["readiness"]) == (
        "cloud-config", ["text/cloud-config"], "console")
    assert GUEST_URL in doc["body"]


# -- the check step: report after the check, the check's exit status ------------------------


@pytest.fixture
def stubs(tmp_path: Path) -> Callable[..., dict[str, str]]:
    """A ``python3`` first on PATH standing for the L1 check (exits CHECK_RC) and for the
    report (``python3 -c CODE``: keeps CODE, exits REPORT_RC); every call is logged."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "python3"
    stub.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-c" ]; then printf %s "$2" > "$LOG.code"; echo report >> "$LOG"; '
        'exit "$REPORT_RC"; fi\n'
        'echo "check $*" >> "$LOG"; exit "$CHECK_RC"\n')
    stub.chmod(0o755)
    log = tmp_path / "calls.log"

    def env(check_rc: int, report_rc: int = 7, **more: str) -> dict[str, str]:
        log.unlink(missing_ok=True)
        return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG": str(log),
                "CHECK_RC": str(check_rc), "REPORT_RC": str(report_rc), **more}

    return env


def _calls(env: dict[str, str]) -> list[str]:
    path = Path(env["LOG"])
    return path.read_text().splitlines() if path.exists() else []


def _report_code(env: dict[str, str]) -> str:
    return Path(env["LOG"] + ".code").read_text()


def test_ubuntu_check_step_reports_after_the_check_and_exits_with_its_status(
        gce: GceFake, cli: Callable[..., Any], stubs: Callable[..., dict[str, str]]) -> None:
    res = _launch(cli, "--os", "ubuntu-24.04", "--hypervisor", "kvm", "--json")
    assert res.exit_code == 0, res.output
    [sent] = gce.sent_instances()
    cfg = yaml.safe_load(_meta(sent)["user-data"])
    step = cfg["runcmd"][-1]
    assert step[:2] == ["sh", "-c"]
    for check_rc in (0, 1):
        # The report's own failure (7) never replaces the check's status.
        env = stubs(check_rc)
        out = subprocess.run(step, env=env, capture_output=True, text=True, timeout=30)
        assert out.returncode == check_rc, out.stderr
        assert _calls(env) == [f"check {L1CHECK_PATH} --profile kvm", "report"]
        code = _report_code(env)
        assert GUEST_URL in code and L1_STATE_PATH in code


def _startup_script(gce: GceFake, cli: Callable[..., Any], os_alias: str,
                    tmp_path: Path, user: str | None = None) -> str:
    extra: list[str] = []
    if user is not None:
        path = tmp_path / "user.sh"
        path.write_text(user)
        extra = ["--user-data", str(path)]
    res = _launch(cli, "--os", os_alias, "--hypervisor", "kvm", *extra, "--json")
    assert res.exit_code == 0, res.output
    [sent] = gce.sent_instances()
    meta = _meta(sent)
    assert "user-data" not in meta
    return meta["startup-script"]


def _from_the_check_step(script: str) -> tuple[list[str], str]:
    """The check step's argv (its quoted report spans lines), and the script from its first
    line to the end."""
    lines = script.splitlines()
    [i] = [n for n, line in enumerate(lines)
           if line.startswith("sh -c ") and f"{L1CHECK_PATH} --profile" in line]
    for j in range(i + 1, len(lines) + 1):
        try:
            step = shlex.split("\n".join(lines[i:j]))
        except ValueError:  # inside the quotes still
            continue
        return step, "\n".join(lines[i:]) + "\n"
    raise AssertionError("the check step never ends")


@pytest.mark.parametrize("os_alias", ["debian-12", "rhel-9"])
def test_startup_script_runs_the_same_check_step_as_cloud_init(
        gce: GceFake, cli: Callable[..., Any], tmp_path: Path, os_alias: str) -> None:
    from nestcloud.bootstrap import render_user_data

    script = _startup_script(gce, cli, os_alias, tmp_path)
    step, _ = _from_the_check_step(script)
    cfg = yaml.safe_load(render_user_data(_envelope(), os_alias, "kvm",
                                          provider_name="gcp").body)
    assert step == cfg["runcmd"][-1]
    assert GUEST_URL in step[2]
    path = tmp_path / "startup.sh"
    path.write_text(script)
    out = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("os_alias", ["debian-12", "rhel-9"])
@pytest.mark.parametrize("check_rc,user_rc,script_rc", [(0, 0, 0), (1, 0, 1), (0, 3, 3),
                                                        (1, 3, 1)])
def test_startup_script_exits_with_the_check_status_and_still_runs_the_users_script(
        gce: GceFake, cli: Callable[..., Any], tmp_path: Path,
        stubs: Callable[..., dict[str, str]], os_alias: str, check_rc: int, user_rc: int,
        script_rc: int) -> None:
    """As cloud-init does: a failed check fails the bootstrap and the user's script still
    runs; a failed user script fails it too (docs/bootstrap.md)."""
    from providers.gcp._guest import USER_SCRIPT

    user = '#!/bin/sh\necho user >> "$LOG"\nexit "$USER_RC"\n'
    script = _startup_script(gce, cli, os_alias, tmp_path, user)
    _, tail = _from_the_check_step(script)
    state_dir = USER_SCRIPT.rsplit("/", 1)[0]
    assert USER_SCRIPT in tail
    tail = tail.replace(state_dir, str(tmp_path / "state"))
    # Nothing here writes to the real root (the check and the report are stubs).
    assert "/var/" not in tail and "/etc/" not in tail
    for boot in (1, 2):
        env = stubs(check_rc, USER_RC=str(user_rc))
        out = subprocess.run(["bash", "-c", tail], env=env, capture_output=True, text=True,
                             timeout=30)
        # The check and the report run at every boot; the user's script until it succeeds.
        ran_user = boot == 1 or user_rc != 0
        assert _calls(env) == [f"check {L1CHECK_PATH} --profile kvm", "report"] + (
            ["user"] if ran_user else [])
        assert out.returncode == (script_rc if ran_user else check_rc), out.stderr


# -- the report itself: a PUT to the guest attribute, nothing else ---------------------------


class _Metadata(http.server.ThreadingHTTPServer):
    """The metadata server's guest-attribute endpoint on loopback: it refuses requests without
    ``Metadata-Flavor: Google`` (as the real one does), fails the first ``fail`` PUTs, and
    hands what it stored to ``store``."""

    def __init__(self, fail: int = 0,
                 store: Callable[[str, str], None] | None = None) -> None:
        self.fail = fail
        self.store = store
        self.seen: list[tuple[str, str, str | None, bytes]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.seen.append((self.command, self.path,
                                   self.headers.get("Metadata-Flavor"), body))
                if self.headers.get("Metadata-Flavor") != "Google":
                    code = 403
                elif outer.fail:
                    outer.fail -= 1
                    code = 503
                else:
                    code = 200
                    prefix = "/computeMetadata/v1/instance/guest-attributes/"
                    if outer.store is not None and self.path.startswith(prefix):
                        outer.store(self.path[len(prefix):], body.decode())
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def metadata() -> Iterator[Callable[..., _Metadata]]:
    servers: list[_Metadata] = []

    def start(**kw: Any) -> _Metadata:
        srv = _Metadata(**kw)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _run_report(srv: _Metadata, state: Path) -> subprocess.CompletedProcess[str]:
    """The declared report command, as the check step runs it, pointed at ``srv`` and
    ``state``; a proxy in the environment must not see the report."""
    report = _envelope().linux_report_script
    assert GUEST_URL in report and L1_STATE_PATH in report
    cmd = report.replace(METADATA, srv.url).replace(L1_STATE_PATH, str(state))
    env = {"PATH": os.environ["PATH"], "http_proxy": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""}
    return subprocess.run(["sh", "-c", cmd], env=env, capture_output=True, text=True,
                          timeout=60)


def test_the_report_puts_the_saved_result_with_the_flavor_header_and_retries(
        metadata: Callable[..., _Metadata], tmp_path: Path) -> None:
    state = tmp_path / "l1.json"
    # As l1check --state saves it.
    state.write_text(json.dumps(READY, indent=2, sort_keys=True))
    srv = metadata(fail=1)
    out = _run_report(srv, state)
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")
    assert len(srv.seen) == 2  # one refused, one retry
    for method, path, flavor, body in srv.seen:
        assert (method, flavor) == ("PUT", "Google")
        assert path == GUEST_URL[len(METADATA):]
        assert json.loads(body) == READY


def test_without_a_saved_result_the_report_sends_nothing(
        metadata: Callable[..., _Metadata], tmp_path: Path) -> None:
    srv = metadata()
    out = _run_report(srv, tmp_path / "missing.json")
    assert out.returncode != 0 and srv.seen == []
    assert "no readiness report to publish" in out.stderr


def test_wait_reads_ready_through_what_the_report_published(
        gce: GceFake, cli: Callable[..., Any], metadata: Callable[..., _Metadata],
        tmp_path: Path) -> None:
    res = _launch(cli, "--os", "ubuntu-24.04", "--hypervisor", "kvm", "--json")
    assert res.exit_code == 0, res.output
    srv = metadata(store=lambda path, value: gce.set_guest_attribute("lab-0", path, value))
    state = tmp_path / "l1.json"
    state.write_text(json.dumps(READY, indent=2, sort_keys=True))
    assert _run_report(srv, state).returncode == 0
    res = cli("wait", "lab", "--provider", "gcp", "--region", REGION, "--timeout", "30",
              "--interval", "0.05", "--json")
    assert res.exit_code == 0, res.output
    assert [r["status"] for r in json.loads(res.stdout)["instances"]] == ["ready"]
    reads = gce.calls("instances.getGuestAttributes")
    assert reads and all(r.query.get("variableKey") == "nestcloud/l1" for r in reads)
    assert gce.calls("instances.getSerialPortOutput") == []
