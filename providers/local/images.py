"""The disk a local seat boots: an official cloud image (downloaded once, checksum verified),
a local disk file, or a direct-boot image directory (the test image).

Official images are the distributions' own generic cloud images, at the locations their
projects document, next to the checksum file published with them:

- Debian 12: cloud.debian.org/images/cloud/bookworm/latest/, ``genericcloud`` (virtio drivers
  only, no hardware drivers: the e1000 trap in FACTS.md), ``SHA512SUMS`` beside it.
- Ubuntu 24.04: cloud-images.ubuntu.com/releases/noble/release/, ``SHA256SUMS`` beside it
  (documentation.ubuntu.com/public-images, "Ubuntu cloud image artefacts").

Both are partitioned disks with a boot loader: QEMU's firmware (SeaBIOS) boots them.
A downloaded image is kept under ``<cache>/images/<alias>/<checksum>/`` and used again
without asking the network (remove the directory to fetch a newer one).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from nestcloud.errors import InputError, ProviderError

Algorithm = Literal["sha256", "sha512"]
# Sanity bounds, not facts: official cloud images are a few hundred MB, checksum files a few KB.
MAX_IMAGE_BYTES = 16 << 30
MAX_SUMS_BYTES = 4 << 20
CHUNK = 1 << 20
# A direct-boot image directory (scripts/build-test-image.sh writes these).
DIRECT_FILES = ("disk.qcow2", "vmlinuz", "cmdline")


@dataclass(frozen=True)
class OfficialImage:
    alias: str
    url: str
    checksums_url: str
    algorithm: Algorithm


OFFICIAL: dict[str, OfficialImage] = {
    "debian-12": OfficialImage(
        "debian-12",
        "https://cloud.debian.org/images/cloud/bookworm/latest/"
        "debian-12-genericcloud-amd64.qcow2",
        "https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS", "sha512"),
    "ubuntu-24.04": OfficialImage(
        "ubuntu-24.04",
        "https://cloud-images.ubuntu.com/releases/noble/release/"
        "ubuntu-24.04-server-cloudimg-amd64.img",
        "https://cloud-images.ubuntu.com/releases/noble/release/SHA256SUMS", "sha256"),
}

# Checksum files tried next to an --image URL, strongest first.
SUMS_FILES: tuple[tuple[str, Algorithm], ...] = (("SHA512SUMS", "sha512"),
                                                 ("SHA256SUMS", "sha256"))


@dataclass(frozen=True)
class BootImage:
    """What a seat's overlay is made over, and how it boots."""

    disk: Path                    # the base image (never written)
    format: str                   # qcow2 or raw: the overlay's backing format
    source: str                   # for people: the alias and URL, or the path
    virtual_size: int = 0         # bytes the guest sees (an overlay is never made smaller)
    kernel: Path | None = None    # direct kernel boot (no firmware) when set
    initrd: Path | None = None
    cmdline: str = ""


@dataclass(frozen=True)
class ImagePlan:
    """Where a launch's image comes from, decided without touching the network or disk."""

    kind: Literal["official", "url", "file", "direct"]
    source: str                         # alias, URL or path as the user gave it
    official: OfficialImage | None = None
    path: Path | None = None

    def describe(self) -> str:
        if self.official is not None:
            return (f"{self.official.alias}: {self.official.url} (checked against "
                    f"{self.official.checksums_url})")
        return self.source


def plan_image(image: str | None, os_alias: str) -> ImagePlan:
    """What ``--image`` (or the OS alias) names; InputError when it names nothing usable."""
    if image is None:
        official = OFFICIAL.get(os_alias)
        if official is None:
            raise InputError(f"--os {os_alias}: the local provider knows no official cloud "
                             f"image for it (it has {', '.join(OFFICIAL)})",
                             hint="pass --image with a disk image of that OS")
        return ImagePlan("official", os_alias, official=official)
    scheme = urllib.parse.urlsplit(image).scheme.lower()
    if scheme in ("http", "https"):
        return ImagePlan("url", image)
    if scheme and len(scheme) > 1:  # "C:" is a drive letter, not a scheme
        raise InputError(f"--image {image!r}: only http(s) URLs and local paths are read")
    path = Path(image).expanduser()
    if path.is_dir():
        missing = [f for f in DIRECT_FILES if not (path / f).is_file()]
        if missing:
            raise InputError(f"--image {image!r}: a directory must hold a direct-boot image "
                             f"({', '.join(DIRECT_FILES)}, initrd.img optional); missing "
                             f"{', '.join(missing)}",
                             hint="scripts/build-test-image.sh builds one; or pass a disk file")
        return ImagePlan("direct", image, path=path.absolute())
    if not path.is_file():
        raise InputError(f"--image {image!r}: no such file")
    return ImagePlan("file", image, path=path.absolute())


