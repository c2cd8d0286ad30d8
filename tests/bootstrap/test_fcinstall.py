"""The Firecracker installer shipped to the L1 (no network: the download is injected)."""

from __future__ import annotations

import ast
import hashlib
import io
import os
import sys
import tarfile
from pathlib import Path

import pytest

from nestcloud.bootstrap import fcinstall

V, ARCH = "v1.13.1", "x86_64"
FC = b"#!/bin/sh\necho Firecracker v1.13.1\n"


def archive(members: dict[str, bytes], prefix: str = "") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


RELEASE = {f"release-{V}-{ARCH}/firecracker-{V}-{ARCH}": FC,
           f"release-{V}-{ARCH}/jailer-{V}-{ARCH}": b"jailer",
           f"release-{V}-{ARCH}/SHA256SUMS": b"ignored"}


def served(body: bytes, asked: list[str] | None = None):  # type: ignore[no-untyped-def]
    """A download function for the release: the archive, and its published SHA-256 file."""
    def download(url: str) -> bytes:
        if asked is not None:
            asked.append(url)
        if url.endswith(".sha256.txt"):
            return f"{hashlib.sha256(body).hexdigest()}  {url.rsplit('/', 1)[1][:-11]}\n".encode()
        return body
    return download


def test_release_url_is_the_project_release_asset():
    assert fcinstall.release_url(V, ARCH) == (
        "https://github.com/firecracker-microvm/firecracker/releases/download/v1.13.1/"
        "firecracker-v1.13.1-x86_64.tgz")


@pytest.mark.parametrize("prefix", ["", "./"])
def test_install_from_the_release_layout(tmp_path: Path, prefix: str):
    asked: list[str] = []
    path = fcinstall.install(V, str(tmp_path), arch=ARCH,
                             download=served(archive(RELEASE, prefix), asked))
    assert asked == [fcinstall.release_url(V, ARCH), fcinstall.checksum_url(V, ARCH)]
    assert Path(path).read_bytes() == FC and os.access(path, os.X_OK)
    assert (tmp_path / "jailer").read_bytes() == b"jailer"
    assert sorted(os.listdir(tmp_path)) == ["firecracker", "jailer"]


def test_archive_without_the_binary_is_an_error(tmp_path: Path):
    with pytest.raises(RuntimeError, match=f"the archive has no release-{V}-{ARCH}/firecracker"):
        fcinstall.install(V, str(tmp_path), arch=ARCH,
                          download=served(archive({"README": b"x"})))
    assert os.listdir(tmp_path) == []


def test_main_reports_failure_without_a_traceback(monkeypatch, capsys, tmp_path):
    def broken(*a, **kw):
        raise RuntimeError("download failed after 5 attempts: x: timed out")
    monkeypatch.setattr(fcinstall, "install", broken)
    assert fcinstall.main(["--dest", str(tmp_path)]) == 1
    assert capsys.readouterr().err == ("nestcloud: firecracker install failed: download failed "
                                       "after 5 attempts: x: timed out\n")


def test_main_runs_the_installed_binary(monkeypatch, capsys, tmp_path):
    body = archive(RELEASE)
    monkeypatch.setattr(fcinstall, "_download", served(body))
    monkeypatch.setattr(fcinstall.platform, "machine", lambda: ARCH)
    assert fcinstall.main(["--dest", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out == (f"nestcloud: firecracker-{V}-{ARCH}.tgz: SHA-256 "
                   f"{hashlib.sha256(body).hexdigest()} matches the release's published "
                   f"firecracker-{V}-{ARCH}.tgz.sha256.txt\n"
                   f"nestcloud: installed {tmp_path}/firecracker: Firecracker v1.13.1\n")


def test_installer_is_python39_and_stdlib_only():
    tree = ast.parse(Path(fcinstall.__file__).read_text(), feature_version=(3, 9))
    mods = {n.module.split(".")[0] for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.module}
    mods |= {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
             for a in n.names}
    assert mods <= set(sys.stdlib_module_names) | {"__future__"}
