"""The local EC2 endpoint (``--sandbox`` and the tests): moto's server, plus what moto leaves
out that nestcloud's launch checks.

moto 5.2.5 accepts ``CpuOptions.NestedVirtualization`` (on RunInstances and in a launch
template's data) but never reports it back (FACTS.md). EC2 does: ``DescribeInstances``
reports ``CpuOptions.NestedVirtualization`` for a nested launch. nestcloud fails a nested
launch whose instances do not report it, so the local endpoint echoes the field the way EC2
does, for the instances that were launched with it (directly, or through a launch template
that carries it, e.g. by EC2 Fleet). Anything launched without it reports nothing, as moto
does today.

This is a WSGI layer in front of moto's app that works on the EC2 Query API on the wire (form
parameters in, XML out), not on moto's internals, so a moto upgrade does not silently undo
it. It imports moto and werkzeug only (never boto3): ``nestcloud.sandbox`` runs it in the
sandbox's server process.
"""

from __future__ import annotations

import io
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import parse_qs

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
    """``python -m providers._aws_sandbox --port N``: the echoing endpoint in the foreground
    (the benchmarks run it as a separate process, like ``python -m moto.server``)."""
    import argparse
    import time

    ap = argparse.ArgumentParser(description="moto's EC2 endpoint, echoing the nested switch")
    ap.add_argument("-H", "--host", default="127.0.0.1")
    ap.add_argument("-p", "--port", type=int, default=0)
    args = ap.parse_args(argv)
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


__all__ = ["CpuOptionsEcho", "LocalEc2Server", "call", "read_params", "respond",
           "sandbox_server"]
