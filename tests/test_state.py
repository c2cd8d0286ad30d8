"""Local state and cache files: private to the user, written atomically, read with bounds, in
the platform's own directories, locked with a lock that works on every OS."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import filelock  # noqa: F401 - imported before a test hides fcntl, as in a running CLI
import platformdirs
import pytest

from nestcloud import cache

POSIX = os.name == "posix"
posix_only = pytest.mark.skipif(not POSIX, reason="POSIX modes and owners")
root_only = pytest.mark.skipif(not POSIX or os.geteuid() != 0,
                               reason="needs root to give a file to another user")


def mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture()
def cdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "c" / "d"
    monkeypatch.setenv("NESTCLOUD_CACHE_DIR", str(d))
    return d


# -- private, created that way --------------------------------------------------------------


@posix_only
def test_cache_files_and_dirs_are_private_even_under_a_permissive_umask(cdir: Path) -> None:
    with umask(0):
        cache.write_cache_entry(cache.cache_dir() / "aws-identity-x.json", "k",  # type: ignore[operator]
                                b'{"Arn": "arn:aws:iam::123456789012:user/me"}')
    assert mode(cdir / "aws-identity-x.json") == 0o600
    assert mode(cdir) == 0o700 and mode(cdir.parent) == 0o700
    assert cache.read_cache_entry(cdir / "aws-identity-x.json", "k") is not None


@posix_only
def test_cache_under_the_state_dir_makes_both_private(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NESTCLOUD_CACHE_DIR", raising=False)
    monkeypatch.setenv("NESTCLOUD_STATE_DIR", str(tmp_path / "state"))
    with umask(0o022):
        cache.write_cache_entry(cache.cache_dir() / "e.json", "k", b"x")  # type: ignore[operator]
    assert mode(tmp_path / "state") == 0o700 and mode(tmp_path / "state" / "cache") == 0o700
    assert mode(tmp_path / "state" / "cache" / "e.json") == 0o600


@posix_only
def test_a_cache_dir_others_can_read_is_tightened(cdir: Path) -> None:
    cdir.mkdir(parents=True)
    cdir.chmod(0o755)  # as an earlier nestcloud (or a plain mkdir) left it
    cache.write_cache_entry(cdir / "e.json", "k", b"x")
    assert mode(cdir) == 0o700 and mode(cdir / "e.json") == 0o600


@posix_only
def test_a_shared_sticky_dir_is_neither_used_nor_changed(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "tmp-like"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: tightening it would break everyone else
    monkeypatch.setenv("NESTCLOUD_CACHE_DIR", str(shared))
    cache.write_cache_entry(shared / "e.json", "k", b"x")
    assert list(shared.iterdir()) == [] and mode(shared) == 0o1777


@root_only
def test_a_cache_dir_of_another_user_is_not_written(cdir: Path) -> None:
    cdir.mkdir(parents=True, mode=0o700)
    os.chown(cdir, 4242, 4242)
    cache.write_cache_entry(cdir / "e.json", "k", b"x")
    assert list(cdir.iterdir()) == []


@root_only
def test_an_entry_someone_else_wrote_is_not_trusted_even_with_a_valid_checksum(cdir: Path
                                                                              ) -> None:
    # The SHA-256 only catches torn writes: whoever can write the file can recompute it. What
    # keeps entries ours is that only we can write them, so an entry we do not own is ignored.
    f = cdir / "aws-identity-x.json"
    cache.write_cache_entry(f, "k", b'{"Arn": "arn:aws:iam::999999999999:root"}')
    assert cache.read_cache_entry(f, "k") is not None
    os.chown(f, 4242, 4242)
    assert cache.read_cache_entry(f, "k") is None


def test_the_checksum_catches_a_torn_entry(cdir: Path) -> None:
    f = cdir / "e.json"
    cache.write_cache_entry(f, "k", b"0123456789" * 10)
    f.write_bytes(f.read_bytes()[:-7])  # as a crash in the middle of a non-atomic copy would
    assert cache.read_cache_entry(f, "k") is None


# -- atomic, and never through a planted link ------------------------------------------------


@posix_only
def test_a_write_never_follows_a_link_planted_at_its_temporary_name(cdir: Path,
                                                                   tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    cdir.mkdir(parents=True, mode=0o700)
    f = cdir / "e.json"
    for name in (f"{f.name}.{os.getpid()}.tmp", f"{f.stem}.tmp", f".{f.name}.tmp"):
        (cdir / name).symlink_to(victim)
    cache.write_cache_entry(f, "k", b"body")
    assert victim.read_text() == "precious"
    assert cache.read_cache_entry(f, "k") == b"body" and not f.is_symlink()


@posix_only
def test_an_entry_that_is_a_link_is_not_read(cdir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.json"
    cache.write_cache_entry(elsewhere, "k", b"body")  # a valid entry, but not in our dir
    cdir.mkdir(parents=True, mode=0o700)
    (cdir / "e.json").symlink_to(elsewhere)
    assert cache.read_cache_entry(cdir / "e.json", "k") is None


@posix_only
def test_an_entry_that_is_a_fifo_is_refused_without_blocking(cdir: Path) -> None:
    cdir.mkdir(parents=True, mode=0o700)
    fifo = cdir / "e.json"
    os.mkfifo(fifo)
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(cache.read_cache_entry(fifo, "k")),
                         daemon=True)
    t.start()
    t.join(5)
    if t.is_alive():  # unblock the reader so the thread ends
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert got == [None]


def test_an_oversized_entry_is_not_read(cdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = cdir / "e.json"
    cache.write_cache_entry(f, "k", b"x" * 5000)
    monkeypatch.setattr(cache, "MAX_ENTRY_BYTES", 4096, raising=False)
    assert cache.read_cache_entry(f, "k") is None


# -- where: the platform's directories, env overrides kept -----------------------------------


def test_cache_dir_follows_the_platform(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NESTCLOUD_CACHE_DIR", raising=False)
    monkeypatch.delenv("NESTCLOUD_STATE_DIR", raising=False)
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
        assert cache.cache_dir() == tmp_path / "xdg-cache" / "nestcloud"
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)  # platformdirs 4 honours it on macOS
    from platformdirs.macos import MacOS

    monkeypatch.setattr(platformdirs, "PlatformDirs", MacOS)
    assert cache.cache_dir() == Path.home() / "Library" / "Caches" / "nestcloud"


def test_state_dir_follows_the_platform(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from nestcloud import localstate  # the sandbox and the lab locks live there

    monkeypatch.delenv("NESTCLOUD_STATE_DIR", raising=False)
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
        assert localstate.state_dir() == tmp_path / "xdg-state" / "nestcloud"
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    from platformdirs.macos import MacOS

    monkeypatch.setattr(platformdirs, "PlatformDirs", MacOS)
    assert localstate.state_dir() == (Path.home() / "Library" / "Application Support"
                                   / "nestcloud")


def test_env_overrides_still_win(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from nestcloud import localstate

    monkeypatch.setenv("NESTCLOUD_STATE_DIR", str(tmp_path / "s"))
    monkeypatch.delenv("NESTCLOUD_CACHE_DIR", raising=False)
    assert localstate.state_dir() == tmp_path / "s"
    assert cache.cache_dir() == tmp_path / "s" / "cache"
    monkeypatch.setenv("NESTCLOUD_CACHE_DIR", str(tmp_path / "c"))
    assert cache.cache_dir() == tmp_path / "c"
    monkeypatch.setenv("NESTCLOUD_CACHE_DIR", "off")
    assert cache.cache_dir() is None


# -- local locks: filelock, which also locks where fcntl does not exist ---------------------


def _two_holders_overlap(monkeypatch: pytest.MonkeyPatch, hide_fcntl: bool) -> bool:
    from nestcloud.lab import _lab_lock

    if hide_fcntl:  # as on Windows: `import fcntl` fails
        monkeypatch.setitem(sys.modules, "fcntl", None)
    inside = 0
    overlap = False
    guard = threading.Lock()

    def hold() -> None:
        nonlocal inside, overlap
        with _lab_lock("demo"):
            with guard:
                inside += 1
                overlap = overlap or inside > 1
            time.sleep(0.2)
            with guard:
                inside -= 1

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return overlap


def test_the_lab_lock_excludes_a_second_holder(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not _two_holders_overlap(monkeypatch, hide_fcntl=False)


def test_the_lab_lock_still_excludes_without_fcntl(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not _two_holders_overlap(monkeypatch, hide_fcntl=True)


@posix_only
def test_lock_files_are_private(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from nestcloud.lab import _lab_lock

    monkeypatch.setenv("NESTCLOUD_STATE_DIR", str(tmp_path / "state"))
    with umask(0), _lab_lock("demo"):
        locks = tmp_path / "state" / "locks"
        assert mode(tmp_path / "state") == 0o700 and mode(locks) == 0o700
        assert [mode(p) for p in locks.iterdir()] == [0o600]


# -- the state directory through the CLI -----------------------------------------------------


@posix_only
def test_a_state_dir_others_can_read_is_tightened(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from nestcloud.cli import app

    d = tmp_path / "state"
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    monkeypatch.setenv("NESTCLOUD_STATE_DIR", str(d))
    res = CliRunner().invoke(app, ["sandbox", "status"])
    assert res.exit_code == 1 and "not running" in res.stdout
    assert mode(d) == 0o700


@root_only
def test_a_state_dir_of_another_user_is_refused_with_one_message(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from nestcloud.cli import app

    d = tmp_path / "state"
    d.mkdir(mode=0o700)
    os.chown(d, 4242, 4242)
    monkeypatch.setenv("NESTCLOUD_STATE_DIR", str(d))
    for args in (["sandbox", "status"], ["sandbox", "stop"]):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2 and "Traceback" not in res.output
        assert res.output.startswith(f"error: {d}: belongs to uid 4242, not to you")
        assert list(d.iterdir()) == []


@posix_only
def test_reading_alone_tightens_a_cache_dir_left_open(cdir: Path) -> None:
    # `catalog list` only reads the cache: an old 0755 cache holding an ARN must not stay so.
    cache.write_cache_entry(cdir / "e.json", "k", b"x")
    cdir.chmod(0o755)
    assert cache.read_cache_entry(cdir / "e.json", "k") == b"x"
    assert mode(cdir) == 0o700


@root_only
def test_an_entry_in_a_dir_of_another_user_is_not_read(cdir: Path) -> None:
    cache.write_cache_entry(cdir / "e.json", "k", b"x")
    os.chown(cdir, 4242, 4242)  # the entry is still ours, the directory is not
    assert cache.read_cache_entry(cdir / "e.json", "k") is None
