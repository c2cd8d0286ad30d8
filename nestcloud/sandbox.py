"""The local EC2 endpoint behind ``--sandbox``: moto's server, outliving single commands.

``ensure_endpoint()`` starts it on a free loopback port when needed and returns its URL; a
state file under ``$NESTCLOUD_STATE_DIR`` (default ``~/.local/state/nestcloud``) lets every
later command find the same server, so ``launch``, ``ls`` and ``down`` see one world. The
server runs as ``python -m nestcloud.sandbox serve`` in its own session, detached from the
command that started it. moto is imported only in that server process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from nestcloud.errors import MissingDependencyError, ProviderError

ENV_SANDBOX = "NESTCLOUD_SANDBOX"
ENV_STATE_DIR = "NESTCLOUD_STATE_DIR"
STATE_FILE = "sandbox.json"
START_TIMEOUT_S = 30.0
# The sandbox never sees real credentials: these go to the loopback endpoint only.
FAKE_CREDENTIALS = {"aws_access_key_id": "nestcloud-sandbox",
                    "aws_secret_access_key": "nestcloud-sandbox"}
DEFAULT_REGION = "us-east-1"

LIMITS = (
    "the sandbox is a local EC2 endpoint (moto): requests are real, machines are not. No guest "
    "boots, so readiness markers never appear; CpuOptions.NestedVirtualization is echoed back "
    "for what was launched with it, as EC2 reports it; only the al2023 image parameter exists "
    "in its SSM."
)


@dataclass(frozen=True)
class SandboxState:
    pid: int
    port: int
    url: str
    started_at: float
    moto_version: str | None = None


def enabled(flag: bool = False) -> bool:
    """--sandbox, or NESTCLOUD_SANDBOX set to a true value."""
    env = os.environ.get(ENV_SANDBOX, "").strip().lower()
    return flag or env in ("1", "true", "yes", "on")


def state_dir() -> Path:
    env = os.environ.get(ENV_STATE_DIR)
    base = Path(env) if env else Path.home() / ".local" / "state" / "nestcloud"
    return base


def state_path() -> Path:
    return state_dir() / STATE_FILE


def read_state() -> SandboxState | None:
    try:
        data = json.loads(state_path().read_text(encoding="utf-8"))
        return SandboxState(**data)
    except (FileNotFoundError, ValueError, TypeError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_our_server(pid: int) -> bool:
    """Guard against a recycled pid before signalling it."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        try:
            return b"nestcloud.sandbox" in cmdline.read_bytes()
        except OSError:
            return False
    try:  # no /proc (macOS): ask ps; when unsure, never signal
        out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)],  # noqa: S603,S607
                             capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "nestcloud.sandbox" in out


def healthy(url: str, timeout: float = 2.0) -> bool:
    """The endpoint answers moto's own API (not just any HTTP server on that port)."""
    try:
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=timeout) as resp:  # noqa: S310
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def status() -> SandboxState | None:
    """The running sandbox, or None; a stale state file (dead or foreign) is removed."""
    st = read_state()
    if st is None:
        return None
    if _pid_alive(st.pid) and healthy(st.url):
        return st
    with contextlib.suppress(FileNotFoundError):
        state_path().unlink()
    return None


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """Two commands starting the sandbox at once must end up with one server."""
    state_dir().mkdir(parents=True, exist_ok=True)
    path = state_dir() / "sandbox.lock"
    with open(path, "a+") as fh:
        try:
            import fcntl
        except ImportError:  # Windows: best effort without a lock
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def start() -> tuple[SandboxState, bool]:
    """(the sandbox, whether this call started it)."""
    with _lock():
        st = status()
        if st is not None:
            return st, False
        try:
            import importlib.util

            if importlib.util.find_spec("moto") is None:
                raise ImportError("moto")
        except ImportError as exc:
            raise MissingDependencyError("the sandbox needs moto's server, which is not "
                                         "installed", hint="pip install 'nestcloud[sandbox]'",
                                         provider="aws") from exc
        state_dir().mkdir(parents=True, exist_ok=True)
        log = state_dir() / "sandbox.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "nestcloud.sandbox", "serve", str(state_path())],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                close_fds=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            st = read_state()
            if st is not None and st.pid == proc.pid and healthy(st.url):
                return st, True
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        if proc.poll() is None:
            proc.terminate()
        tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
        raise ProviderError(f"the sandbox endpoint did not start (log: {log})\n{tail}".rstrip(),
                            provider="aws")


def ensure_endpoint() -> str:
    """The sandbox URL, starting the server first if none runs."""
    return start()[0].url


def stop() -> SandboxState | None:
    """Stop the sandbox (and forget its world); None when none was running."""
    with _lock():
        st = read_state()
        if st is None:
            return None
        if _pid_alive(st.pid) and _is_our_server(st.pid):
            os.kill(st.pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _pid_alive(st.pid) and time.monotonic() < deadline:
                _reap(st.pid)
                time.sleep(0.05)
            if _pid_alive(st.pid):
                os.kill(st.pid, signal.SIGKILL)
        with contextlib.suppress(FileNotFoundError):
            state_path().unlink()
        return st


def _reap(pid: int) -> None:
    # When this process started the server it must collect the exit status, or the zombie
    # would look alive to os.kill(pid, 0).
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def session():  # type: ignore[no-untyped-def]
    """A boto3 session with fixed fake credentials: nothing real ever reaches the sandbox."""
    import boto3

    return boto3.Session(region_name=os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
                         **FAKE_CREDENTIALS)


def serve(state_file: str) -> None:
    """Run moto's server on a free loopback port until SIGTERM; write the state file."""
    from importlib.metadata import version

    from providers._aws_sandbox import sandbox_server  # moto, echoing the nested switch

    server = sandbox_server()
    server.start()
    host, port = server.get_host_and_port()
    st = SandboxState(pid=os.getpid(), port=port, url=f"http://{host}:{port}",
                      started_at=time.time(), moto_version=version("moto"))
    path = Path(state_file)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(st)), encoding="utf-8")
    os.replace(tmp, path)

    def _stop(signum: int, frame: object) -> None:
        # The world lives in this process's memory only: nothing to flush, so leave at once
        # rather than wait for the HTTP server's threads to wind down.
        os._exit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        print("usage: python -m nestcloud.sandbox serve STATE_FILE", file=sys.stderr)
        sys.exit(2)
