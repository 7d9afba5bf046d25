"""A run's predictions as the store keeps them: per-image rows, metrics, confusion, the 2-D map.

It runs no model: the backbone runs once per image in a forward pass (pipeline/inference.py), and
everything the store keeps about a run's predictions derives from that pass's logits and embeddings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline import calibration, embedding_storage
from pipeline.arrays import float_lists
from pipeline.artist_seen import artist_seen_metrics
from pipeline.inference import softmax
from pipeline.metrics import classification_metrics, metric_intervals

SPLITS = ("train", "val", "test")


TSNE_THREADS = 4  # openTSNE's threads: its neighbour search and gradients scale to a few cores, no further


def project_2d(embeddings: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """2-D map of the embeddings for the dashboard: t-SNE after PCA to 50 dims, or PCA alone (`pca`, or under
    10 images). The t-SNE is openTSNE's (FFT-accelerated gradients, approximate neighbours): at 33,600 images
    it is 2.9× faster than scikit-learn's Barnes-Hut with the same neighbourhoods kept (BENCHMARKS.md,
    "Store size and the 2-D map"). Seeded, so one seed gives one map."""
    from sklearn.decomposition import PCA

    n = len(embeddings)
    if n < 3:
        return np.zeros((n, 2), np.float32)
    reduced = PCA(n_components=min(50, n - 1, embeddings.shape[1]), random_state=seed).fit_transform(embeddings)
    if method == "pca" or n < 10:
        return reduced[:, :2].astype(np.float32)
    from openTSNE import TSNE

    threads = max(1, min(TSNE_THREADS, os.cpu_count() or 1))
    tsne = TSNE(n_components=2, perplexity=float(min(30, (n - 1) / 3)), initialization="pca", random_state=seed,
                n_jobs=threads, verbose=False)
    return np.asarray(tsne.fit(reduced.astype(np.float64)), dtype=np.float32)


def _labelled_or_none(y: np.ndarray, values: np.ndarray) -> list:
    """`values` for the images with a label, None for those without one (y = -1)."""
    return np.where(y >= 0, values, np.array(None)).tolist()  # np.array(None): None as numpy's types accept it


@dataclass
class Evaluation:
    predictions: pa.Table
    metrics: pd.DataFrame
    confusion: pd.DataFrame
    embeddings: pa.Table
    headline: dict[str, float]  # test-split metrics of the period task
    calibration: pd.DataFrame | None = None  # per scaled task: its temperature (pipeline/calibration.py)


def prediction_table(run_id: str, images: pd.DataFrame, task: str, names: list[str], y: np.ndarray,
                     probs: np.ndarray, raw: np.ndarray | None = None) -> pa.Table:
    """One task's `predictions` rows: labels, confidence, the true class's probability and loss (NULL where an
    image has no label for the task), and every class's probability. For a temperature-scaled task `probs` are the
    calibrated probabilities and `raw` those before scaling (raw_confidence/raw_probs; NULL when not scaled)."""
    pred = probs.argmax(1)
    safe_y = np.where(y >= 0, y, 0)
    p_true = np.where(y >= 0, probs[np.arange(len(y)), safe_y], np.nan)
    names_arr = np.array(names, dtype=object)
    return pa.table({
        "run_id": [run_id] * len(y),
        "image_id": images["image_id"].tolist(),
        "split": images["split"].tolist(),
        "task": [task] * len(y),
        "true_label": _labelled_or_none(y, names_arr[safe_y]),
        "pred_label": names_arr[pred].tolist(),
        "correct": _labelled_or_none(y, pred == y),
        "confidence": probs.max(1).astype(np.float32),
        "true_prob": p_true.astype(np.float32),
        "loss": (-np.log(np.clip(p_true, 1e-12, None))).astype(np.float32),
        "probs": float_lists(probs),
        "raw_confidence": pa.nulls(len(y), pa.float32()) if raw is None else pa.array(raw.max(1).astype(np.float32)),
        "raw_probs": pa.nulls(len(y), pa.list_(pa.float32())) if raw is None else float_lists(raw),
    })


def score_outputs(
    run_id: str,
    images: pd.DataFrame,
    targets: np.ndarray,
    labels: dict[str, list[str]],
    embeddings: np.ndarray,
    logits: dict[str, np.ndarray],
    projection: str = "tsne",
    seed: int = 0,
    temperatures: dict[str, calibration.Fit] | None = None,
) -> Evaluation:
    """Turn one pass's outputs into the store's rows (predictions, metrics, confusion, embeddings). It runs no
    model: the logits and embeddings come from a forward pass already made. A task with a temperature stores
    softmax(logits / T) as its probabilities and keeps softmax(logits) as the raw ones."""
    pred_parts, metric_rows, confusion_rows = [], [], []
    headline: dict[str, float] = {}
    splits = images["split"].to_numpy()
    for t, (task, names) in enumerate(labels.items()):
        fit = (temperatures or {}).get(task)
        raw = softmax(logits[task].astype(np.float64)) if fit else None
        probs = calibration.scaled(logits[task], fit.temperature) if fit else softmax(logits[task].astype(np.float64))
        y = targets[:, t]
        pred_parts.append(prediction_table(run_id, images, task, names, y, probs, raw))
        metric_rows += calibration.ece_rows(run_id, task, y, splits, probs, raw)
        for split in SPLITS:
            mask = splits == split
            if not mask.any():
                continue
            overall, per_class, cm = classification_metrics(y[mask], probs[mask], names, chronological=task == "period")
            bounds = metric_intervals(y[mask], probs[mask], names, task == "period", seed=seed)
            none = (None, None)
            metric_rows += [(run_id, split, task, m, None, v, *bounds.get((m, None), none)) for m, v in overall.items()]
            metric_rows += [(run_id, split, task, r.metric, r.label, r.value, *bounds.get((r.metric, r.label), none))
                            for r in per_class.itertuples()]
            confusion_rows += [
                (run_id, split, task, names[i], names[j], int(cm[i, j]))
                for i in range(len(names))
                for j in range(len(names))
                if cm[i, j]
            ]
            if split == "test" and task == "period":
                headline = overall
    metric_rows += artist_seen_metrics(run_id, images, targets, labels, logits)  # period from painter vs style
    xy = project_2d(embeddings, projection, seed)
    return Evaluation(
        predictions=pa.concat_tables(pred_parts),
        metrics=pd.DataFrame(metric_rows, columns=["run_id", "split", "task", "metric", "label", "value", "low",
                                                  "high"]),
        confusion=pd.DataFrame(
            confusion_rows, columns=["run_id", "split", "task", "true_label", "pred_label", "count"]
        ),
        embeddings=pa.table(
            {
                "run_id": [run_id] * len(images),
                "image_id": images["image_id"].tolist(),
                "vector": float_lists(embedding_storage.stored(embeddings)),  # rounded: ALP packs it
                "x": xy[:, 0],
                "y": xy[:, 1],
            }
        ),
        headline=headline,
        calibration=calibration.calibration_table(run_id, temperatures) if temperatures else None,
    )
