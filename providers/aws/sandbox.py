"""The AWS provider's local endpoint (``--sandbox``, `nestcloud sandbox`): moto's EC2 server,
outliving single commands, plus what moto leaves out that nestcloud's launch checks.

``ensure_endpoint()`` starts it on a free loopback port when needed and returns its URL; a
state file in the state directory (``$NESTCLOUD_STATE_DIR``, else the platform's, see
nestcloud.localstate) lets every later command find the same server, so ``launch``, ``ls``
and ``down`` see one world. The server runs as ``python -m providers.aws.sandbox serve
STATE_FILE`` in its own session, detached from the command that started it. moto is imported
only in that server process; boto3 only by ``session()``.

The state file is a convenience, never the only way to the server: its content is checked
(types, a loopback URL, a pid that is this user's server for this state file and listens on
that port) and, when it is missing, damaged or foreign, the server is found by its command
line instead (psutil) and the file rewritten. So no server is ever left where ``sandbox
stop`` cannot reach it, and nothing else is ever taken for the sandbox or signalled. A server
of ours that is alive and listening but slow to answer (a loaded machine) is waited for, up to
BUSY_WAIT_S, rather than replaced: replacing it would lose its world.

The server's WSGI layers (below, "the echo") work on the EC2 Query API on the wire.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs

from nestcloud.errors import InputError, MissingDependencyError, ProviderError
from nestcloud.localstate import (
    ENV_STATE_DIR,
    LocalFileError,
    create_private,
    file_lock,
    private_dir,
    read_private,
    state_dir,
    write_private,
)

if TYPE_CHECKING:
    from nestcloud.provider import LocalEndpoint

__all__ = ["ENV_STATE_DIR", "CpuOptionsEcho", "LocalEc2Server", "SandboxState", "call",
           "control", "ensure_endpoint", "healthy", "read_params", "read_state", "respond",
           "sandbox_server", "session", "start", "state_dir", "state_path", "status", "stop"]

STATE_FILE = "sandbox.json"
LOG_FILE = "sandbox.log"  # the server's request log, rotated at LOG_MAX_BYTES (one old file)
OUT_FILE = "sandbox.out"  # the server's own output (start-up errors), new at every start
LOG_MAX_BYTES = 1 << 20
_ENV_LOG_MAX = "NESTCLOUD_SANDBOX_LOG_MAX_BYTES"  # start() -> serve(): the cap to apply
MAX_STATE_BYTES = 4096  # a state is ~150 bytes; a larger file is not ours
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
# How long one health check waits for an answer.
ANSWER_TIMEOUT_S = 5.0
# How long a server of ours that is alive and listening may go without answering before it
# counts as hung (and start() replaces it): a busy machine slows moto, and replacing a server
# loses its world.
BUSY_WAIT_S = 30.0
# The sandbox never sees real credentials: these go to the loopback endpoint only.
FAKE_CREDENTIALS = {"aws_access_key_id": "nestcloud-sandbox",
                    "aws_secret_access_key": "nestcloud-sandbox"}
DEFAULT_REGION = "us-east-1"
_INSTALL_HINT = "pip install 'nestcloud[sandbox]'"

LIMITS = (
    "the sandbox is a local EC2 endpoint (moto): requests are real, machines are not. No guest "
    "boots, so readiness markers never appear; CpuOptions.NestedVirtualization is echoed back "
    "for what was launched with it, as EC2 reports it; only the al2023 image parameter exists "
    "in its SSM."
)

Note = Callable[[str], None]


def notify_stderr(text: str) -> None:
    print(text, file=sys.stderr)


@dataclass(frozen=True)
class SandboxState:
    pid: int
    port: int
    url: str
    started_at: float
    moto_version: str | None = None


def state_path() -> Path:
    return state_dir() / STATE_FILE


def _serve_args() -> list[str]:
    """What follows the interpreter in the server's command line: names this state file."""
    return ["-m", "providers.aws.sandbox", "serve", os.path.abspath(state_path())]


