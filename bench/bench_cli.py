"""Start-up benchmark: nestcloud commands against importing the libraries they stand on.

Measures, in one run, the median wall time of

    nestcloud catalog list --json
    nestcloud check --provider aws --type c8i.large --region us-east-1
    python -c "import typer, yaml; from pydantic import BaseModel" + one small model
                                                      (the baseline: what any typer +
                                                       pydantic app pays)

each as a fresh subprocess, interleaved round-robin so a busy machine slows them all alike,
and prints each command's ratio to the baseline (target <= 1.3) plus a line for the README.

    python bench/bench_cli.py [--runs 21] [--json] [--strict]

--strict exits 1 when a ratio misses the target. The first (warm-up) run of each command is
not counted; it also fills nestcloud's parsed-catalog cache, as any first use does. The cold
(no cache) time of `catalog list --json` is measured separately and reported for information.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 1.3
MEASURED = ("catalog list --json", "check")

TYPER_FLOOR = """
import typer
app = typer.Typer()
@app.command()
def main(as_json: bool = typer.Option(False, "--json"), region: str = typer.Option(None)):
    print("{}")
app()
"""

# The baseline: the libraries nestcloud stands on, and one small model defined (its schema
# built), as any typer + pydantic app has. `import pydantic` alone only loads a lazy module:
# the first BaseModel subclass imports the rest, which nestcloud's validated input needs too.
BASELINE = """
import typer, yaml
from pydantic import BaseModel
class Options(BaseModel):
    name: str
    count: int = 1
    tags: dict[str, str] = {}
"""


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def ensure_bytecode() -> list[str]:
    """Compile nestcloud's modules as `pip install` does, so no run pays for compiling them.

    A checkout run with PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module from
    source on every start, which users of an installed wheel never do.
    """
    import compileall
    import importlib.util

    done = []
    for pkg in ("nestcloud", "providers"):
        spec = importlib.util.find_spec(pkg)
        for loc in (spec.submodule_search_locations or []) if spec else []:
            compileall.compile_dir(loc, quiet=1)
            done.append(loc)
    return done


def nestcloud_argv() -> list[str]:
    """The console script next to this interpreter, else the one on PATH."""
    here = Path(sys.executable).parent / "nestcloud"
    if here.exists():
        return [str(here)]
    found = shutil.which("nestcloud")
    if found:
        return [found]
    return [sys.executable, "-c", "from nestcloud.cli import main; main()"]


def run_once(argv: list[str], env: dict[str, str], cpu: list[float] | None = None) -> float:
    """Wall seconds of one run; appends the child's CPU seconds (user+sys) to ``cpu``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                          check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu is not None:
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    if proc.returncode not in (0, 3):
        raise SystemExit(f"{' '.join(argv)} failed with exit {proc.returncode}:\n"
                         f"{proc.stderr.decode(errors='replace')}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=21, help="timed runs per command (default 21)")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a ratio misses")
    args = ap.parse_args()

    nc = nestcloud_argv()
    compiled = ensure_bytecode()
    commands: dict[str, list[str]] = {
        "baseline": [sys.executable, "-c", BASELINE],
        "catalog list --json": [*nc, "catalog", "list", "--json"],
        "check": [*nc, "check", "--provider", "aws", "--type", "c8i.large", "--region",
                  "us-east-1"],
        # For reference, not a target: the smallest typer app with one option. typer 0.29
        # coerces every option through a pydantic TypeAdapter, so any command pays pydantic's
        # full import, which `import pydantic` alone (a lazy module) does not; that is why
        # pyproject.toml pins typer < 0.29.
        "typer floor": [sys.executable, "-c", TYPER_FLOOR, "--json"],
        # The previous baseline, for reference: the imports alone, no model defined.
        "imports only": [sys.executable, "-c", "import typer, pydantic, yaml"],
    }
    env = dict(os.environ)
    times: dict[str, list[float]] = {k: [] for k in commands}
    cpu: dict[str, list[float]] = {k: [] for k in commands}
    with tempfile.TemporaryDirectory() as cold_dir:
        cold_env = {**env, "NESTCLOUD_CACHE_DIR": cold_dir}
        cold = []
        for _ in range(max(3, args.runs // 4)):
            for f in Path(cold_dir).iterdir():
                f.unlink()
            cold.append(run_once(commands["catalog list --json"], cold_env))
    for argv in commands.values():  # warm-up: page cache, .pyc files, the catalog cache
        run_once(argv, env)
    for _ in range(args.runs):
        for name, argv in commands.items():
            times[name].append(run_once(argv, env, cpu[name]))

    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["baseline"]
    ratios = {k: med[k] / base for k in commands if k != "baseline"}
    ok = all(ratios[k] <= TARGET for k in MEASURED)
    # CPU time is what the command costs; wall time also counts waiting for a busy CPU, so on
    # a shared machine the CPU ratio is the steadier of the two.
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    cpu_ratios = {k: cpu_med[k] / cpu_med["baseline"] for k in commands if k != "baseline"}
    cold_med = statistics.median(cold)
    line = (f"Start-up, median of {args.runs} runs (Python {platform.python_version()}, "
            f"typer {_version('typer')}, pydantic {_version('pydantic')}, "
            f"{dt.date.today().isoformat()}): `nestcloud catalog list --json` "
            f"{med['catalog list --json'] * 1000:.0f} ms ({ratios['catalog list --json']:.2f}x "
            f"wall, {cpu_ratios['catalog list --json']:.2f}x CPU), "
            f"`nestcloud check --provider aws --type c8i.large --region us-east-1` "
            f"{med['check'] * 1000:.0f} ms ({ratios['check']:.2f}x wall, "
            f"{cpu_ratios['check']:.2f}x CPU) against "
            f"`import typer, yaml; from pydantic import BaseModel` plus one small model "
            f"{base * 1000:.0f} ms; target <= {TARGET}x. For reference, a one-option typer "
            f"app {ratios['typer floor']:.2f}x wall / {cpu_ratios['typer floor']:.2f}x CPU, "
            f"`import typer, pydantic, yaml` (no model) {ratios['imports only']:.2f}x / "
            f"{cpu_ratios['imports only']:.2f}x; the first run without the parsed-catalog "
            f"cache {cold_med * 1000:.0f} ms.")
    if args.json:
        print(json.dumps({"runs": args.runs, "compiled": compiled, "median_s": med,
                          "ratios": ratios,
                          "cpu_median_s": cpu_med, "cpu_ratios": cpu_ratios,
                          "target": TARGET, "ok": ok, "cold_catalog_list_s": cold_med,
                          "readme": line}, indent=2))
    else:
        width = max(len(k) for k in commands)
        print(f"{'command'.ljust(width)}  wall median ms  min ms  cpu median ms  cpu ratio"
              "  wall ratio")
        for name in commands:
            ratio = "1.00 (baseline)" if name == "baseline" else (
                f"{ratios[name]:.2f} {'ok' if ratios[name] <= TARGET else 'MISS'}"
                if name in MEASURED else f"{ratios[name]:.2f} (reference)")
            cr = 1.0 if name == "baseline" else cpu_ratios[name]
            print(f"{name.ljust(width)}  {med[name] * 1000:14.1f}  {min(times[name]) * 1000:6.1f}"
                  f"  {cpu_med[name] * 1000:13.1f}  {cr:9.2f}  {ratio}")
        print(f"catalog list --json without the parsed-catalog cache: {cold_med * 1000:.1f} ms")
        print(f"target: ratio <= {TARGET}: {'met' if ok else 'MISSED'}")
        print()
        print(line)
    return 0 if ok or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
