"""Fill the 95 % intervals (metrics.low/high) of runs written before schema 6, from their stored predictions.

Why: `python -m pipeline upgrade` adds the columns empty; without this an old run's accuracy would show without
its interval. The numbers are those evaluation writes today (pipeline.metrics.metric_intervals, same seed 0), since
every stored prediction keeps its true label and every class's probability.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from pipeline.intervals import wilson
from pipeline.metrics import metric_intervals


def _class_order(con: duckdb.DuckDBPyConnection, run_id: str, task: str) -> list[str]:
    rows = con.execute("SELECT label FROM run_labels WHERE run_id = ? AND task = ? ORDER BY class_index",
                       [run_id, task]).fetchall()
    return [r[0] for r in rows]


def backfill_intervals(con: duckdb.DuckDBPyConnection, seed: int = 0) -> int:
    """Set low/high on every metric row that has none yet and can have one; returns how many rows were filled.
    Idempotent: a second call finds nothing to do."""
    groups = con.execute(
        "SELECT DISTINCT run_id, split, task FROM metrics WHERE low IS NULL "
        "AND metric NOT IN ('n', 'loss', 'support') ORDER BY ALL").fetchall()
    rows: list[tuple] = []
    for run_id, split, task in groups:
        names = _class_order(con, run_id, task)
        preds = con.execute(
            "SELECT true_label, probs FROM predictions WHERE run_id = ? AND split = ? AND task = ? "
            "AND true_label IS NOT NULL AND probs IS NOT NULL", [run_id, split, task]).fetchall()
        if names and preds and all(len(p) == len(names) for _, p in preds):
            index = {name: i for i, name in enumerate(names)}
            y = np.array([index.get(t, -1) for t, _ in preds])
            probs = np.array([p for _, p in preds], dtype=np.float64)
            bounds = metric_intervals(y, probs, names, task == "period", seed=seed)
            rows += [(run_id, split, task, m, label, lo, hi) for (m, label), (lo, hi) in bounds.items()]
            continue
        # no predictions to resample: Wilson for accuracy from its value and n, when both are stored
        n = con.execute("SELECT value FROM metrics WHERE run_id = ? AND split = ? AND task = ? AND metric = 'n' "
                        "AND label IS NULL", [run_id, split, task]).fetchone()
        acc = con.execute("SELECT value FROM metrics WHERE run_id = ? AND split = ? AND task = ? "
                          "AND metric = 'accuracy' AND label IS NULL", [run_id, split, task]).fetchone()
        if n and acc and n[0]:
            rows.append((run_id, split, task, "accuracy", None, *wilson(round(acc[0] * n[0]), n[0])))
    if not rows:
        return 0
    frame = pd.DataFrame(rows, columns=["run_id", "split", "task", "metric", "label", "low", "high"])
    frame = frame.dropna(subset=["low", "high"])
    con.register("_bounds", frame)
    try:
        filled = con.execute(
            "UPDATE metrics AS m SET low = b.low, high = b.high FROM _bounds AS b "
            "WHERE m.low IS NULL AND m.run_id = b.run_id AND m.split = b.split AND m.task = b.task "
            "AND m.metric = b.metric AND m.label IS NOT DISTINCT FROM b.label").fetchone()
    finally:
        con.unregister("_bounds")
    return int(filled[0]) if filled else 0
