#!/usr/bin/env python3
"""Install the Firecracker static release binary on an L1 (shipped inside the user data).

Standard library only (python3 >= 3.9 is on every supported L1 image; curl and tar are not
guaranteed, e.g. Amazon Linux 2023 ships curl-minimal).

Integrity: the version is pinned and the archive is fetched over HTTPS from the project's
GitHub releases only. Before anything is installed its SHA-256 is compared with a digest:
one pinned in nestcloud (PINNED_SHA256) or given with ``--sha256``, else the one the release
publishes beside the archive (``firecracker-vX.Y.Z-ARCH.tgz.sha256.txt``). What the published
one protects against, and what not: it catches a truncated, corrupted or mixed-up download
(a proxy's error page, a wrong asset), but it comes from the same release on the same host
as the archive, so whoever can replace the archive there can replace its checksum too; it is
no signature. A pinned digest would guard against that; nestcloud found no source to cite
for the digests of the pinned version, so none is pinned (pass ``--sha256`` to pin your own).
After installing, ``firecracker --version`` must run (the readiness check runs it too).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from typing import Callable, Dict, Optional, Sequence, Tuple

# A release whose archive URL and layout appear in public install scripts
# (release-vX-ARCH/firecracker-vX-ARCH and jailer-vX-ARCH inside firecracker-vX-ARCH.tgz).
FIRECRACKER_VERSION = "v1.13.1"
RELEASES = "https://github.com/firecracker-microvm/firecracker/releases/download"
# SHA-256 of firecracker-VERSION-ARCH.tgz by (version, arch), to check the download against
# instead of the checksum file served beside it. Empty: no citable source for the values of
# the pinned version was found (see the module docstring).
PINNED_SHA256: Dict[Tuple[str, str], str] = {}
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


def asset_name(version: str, arch: str) -> str:
    return "firecracker-%s-%s.tgz" % (version, arch)


def release_url(version: str, arch: str) -> str:
    return "%s/%s/%s" % (RELEASES, version, asset_name(version, arch))


def checksum_url(version: str, arch: str) -> str:
    """The SHA-256 file the release publishes beside the archive."""
    return release_url(version, arch) + ".sha256.txt"


def published_sha256(text: str, asset: str, url: str) -> str:
    """The digest for ``asset`` in a sha256sum-style file ("HEX  NAME" or "HEX *NAME" lines,
    or one bare "HEX")."""
    for line in text.splitlines():
        parts = line.split()
        if not parts or not _HEX64.match(parts[0]):
            continue
        named = parts[1].lstrip("*") if len(parts) > 1 else None
        if named is None or os.path.basename(named) == asset:
            return parts[0].lower()
    raise RuntimeError("no SHA-256 for %s in %s; nothing was installed" % (asset, url))


def check_sha256(archive: bytes, expected: str, asset: str, source: str) -> str:
    """The archive's digest, if it is ``expected``; else an error (nothing is installed)."""
    got = hashlib.sha256(archive).hexdigest()
    if got != expected.lower():
        raise RuntimeError("%s: SHA-256 %s does not match %s (%s); nothing was installed"
                           % (asset, got, expected.lower(), source))
    return got


def extract_binaries(archive: bytes, version: str, arch: str) -> Dict[str, bytes]:
    """{"firecracker": bytes, "jailer": bytes} from the release archive."""
    wanted = {"firecracker": "release-%s-%s/firecracker-%s-%s" % (version, arch, version, arch),
              "jailer": "release-%s-%s/jailer-%s-%s" % (version, arch, version, arch)}
    out: Dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        members = {m.name[2:] if m.name.startswith("./") else m.name: m
                   for m in tar.getmembers() if m.isfile()}
        for name, member_name in wanted.items():
            member = members.get(member_name)
            fh = tar.extractfile(member) if member is not None else None
            if fh is not None:
                out[name] = fh.read()
    if "firecracker" not in out:
        raise RuntimeError("the archive has no %s" % wanted["firecracker"])
    return out


def _download(url: str, attempts: int = 5) -> bytes:
    last: Optional[Exception] = None
    for i in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:
                return bytes(resp.read())
        except OSError as exc:  # network at early boot can lag: retry with backoff
            last = exc
            time.sleep(min(30, 2 ** i))
    raise RuntimeError("download failed after %d attempts: %s: %s" % (attempts, url, last))


def install(version: str = FIRECRACKER_VERSION, dest: str = "/usr/local/bin", *,
            arch: Optional[str] = None,
            download: Optional[Callable[[str], bytes]] = None,
            sha256: Optional[str] = None,
            report: Optional[Callable[[str], None]] = None) -> str:
    """Download, check (see the module docstring), extract and install; returns the
    installed firecracker path. ``sha256``: the archive's digest to insist on."""
    arch = arch or platform.machine()
    download = download or _download
    asset = asset_name(version, arch)
    if sha256 is not None and not _HEX64.match(sha256):
        raise RuntimeError("--sha256 %r is not 64 hex digits" % sha256)
    archive = download(release_url(version, arch))
    if sha256 is not None:
        expected, source = sha256, "--sha256"
    elif (version, arch) in PINNED_SHA256:
        expected, source = PINNED_SHA256[(version, arch)], "pinned in nestcloud"
    else:
        url = checksum_url(version, arch)
        text = download(url).decode("utf-8", "replace")
        expected = published_sha256(text, asset, url)
        source = "the release's published %s.sha256.txt" % asset
    got = check_sha256(archive, expected, asset, source)
    if report is not None:
        report("nestcloud: %s: SHA-256 %s matches %s" % (asset, got, source))
    binaries = extract_binaries(archive, version, arch)
    os.makedirs(dest, exist_ok=True)
    for name, data in binaries.items():
        path = os.path.join(dest, name)
        tmp = path + ".tmp"
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    return os.path.join(dest, "firecracker")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="install the Firecracker release binary")
    ap.add_argument("--version", default=FIRECRACKER_VERSION)
    ap.add_argument("--dest", default="/usr/local/bin")
    ap.add_argument("--sha256", default=None,
                    help="the archive's SHA-256 (else the release's published one is used)")
    args = ap.parse_args(argv)
    try:
        path = install(args.version, args.dest, sha256=args.sha256, report=print)
    except Exception as exc:  # reported; the readiness check then fails on the missing binary
        print("nestcloud: firecracker install failed: %s" % exc, file=sys.stderr)
        return 1
    if shutil.which(path) is None:
        print("nestcloud: %s is not executable" % path, file=sys.stderr)
        return 1
    res = subprocess.run([path, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         check=False)
    print("nestcloud: installed %s: %s" % (path, res.stdout.decode(errors="replace").strip()))
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())
