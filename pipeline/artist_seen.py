"""What the painter's identity gives away: accuracy on images whose artist the model saw in training, and on
those whose artist it never saw.

When the same painters are in train and test, a model can score by recognising the painter rather than the
period. Splitting a run's val/test accuracy by whether the image's artist has at least one training image shows
how much of the accuracy is "period from painter" (seen) and how much "period from style" (unseen). The rows go
into the `metrics` table beside the rest (task `period`, label NULL): `accuracy_artist_seen` and
`accuracy_artist_unseen` with their Wilson 95 % interval in low/high, and `n_artist_seen`/`n_artist_unseen`.

Nothing is written for a run whose images have no artists, or no training split in the frame (an evaluation of a
stored run on another collection: its training artists are the parent run's, not known here). An empty side
(no unseen artist when artists are shared) gets its count, 0, and no accuracy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.intervals import wilson

SCORED_SPLITS = ("val", "test")
TASK = "period"
COLUMNS = ["run_id", "split", "task", "metric", "label", "value", "low", "high"]


def artist_seen_rows(run_id: str, frame: pd.DataFrame) -> list[tuple]:
    """The seen/unseen metric rows (COLUMNS) of one run from its period-task predictions: a frame with `split`,
    `artist` and `correct` (None where an image has no period label) for every image the run scored, training images
    included (they say which artists are seen)."""
    out: list[tuple] = []
    has_artist = frame["artist"].notna() & (frame["artist"].astype(str) != "")
    train_artists = set(frame.loc[has_artist & (frame["split"] == "train"), "artist"])
    if not train_artists:
        return out
    labelled = has_artist & frame["correct"].notna()
    seen = frame["artist"].isin(train_artists)
    for split in SCORED_SPLITS:
        in_split = labelled & (frame["split"] == split)
        if not in_split.any():
            continue
        for side, mask in (("seen", in_split & seen), ("unseen", in_split & ~seen)):
            n = int(mask.sum())
            out.append((run_id, split, TASK, f"n_artist_{side}", None, float(n), None, None))
            if n:
                right = int(frame.loc[mask, "correct"].astype(bool).sum())
                low, high = wilson(right, n)
                out.append((run_id, split, TASK, f"accuracy_artist_{side}", None, right / n, low, high))
    return out


def artist_seen_metrics(run_id: str, images: pd.DataFrame, targets: np.ndarray, labels: dict[str, list[str]],
                        logits: dict[str, np.ndarray]) -> list[tuple]:
    """score_outputs' rows, from its own inputs: `images` (with `split` and, if the set has them, `artist`), the
    class-index targets (one column per task, in `labels`' order, -1 = no label) and each task's logits (the
    predicted class is their argmax, which temperature scaling and softmax leave as it is)."""
    if TASK not in labels or "artist" not in images.columns:
        return []
    y = targets[:, list(labels).index(TASK)]
    pred = logits[TASK].argmax(1)
    correct = np.where(y >= 0, pred == y, np.array(None))  # np.array(None): None as numpy's types accept it
    frame = pd.DataFrame({"split": images["split"].to_numpy(), "artist": images["artist"].to_numpy(),
                          "correct": correct})
    return artist_seen_rows(run_id, frame)


def artist_seen_for_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """The same rows for stores written before they existed: `frame` has run_id, split, artist and correct of the
    period task's predictions of every run to fill (the stored predictions joined to images on the run's dataset)."""
    rows = [row for run_id, part in frame.groupby("run_id", sort=True) for row in artist_seen_rows(str(run_id), part)]
    return pd.DataFrame(rows, columns=COLUMNS)
