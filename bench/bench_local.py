"""Local boot overhead: `nestcloud launch --provider local` -> `nestcloud wait` ready, against
booting the same image with the same seed by a bare qemu command line, in the same run.

Per round, one after the other (never at once: TCG is CPU-bound), in alternating order:

- nestcloud: the wall time from starting ``nestcloud launch --provider local --type 1c-2g
  --os debian-12 --hypervisor none --image IMG`` to ``nestcloud wait NAME --interval 0.5``
  exiting 0 (two real CLI processes: start-up, checks, user-data rendering, KVM probe, seed,
  overlay, QEMU start, then polling the serial log);
- bare: ``qemu-img create`` of an overlay of the same size over the same image, then
  ``qemu-system-x86_64`` with the very argv nestcloud ran (from its seat.json, paths moved to
  the bare seat's directory) and a copy of nestcloud's seed ISO, polling the serial log every
  0.5 s until the readiness marker appears.

Needs what the real-boot tests need (docs/local-boot.md): the test image (built or cached by
scripts/build-test-image.sh), QEMU, pycdlib. Prints per-round times, the median ratio and a
line for bench/README.md. Usage: python bench/bench_local.py [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nestcloud.bootstrap.marker import parse_marker  # noqa: E402
from providers.local import qemu  # noqa: E402

TARGET = 1.1
TYPE = "1c-2g"
POLL = 0.5
TIMEOUT = 900.0


def image_dir() -> Path:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "build-test-image.sh")],
                          capture_output=True, text=True, timeout=900, check=True)
    return Path(proc.stdout.strip().splitlines()[-1])


def nestcloud_cmd() -> list[str]:
    exe = shutil.which("nestcloud", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "nestcloud"]


def run_nestcloud(image: Path, state: Path, name: str, keep: Path) -> tuple[float, dict[str, Any]]:
    """Seconds from launch to wait's exit 0; what the bare side needs (argv, a copy of the
    seed, the overlay's size) is kept in ``keep`` before the seat is removed (untimed)."""
    env = {**os.environ, "NESTCLOUD_STATE_DIR": str(state)}  # the cache dir is shared
    cmd = nestcloud_cmd()
    t0 = time.monotonic()
    subprocess.run([*cmd, "launch", "--provider", "local", "--type", TYPE, "--os", "debian-12",
                    "--hypervisor", "none", "--image", str(image), "--name", name],
                   env=env, check=True, capture_output=True, text=True, timeout=300)
    waited = subprocess.run([*cmd, "wait", name, "--provider", "local", "--interval", str(POLL),
                             "--timeout", str(int(TIMEOUT))], env=env, capture_output=True,
                            text=True, timeout=TIMEOUT + 60)
    took = time.monotonic() - t0
    seat = state / "local" / name / "0"
    try:
        if waited.returncode != 0:
            raise SystemExit(f"nestcloud wait exited {waited.returncode}: {waited.stdout}"
                             f"{waited.stderr}")
        meta = json.loads((seat / "seat.json").read_text())
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(seat / "seed.iso", keep / "seed.iso")
        size = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json",
                                          str(seat / "disk.qcow2")], capture_output=True,
                                         text=True, check=True).stdout)["virtual-size"]
    finally:
        subprocess.run([*cmd, "down", name, "-p", "local", "--yes"], env=env,
                       capture_output=True)
    return took, {"argv": meta["argv"], "dir": str(seat), "seed": keep / "seed.iso",
                  "size": size, "accel": meta["accel"]}


def run_bare(image: Path, seat: dict[str, Any], work: Path) -> float:
    """Seconds from qemu-img create to the marker on the serial log, same argv and seed."""
    d = work / "bare"
    d.mkdir()
    shutil.copyfile(seat["seed"], d / "seed.iso")
    argv = [a.replace(seat["dir"], str(d)) for a in seat["argv"]]
    t0 = time.monotonic()
    try:
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b",
                        str(image / "disk.qcow2"), "-F", "qcow2", str(d / "disk.qcow2"),
                        str(seat["size"])], check=True)
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
        got = qemu.wait_for_console(d / "serial.log", lambda t: parse_marker(t) is not None,
                                    timeout=TIMEOUT, poll=POLL)
        took = time.monotonic() - t0
    finally:
        qemu.stop_vm(d / "qemu.pid")
    marker = parse_marker(got.text)
    if marker is None or not marker.ready:
        raise SystemExit(f"bare boot: {got.outcome}, marker {marker}")
    return took


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    image = image_dir()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nc-bench-local-") as tmp:
        keep = Path(tmp) / "keep"
        # One cache for every round, as a user has: the KVM probe runs once per machine boot
        # (an untimed dry run pays it here; it costs up to 15 s where KVM hangs guests).
        os.environ["NESTCLOUD_CACHE_DIR"] = str(Path(tmp) / "cache")
        t0 = time.monotonic()
        subprocess.run([*nestcloud_cmd(), "launch", "--provider", "local", "--type", TYPE,
                        "--os", "debian-12", "--hypervisor", "none", "--image", str(image),
                        "--name", "warm", "--dry-run"], check=True, capture_output=True,
                       env={**os.environ, "NESTCLOUD_STATE_DIR": str(Path(tmp) / "warm")})
        warm = time.monotonic() - t0
        # The image in the page cache for both sides (else the first boot reads it from disk).
        for f in ("disk.qcow2", "vmlinuz", "initrd.img"):
            with open(image / f, "rb") as fh:
                while fh.read(1 << 24):
                    pass
        seat: dict[str, Any] | None = None
        for r in range(args.rounds):
            work = Path(tmp) / f"round-{r}"
            work.mkdir()
            # nestcloud first in even rounds (the first one must: its seed and argv are what
            # the bare side boots), bare first in odd ones.
            if r % 2 == 0 or seat is None:
                nc, seat = run_nestcloud(image, work / "state", f"bench-{r}", keep)
                bare = run_bare(image, seat, work)
            else:
                bare = run_bare(image, seat, work)
                nc, _ = run_nestcloud(image, work / "state", f"bench-{r}", keep)
            rows.append({"nestcloud_s": round(nc, 1), "bare_s": round(bare, 1),
                         "ratio": round(nc / bare, 3), "accel": seat["accel"]})
            if not args.json:
                print(f"round {r + 1}: nestcloud {nc:.1f} s, bare qemu {bare:.1f} s, "
                      f"ratio {nc / bare:.3f} ({seat['accel']})", file=sys.stderr)
    ratio = statistics.median(r["ratio"] for r in rows)
    doc = {"rounds": rows, "median_ratio": ratio, "target": TARGET,
           "first_launch_probe_s": round(warm, 1),
           "load": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None}
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        print(f"local boot, launch -> wait ready: median ratio {ratio:.3f} "
              f"(target <= {TARGET}) over {len(rows)} round(s); the first dry run with the KVM "
              f"probe took {warm:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
