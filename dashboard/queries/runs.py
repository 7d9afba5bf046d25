"""Runs, datasets and their labels: what every page's pickers offer."""

from __future__ import annotations

import pandas as pd

from dashboard.queries import query


def runs() -> pd.DataFrame:
    """Complete runs; an evaluation on another collection (`evaluation_of` its run) right after its run."""
    return query("""
        SELECT r.run_id, r.evaluation_of, r.experiment, r.name, r.dataset_id, d.name AS dataset, d.synthetic,
               r.backbone,
               CASE WHEN r.freeze_until IS NULL THEN r.strategy ELSE r.strategy || ' ' || r.freeze_until END
                   AS strategy,
               array_to_string(r.tasks, ' + ') AS tasks, r.epochs, r.train_seconds, r.eval_seconds, r.device,
               r.finished_at,
               r.test_accuracy, r.test_balanced_accuracy, r.test_macro_f1, r.test_top2_accuracy,
               r.test_adjacent_error_share,
               (SELECT count(*) FROM attributions a WHERE a.run_id = r.run_id) AS n_maps
        FROM runs r LEFT JOIN datasets d USING (dataset_id)
        WHERE r.status = 'complete'
        ORDER BY coalesce(r.evaluation_of, r.run_id), r.evaluation_of IS NOT NULL, r.run_id""")


def datasets() -> pd.DataFrame:
    """Every stored dataset version (a changed folder is a new one; runs keep theirs), newest first per name."""
    return query("""SELECT dataset_id, name, source, path, synthetic, periods, artists, n_images, n_skipped,
                           n_duplicate_groups, n_conflicting_duplicates, created_at FROM datasets
                    ORDER BY name, created_at DESC, dataset_id""")


def labels(run_id: str, task: str = "period") -> list[str]:
    """A run's classes in chronological order (the order the pipeline trained with)."""
    df = query("SELECT label FROM run_labels WHERE run_id = ? AND task = ? ORDER BY class_index", (run_id, task))
    return df["label"].tolist()


def artists(run_id: str) -> list[str]:
    df = query("""SELECT DISTINCT i.artist FROM images i JOIN runs r ON r.dataset_id = i.dataset_id
                  WHERE r.run_id = ? AND i.artist IS NOT NULL ORDER BY 1""", (run_id,))
    return df["artist"].tolist()


def skipped_summary() -> pd.DataFrame:
    """Skips by reason per dataset version (versions of one folder share most skips: never summed together)."""
    return query("""SELECT d.name AS dataset, s.dataset_id AS version, s.stage,
                           regexp_extract(s.reason, '^[^:(]*') AS reason, count(*) AS images
                    FROM skipped_images s JOIN datasets d USING (dataset_id)
                    GROUP BY ALL ORDER BY images DESC, dataset, version, reason""")