def disk_info(path: Path, *, qemu_img: str = "qemu-img") -> tuple[str, int]:
    """(format, virtual size in bytes) as qemu-img reads the image."""
    from providers.local.qemu import QemuError, _run

    try:
        out = _run([qemu_img, "info", "--output=json", str(path)], what="qemu-img info")
        doc = json.loads(out)
    except (QemuError, ValueError) as exc:
        raise InputError(f"image {path}: not a disk image qemu-img can read ({exc})") from None
    fmt, size = doc.get("format"), doc.get("virtual-size")
    if not isinstance(fmt, str) or not fmt or not isinstance(size, int):
        raise InputError(f"image {path}: qemu-img reports no format or size")
    if fmt not in ("qcow2", "raw"):
        raise InputError(f"image {path}: a {fmt} image; seats boot qcow2 or raw disks",
                         hint=f"qemu-img convert -O qcow2 {path} IMAGE.qcow2")
    return fmt, size


def resolve(plan: ImagePlan, cache: Path, *, qemu_img: str = "qemu-img",
            note: Callable[[str], None] | None = None) -> BootImage:
    """The bootable image ``plan`` names, downloading (and verifying) it when needed."""
    if plan.kind == "direct":
        assert plan.path is not None
        initrd = plan.path / "initrd.img"
        fmt, size = disk_info(plan.path / "disk.qcow2", qemu_img=qemu_img)
        return BootImage(disk=plan.path / "disk.qcow2", format=fmt, source=plan.source,
                         virtual_size=size, kernel=plan.path / "vmlinuz",
                         initrd=initrd if initrd.is_file() else None,
                         cmdline=(plan.path / "cmdline").read_text().strip())
    if plan.kind == "file":
        assert plan.path is not None
        fmt, size = disk_info(plan.path, qemu_img=qemu_img)
        return BootImage(disk=plan.path, format=fmt, source=plan.source, virtual_size=size)
    if plan.official is not None:
        o = plan.official
        path = fetch_verified(o.url, o.checksums_url, o.algorithm, cache / o.alias, note=note)
        fmt, size = disk_info(path, qemu_img=qemu_img)
        return BootImage(disk=path, format=fmt, source=f"{o.alias} ({o.url})",
                         virtual_size=size)
    path = fetch_url(plan.source, cache / "url", note=note)
    fmt, size = disk_info(path, qemu_img=qemu_img)
    return BootImage(disk=path, format=fmt, source=plan.source, virtual_size=size)


def find_cached(plan: ImagePlan, cache: Path) -> Path | None:
    """A download ``plan`` needs that is already in the cache (no network), else None."""
    if plan.official is not None:
        return _cached(cache / plan.official.alias, _filename(plan.official.url))
    if plan.kind == "url":
        key = hashlib.sha256(plan.source.encode()).hexdigest()[:16]
        return _cached(cache / "url" / key, _filename(plan.source))
    return plan.path


def parse_sums(text: str, filename: str) -> str | None:
    """The hex digest ``filename`` has in a checksum file (GNU ``HEX  name`` / ``HEX *name``
    lines, or BSD ``SHA512 (name) = HEX`` lines), or None when it is not listed."""
    for line in text.splitlines():
        m = re.fullmatch(r"\s*([0-9a-fA-F]{64,128})\s+\*?(.+?)\s*", line)
        if m and m.group(2).lstrip("./") == filename:
            return m.group(1).lower()
        m = re.fullmatch(r"\s*SHA(?:256|512)\s*\((.+)\)\s*=\s*([0-9a-fA-F]{64,128})\s*", line)
        if m and m.group(1).lstrip("./") == filename:
            return m.group(2).lower()
    return None


