"""Planning over the whole catalog: median wall time of nestcloud.planner.plan (target < 50 ms).

    python bench/bench_plan.py [--runs N] [--catalog PATH]

Prints one line for the README. The catalog is parsed once (outside the timing): a launch or
plan reads it from disk once per process, and its parse is benchmarked with the catalog.
"""

from __future__ import annotations

import argparse
import statistics
import time

from nestcloud.catalog import load_catalog
from nestcloud.planner import PlanRequest, plan

# Broad requests: every provider and region, so every type is a candidate.
REQUESTS = {
    "2 vCPU / 4 GiB, 1 seat": PlanRequest(vcpus=2, memory_gib=4),
    "4 vCPU / 16 GiB, 12 seats, 6 h, budget": PlanRequest(vcpus=4, memory_gib=16, seats=12,
                                                          hours=6, budget=50),
    "8 vCPU / 32 GiB, spot, metal packed": PlanRequest(vcpus=8, memory_gib=32, spot=True,
                                                       pack_metal=True, seats=20),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--catalog", default=None)
    args = ap.parse_args()
    cat = load_catalog(args.catalog)
    worst = 0.0
    for label, req in REQUESTS.items():
        plan(cat, req)  # warm-up: imports, cached catalog indexes
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            res = plan(cat, req)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times) * 1000
        worst = max(worst, med)
        print(f"{label}: median {med:.1f} ms over {args.runs} runs "
              f"({len(res.options)} options, {len(res.rejected)} rejected)")
    req = REQUESTS["2 vCPU / 4 GiB, 1 seat"]
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        n = len(plan(cat, req).rejected)  # --explain builds every rejection as a model
        times.append(time.perf_counter() - t0)
    print(f"with --explain's {n} rejections built: median "
          f"{statistics.median(times) * 1000:.1f} ms")
    print(f"README: planning over the whole catalog ({len(cat.types)} types) takes "
          f"{worst:.1f} ms (median, worst of {len(REQUESTS)} requests; target < 50 ms).")


if __name__ == "__main__":
    main()
