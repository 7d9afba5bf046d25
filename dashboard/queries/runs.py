"""Runs, datasets and their labels: what every page's pickers offer."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from dashboard.queries import query


def runs() -> pd.DataFrame:
    """Complete runs; an evaluation on another collection (`evaluation_of` its run) right after its run.
    `trained_on` is the dataset the model learnt from (its run's, for an evaluation), which groups runs."""
    return query("""
        SELECT r.run_id, r.evaluation_of, r.experiment, r.name, r.dataset_id, d.name AS dataset, d.synthetic,
               r.backbone,
               CASE WHEN r.freeze_until IS NULL THEN r.strategy ELSE r.strategy || ' ' || r.freeze_until END
                   AS strategy,
               array_to_string(r.tasks, ' + ') AS tasks, r.epochs, r.train_seconds, r.eval_seconds, r.device,
               r.finished_at,
               r.test_accuracy, r.test_balanced_accuracy, r.test_macro_f1, r.test_top2_accuracy,
               r.test_adjacent_error_share, r.best_epoch,
               (SELECT count(*) FROM attributions a WHERE a.run_id = r.run_id) AS n_maps,
               coalesce(parent.dataset_id, r.dataset_id) AS trained_on
        FROM runs r LEFT JOIN datasets d USING (dataset_id)
             LEFT JOIN runs parent ON parent.run_id = r.evaluation_of
        WHERE r.status = 'complete'
        ORDER BY coalesce(r.evaluation_of, r.run_id), r.evaluation_of IS NOT NULL, r.run_id""")


def kept_epochs(run_ids: Sequence[str]) -> pd.DataFrame:
    """The stage and epoch whose weights each run kept (best validation accuracy), its stages in training order,
    and the best validation accuracy each stage reached: a two-stage run whose fine-tuning never beat its head stage
    kept the head stage's weights, and is then the same model as a head run."""
    return query(
        """WITH per_stage AS (
               SELECT run_id, stage, min(epoch) AS first_epoch, max(val_acc) AS best_val_acc
               FROM epochs WHERE run_id IN (SELECT unnest(?::TEXT[])) GROUP BY run_id, stage)
           SELECT r.run_id, r.best_epoch, e.stage AS kept_stage, e.val_acc AS kept_val_acc,
                  list(s.stage ORDER BY s.first_epoch) AS stages,
                  list(s.best_val_acc ORDER BY s.first_epoch) AS stage_best_val_acc
           FROM runs r JOIN per_stage s ON s.run_id = r.run_id
                LEFT JOIN epochs e ON e.run_id = r.run_id AND e.epoch = r.best_epoch
           WHERE r.best_epoch IS NOT NULL
           GROUP BY r.run_id, r.best_epoch, e.stage, e.val_acc ORDER BY r.run_id""",
        (list(run_ids),),
    )


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
