"""scripts/build-test-image.sh without building: cache keying, cache hits, the missing-tool
message (the real build runs in tests/local/test_real_boot.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build-test-image.sh"
BASH = shutil.which("bash") or "/bin/bash"


def _bare_path(tmp_path: Path) -> str:
    """A PATH with only the coreutils the script needs before it looks for its build tools."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for tool in ("readlink", "cat", "sha256sum", "cut", "id"):
        found = shutil.which(tool)
        assert found, tool
        (bindir / tool).symlink_to(found)
    return str(bindir)


def _run(script: Path, *args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NESTCLOUD_IMAGE_CACHE"}
    if path is not None:
        env["PATH"] = path
    return subprocess.run([BASH, str(script), *args], capture_output=True, text=True,
                          timeout=30, env=env, check=False)


def test_path_names_a_key_of_the_recipe_under_the_cache_dir(tmp_path: Path) -> None:
    first = _run(SCRIPT, "--path", str(tmp_path))
    assert first.returncode == 0, first.stderr
    out = Path(first.stdout.strip())
    assert out.parent == tmp_path
    assert re.fullmatch(r"debian-12-[0-9a-f]{16}", out.name)
    assert _run(SCRIPT, "--path", str(tmp_path)).stdout == first.stdout
    assert not out.exists()                       # --path builds nothing


def test_a_changed_recipe_gets_another_key(tmp_path: Path) -> None:
    copy = tmp_path / "build-test-image.sh"
    copy.write_text(SCRIPT.read_text().replace("FS_SIZE:-4G", "FS_SIZE:-5G"))
    ours = _run(SCRIPT, "--path", str(tmp_path)).stdout
    changed = _run(copy, "--path", str(tmp_path)).stdout
    assert ours != changed and changed.startswith(f"{tmp_path}/debian-12-")


def test_a_cache_hit_needs_no_root_and_no_build_tools(tmp_path: Path) -> None:
    out = Path(_run(SCRIPT, "--path", str(tmp_path)).stdout.strip())
    out.mkdir()
    (out / "manifest.json").write_text("{}\n")
    hit = _run(SCRIPT, str(tmp_path), path=_bare_path(tmp_path))
    assert hit.returncode == 0, hit.stderr
    assert hit.stdout == f"{out}\n"
    assert hit.stderr == f"build-test-image: cached {out}\n"


def test_a_build_without_its_tools_names_the_apt_packages(tmp_path: Path) -> None:
    r = _run(SCRIPT, str(tmp_path / "cache"), path=_bare_path(tmp_path))
    assert r.returncode == 2
    assert r.stdout == ""
    if os.geteuid() == 0:
        assert r.stderr == ("build-test-image: missing mmdebstrap qemu-img mkfs.ext4: apt-get "
                            "install -y --no-install-recommends mmdebstrap qemu-utils e2fsprogs "
                            "mount\n")
    else:
        assert r.stderr == ("build-test-image: must run as root (mmdebstrap chroots into the "
                            "new system)\n")
    assert not (tmp_path / "cache").exists()


def test_env_var_sets_the_cache_dir(tmp_path: Path) -> None:
    env = dict(os.environ, NESTCLOUD_IMAGE_CACHE=str(tmp_path / "c"))
    r = subprocess.run([BASH, str(SCRIPT), "--path"], capture_output=True, text=True, env=env,
                       timeout=30, check=False)
    assert r.stdout.startswith(f"{tmp_path}/c/debian-12-")
