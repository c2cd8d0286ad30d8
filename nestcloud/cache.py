"""nestcloud's local cache: small files that only ever save time.

Two kinds of entry live here: the parsed catalog (see catalog.py) and facts a cloud stated
that do not change for the credentials that read them (the caller's ARN for an access key,
an image's architecture and root device, an instance type's features; see providers/aws.py).

Each entry carries the key it was written under and a SHA-256 of its body. The key makes an
entry written for other inputs (another catalog file, other code) miss; the checksum catches
a torn or damaged entry (a copy cut short, a bad disk block). Neither protects against
tampering: whoever can write the file can recompute both. What keeps entries trustworthy is
that only the user can write them: the directory is private (0700, files 0600; see
nestcloud.localstate), and an entry that is not a regular file owned by the user (a link,
someone else's file) is ignored. Writes are atomic; a cache that cannot be written (read-only
home, a directory of someone else's) only costs speed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from nestcloud.localstate import (
    APP,
    ENV_STATE_DIR,
    LocalFileError,
    private_dir,
    read_private,
    write_private,
)

ENV_CACHE_DIR = "NESTCLOUD_CACHE_DIR"
# The parsed catalog is the largest entry (~0.4 MB today); anything far larger was not written
# by us, and reading it would only cost memory.
MAX_ENTRY_BYTES = 64 << 20


def cache_dir() -> Path | None:
    """$NESTCLOUD_CACHE_DIR ('off' disables), else $NESTCLOUD_STATE_DIR/cache, else the
    platform's user cache directory: $XDG_CACHE_HOME/nestcloud (default ~/.cache/nestcloud)
    on Linux, ~/Library/Caches/nestcloud on macOS, %LOCALAPPDATA%\\nestcloud\\Cache on
    Windows."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return None if env.lower() in ("off", "0", "no") else Path(env)
    state = os.environ.get(ENV_STATE_DIR)
    if state:
        return Path(state) / "cache"
    import platformdirs  # only when no override is set: costs a few ms of start-up

    return Path(platformdirs.user_cache_dir(APP, appauthor=False))


def read_cache_entry(file: Path | None, key: str, max_age_s: float | None = None
                     ) -> bytes | None:
    """The body of a cache entry written under ``key``, if present, current and intact (and
    written less than ``max_age_s`` ago, when given)."""
    if file is None:
        return None
    try:
        # An entry is only as private as its directory: tighten one left open (by an older
        # nestcloud), and trust nothing in one that is not ours. One stat on the warm path.
        private_dir(file.parent, create=False)
        data, st = read_private(file, MAX_ENTRY_BYTES)
    except (OSError, LocalFileError):  # absent, unreadable or not ours: built again instead
        return None
    if max_age_s is not None and time.time() - st.st_mtime > max_age_s:
        return None
    head_line, _, body = data.partition(b"\n")
    head = head_line.decode("ascii", "replace").split(" ")
    import hashlib

    if len(head) != 2 or head[0] != key or hashlib.sha256(body).hexdigest() != head[1]:
        return None  # another input, other code, or a torn entry
    return body


def write_cache_entry(file: Path | None, key: str, body: bytes) -> None:
    """Store ``body`` under ``key`` with its SHA-256, atomically and privately; failures
    only cost speed."""
    if file is None:
        return
    import hashlib

    head = f"{key} {hashlib.sha256(body).hexdigest()}\n".encode("ascii")
    try:
        write_private(file, head + body)
    except (OSError, LocalFileError):
        pass  # a read-only home, or a directory that is not private: only costs speed


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
                if now - f.lstat().st_mtime > max_age_s:
                    f.unlink()
            except OSError:
                continue  # another process pruned it first, or it is not ours to remove
    except OSError:
        pass
