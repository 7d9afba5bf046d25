"""How a model predicts: the device, forward passes over the decoded cache, test-time views.

Training (frozen-backbone features), evaluation, a saved checkpoint and the ensemble all predict through these
functions, so a stored prediction is made the same way whoever makes it.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from pipeline.data.transforms import tta_views
from pipeline.models.classifier import PeriodClassifier


def pick_device(accelerator: str = "auto") -> torch.device:
    """A GPU when the run allows one and there is one, else the CPU."""
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
    embeddings: list[torch.Tensor] = []
    logits: dict[str, list[torch.Tensor]] = {task: [] for task in model.heads}
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
    features = torch.cat(embeddings).numpy() if embeddings else np.zeros((0, 0), np.float32)
    return features, {task: torch.cat(v).numpy() for task, v in logits.items() if v}


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
    assert embeddings is not None  # tta_views always has the centre view
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


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise probabilities from logits (numpy: scoring and test-time views run after the model, on the CPU)."""
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)
