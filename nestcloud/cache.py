"""nestcloud's local cache: small files that only ever save time.

Two kinds of entry live here: the parsed catalog (see catalog.py) and facts a cloud stated
that do not change for the credentials that read them (the caller's ARN for an access key,
an image's architecture and root device, an instance type's features; see providers/aws.py).
Each entry carries the key it was written under and a SHA-256 of its body, so an entry for
other inputs, a truncated or an edited one is never trusted: it is read again instead.
Writes are atomic; a cache that cannot be written (read-only home) only costs speed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ENV_CACHE_DIR = "NESTCLOUD_CACHE_DIR"


def cache_dir() -> Path | None:
    """$NESTCLOUD_CACHE_DIR ('off' disables), else $NESTCLOUD_STATE_DIR/cache, else XDG."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return None if env.lower() in ("off", "0", "no") else Path(env)
    state = os.environ.get("NESTCLOUD_STATE_DIR")
    if state:
        return Path(state) / "cache"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nestcloud"


def read_cache_entry(file: Path | None, key: str, max_age_s: float | None = None
                     ) -> bytes | None:
    """The body of a cache entry written under ``key``, if present, current and intact (and
    written less than ``max_age_s`` ago, when given)."""
    if file is None:
        return None
    try:
        with open(file, "rb") as f:
            if max_age_s is not None and time.time() - os.fstat(f.fileno()).st_mtime > max_age_s:
                return None
            head = f.readline().rstrip(b"\n").decode("ascii", "replace").split(" ")
            body = f.read()
    except OSError:  # absent or unreadable: the caller builds it instead
        return None
    import hashlib

    if len(head) != 2 or head[0] != key or hashlib.sha256(body).hexdigest() != head[1]:
        return None  # another input, other code, or a damaged entry
    return body


def write_cache_entry(file: Path | None, key: str, body: bytes) -> None:
    """Store ``body`` under ``key`` with its SHA-256, atomically; failures only cost speed."""
    if file is None:
        return
    import hashlib

    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f"{file.name}.{os.getpid()}.tmp")
        head = f"{key} {hashlib.sha256(body).hexdigest()}\n".encode("ascii")
        tmp.write_bytes(head + body)
        os.replace(tmp, file)
    except OSError:
        pass  # a read-only home only costs speed


def prune(directory: Path | None, pattern: str, max_age_s: float) -> None:
    """Remove the entries matching ``pattern`` written more than ``max_age_s`` ago (they
    would be read again anyway): answers keyed by endpoint and key pile up otherwise, one
    set per local endpoint port or temporary access key."""
    if directory is None:
        return
    now = time.time()
    try:
        for f in directory.glob(pattern):
            try:
                if now - f.stat().st_mtime > max_age_s:
                    f.unlink()
            except OSError:
                continue  # another process pruned it first, or it is not ours to remove
    except OSError:
        pass
