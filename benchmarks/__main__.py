"""Every speed benchmark in one process: a table per benchmark, a summary against the targets, a results file.

    .venv/bin/python -m benchmarks            # quick: small sizes, the whole thing in minutes on a 2-core CPU
    .venv/bin/python -m benchmarks --full     # 224px, bigger sets, more batches: for a GPU machine
    .venv/bin/python -m benchmarks --only evaluation feature_cache

Prints markdown (for BENCHMARKS.md) and writes artifacts/bench/results.json. Every figure is a ratio of variants
measured side by side in this one run: compare ratios, not absolute rates, across machines and runs.
"""

from __future__ import annotations

import argparse
import importlib
import time
import traceback
from pathlib import Path

from benchmarks import common

BENCHMARKS = ("input_pipeline", "feature_cache", "evaluation", "attributions", "artifacts_stages", "dashboard_scale",
              "gallery_export", "near_copies", "nearest_neighbours", "projection", "embeddings_size", "freed_memory",
              "full_workload")
FULL_ONLY = ("full_workload",)  # the reference-full rehearsal (~30 min): `--full`, or named with --only


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="GPU-sized run: 224px, bigger sets, more batches")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these benchmarks")
    parser.add_argument("--out", type=Path, default=common.RESULTS, help="results JSON (default %(default)s)")
    args = parser.parse_args(argv)
    quick = not args.full
    info = common.machine()
    started = time.perf_counter()
    print(f"# Period Eye benchmarks — {'quick' if quick else 'full'} mode, {common.now()}\n")
    print(common.machine_line(info) + "\n", flush=True)
    payload: dict = {"mode": "quick" if quick else "full", "started": common.now(), "machine": info, "benchmarks": {}}
    summary: list[dict] = []
    for name in args.only or [b for b in BENCHMARKS if not quick or b not in FULL_ONLY]:
        print(f"## {name}\n", flush=True)
        first_table = len(common.TABLES)
        load_before = common.load()
        t0 = time.perf_counter()
        try:
            rows = importlib.import_module(f"benchmarks.{name}").run(quick)
            error = None
        except Exception as exc:  # one broken benchmark should not cost the others' results
            traceback.print_exc()
            rows, error = [], f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - t0
        load = [load_before, common.load()]
        print(f"({name}: {seconds:.0f} s; 1-minute load average {load[0]} before, {load[1]} after)\n", flush=True)
        summary += rows
        payload["benchmarks"][name] = {"seconds": seconds, "load_average": load, "results": rows, "error": error,
                                       "tables": common.TABLES[first_table:]}
    common.summary_table(summary)
    payload.update(summary=summary, wall_seconds=time.perf_counter() - started, finished=common.now(),
                   load_average_after=common.machine()["load_average"])
    print(f"total {payload['wall_seconds']:.0f} s; results in {common.write_results(payload, args.out)}")


if __name__ == "__main__":
    main()
