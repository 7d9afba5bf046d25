"""SQL behind the Calibration page: a run's temperatures, its calibration errors and the reliability diagram's bins.

The bins are computed here over `predictions` (confidence after scaling, raw_confidence before, correct): 15
equal-width confidence bins, as the stored ECE (pipeline/calibration.py, torchmetrics) uses, so the diagram and
the number agree. A few rows per run and split, whatever the store's size.
"""

from __future__ import annotations

import pandas as pd

from dashboard.queries import query

N_BINS = 15  # pipeline/calibration.py's N_BINS (the dashboard does not import the pipeline's torch side)


def temperatures(run_id: str) -> pd.DataFrame:
    """The run's fitted temperatures, one row per scaled task (none: the run was not calibrated)."""
    return query("SELECT task, temperature, fitted_on, n FROM calibration WHERE run_id = ? ORDER BY task DESC",
                 (run_id,))


def splits(run_id: str) -> list[str]:
    """The splits with labelled predictions for the run, in train/val/test order."""
    df = query("""SELECT DISTINCT split FROM predictions WHERE run_id = ? AND correct IS NOT NULL
                  ORDER BY CASE split WHEN 'train' THEN 0 WHEN 'val' THEN 1 WHEN 'test' THEN 2 ELSE 3 END, split""",
               (run_id,))
    return df["split"].tolist()


def tasks(run_id: str) -> list[str]:
    """The run's tasks, period first."""
    df = query("SELECT DISTINCT task FROM run_labels WHERE run_id = ? ORDER BY task <> 'period', task", (run_id,))
    return df["task"].tolist()


def errors(run_id: str, split: str, task: str) -> dict[str, float]:
    """The stored `ece` (of the probabilities as stored: calibrated when scaled) and `ece_uncalibrated`."""
    df = query("""SELECT metric, value FROM metrics WHERE run_id = ? AND split = ? AND task = ?
                  AND metric IN ('ece', 'ece_uncalibrated') AND label IS NULL""", (run_id, split, task))
    return dict(zip(df["metric"], df["value"], strict=True))


def bins(run_id: str, split: str, task: str) -> pd.DataFrame:
    """Per confidence bin, after scaling (`after`: the stored confidence) and before it (`before`: raw_confidence,
    only for a scaled run): images, mean confidence, accuracy, and the bin's bounds."""
    return query(f"""
        WITH p AS (SELECT confidence, raw_confidence, correct::INTEGER AS hit FROM predictions
                   WHERE run_id = $1 AND split = $2 AND task = $3 AND correct IS NOT NULL),
        b AS (SELECT 'after' AS scaling, least(floor(confidence * {N_BINS}), {N_BINS - 1})::INTEGER AS bin,
                     confidence AS c, hit FROM p
              UNION ALL
              SELECT 'before', least(floor(raw_confidence * {N_BINS}), {N_BINS - 1})::INTEGER, raw_confidence, hit
              FROM p WHERE raw_confidence IS NOT NULL)
        SELECT scaling, bin, bin / {N_BINS}::DOUBLE AS low, (bin + 1) / {N_BINS}::DOUBLE AS high, count(*) AS n,
               avg(c) AS confidence, avg(hit) AS accuracy
        FROM b GROUP BY scaling, bin ORDER BY scaling, bin""", (run_id, split, task))
