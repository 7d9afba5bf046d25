"""`make artifacts` on configs/demo.yaml end to end, split by stage, into a temporary store and artifacts dir.

Data preparation is timed cold (empty cache: the demo set generated and decoded) and warm (cache reused). Then
pipeline.experiment.run_experiment runs every run (progress off; quick and full mode alike: the demo is small) with
the pipeline's own functions wrapped from outside by timers (no pipeline code changed): per run training (train),
evaluation (predict: forward_pass or heads_pass per test-time view, then evaluate), attributions
(attribute_run) and store write (store.write_run); the rest of run_one (checkpoint, config file) is "other".
The store's own runs.train_seconds / eval_seconds and summary.attribution_seconds are shown beside them as a
check.

    .venv/bin/python -m benchmarks.artifacts_stages [--full]
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

from benchmarks import common
from pipeline import experiment, store
from pipeline.config import Experiment, load_experiment

NAME = "artifacts stages"
CONFIG = common.REPO / "configs" / "demo.yaml"
STAGES = {  # (module, function) -> stage
    (experiment, "train"): "training",
    (experiment, "predict"): "evaluation",
    (experiment, "score_outputs"): "evaluation",
    (experiment, "attribute_run"): "attributions",
    (store, "write_run"): "store write",
}


class StageClock:
    """Seconds per (run, stage), filled by wrappers around the pipeline's functions while `installed`."""

    def __init__(self) -> None:
        self.seconds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.run = "(data)"

    def wrap(self, fn: Callable, stage: str) -> Callable:
        def clocked(*args, **kwargs):
            if stage == "run":
                self.run = args[1].name  # run_one(exp, run, data, progress)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[self.run][stage] += time.perf_counter() - t0

        return clocked

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        patches = {**STAGES, (experiment, "run_one"): "run", (experiment, "prepare_data"): "data preparation (warm)"}
        with common.wrapped(patches, self.wrap):
            yield


def stored_timings(path: str) -> dict[str, dict]:
    """The store's own timings per run name."""
    with store.connect(path, read_only=True) as con:
        rows = con.execute("SELECT run_id, train_seconds, eval_seconds, summary FROM runs").fetchall()
    out = {}
    for run_id, train_s, eval_s, summary in rows:
        summary = json.loads(summary) if isinstance(summary, str) else (summary or {})
        out[run_id.split("/", 1)[1]] = {"train": train_s, "eval": eval_s,
                                        "attributions": sum((summary.get("attribution_seconds") or {}).values())}
    return out


def demo(artifacts_dir: Path) -> Experiment:
    exp = load_experiment(CONFIG)
    exp.artifacts_dir = str(artifacts_dir)
    exp.store = str(artifacts_dir / "periodeye.duckdb")
    return exp


def run(quick: bool = True) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench-artifacts-", dir=common.CACHE_DIR.parent) as tmp:
        exp = demo(Path(tmp))
        print(f"{CONFIG.relative_to(common.REPO)}: runs {[r.name for r in exp.runs]}, {exp.data.source} data at "
              f"{exp.data.crop}px, attributions {exp.attributions.methods}, into {tmp}")
        with common.quiet():
            cold, _ = common.timed(lambda: experiment.prepare_data(exp, progress=False))
            warm, _ = common.timed(lambda: experiment.prepare_data(exp, progress=False))
            clock = StageClock()
            with clock.installed():
                total, _ = common.timed(lambda: experiment.run_experiment(exp, progress=False))
        stored = stored_timings(exp.store)
    return report(clock.seconds, stored, cold, warm, total)


def report(seconds: dict[str, dict[str, float]], stored: dict[str, dict], cold: float, warm: float,
           total: float) -> list[dict]:
    stages = ["training", "evaluation", "attributions", "store write"]
    rows, sums = [], defaultdict(float)
    for name, t in seconds.items():
        if name == "(data)":
            continue
        other = t["run"] - sum(t[s] for s in stages)
        for s in [*stages, "other"]:
            sums[s] += other if s == "other" else t[s]
        st = stored.get(name, {})
        rows.append([name, *[t[s] for s in stages], other, t["run"], st.get("train"), st.get("eval"),
                     st.get("attributions")])
    common.table("`make artifacts` (configs/demo.yaml) per run, seconds",
                 ["run", *stages, "other (checkpoint, config)", "run total", "store: train_seconds",
                  "store: eval_seconds", "store: attribution s"], rows,
                 note="store write = store.write_run (one transaction); the store's eval_seconds covers "
                      "evaluation only, its attribution seconds the methods' own time (no PNG encoding, no sanity "
                      "check).")
    in_run = seconds["(data)"]["data preparation (warm)"]
    runs_total = sum(t["run"] for n, t in seconds.items() if n != "(data)")
    end_to_end = cold + (total - in_run)  # what a first `make artifacts` on an empty artifacts dir costs
    overhead = total - in_run - runs_total
    parts = [("data preparation (cold cache)", cold), *[(s, sums[s]) for s in [*stages, "other"]],
             ("experiment overhead (store checks)", overhead)]
    common.table("`make artifacts` (configs/demo.yaml) by stage",
                 ["stage", "seconds", "share of end to end"],
                 [[s, v, f"{100 * v / end_to_end:.1f} %"] for s, v in parts] + [["end to end", end_to_end, "100 %"]],
                 note=f"Data preparation with a warm cache: {warm:.2f} s (cold {cold:.1f} s). End to end = cold "
                      "preparation + run_experiment's runs; Python start-up and imports not included.")
    return [common.result(NAME, f"{s} share of demo end to end ({end_to_end:.0f} s)", v / end_to_end, unit="share")
            for s, v in parts if v / end_to_end >= 0.05]


if __name__ == "__main__":
    common.standalone(run, __doc__, "accepted for symmetry: the demo is the same")
