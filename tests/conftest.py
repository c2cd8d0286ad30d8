"""Test-wide safety: fake credentials, no metadata-service lookups, no packet off loopback."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/ on the path so fixtures and tests import the fakes as `fakes.*`.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Set at import time so that even module-level code in tests sees them.
_SAFE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    "AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000001",
    "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000002",
    "AZURE_CLIENT_SECRET": "testing",
    # Keep azure-identity's managed identity probe off the metadata endpoint.
    "IDENTITY_ENDPOINT": "",
    "MSI_ENDPOINT": "",
    "NO_PROXY": "127.0.0.1,localhost",
    # google-auth: never probe the GCE metadata server; no gcloud config or ADC file of this
    # machine (the gcp provider counts as configured when gcloud has ADC, and `ls` without
    # --provider would then ask Google).
    "NO_GCE_CHECK": "True",
    "GCE_METADATA_HOST": "127.0.0.1:9",
    "GCE_METADATA_IP": "127.0.0.1:9",
    "CLOUDSDK_CONFIG": tempfile.mkdtemp(prefix="nestcloud-gcloud-"),
}
for _k, _v in _SAFE_ENV.items():
    os.environ[_k] = _v
for _k in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "NESTCLOUD_SANDBOX",
           "NESTCLOUD_CATALOG", "NESTCLOUD_AZURE_ARM_ENDPOINT", "HTTP_PROXY", "HTTPS_PROXY",
           "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT",
           "CLOUDSDK_CORE_PROJECT", "NESTCLOUD_GCP_ENDPOINT"):
    os.environ.pop(_k, None)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
                   ) -> None:
    """Every test gets its own state dir so sandbox bookkeeping never leaks between runs."""
    monkeypatch.setenv("NESTCLOUD_STATE_DIR", str(tmp_path_factory.mktemp("state")))


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A real local EC2/SSM/STS endpoint (moto's server) on a free loopback port."""
    from fakes.moto_server import moto_server

    with moto_server() as url:
        yield url
