"""Where a seat's disk comes from: official images downloaded once and checked against the
published checksum file, --image URLs checked against a checksum file beside them, local
files and direct-boot directories. Downloads come from a loopback HTTP server only."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from nestcloud.errors import InputError, ProviderError
from providers.local import images


class _Server:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a: object, **kw: object) -> None:
                super().__init__(*a, directory=str(root), **kw)  # type: ignore[arg-type]

            def log_message(self, *_: object) -> None:
                hits.append(self.path)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_Server]:
    root = tmp_path / "www"
    (root / "bookworm").mkdir(parents=True)
    s = _Server(root)
    yield s
    s.close()


IMAGE = b"QFI\xfb a tiny stand-in for a cloud image" * 1000


def _publish(server: _Server, body: bytes = IMAGE, listed: bytes | None = None,
             sums: str = "SHA512SUMS", name: str = "disk.qcow2") -> tuple[str, str]:
    d = server.root / "bookworm"
    (d / name).write_bytes(body)
    algo = "sha512" if sums == "SHA512SUMS" else "sha256"
    digest = hashlib.new(algo, listed if listed is not None else body).hexdigest()
    (d / sums).write_text(f"{'0' * len(digest)}  other.qcow2\n{digest}  {name}\n")
    return f"{server.url}/bookworm/{name}", f"{server.url}/bookworm/{sums}"


def test_the_os_aliases_name_the_distributions_own_images() -> None:
    deb, ubu = images.OFFICIAL["debian-12"], images.OFFICIAL["ubuntu-24.04"]
    assert deb.url == ("https://cloud.debian.org/images/cloud/bookworm/latest/"
                       "debian-12-genericcloud-amd64.qcow2")
    assert (deb.checksums_url, deb.algorithm) == (
        "https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS", "sha512")
    assert ubu.url == ("https://cloud-images.ubuntu.com/releases/noble/release/"
                       "ubuntu-24.04-server-cloudimg-amd64.img")
    assert (ubu.checksums_url, ubu.algorithm) == (
        "https://cloud-images.ubuntu.com/releases/noble/release/SHA256SUMS", "sha256")


def test_a_download_is_verified_kept_and_never_fetched_again(server: _Server,
                                                             tmp_path: Path) -> None:
    url, sums = _publish(server)
    cache = tmp_path / "cache"
    said: list[str] = []
    path = images.fetch_verified(url, sums, "sha512", cache, note=said.append)
    assert path.read_bytes() == IMAGE
    assert path.parent.parent == cache and path.name == "disk.qcow2"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert said and said[0].startswith(f"downloading {url} (once; kept in ")
    assert server.hits == ["/bookworm/SHA512SUMS", "/bookworm/disk.qcow2"]
    server.close()  # no network from here on
    assert images.fetch_verified(url, sums, "sha512", cache) == path
    plan = images.ImagePlan("official", "debian-12", official=images.OfficialImage(
        "debian-12", url, sums, "sha512"))
    assert images.find_cached(plan, tmp_path) is None
    assert images.find_cached(plan, tmp_path / "x") is None


def test_a_download_whose_checksum_differs_is_deleted(server: _Server, tmp_path: Path) -> None:
    url, sums = _publish(server, listed=b"what the distribution published")
    cache = tmp_path / "cache"
    with pytest.raises(ProviderError, match=r"does not match .* published in .*SHA512SUMS; "
                                            r"the download was deleted"):
        images.fetch_verified(url, sums, "sha512", cache)
    assert [p for p in cache.rglob("*") if p.is_file()] == []


def test_an_image_the_checksum_file_does_not_list_is_not_downloaded(server: _Server,
                                                                    tmp_path: Path) -> None:
    url, sums = _publish(server)
    (server.root / "bookworm" / "SHA512SUMS").write_text("abc  other\n")
    with pytest.raises(ProviderError, match="lists no checksum for disk.qcow2"):
        images.fetch_verified(url, sums, "sha512", tmp_path / "cache")
    assert server.hits == ["/bookworm/SHA512SUMS"]


def test_an_image_url_is_checked_against_the_checksum_file_beside_it(server: _Server,
                                                                     tmp_path: Path) -> None:
    url, _ = _publish(server, sums="SHA256SUMS", name="noble.img")
    got = images.fetch_url(url, tmp_path / "cache" / "url")  # where resolve() keeps them
    assert got.read_bytes() == IMAGE
    assert "/bookworm/SHA512SUMS" in server.hits  # tried first, absent
    assert images.find_cached(images.plan_image(url, "debian-12"), tmp_path / "cache") == got


def test_an_image_url_without_a_checksum_file_is_refused(server: _Server,
                                                         tmp_path: Path) -> None:
    (server.root / "bookworm" / "lone.qcow2").write_bytes(IMAGE)
    with pytest.raises(InputError, match=r"no checksum file beside it lists it \(tried "
                                         r"SHA512SUMS, SHA256SUMS\)"):
        images.fetch_url(f"{server.url}/bookworm/lone.qcow2", tmp_path / "cache")
    assert not any((tmp_path / "cache").rglob("lone.qcow2"))


def test_checksum_files_in_gnu_and_bsd_style() -> None:
    h = "ab" * 32
    assert images.parse_sums(f"{h}  debian.qcow2\n", "debian.qcow2") == h
    assert images.parse_sums(f"{h.upper()} *debian.qcow2\n", "debian.qcow2") == h
    assert images.parse_sums(f"SHA256 (debian.qcow2) = {h}\n", "debian.qcow2") == h
    assert images.parse_sums(f"{h}  debian.qcow2.sig\n", "debian.qcow2") is None


def test_image_arguments_are_checked_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="knows no official cloud image for it"):
        images.plan_image(None, "rhel-9")
    with pytest.raises(InputError, match="no such file"):
        images.plan_image(str(tmp_path / "missing.qcow2"), "debian-12")
    with pytest.raises(InputError, match="only http"):
        images.plan_image("ftp://example.invalid/x.qcow2", "debian-12")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "disk.qcow2").write_bytes(b"x")
    with pytest.raises(InputError, match="missing vmlinuz, cmdline"):
        images.plan_image(str(tmp_path / "d"), "debian-12")
    assert images.plan_image(None, "debian-12").official is images.OFFICIAL["debian-12"]


@pytest.mark.skipif(__import__("shutil").which("qemu-img") is None,
                    reason="qemu-img not installed")
def test_a_local_disk_file_is_read_with_its_format_and_size(tmp_path: Path) -> None:
    import subprocess

    raw = tmp_path / "disk.raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(raw), "64M"], check=True)
    boot = images.resolve(images.plan_image(str(raw), "debian-12"), tmp_path)
    assert (boot.format, boot.virtual_size, boot.kernel) == ("raw", 64 << 20, None)
    vdi = tmp_path / "disk.vdi"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vdi", str(vdi), "64M"], check=True)
    with pytest.raises(InputError, match="a vdi image; seats boot qcow2 or raw disks"):
        images.resolve(images.plan_image(str(vdi), "debian-12"), tmp_path)
