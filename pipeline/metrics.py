"""Classification metrics per split and task, in the long form the store keeps."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def adjacent_error_share(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of errors landing on a chronologically neighbouring class (labels are in time order)."""
    wrong = y_true != y_pred
    if not wrong.any():
        return float("nan")
    return float((np.abs(y_true[wrong] - y_pred[wrong]) == 1).mean())


def classification_metrics(
    y_true: np.ndarray, probs: np.ndarray, labels: list[str], chronological: bool
) -> tuple[dict[str, float], pd.DataFrame, np.ndarray]:
    """Overall metrics, per-class precision/recall/F1/support, and the confusion matrix.

    `y_true` holds class indices into `labels` (-100 = unlabelled, ignored); `probs` is (n, C).
    """
    known = y_true >= 0
    y_true, probs = y_true[known], probs[known]
    classes = np.arange(len(labels))
    y_pred = probs.argmax(1) if len(probs) else np.zeros(0, dtype=int)
    if len(y_true) == 0:
        return {}, pd.DataFrame(columns=["metric", "label", "value"]), np.zeros((len(labels), len(labels)), int)
    p_true = probs[np.arange(len(y_true)), y_true]
    top2 = np.argsort(-probs, axis=1)[:, :2]
    overall = {
        "n": float(len(y_true)),
        "loss": float(-np.log(np.clip(p_true, 1e-12, None)).mean()),
        "accuracy": float((y_pred == y_true).mean()),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)),
        "top2_accuracy": float((top2 == y_true[:, None]).any(1).mean()) if len(labels) > 1 else 1.0,
    }
    if chronological:
        overall["adjacent_error_share"] = adjacent_error_share(y_true, y_pred)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    per_class = pd.DataFrame(
        [
            (metric, label, float(values[i]))
            for metric, values in (("precision", precision), ("recall", recall), ("f1", f1), ("support", support))
            for i, label in enumerate(labels)
        ],
        columns=["metric", "label", "value"],
    )
    return overall, per_class, confusion_matrix(y_true, y_pred, labels=classes)


def metric_intervals(
    y_true: np.ndarray, probs: np.ndarray, labels: list[str], chronological: bool, n_boot: int = 1000, seed: int = 0
) -> dict[tuple[str, str | None], tuple[float, float]]:
    """95 % intervals keyed like the store's rows, (metric, label): Wilson for the proportions (accuracy, top-2
    accuracy, per-class precision and recall, the adjacent-error share of the errors), a seeded bootstrap over
    images for balanced accuracy, macro-F1 and per-class F1. A metric without an interval (n, loss, support) has no key.

    The bootstrap resamples confusion matrices (np.bincount), not sklearn calls, so 1000 resamples cost well
    under a second per split. A percentile interval can sit just beside a biased statistic (F1 of a resample
    with duplicates); it is widened to contain the value, so low <= value <= high always holds."""
    from pipeline.intervals import confusion_statistics, percentile_interval, resampled_confusions, wilson

    known = y_true >= 0
    y_true, probs = y_true[known], probs[known]
    n = len(y_true)
    if n == 0:
        return {}
    c = len(labels)
    y_pred = probs.argmax(1)
    cm = np.bincount(y_true * c + y_pred, minlength=c * c).reshape(c, c)
    out: dict[tuple[str, str | None], tuple[float, float]] = {
        ("accuracy", None): wilson(int(np.trace(cm)), n),
    }
    if c > 1:
        top2 = np.argsort(-probs, axis=1)[:, :2]
        out[("top2_accuracy", None)] = wilson(int((top2 == y_true[:, None]).any(1).sum()), n)
    for i, label in enumerate(labels):
        out[("recall", label)] = wilson(int(cm[i, i]), int(cm[i].sum()))
        out[("precision", label)] = wilson(int(cm[i, i]), int(cm[:, i].sum()))
    point = confusion_statistics(cm[None], chronological=False)  # the adjacent share: Wilson, below
    samples = confusion_statistics(resampled_confusions(y_true, y_pred, c, n_boot, seed), chronological=False)
    for metric, values in samples.items():
        low, high = percentile_interval(values)
        value = point[metric][0]
        keys = [(metric, label) for label in labels] if metric == "f1" else [(metric, None)]
        for key, lo, hi, v in zip(keys, np.atleast_1d(low), np.atleast_1d(high), np.atleast_1d(value),
                                  strict=True):
            out[key] = (float("nan"), float("nan")) if np.isnan(v) else (float(min(lo, v)), float(max(hi, v)))
    if chronological:  # a proportion of the errors: Wilson, which stays honest when every error is adjacent (the
        # bootstrap's interval collapses to 1.00–1.00 there)
        gap = np.abs(np.arange(c)[:, None] - np.arange(c)[None, :])
        out[("adjacent_error_share", None)] = wilson(int(cm[gap == 1].sum()), int(cm[gap > 0].sum()))
    return out
