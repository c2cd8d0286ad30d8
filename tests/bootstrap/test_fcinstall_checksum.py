"""The Firecracker archive is checked against its SHA-256 before anything is installed
(issue 11). No network: the downloads are injected, with a fake archive."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from nestcloud.bootstrap import fcinstall

from .test_fcinstall import ARCH, FC, RELEASE, V, archive

ASSET = f"firecracker-{V}-{ARCH}.tgz"
GOOD = archive(RELEASE)
DIGEST = hashlib.sha256(GOOD).hexdigest()


def release(checksum_text: str | None, body: bytes = GOOD) -> tuple[list[str], object]:
    """A download function serving the archive and its published checksum file."""
    asked: list[str] = []

    def download(url: str) -> bytes:
        asked.append(url)
        if url == fcinstall.release_url(V, ARCH):
            return body
        if url == fcinstall.checksum_url(V, ARCH) and checksum_text is not None:
            return checksum_text.encode()
        raise RuntimeError(f"download failed after 5 attempts: {url}: HTTP Error 404")

    return asked, download


def test_the_checksum_file_is_published_beside_the_archive():
    assert fcinstall.checksum_url(V, ARCH) == (
        "https://github.com/firecracker-microvm/firecracker/releases/download/v1.13.1/"
        "firecracker-v1.13.1-x86_64.tgz.sha256.txt")


@pytest.mark.parametrize("text", [f"{DIGEST}  {ASSET}\n", f"{DIGEST.upper()} *{ASSET}\n",
                                  f"{DIGEST}\n"])
def test_an_archive_matching_the_published_sha256_is_installed(tmp_path: Path, text: str):
    asked, download = release(text)
    path = fcinstall.install(V, str(tmp_path), arch=ARCH, download=download)  # type: ignore
    assert asked == [fcinstall.release_url(V, ARCH), fcinstall.checksum_url(V, ARCH)]
    assert Path(path).read_bytes() == FC


def test_a_different_archive_is_not_installed(tmp_path: Path):
    other = archive({**RELEASE, f"release-{V}-{ARCH}/firecracker-{V}-{ARCH}": b"evil"})
    _, download = release(f"{DIGEST}  {ASSET}\n", body=other)
    with pytest.raises(RuntimeError) as err:
        fcinstall.install(V, str(tmp_path), arch=ARCH, download=download)  # type: ignore
    assert str(err.value) == (
        f"{ASSET}: SHA-256 {hashlib.sha256(other).hexdigest()} does not match {DIGEST} "
        f"(the release's published {ASSET}.sha256.txt); nothing was installed")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("text", ["", "not a checksum\n",
                                  f"{DIGEST}  firecracker-{V}-aarch64.tgz\n"])
def test_no_usable_checksum_installs_nothing(tmp_path: Path, text: str):
    _, download = release(text)
    with pytest.raises(RuntimeError, match=f"no SHA-256 for {ASSET} in "
                                           f"{fcinstall.checksum_url(V, ARCH)}"):
        fcinstall.install(V, str(tmp_path), arch=ARCH, download=download)  # type: ignore
    assert os.listdir(tmp_path) == []


def test_a_checksum_that_cannot_be_downloaded_installs_nothing(tmp_path: Path):
    _, download = release(None)
    with pytest.raises(RuntimeError, match="HTTP Error 404"):
        fcinstall.install(V, str(tmp_path), arch=ARCH, download=download)  # type: ignore
    assert os.listdir(tmp_path) == []


def test_a_pinned_digest_is_used_instead_of_the_published_one(tmp_path: Path, monkeypatch):
    asked, download = release(None)
    monkeypatch.setitem(fcinstall.PINNED_SHA256, (V, ARCH), DIGEST)
    fcinstall.install(V, str(tmp_path), arch=ARCH, download=download)  # type: ignore
    assert asked == [fcinstall.release_url(V, ARCH)]
    monkeypatch.setitem(fcinstall.PINNED_SHA256, (V, ARCH), "0" * 64)
    with pytest.raises(RuntimeError, match=f"does not match {'0' * 64} \\(pinned in "
                                           "nestcloud\\)"):
        fcinstall.install(V, str(tmp_path / "b"), arch=ARCH, download=download)  # type: ignore


def test_main_takes_a_digest_and_says_what_it_checked(monkeypatch, capsys, tmp_path):
    asked, download = release(None)
    monkeypatch.setattr(fcinstall, "_download", download)
    monkeypatch.setattr(fcinstall.platform, "machine", lambda: ARCH)
    assert fcinstall.main(["--dest", str(tmp_path), "--sha256", DIGEST]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"nestcloud: {ASSET}: SHA-256 {DIGEST} matches --sha256",
                   f"nestcloud: installed {tmp_path}/firecracker: Firecracker v1.13.1"]
    assert asked == [fcinstall.release_url(V, ARCH)]


def test_main_refuses_a_malformed_digest(capsys, tmp_path):
    assert fcinstall.main(["--dest", str(tmp_path), "--sha256", "abc"]) == 1
    assert capsys.readouterr().err == ("nestcloud: firecracker install failed: --sha256 "
                                       "'abc' is not 64 hex digits\n")