def _parse(doc: Any) -> SandboxState | None:
    """A state only when every field has its type and the URL is loopback at its port."""
    if not isinstance(doc, dict) or not {"pid", "port", "url", "started_at"} <= set(doc) \
            or not set(doc) <= {"pid", "port", "url", "started_at", "moto_version"}:
        return None
    pid, port, url, started, moto = (doc["pid"], doc["port"], doc["url"], doc["started_at"],
                                     doc.get("moto_version"))
    if type(pid) is not int or pid <= 0 or type(port) is not int or not 0 < port < 65536:
        return None
    if url != f"http://127.0.0.1:{port}":  # requests go there: never off this machine
        return None
    if type(started) not in (int, float) or not math.isfinite(started):
        return None
    if moto is not None and (not isinstance(moto, str) or len(moto) > 64):
        return None
    return SandboxState(pid=pid, port=port, url=url, started_at=float(started),
                        moto_version=moto)


def _load() -> tuple[SandboxState | None, str | None]:
    """(the state file's state, why the file cannot be used): (None, None) when absent."""
    try:
        raw, _ = read_private(state_path(), MAX_STATE_BYTES)
    except FileNotFoundError:
        return None, None
    except LocalFileError as exc:
        return None, exc.reason
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror})"
    try:
        doc = json.loads(raw)
    except ValueError:
        return None, "not JSON"
    st = _parse(doc)
    return (st, None) if st is not None else (None, "not a sandbox state (fields or types)")


def read_state() -> SandboxState | None:
    """The state file's content when it is a well-formed state (not checked against the
    running processes: see status())."""
    return _load()[0]


def _psutil() -> Any:
    try:
        import psutil
    except ImportError as exc:
        raise MissingDependencyError("the sandbox needs psutil to find its server, which is "
                                     "not installed", hint=_INSTALL_HINT,
                                     provider="aws") from exc
    return psutil


def _ours(proc: Any) -> bool:
    """``proc`` is this user's sandbox server for this state file (not a recycled pid, not
    another user's process, not a server of another state directory)."""
    psutil = _psutil()
    try:
        return (proc.cmdline()[-4:] == _serve_args()
                and proc.username() == psutil.Process().username()
                and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _servers() -> list[Any]:
    """This user's sandbox servers for this state file, found by their command lines."""
    psutil = _psutil()
    want = _serve_args()
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if cmd[-4:] == want and _ours(proc):
            found.append(proc)
    return found


def _listen_port(proc: Any) -> int | None:
    """The loopback port ``proc`` listens on; None when there is none or it cannot be read."""
    psutil = _psutil()
    try:
        conns = proc.net_connections(kind="tcp4")
    except psutil.Error:
        return None
    ports = [c.laddr.port for c in conns
             if c.status == psutil.CONN_LISTEN and c.laddr.ip == "127.0.0.1"]
    return ports[0] if len(ports) == 1 else None


def _answers(proc: Any, url: str, port: int | None) -> bool:
    """Whether our server ``proc`` answers at ``url``. While it is alive and listening on
    ``port`` it is asked again for up to BUSY_WAIT_S: a slow server is not a hung one."""
    deadline = time.monotonic() + BUSY_WAIT_S
    while not healthy(url, ANSWER_TIMEOUT_S):
        if (port is None or time.monotonic() >= deadline or not _alive(proc)
                or _listen_port(proc) != port):
            return False
        time.sleep(0.2)
    return True


def _describe(proc: Any, *, wait: bool = True) -> SandboxState | None:
    """The state of a server found by its command line, when it answers (``wait``: a slow
    one is waited for, see _answers)."""
    port = _listen_port(proc)
    if port is None:
        return None
    url = f"http://127.0.0.1:{port}"
    if not (_answers(proc, url, port) if wait else healthy(url, ANSWER_TIMEOUT_S)):
        return None
    try:
        started = float(proc.create_time())
    except _psutil().Error:
        return None
    return SandboxState(pid=proc.pid, port=port, url=url, started_at=started)


def _verified(st: SandboxState) -> bool:
    """The state names our server, listening on its port, and the endpoint answers (a slow
    one is waited for, see _answers)."""
    psutil = _psutil()
    try:
        proc = psutil.Process(st.pid)
    except psutil.Error:
        return False
    if not _ours(proc):
        return False
    port = _listen_port(proc)
    return port in (st.port, None) and _answers(proc, st.url, port)


def _terminate(procs: list[Any]) -> None:
    """SIGTERM, then SIGKILL whoever is still there after STOP_TIMEOUT_S (children are
    reaped: a zombie would look alive)."""
    psutil = _psutil()
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=STOP_TIMEOUT_S)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=STOP_TIMEOUT_S)