def _open(url: str, timeout: float) -> object:
    try:
        return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - http(s) only
    except urllib.error.HTTPError as exc:
        raise ProviderError(f"downloading {url}: HTTP {exc.code} {exc.reason}",
                            provider="local", scope="request") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ProviderError(f"downloading {url}: {reason}", provider="local",
                            scope="provider") from exc


def _read_small(url: str, limit: int, timeout: float) -> str:
    resp = _open(url, timeout)
    with resp as r:  # type: ignore[attr-defined]
        data = r.read(limit + 1)
    if len(data) > limit:
        raise ProviderError(f"{url}: larger than {limit} bytes: not a checksum file",
                            provider="local", scope="request")
    return data.decode("utf-8", "replace")


def _filename(url: str) -> str:
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    if not name or name in (".", ".."):
        raise InputError(f"--image {url!r}: the URL names no file")
    return name


def _cached(directory: Path, name: str) -> Path | None:
    """A verified download already in ``directory`` (any checksum), newest first."""
    try:
        found = sorted((d / name for d in directory.iterdir() if (d / name).is_file()),
                       key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return None
    return found[0] if found else None


def fetch_verified(url: str, checksums_url: str, algorithm: Algorithm, directory: Path, *,
                   timeout: float = 60.0, note: Callable[[str], None] | None = None) -> Path:
    """``url`` in ``directory``: the copy downloaded before, else downloaded now and kept only
    when its digest equals the one ``checksums_url`` publishes for its file name."""
    from nestcloud.localstate import private_dir

    name = _filename(url)
    have = _cached(directory, name)
    if have is not None:
        return have
    sums = _read_small(checksums_url, MAX_SUMS_BYTES, timeout)
    want = parse_sums(sums, name)
    if want is None:
        raise ProviderError(f"{checksums_url} lists no checksum for {name}: not downloading "
                            "an image that cannot be verified", provider="local",
                            scope="request")
    dest_dir = private_dir(directory / want[:16])
    dest = dest_dir / name
    if note is not None:
        note(f"downloading {url} (once; kept in {dest_dir})")
    tmp = dest_dir / f".{name}.{os.getpid()}.part"
    digest = hashlib.new(algorithm)
    size = 0
    try:
        resp = _open(url, timeout)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with resp as r, os.fdopen(fd, "wb") as out:  # type: ignore[attr-defined]
            while True:
                chunk = r.read(CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_IMAGE_BYTES:
                    raise ProviderError(f"{url}: larger than {MAX_IMAGE_BYTES} bytes",
                                        provider="local", scope="request")
                digest.update(chunk)
                out.write(chunk)
        got = digest.hexdigest()
        if got != want:
            raise ProviderError(f"{url}: {algorithm} {got} does not match {want} published "
                                f"in {checksums_url}; the download was deleted",
                                provider="local", scope="request",
                                hint="retry later (the image may be mid-update), or download "
                                     "and check it yourself and pass --image FILE")
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        with contextlib.suppress(OSError):
            dest_dir.rmdir()
        raise
    return dest


def fetch_url(url: str, directory: Path, *, timeout: float = 60.0,
              note: Callable[[str], None] | None = None) -> Path:
    """An ``--image`` URL, verified against a checksum file published beside it
    (SHA512SUMS or SHA256SUMS, as the distributions do); refused when there is none."""
    name = _filename(url)
    base = url.rsplit("/", 1)[0]
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    have = _cached(directory / key, name)
    if have is not None:
        return have
    tried = []
    for sums_name, algorithm in SUMS_FILES:
        sums_url = f"{base}/{sums_name}"
        try:
            text = _read_small(sums_url, MAX_SUMS_BYTES, timeout)
        except ProviderError:
            tried.append(sums_name)
            continue
        if parse_sums(text, name) is None:
            tried.append(f"{sums_name} (does not list {name})")
            continue
        return fetch_verified(url, sums_url, algorithm, directory / key, timeout=timeout,
                              note=note)
    raise InputError(f"--image {url}: no checksum file beside it lists it (tried "
                     f"{', '.join(tried)}): nestcloud boots only what it can verify",
                     hint="download it, check it, and pass --image FILE")
