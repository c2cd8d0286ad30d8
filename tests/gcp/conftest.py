"""Fixtures for Compute Engine tests: the local GCE fake, clients wired to it, and a guard that
fails any attempt to leave loopback (a real Google endpoint or the GCE metadata server)."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fakes.gce_fake import GceFake, make_client  # noqa: E402

# Set at import time: google-auth reads GCE_METADATA_* when it is imported.
os.environ.update({
    # google-auth: never probe the GCE metadata server for credentials.
    "NO_GCE_CHECK": "True",
    # ... and if something probes anyway, the probe stays on loopback (discard port).
    "GCE_METADATA_HOST": "127.0.0.1:9",
    "GCE_METADATA_IP": "127.0.0.1:9",
    # No gcloud user config or Application Default Credentials from this machine.
    "CLOUDSDK_CONFIG": tempfile.mkdtemp(prefix="nestcloud-gcloud-"),
})
for _k in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT",
           "CLOUDSDK_CORE_PROJECT", "NESTCLOUD_GCP_ENDPOINT"):
    os.environ.pop(_k, None)

_LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}


def _is_loopback(host: Any) -> bool:
    h = str(host).strip("[]")
    return h in _LOOPBACK_NAMES or h.startswith("127.")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Refuse name lookups and connections to anything but loopback; the hosts that were
    tried are returned so a test can show what the client wanted to reach."""
    tried: list[str] = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_loopback(host):
            tried.append(str(host))
            raise OSError(f"test guard: lookup of {host!r} refused (loopback only)")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and not _is_loopback(address[0]):
            tried.append(str(address[0]))
            raise OSError(f"test guard: connection to {address!r} refused (loopback only)")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return tried


@pytest.fixture(scope="session")
def gce_server() -> Iterator[GceFake]:
    fake = GceFake().start()
    yield fake
    fake.stop()


@pytest.fixture
def gce(gce_server: GceFake) -> GceFake:
    """The session's fake, reset to a fresh project for this test."""
    gce_server.reset()
    return gce_server


C = TypeVar("C")


@pytest.fixture
def gce_client(gce: GceFake) -> Callable[[type[C]], C]:
    """Build any google-cloud-compute client against the fake: ``gce_client(InstancesClient)``.
    Anonymous credentials, the fake's plain-http endpoint, nothing read from the machine."""
    pytest.importorskip("google.cloud.compute_v1")
    return lambda cls: make_client(cls, gce.url)