def _forget(problem: str | None) -> None:
    """Remove the state file; LocalFileError when the path cannot be removed (a directory)."""
    path = state_path()
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise LocalFileError(path, f"{problem or 'not a sandbox state'}, and it cannot be "
                                   f"removed ({exc.strerror})",
                             hint="remove it by hand: nestcloud keeps only its sandbox state "
                                  "there") from None


def _current(note: Note, *, reap: bool) -> SandboxState | None:
    """The running sandbox, repairing the state file on the way; call under _lock().

    A state file that does not name a running server of ours is removed (LocalFileError when
    it cannot be). A server found by its command line is adopted (the file rewritten); with
    ``reap``, servers that do not answer and any second server are stopped."""
    st, problem = _load()
    if st is not None and _verified(st):
        return st
    path = state_path()
    found: SandboxState | None = None
    extra = []
    for proc in _servers():
        # The server the state named was asked (and waited for) already.
        described = (_describe(proc) if found is None and (st is None or proc.pid != st.pid)
                     else None)
        if described is not None:
            found = described
        else:
            extra.append(proc)
    if reap and extra:
        note(f"sandbox: stopping server(s) {', '.join(str(p.pid) for p in extra)} that "
             "did not answer or were not in the state file")
        _terminate(extra)
    _forget(problem)  # one clear error when the path cannot be used at all
    if found is None:
        if problem:
            note(f"sandbox: removed {path}: {problem}")
        return None
    write_private(path, json.dumps(asdict(found)).encode())
    note(f"sandbox: {path} was {problem or 'missing or stale'}; found the server "
         f"(pid {found.pid}) by its command line and rewrote it")
    return found


def status(note: Note = notify_stderr) -> SandboxState | None:
    """The running sandbox, or None; a stale state file (dead or foreign) is removed and a
    server whose state file was lost or damaged is found again."""
    if not _needed():
        return None
    with _lock():
        return _current(note, reap=False)


def healthy(url: str, timeout: float = 2.0) -> bool:
    """The endpoint answers moto's own API (not just any HTTP server on that port)."""
    try:
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=timeout) as resp:  # noqa: S310
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """Two commands starting the sandbox at once must end up with one server."""
    with file_lock(private_dir(state_dir()) / "sandbox.lock"):
        yield


def start(note: Note = notify_stderr) -> tuple[SandboxState, bool]:
    """(the sandbox, whether this call started it)."""
    import importlib.util

    for module in ("moto", "psutil"):
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(f"the sandbox needs {module}, which is not installed",
                                         hint=_INSTALL_HINT, provider="aws")
    with _lock():
        st = _current(note, reap=True)
        if st is not None:
            return st, False
        out_path = state_dir() / OUT_FILE
        fd = create_private(out_path)
        try:
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, *_serve_args()], stdin=subprocess.DEVNULL, stdout=fd,
                stderr=fd, start_new_session=True, close_fds=True,
                env={**os.environ, _ENV_LOG_MAX: str(LOG_MAX_BYTES)})
        finally:
            os.close(fd)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            st = read_state()
            if st is not None and st.pid == proc.pid and healthy(st.url):
                return st, True
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        try:
            tail = read_private(out_path, 1 << 20)[0].decode(errors="replace")[-800:]
        except (OSError, LocalFileError):
            tail = ""
        raise ProviderError(f"the sandbox endpoint did not start (output: {out_path})\n"
                            f"{tail}".rstrip(), provider="aws")


def ensure_endpoint() -> str:
    """The sandbox URL, starting the server first if none runs."""
    return start()[0].url


