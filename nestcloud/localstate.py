"""Where nestcloud keeps files on this machine, and how: private, atomic, bounded.

Two directories, both private to the user because what they hold is the user's own (the
caller's ARN sits in the cache; the sandbox's pid and address in the state):

- state: ``$NESTCLOUD_STATE_DIR``, else platformdirs' user state directory
  (``$XDG_STATE_HOME/nestcloud``, default ``~/.local/state/nestcloud``, on Linux;
  ``~/Library/Application Support/nestcloud`` on macOS; ``%LOCALAPPDATA%\\nestcloud`` on
  Windows);
- cache: see ``nestcloud.cache.cache_dir``.

Directories are created 0700 and files 0600, with that mode from the start (``os.open`` with
the mode, under a fresh name, then renamed into place): no umask and no moment makes them
readable by others, and a reader sees the old file or the new one, never part of one. An
existing directory that others can read is tightened when it is ours; one that belongs to
someone else, or a shared sticky directory such as /tmp, is refused. Reads never follow a
symbolic link, take only regular files owned by the user, and stop at a size limit (so a FIFO
or /dev/zero planted there cannot hang a command). Locks are ``filelock``'s, which lock on
Windows too. On Windows, modes and owners are left to the user profile's ACLs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from nestcloud.errors import InputError

if TYPE_CHECKING:
    from filelock import BaseFileLock

APP = "nestcloud"
ENV_STATE_DIR = "NESTCLOUD_STATE_DIR"

_POSIX = os.name == "posix"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a FIFO must not wait for a writer
_BINARY = getattr(os, "O_BINARY", 0)


class LocalFileError(InputError):
    """A local state file or directory nestcloud must not use; ``reason`` says why."""

    def __init__(self, path: Path, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"{path}: {reason}", hint=hint)
        self.path = path
        self.reason = reason


def state_dir() -> Path:
    """$NESTCLOUD_STATE_DIR, else the platform's user state directory (see the module doc)."""
    env = os.environ.get(ENV_STATE_DIR)
    if env:
        return Path(env)
    import platformdirs  # only when no override is set: costs a few ms of start-up

    return Path(platformdirs.user_state_dir(APP, appauthor=False))


def _me() -> int:
    return os.geteuid()


def private_dir(path: Path, *, create: bool = True) -> Path:
    """``path`` as a directory only the user can enter: created 0700 (missing parents too;
    FileNotFoundError instead without ``create``), tightened when it is ours and others may
    read it; LocalFileError when it is not ours or is shared by design (sticky, like /tmp)."""
    missing: list[Path] = []
    p = path
    while create and not os.path.lexists(p) and p.parent != p:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(d, 0o700)
    st = os.stat(path)  # a link to a directory of ours is fine: the owner check below holds
    if not stat.S_ISDIR(st.st_mode):
        raise LocalFileError(path, "not a directory")
    if not _POSIX:
        return path
    if st.st_uid != _me():
        raise LocalFileError(path, f"belongs to uid {st.st_uid}, not to you (uid {_me()}); "
                                   "nestcloud keeps private files there",
                             hint=f"point {ENV_STATE_DIR} at a directory of your own")
    if st.st_mode & 0o077:
        if st.st_mode & stat.S_ISVTX:
            raise LocalFileError(path, f"a shared directory (mode {stat.S_IMODE(st.st_mode):o}); "
                                       "nestcloud keeps private files there",
                                 hint=f"point {ENV_STATE_DIR} at a directory of your own")
        os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically, as a 0600 file in a private directory.

    The temporary name is fresh and created exclusively, so nothing planted under a guessable
    name (a symlink) is ever written through; the rename replaces a link at ``path`` itself,
    never its target."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _BINARY, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_private(path: Path, max_bytes: int) -> tuple[bytes, os.stat_result]:
    """(content, stat) of a regular file of the user's of at most ``max_bytes``.

    FileNotFoundError when absent; LocalFileError when it is a link, not a regular file, not
    the user's, too large or unreadable (the file is never followed or read past the limit)."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _BINARY)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK) or os.path.islink(path):
            raise LocalFileError(path, "a symbolic link, not a regular file") from None
        raise LocalFileError(path, f"cannot be read ({exc.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # a directory, FIFO or device: never read
        os.close(fd)
        raise LocalFileError(path, "not a regular file")
    with os.fdopen(fd, "rb") as f:
        if _POSIX and st.st_uid != _me():
            raise LocalFileError(path, f"belongs to uid {st.st_uid}, not to you")
        if st.st_size > max_bytes:
            raise LocalFileError(path, f"larger than {max_bytes} bytes")
        try:
            data = f.read(max_bytes + 1)
        except OSError as exc:
            raise LocalFileError(path, f"cannot be read ({exc.strerror})") from None
    if len(data) > max_bytes:  # grew while we read
        raise LocalFileError(path, f"larger than {max_bytes} bytes")
    return data, st


def create_private(path: Path) -> int:
    """A new, empty 0600 file at ``path`` (whatever was there is removed first: it may be a
    link), opened for appending; returns the descriptor."""
    private_dir(path.parent)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | _NOFOLLOW
                   | _BINARY, 0o600)


def file_lock(path: Path) -> BaseFileLock:
    """An exclusive lock on ``path`` (0600, in a private directory) that also works where
    fcntl does not (Windows). Waits as long as it takes; use as a context manager."""
    from filelock import FileLock  # not on the start-up path: only commands that lock

    private_dir(path.parent)
    return FileLock(str(path), mode=0o600)
