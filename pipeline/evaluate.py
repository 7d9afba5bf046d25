"""One pass over every image of a run's dataset: probabilities, embeddings, metrics.

The backbone runs once per image; everything the store keeps about a run's predictions
(per-image rows, metrics per split and task, confusion, the 2-D map) derives from that pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from pipeline.data.transforms import tta_views
from pipeline.metrics import classification_metrics
from pipeline.models.classifier import PeriodClassifier
from pipeline.store import float_lists

SPLITS = ("train", "val", "test")


def pick_device(accelerator: str = "auto") -> torch.device:
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


@torch.inference_mode()
def forward_pass(
    model: PeriodClassifier,
    transform: torch.nn.Module,
    pixels: np.ndarray,
    rows: np.ndarray,
    batch_size: int,
    device: torch.device,
    heads: bool = True,
    desc: str = "forward",
    progress: bool = True,
    view: str = "centre",
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Embeddings (n, dim) and, with `heads`, logits per task for the cached images `rows` (in one test-time
    view: BatchTransform's centre crop by default)."""
    model.eval().to(device)
    use_bf16 = device.type == "cuda"
    if use_bf16:
        model.to(memory_format=torch.channels_last)
    embeddings, logits = [], {task: [] for task in model.heads}
    for start in tqdm(range(0, len(rows), batch_size), desc=desc, disable=not progress, leave=False):
        batch = torch.from_numpy(np.ascontiguousarray(pixels[rows[start : start + batch_size]])).to(device)
        x = transform(batch, train=False, view=view)
        if use_bf16:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            emb = model.embed(x)
            out = model.heads_forward(emb) if heads else {}
        embeddings.append(emb.float().cpu())
        for task, value in out.items():
            logits[task].append(value.float().cpu())
    emb = torch.cat(embeddings).numpy() if embeddings else np.zeros((0, 0), np.float32)
    return emb, {task: torch.cat(v).numpy() for task, v in logits.items() if v}


def predict_views(model: PeriodClassifier, transform: torch.nn.Module, pixels: np.ndarray, rows: np.ndarray,
                  batch_size: int, device: torch.device, tta: list[str], progress: bool = True
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Embeddings of the centre view and logits averaged over the test-time views `tta` declares."""
    embeddings, per_view = None, []
    for view in tta_views(tta):
        emb, logits = forward_pass(model, transform, pixels, rows, batch_size, device, desc=f"evaluate ({view})",
                                   progress=progress, view=view)
        embeddings = emb if embeddings is None else embeddings
        per_view.append(logits)
    return embeddings, mean_of_views(per_view)


def mean_of_views(per_view: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Test-time augmentation: log of the mean probability over the views, so that softmax() of the result
    (what score_outputs() computes) is exactly the views' mean probability; one view passes through unchanged."""
    if len(per_view) == 1:
        return per_view[0]
    return {task: np.log(np.mean([softmax(v[task].astype(np.float64)) for v in per_view], axis=0) + 1e-12)
            for task in per_view[0]}


def heads_pass(model: PeriodClassifier, features: np.ndarray, batch_size: int = 4096) -> dict[str, np.ndarray]:
    """Logits from precomputed embeddings (frozen-backbone runs need no second backbone pass)."""
    model.eval().cpu()
    out: dict[str, list[torch.Tensor]] = {task: [] for task in model.heads}
    with torch.inference_mode():
        for start in range(0, len(features), batch_size):
            for task, value in model.heads_forward(torch.from_numpy(features[start : start + batch_size])).items():
                out[task].append(value)
    return {task: torch.cat(v).numpy() for task, v in out.items()}


def project_2d(embeddings: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """2-D map of the embeddings for the dashboard (t-SNE after PCA, or PCA alone)."""
    from sklearn.decomposition import PCA

    n = len(embeddings)
    if n < 3:
        return np.zeros((n, 2), np.float32)
    reduced = PCA(n_components=min(50, n - 1, embeddings.shape[1]), random_state=seed).fit_transform(embeddings)
    if method == "pca" or n < 10:
        return reduced[:, :2].astype(np.float32)
    from sklearn.manifold import TSNE

    perplexity = float(min(30, (n - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(reduced).astype(
        np.float32
    )


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


@dataclass
class Evaluation:
    predictions: pa.Table
    metrics: pd.DataFrame
    confusion: pd.DataFrame
    embeddings: pa.Table
    headline: dict[str, float]  # test-split metrics of the period task


def score_outputs(
    run_id: str,
    images: pd.DataFrame,
    targets: np.ndarray,
    labels: dict[str, list[str]],
    embeddings: np.ndarray,
    logits: dict[str, np.ndarray],
    projection: str = "tsne",
    seed: int = 0,
) -> Evaluation:
    """Turn one pass's outputs into the store's rows (predictions, metrics, confusion, embeddings). It runs no
    model: the logits and embeddings come from a forward pass already made."""
    pred_parts, metric_rows, confusion_rows = [], [], []
    headline: dict[str, float] = {}
    splits = images["split"].to_numpy()
    for t, (task, names) in enumerate(labels.items()):
        probs = softmax(logits[task].astype(np.float64))
        y = targets[:, t]
        pred = probs.argmax(1)
        safe_y = np.where(y >= 0, y, 0)
        p_true = np.where(y >= 0, probs[np.arange(len(y)), safe_y], np.nan)
        names_arr = np.array(names, dtype=object)
        pred_parts.append(
            pa.table(
                {
                    "run_id": [run_id] * len(y),
                    "image_id": images["image_id"].tolist(),
                    "split": splits.tolist(),
                    "task": [task] * len(y),
                    "true_label": np.where(y >= 0, names_arr[safe_y], None).tolist(),
                    "pred_label": names_arr[pred].tolist(),
                    "correct": np.where(y >= 0, pred == y, None).tolist(),
                    "confidence": probs.max(1).astype(np.float32),
                    "true_prob": p_true.astype(np.float32),
                    "loss": (-np.log(np.clip(p_true, 1e-12, None))).astype(np.float32),
                    "probs": float_lists(probs),
                }
            )
        )
        for split in SPLITS:
            mask = splits == split
            if not mask.any():
                continue
            overall, per_class, cm = classification_metrics(y[mask], probs[mask], names, chronological=task == "period")
            metric_rows += [(run_id, split, task, m, None, v) for m, v in overall.items()]
            metric_rows += [(run_id, split, task, r.metric, r.label, r.value) for r in per_class.itertuples()]
            confusion_rows += [
                (run_id, split, task, names[i], names[j], int(cm[i, j]))
                for i in range(len(names))
                for j in range(len(names))
                if cm[i, j]
            ]
            if split == "test" and task == "period":
                headline = overall
    xy = project_2d(embeddings, projection, seed)
    return Evaluation(
        predictions=pa.concat_tables(pred_parts),
        metrics=pd.DataFrame(metric_rows, columns=["run_id", "split", "task", "metric", "label", "value"]),
        confusion=pd.DataFrame(
            confusion_rows, columns=["run_id", "split", "task", "true_label", "pred_label", "count"]
        ),
        embeddings=pa.table(
            {
                "run_id": [run_id] * len(images),
                "image_id": images["image_id"].tolist(),
                "vector": float_lists(embeddings),
                "x": xy[:, 0],
                "y": xy[:, 1],
            }
        ),
        headline=headline,
    )
