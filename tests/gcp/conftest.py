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
    with GceFake() as fake:
        yield fake


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


# -- the GCP provider against the fake ----------------------------------------------------------

# Test inputs from shared/FACTS.md "GCP": which families can run a hypervisor (N1, N2
# confirmed; C2, C3, N4 Intel and expected; E2, N2D (AMD) and T2A (Arm) cannot). Sizes,
# regions and prices come from the vendored price file, never typed in here.
FACTS_NESTING = {"n1": "nested", "n2": "nested", "c2": "nested", "c3": "nested",
                 "n4": "nested", "e2": "none", "n2d": "none", "t2a": "none"}
FACTS_VENDOR = {"n2d": "amd", "t2a": "ampere"}
CATALOG_TYPES = ("n2-standard-2", "n2-standard-4", "n2-standard-8", "n1-standard-4",
                 "c3-standard-4", "e2-standard-4", "n2d-standard-4", "t2a-standard-4")


def gcp_catalog(names: tuple[str, ...] = CATALOG_TYPES) -> Any:
    """A catalog of GCP types built from data/prices-gcp.csv and FACTS' nesting per family."""
    import csv

    from fakes.gce_fake import PRICES_CSV
    from nestcloud.catalog import Catalog

    rows: dict[str, list[dict[str, str]]] = {}
    with PRICES_CSV.open(newline="") as f:
        for r in csv.DictReader(f):
            if r["instance_type"] in names:
                rows.setdefault(r["instance_type"], []).append(r)
    types = []
    for name in names:
        rs = rows[name]
        fam = name.split("-", 1)[0]
        types.append({
            "provider": "gcp", "name": name, "family": fam, "vcpus": int(rs[0]["vcpus"]),
            "memory_gib": float(rs[0]["memory_gib"]), "arch": rs[0]["arch"],
            "cpu_vendor": FACTS_VENDOR.get(fam, "intel"), "nesting": FACTS_NESTING[fam],
            "nesting_source": "facts", "verified": "2026-11-29",
            "regions": sorted(r["region"] for r in rs),
            "prices": {r["region"]: {"on_demand": float(r["on_demand_usd_per_hour"]),
                                     "source": "prices"} for r in rs}})
    return Catalog.validate({"schema_version": 1, "sources": {
        "facts": {"description": "shared/FACTS.md GCP"},
        "prices": {"description": "data/prices-gcp.csv"}}, "types": types})


@pytest.fixture
def catalog() -> Any:
    return gcp_catalog()


@pytest.fixture
def make_provider(gce: GceFake) -> Callable[..., Any]:
    """GcpProvider against the fake: the endpoint a user would pass (--gcp-endpoint), so the
    provider picks anonymous credentials itself; retries fast."""
    pytest.importorskip("google.cloud.compute_v1")
    from providers.gcp import GcpProvider
    from providers.gcp._api import make_retry

    def make(**kw: Any) -> Any:
        kw.setdefault("region", "us-central1")
        kw.setdefault("project", gce.project)
        kw.setdefault("gcp_endpoint", gce.url)
        kw.setdefault("retry", make_retry(initial=0.001, maximum=0.01, timeout=30))
        return GcpProvider(**kw)

    return make


@pytest.fixture
def provider(make_provider: Callable[..., Any]) -> Any:
    return make_provider()


def fake_leftovers(gce: GceFake, name: str) -> list[str]:
    """Whatever the fake still holds for ``name``, read from its state (not the provider):
    instances and addresses labelled with it, firewall rules named or described for it."""
    label = "nestcloud-name"
    out = [f"instance {z}/{n}" for (z, n), i in gce.instances.items()
           if (i.get("labels") or {}).get(label) == name]
    out += [f"firewall {n}" for n, f in gce.firewalls.items()
            if n == f"nestcloud-{name}-ssh" or f"nestcloud:name={name}:" in
            str(f.get("description", ""))]
    out += [f"address {r}/{n}" for (r, n), a in gce.addresses.items()
            if (a.get("labels") or {}).get(label) == name]
    return sorted(out)
