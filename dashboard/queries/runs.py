"""Runs, datasets and their labels: what every page's pickers offer."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from dashboard.queries import query
from pipeline.intervals import wilson

# Test-split metrics of the period task whose 95 % interval every page shows beside the value (`<metric>_low`,
# `<metric>_high` columns of runs()); the artist ones exist only for runs whose data has artists.
INTERVAL_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "top2_accuracy", "adjacent_error_share")
ARTIST_METRICS = ("accuracy_artist_seen", "accuracy_artist_unseen")


def _metric_columns() -> str:
    bounds = [f"any_value({b}) FILTER (WHERE metric = '{m}') AS test_{m}_{b}"
              for m in INTERVAL_METRICS for b in ("low", "high")]
    artist = [f"any_value({c}) FILTER (WHERE metric = '{m}') AS {m}{'' if c == 'value' else '_' + c}"
              for m in ARTIST_METRICS for c in ("value", "low", "high")]
    counts = [f"any_value(value) FILTER (WHERE metric = '{m}') AS {m}" for m in ("n", "n_artist_seen",
                                                                                "n_artist_unseen")]
    return ",\n               ".join(bounds + artist + counts).replace(" AS n,", " AS test_n,")


def with_wilson_fallback(table: pd.DataFrame) -> pd.DataFrame:
    """Runs stored before schema 6 (no low/high until `python -m pipeline upgrade`): Wilson's interval from the
    accuracy and the test n, so their accuracy still shows with one."""
    if table.empty:
        return table
    for metric in ("accuracy", "top2_accuracy"):
        missing = table[f"test_{metric}_low"].isna() & table[f"test_{metric}"].notna() & (table["test_n"] > 0)
        if missing.any():
            bounds = [wilson(round(v * n), n) for v, n in
                      zip(table.loc[missing, f"test_{metric}"], table.loc[missing, "test_n"], strict=True)]
            table.loc[missing, f"test_{metric}_low"] = [b[0] for b in bounds]
            table.loc[missing, f"test_{metric}_high"] = [b[1] for b in bounds]
    return table


def runs() -> pd.DataFrame:
    """Complete runs; an evaluation on another collection (`evaluation_of` its run) right after its run.
    `trained_on` is the dataset the model learnt from (its run's, for an evaluation), which groups runs.
    Each headline metric comes with its 95 % interval (`test_<metric>_low/_high`), and the accuracy on test
    paintings whose artist the training split saw / did not see where the run measured it."""
    return with_wilson_fallback(query(f"""
        SELECT r.run_id, r.evaluation_of, r.experiment, r.name, r.dataset_id, d.name AS dataset, d.synthetic,
               r.backbone,
               CASE WHEN r.freeze_until IS NULL THEN r.strategy ELSE r.strategy || ' ' || r.freeze_until END
                   AS strategy,
               array_to_string(r.tasks, ' + ') AS tasks, r.epochs, r.train_seconds, r.eval_seconds, r.device,
               r.finished_at,
               r.test_accuracy, r.test_balanced_accuracy, r.test_macro_f1, r.test_top2_accuracy,
               r.test_adjacent_error_share, r.best_epoch,
               (SELECT count(*) FROM attributions a WHERE a.run_id = r.run_id) AS n_maps,
               coalesce(parent.dataset_id, r.dataset_id) AS trained_on,
               m.* EXCLUDE (run_id)
        FROM runs r LEFT JOIN datasets d USING (dataset_id)
             LEFT JOIN runs parent ON parent.run_id = r.evaluation_of
             LEFT JOIN (SELECT run_id,
               {_metric_columns()}
               FROM metrics WHERE split = 'test' AND task = 'period' AND label IS NULL GROUP BY run_id) m
               ON m.run_id = r.run_id
        WHERE r.status = 'complete'
        ORDER BY coalesce(r.evaluation_of, r.run_id), r.evaluation_of IS NOT NULL, r.run_id"""))


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
                           n_duplicate_groups, n_conflicting_duplicates, created_at,
                           coalesce(json_extract_string(config, '$.split.artist_disjoint') = 'true', false)
                               AS artist_disjoint FROM datasets
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