def stop(note: Note = notify_stderr) -> SandboxState | None:
    """Stop the sandbox (and forget its world); None when none was running.

    Every server of this user for this state file is stopped, found by its command line as
    well as through the state file, so a damaged or deleted state file cannot hide one. A
    state path that cannot be removed is reported through ``note``, not raised: stopping
    worked."""
    if not _needed():
        return None
    with _lock():
        st, problem = _load()
        if problem:
            note(f"sandbox: ignoring {state_path()}: {problem}")
        procs = _servers()
        if st is not None and st.pid not in {p.pid for p in procs}:
            st = None  # names no server of ours (gone, or someone else's): nothing to stop
        if st is None and procs:
            st = _describe(procs[0], wait=False) or SandboxState(pid=procs[0].pid, port=0, url="",
                                                     started_at=0.0)
        _terminate(procs)
        left = [p for p in procs if _alive(p)]
        if left:
            raise ProviderError(f"sandbox server(s) {', '.join(str(p.pid) for p in left)} "
                                "did not stop", provider="aws")
        try:
            _forget(problem)
        except LocalFileError as exc:
            note(f"sandbox: {exc}")
        return st


def _alive(proc: Any) -> bool:
    psutil = _psutil()
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _needed() -> bool:
    """Whether there can be a server to look for: without psutil (no sandbox extra) this
    version never started one, so only a leftover state file asks for psutil."""
    import importlib.util

    if importlib.util.find_spec("psutil") is not None:
        return True
    if os.path.lexists(state_path()):
        _psutil()  # raises, naming the extra to install
    return False


def session():  # type: ignore[no-untyped-def]
    """A boto3 session with fixed fake credentials: nothing real ever reaches the sandbox."""
    import boto3

    return boto3.Session(region_name=os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
                         **FAKE_CREDENTIALS)


def _endpoint(st: SandboxState, started: bool) -> LocalEndpoint:
    from nestcloud.provider import LocalEndpoint

    return LocalEndpoint(url=st.url, pid=st.pid, limits=LIMITS, started=started,
                         state_file=str(state_path()),
                         detail=(("port", st.port), ("moto_version", st.moto_version)))


def control(action: Literal["start", "status", "stop"], note: Note) -> LocalEndpoint | None:
    """AwsProvider.endpoint_control: `nestcloud sandbox start|status|stop`. The sandbox as it
    is after ``action`` (``stop``: the one stopped; its URL is "" when it no longer answered),
    None when none runs."""
    if action == "start":
        st, started = start(note)
        return _endpoint(st, started)
    if action == "status":
        got = status(note)
        if got is None:  # what would run, and where its state would be
            from nestcloud.provider import LocalEndpoint

            return LocalEndpoint(url="", pid=None, limits=LIMITS, running=False,
                                 state_file=str(state_path()))
    elif action == "stop":
        got = stop(note)
    else:
        raise InputError(f"sandbox: unknown action {action!r} (start, status or stop)")
    return None if got is None else _endpoint(got, False)


