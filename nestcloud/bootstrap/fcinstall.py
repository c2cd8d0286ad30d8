#!/usr/bin/env python3
"""Install the Firecracker static release binary on an L1 (shipped inside the user data).

Standard library only (python3 >= 3.9 is on every supported L1 image; curl and tar are not
guaranteed, e.g. Amazon Linux 2023 ships curl-minimal).

Integrity: the version is pinned, but nestcloud has no published checksum source for the
release archive, so none is pinned here; the install is verified by running
``firecracker --version`` (the readiness check does this too) and the archive is fetched over
HTTPS from the project's GitHub releases only.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from typing import Callable, Dict, Optional, Sequence

# A release whose archive URL and layout appear in public install scripts
# (release-vX-ARCH/firecracker-vX-ARCH and jailer-vX-ARCH inside firecracker-vX-ARCH.tgz).
FIRECRACKER_VERSION = "v1.13.1"
RELEASES = "https://github.com/firecracker-microvm/firecracker/releases/download"


def release_url(version: str, arch: str) -> str:
    return "%s/%s/firecracker-%s-%s.tgz" % (RELEASES, version, version, arch)


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
            download: Optional[Callable[[str], bytes]] = None) -> str:
    """Download, extract and install; returns the installed firecracker path."""
    arch = arch or platform.machine()
    download = download or _download
    binaries = extract_binaries(download(release_url(version, arch)), version, arch)
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
    args = ap.parse_args(argv)
    try:
        path = install(args.version, args.dest)
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
