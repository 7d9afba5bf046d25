"""SQL behind the Compare runs page: metrics side by side, confusion, and image-by-image agreement.

Everything is filtered and aggregated in DuckDB; only the small results (a few metric rows,
a confusion matrix, one page of thumbnails) reach pandas.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from dashboard.queries import query

HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "top2_accuracy", "adjacent_error_share", "n", "loss")


def splits(run_ids: Sequence[str]) -> list[str]:
    """Splits every chosen run has metrics for (train/val/test, in that order)."""
    df = query(
        """SELECT split FROM metrics WHERE run_id IN (SELECT unnest(?::TEXT[]))
           GROUP BY split HAVING count(DISTINCT run_id) = ?
           ORDER BY CASE split WHEN 'train' THEN 0 WHEN 'val' THEN 1 WHEN 'test' THEN 2 ELSE 3 END, split""",
        (list(run_ids), len(set(run_ids))),
    )
    return df["split"].tolist() if not df.empty else []


def common_tasks(run_ids: Sequence[str]) -> list[str]:
    """Tasks every chosen run was trained on (period first)."""
    df = query(
        """SELECT task FROM run_labels WHERE run_id IN (SELECT unnest(?::TEXT[]))
           GROUP BY task HAVING count(DISTINCT run_id) = ? ORDER BY task <> 'period', task""",
        (list(run_ids), len(set(run_ids))),
    )
    return df["task"].tolist() if not df.empty else []


def overall_metrics(run_ids: Sequence[str], split: str, task: str) -> pd.DataFrame:
    """One row per (run, headline metric): the overall rows (label NULL) of `metrics`, with their 95 % interval
    (low/high; NULL for n and loss, and for a run stored before schema 6 until `pipeline upgrade`)."""
    return query(
        """SELECT run_id, metric, value, low, high FROM metrics
           WHERE run_id IN (SELECT unnest(?::TEXT[])) AND split = ? AND task = ? AND label IS NULL
             AND metric IN (SELECT unnest(?::TEXT[]))""",
        (list(run_ids), split, task, list(HEADLINE)),
    )


def class_metric(run_ids: Sequence[str], split: str, task: str, metric: str = "f1") -> pd.DataFrame:
    """Per-class rows of one metric with its 95 % interval, ordered by each run's chronological class index."""
    return query(
        """SELECT m.run_id, m.label, m.value, m.low, m.high, l.class_index FROM metrics m
           LEFT JOIN run_labels l ON l.run_id = m.run_id AND l.task = m.task AND l.label = m.label
           WHERE m.run_id IN (SELECT unnest(?::TEXT[])) AND m.split = ? AND m.task = ? AND m.metric = ?
             AND m.label IS NOT NULL
           ORDER BY m.run_id, l.class_index""",
        (list(run_ids), split, task, metric),
    )


def confusion(run_ids: Sequence[str], split: str, task: str) -> pd.DataFrame:
    """The stored confusion cells (non-zero only) of the chosen runs."""
    return query(
        """SELECT run_id, true_label, pred_label, count FROM confusion
           WHERE run_id IN (SELECT unnest(?::TEXT[])) AND split = ? AND task = ?""",
        (list(run_ids), split, task),
    )


def agreement(run_a: str, run_b: str, split: str, task: str) -> dict[str, int]:
    """The 2×2 table of right/wrong on the images both runs predicted (McNemar's input).

    `a_only` (b in McNemar's notation) counts images A gets right and B wrong; `b_only` (c) the reverse."""
    df = query(
        """SELECT count(*) AS n,
                  count(*) FILTER (WHERE a.correct AND b.correct) AS both_right,
                  count(*) FILTER (WHERE a.correct AND NOT b.correct) AS a_only,
                  count(*) FILTER (WHERE NOT a.correct AND b.correct) AS b_only,
                  count(*) FILTER (WHERE NOT a.correct AND NOT b.correct) AS both_wrong
           FROM predictions a JOIN predictions b
             ON b.image_id = a.image_id AND b.run_id = ? AND b.task = a.task AND b.split = a.split
           WHERE a.run_id = ? AND a.split = ? AND a.task = ?
             AND a.correct IS NOT NULL AND b.correct IS NOT NULL""",
        (run_b, run_a, split, task),
    )
    if df.empty:
        return {"n": 0, "both_right": 0, "a_only": 0, "b_only": 0, "both_wrong": 0}
    return {k: int(v) for k, v in df.iloc[0].items()}


def right_wrong_images(
    right_run: str, wrong_run: str, split: str, task: str, limit: int = 24, offset: int = 0
) -> pd.DataFrame:
    """One page of images `right_run` classifies correctly and `wrong_run` does not, with thumbnails.

    Most confident mistakes of `wrong_run` first: those are the disagreements worth a look."""
    return query(
        """SELECT a.image_id, a.true_label, b.pred_label AS wrong_pred, b.confidence AS wrong_confidence,
                  a.confidence AS right_confidence, i.artist, i.title, i.thumbnail
           FROM predictions a
           JOIN predictions b ON b.image_id = a.image_id AND b.run_id = ? AND b.task = a.task AND b.split = a.split
           JOIN runs r ON r.run_id = a.run_id
           JOIN images i ON i.dataset_id = r.dataset_id AND i.image_id = a.image_id
           WHERE a.run_id = ? AND a.split = ? AND a.task = ? AND a.correct AND NOT b.correct
           ORDER BY b.confidence DESC, a.image_id
           LIMIT ? OFFSET ?""",
        (wrong_run, right_run, split, task, int(limit), int(offset)),
    )


def configs(run_ids: Sequence[str]) -> dict[str, str | None]:
    """Each run's stored resolved config (JSON text, grouped by concern), by run."""
    df = query("SELECT run_id, config FROM runs WHERE run_id IN (SELECT unnest(?::TEXT[]))", (list(run_ids),))
    return {str(r.run_id): (None if r.config is None else str(r.config)) for r in df.itertuples()}


def right_wrong_ids(right_run: str, wrong_run: str, split: str, task: str, limit: int) -> list[str]:
    """The first `limit` images of `right_wrong_images` (same order), ids only: what an export of them fetches."""
    df = query(
        """SELECT a.image_id FROM predictions a
           JOIN predictions b ON b.image_id = a.image_id AND b.run_id = ? AND b.task = a.task AND b.split = a.split
           WHERE a.run_id = ? AND a.split = ? AND a.task = ? AND a.correct AND NOT b.correct
           ORDER BY b.confidence DESC, a.image_id LIMIT ?""",
        (wrong_run, right_run, split, task, int(limit)),
    )
    return df["image_id"].tolist()