def _log_requests(path: Path, max_bytes: int) -> None:
    """Send what the server logs (werkzeug logs every request), warns or prints to ``path``,
    rotated at ``max_bytes`` with one older file kept: a long-lived sandbox answering a
    polling loop must not fill the disk."""
    import logging
    from logging.handlers import RotatingFileHandler

    class PrivateLog(RotatingFileHandler):
        def _open(self):  # type: ignore[no-untyped-def]
            # 0600 from the start, and never through a link planted at the log's name.
            fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT
                         | getattr(os, "O_NOFOLLOW", 0), 0o600)
            return open(fd, "a", encoding=self.encoding, errors=self.errors)  # noqa: SIM115

    class ToLog:
        """sys.stdout/sys.stderr as log lines (tracebacks printed by socketserver too)."""

        def __init__(self) -> None:
            self.busy = False

        def write(self, text: str) -> int:
            if not self.busy:  # a failing handler reports to stderr: do not loop
                self.busy = True
                try:
                    for line in text.splitlines():
                        if line.strip():
                            logging.getLogger("nestcloud.sandbox").info(line)
                finally:
                    self.busy = False
            return len(text)

        def flush(self) -> None:
            pass

    handler = PrivateLog(path, maxBytes=max_bytes, backupCount=1, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    sys.stdout = sys.stderr = ToLog()  # type: ignore[assignment]


def serve(state_file: str) -> None:
    """Run moto's server on a free loopback port until SIGTERM; write the state file."""
    from importlib.metadata import version

    os.umask(0o077)  # whatever this process creates is the user's alone
    _log_requests(Path(state_file).with_name(LOG_FILE),
                  int(os.environ.get(_ENV_LOG_MAX) or LOG_MAX_BYTES))
    server = sandbox_server()
    server.start()
    host, port = server.get_host_and_port()
    st = SandboxState(pid=os.getpid(), port=port, url=f"http://{host}:{port}",
                      started_at=time.time(), moto_version=version("moto"))
    write_private(Path(state_file), json.dumps(asdict(st)).encode())

    def _stop(signum: int, frame: object) -> None:
        # The world lives in this process's memory only: nothing to flush, so leave at once
        # rather than wait for the HTTP server's threads to wind down.
        os._exit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while True:
        time.sleep(3600)


# -- the server's WSGI layers: what moto leaves out --------------------------------------------
#
# moto 5.2.5 accepts ``CpuOptions.NestedVirtualization`` (on RunInstances and in a launch
# template's data) but never reports it back (FACTS.md). EC2 does: ``DescribeInstances``
# reports ``CpuOptions.NestedVirtualization`` for a nested launch. nestcloud fails a nested
# launch whose instances do not report it, so the local endpoint echoes the field the way EC2
# does, for the instances that were launched with it (directly, or through a launch template
# that carries it, e.g. by EC2 Fleet). Anything launched without it reports nothing, as moto
# does today. A WSGI layer in front of moto's app, on the wire (form parameters in, XML out),
# not on moto's internals, so a moto upgrade does not silently undo it.

EC2_API_VERSION = "2016-11-15"
CPU_FIELD = "NestedVirtualization"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Layer = Callable[[WsgiApp], WsgiApp]


# -- small WSGI helpers (shared with the tests' own layers) ------------------------------------


def read_params(environ: dict[str, Any]) -> dict[str, str]:
    """The Query API parameters of a request (form body and query string). The body is put
    back, so the app behind still reads it."""
    params = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING") or "").items()}
    ctype = str(environ.get("CONTENT_TYPE") or "")
    if environ.get("REQUEST_METHOD") == "POST" and ctype.startswith(
            "application/x-www-form-urlencoded"):
        try:
            size = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            size = 0
        body = environ["wsgi.input"].read(size) if size > 0 else b""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        params.update({k: v[-1] for k, v in
                       parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()})
    return params


def call(app: WsgiApp, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run ``app`` on ``environ``; (status line, headers, whole body)."""
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        got["status"], got["headers"] = status, list(headers)
        return lambda _data: None

    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return got["status"], got["headers"], body


def respond(start_response: Callable[..., Any], status: str, headers: list[tuple[str, str]],
            body: bytes) -> list[bytes]:
    """Send ``body`` with a Content-Length that matches it."""
    headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
    headers.append(("Content-Length", str(len(body))))
    start_response(status, headers)
    return [body]


def ns_of(root: ET.Element) -> str:
    """``{namespace}`` of an XML document's root, or ''."""
    return root.tag.split("}", 1)[0] + "}" if root.tag.startswith("{") else ""


def to_xml(root: ET.Element) -> bytes:
    ns = ns_of(root)
    if ns:
        ET.register_namespace("", ns[1:-1])  # keep EC2's default namespace, no ns0: prefixes
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def instance_items(root: ET.Element) -> list[ET.Element]:
    """Every instance element of a RunInstances or DescribeInstances answer."""
    ns = ns_of(root)
    return [item for s in root.iter(f"{ns}instancesSet") for item in s.findall(f"{ns}item")]


# -- the echo ----------------------------------------------------------------------------------


class CpuOptionsEcho:
    """Report ``CpuOptions.NestedVirtualization`` back for the instances launched with it."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self._lock = threading.Lock()
        self.instances: dict[str, str] = {}   # instance id -> the value it was launched with
        self.templates: dict[str, str] = {}   # launch template id or name -> its value

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]
                 ) -> Iterable[bytes]:
        params = read_params(environ)
        action = params.get("Action")
        if params.get("Version") != EC2_API_VERSION or action not in (
                "RunInstances", "DescribeInstances", "CreateLaunchTemplate", "CreateFleet"):
            return self.app(environ, start_response)
        status, headers, body = call(self.app, environ)
        if status.startswith("200"):
            try:
                body = self._edit(action, params, body)
            except ET.ParseError:
                pass  # not the XML we know: hand it on as moto wrote it
        return respond(start_response, status, headers, body)

    def _template_value(self, params: dict[str, str], prefix: str) -> str | None:
        with self._lock:
            for key in ("LaunchTemplateId", "LaunchTemplateName"):
                ref = params.get(f"{prefix}.{key}")
                if ref and ref in self.templates:
                    return self.templates[ref]
        return None

    def _edit(self, action: str, params: dict[str, str], body: bytes) -> bytes:
        root = ET.fromstring(body)
        ns = ns_of(root)
        if action == "CreateLaunchTemplate":
            value = params.get(f"LaunchTemplateData.CpuOptions.{CPU_FIELD}")
            tid = root.findtext(f"{ns}launchTemplate/{ns}launchTemplateId")
            if value and tid:
                with self._lock:
                    self.templates[tid] = value
                    self.templates[params.get("LaunchTemplateName", tid)] = value
            return body
        if action == "CreateFleet":
            value = self._template_value(
                params, "LaunchTemplateConfigs.1.LaunchTemplateSpecification")
            if value:
                ids = [item.text for group in root.iter(f"{ns}instanceIds")
                       for item in group.findall(f"{ns}item") if item.text]
                with self._lock:
                    self.instances.update(dict.fromkeys(ids, value))
            return body
        if action == "RunInstances":
            value = (params.get(f"CpuOptions.{CPU_FIELD}")
                     or self._template_value(params, "LaunchTemplate"))
            if value:
                with self._lock:
                    for item in instance_items(root):
                        iid = item.findtext(f"{ns}instanceId")
                        if iid:
                            self.instances[iid] = value
        changed = False
        for item in instance_items(root):
            with self._lock:
                value = self.instances.get(item.findtext(f"{ns}instanceId") or "")
            if value is None:
                continue
            cpu = item.find(f"{ns}cpuOptions")
            if cpu is None:
                cpu = ET.SubElement(item, f"{ns}cpuOptions")
            field = cpu.find(f"{ns}nestedVirtualization")
            if field is None:
                field = ET.SubElement(cpu, f"{ns}nestedVirtualization")
            field.text = value
            changed = True
        return to_xml(root) if changed else body


# -- the server --------------------------------------------------------------------------------


class LocalEc2Server:
    """moto's HTTP server on a loopback port, with WSGI ``layers`` in front of moto's app
    (the first one listed is outermost). Same start/stop/get_host_and_port as moto's
    ThreadedMotoServer."""

    def __init__(self, ip_address: str = "127.0.0.1", port: int = 0,
                 layers: Sequence[Layer] = (CpuOptionsEcho,)) -> None:
        self.ip_address, self.port, self.layers = ip_address, port, tuple(layers)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        app: WsgiApp = DomainDispatcherApplication(create_backend_app)
        for layer in reversed(self.layers):
            app = layer(app)
        self._server = make_server(self.ip_address, self.port, app, threaded=True,
                                   request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                         name="nestcloud-local-ec2")
        self._thread.start()

    def get_host_and_port(self) -> tuple[str, int]:
        assert self._server is not None, "start() first"
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join()


def sandbox_server() -> LocalEc2Server:
    """The sandbox's endpoint: moto with the nested switch echoed, on a free loopback port."""
    return LocalEc2Server(ip_address="127.0.0.1", port=0)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m providers.aws.sandbox serve STATE_FILE``: the sandbox's server (start()
    runs it). ``python -m providers.aws.sandbox [-H HOST] [-p PORT]``: the echoing endpoint in
    the foreground (the benchmarks run it as a separate process, like ``python -m
    moto.server``)."""
    import argparse

    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["serve"]:
        if len(args_in) != 2:
            print("usage: python -m providers.aws.sandbox serve STATE_FILE", file=sys.stderr)
            return 2
        serve(args_in[1])
        return 0
    ap = argparse.ArgumentParser(description="moto's EC2 endpoint, echoing the nested switch")
    ap.add_argument("-H", "--host", default="127.0.0.1")
    ap.add_argument("-p", "--port", type=int, default=0)
    args = ap.parse_args(args_in)
    server = LocalEc2Server(ip_address=args.host, port=args.port)
    server.start()
    host, port = server.get_host_and_port()
    print(f"http://{host}:{port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
