"""SQL behind the Training curves page: the per-epoch rows of the chosen runs (a few dozen each)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from dashboard.queries import query


def epochs(run_ids: Sequence[str]) -> pd.DataFrame:
    """Every epoch of the chosen runs, in training order (stages follow each other in `epoch`)."""
    return query(
        """SELECT run_id, stage, epoch, train_loss, val_loss, train_acc, val_acc, train_artist_acc, val_artist_acc, lr
           FROM epochs WHERE run_id IN (SELECT unnest(?::TEXT[])) ORDER BY run_id, epoch""",
        (list(run_ids),),
    )


def best_epochs(run_ids: Sequence[str]) -> pd.DataFrame:
    """The epoch whose weights each run kept (best validation accuracy), to mark on the curves."""
    return query(
        """SELECT r.run_id, r.best_epoch, e.val_acc FROM runs r
           LEFT JOIN epochs e ON e.run_id = r.run_id AND e.epoch = r.best_epoch
           WHERE r.run_id IN (SELECT unnest(?::TEXT[])) AND r.best_epoch IS NOT NULL""",
        (list(run_ids),),
    )


def stage_changes(run_ids: Sequence[str]) -> pd.DataFrame:
    """Where a run's stage changes (e.g. head → finetune): the first epoch of each later stage."""
    return query(
        """SELECT run_id, epoch, previous, stage FROM (
               SELECT run_id, epoch, stage, lag(stage) OVER (PARTITION BY run_id ORDER BY epoch) AS previous
               FROM epochs WHERE run_id IN (SELECT unnest(?::TEXT[])))
           WHERE previous IS NOT NULL AND previous <> stage ORDER BY epoch, run_id""",
        (list(run_ids),),
    )
