"""Saliency maps with Captum, batched: Guided Backprop, Integrated Gradients, Grad-CAM.

Guided Backprop is built here rather than with captum.attr.GuidedBackprop: Captum overrides
the gradient of `nn.ReLU` modules only, so on EfficientNet-Lite (ReLU6) its "guided" map is
silently the plain gradient, and ResNet re-uses one in-place ReLU module several times per
block. We copy the model, swap every ReLU/ReLU6 for an activation whose backward applies the
guided rule at every call, and take Captum's Saliency of that copy.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Saliency
from torch import nn
from tqdm.auto import tqdm

from pipeline.config import AttributionConfig
from pipeline.heatmaps import encode_map, spearman, top_overlap
from pipeline.models.backbones import build_backbone
from pipeline.models.classifier import PeriodClassifier


class _GuidedClamp(torch.autograd.Function):
    """ReLU / ReLU6 forward; backward passes only positive gradients where the unit was active."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, upper: float | None) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.upper = upper
        return x.clamp(min=0) if upper is None else x.clamp(0, upper)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        active = x > 0 if ctx.upper is None else (x > 0) & (x < ctx.upper)
        return grad.clamp(min=0) * active, None


class GuidedActivation(nn.Module):
    def __init__(self, upper: float | None) -> None:
        super().__init__()
        self.upper = upper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _GuidedClamp.apply(x, self.upper)


def guided_copy(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy of `model` with every ReLU/ReLU6 replaced by its guided version; returns (copy, count)."""
    guided = copy.deepcopy(model)
    count = 0
    for parent in guided.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(parent, name, GuidedActivation(6.0))
                count += 1
            elif isinstance(child, nn.ReLU):
                setattr(parent, name, GuidedActivation(None))
                count += 1
    return guided.eval(), count


class PeriodLogits(nn.Module):
    """The period head's logits as a plain tensor, the shape Captum attributes."""

    def __init__(self, model: PeriodClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["period"]


class Attributor:
    """Every configured method for one model; `maps` returns non-negative (B, H, W) maps."""

    def __init__(self, model: PeriodClassifier, cfg: AttributionConfig, mean, std) -> None:
        self.cfg = cfg
        self.forward = PeriodLogits(model).eval()
        self.guided, _ = guided_copy(self.forward)
        self.cam_layer = model.backbone.cam_layer
        self.black = (-torch.tensor(mean) / torch.tensor(std)).view(1, 3, 1, 1)  # a black image, normalised

    def baseline(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.ig_baseline == "blur":
            k = max(3, (x.shape[-1] // 8) | 1)
            return torchvision_blur(x, k, sigma=k / 3)
        return self.black.to(x.device).expand_as(x)

    def maps(self, x: torch.Tensor, target: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        out: dict[str, torch.Tensor] = {}
        seconds: dict[str, float] = {}
        for method in self.cfg.methods:
            t0 = time.perf_counter()
            if method == "guided_backprop":
                attr = Saliency(self.guided).attribute(x, target=target, abs=False)
                heat = attr.abs().sum(1)
            elif method == "integrated_gradients":
                attr = IntegratedGradients(self.forward).attribute(
                    x, baselines=self.baseline(x), target=target, n_steps=self.cfg.ig_steps,
                    internal_batch_size=self.cfg.internal_batch_size,
                )
                heat = attr.abs().sum(1)
            else:
                cam = LayerGradCam(self.forward, self.cam_layer).attribute(x, target=target, relu_attributions=True)
                heat = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), "bilinear").squeeze(1).clamp(min=0)
            out[method] = heat.detach().float().cpu()
            seconds[method] = time.perf_counter() - t0
        return out, seconds


def torchvision_blur(x: torch.Tensor, kernel: int, sigma: float) -> torch.Tensor:
    from torchvision.transforms.functional import gaussian_blur

    return gaussian_blur(x, [kernel, kernel], [sigma, sigma])


@dataclass
class AttributionResult:
    maps: pa.Table
    agreement: pd.DataFrame
    sanity: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)
    n_maps: int = 0


def select_targets(
    images: pd.DataFrame, pred: np.ndarray, true: np.ndarray, cfg: AttributionConfig
) -> pd.DataFrame:
    """(row, target class, kind) to explain: the predicted class, and the true one where wrong."""
    in_split = images["split"].isin(cfg.splits).to_numpy()
    wrong = (pred != true) & (true >= 0)
    rows = np.flatnonzero(in_split & (wrong if cfg.errors_only else True))
    if cfg.max_images is not None and len(rows) > cfg.max_images:
        rows = np.concatenate([rows[wrong[rows]], rows[~wrong[rows]]])[: cfg.max_images]
        rows.sort()
    jobs = [pd.DataFrame({"row": rows, "target": pred[rows], "kind": "predicted"})]
    if cfg.true_class_for_errors:
        err = rows[wrong[rows]]
        jobs.append(pd.DataFrame({"row": err, "target": true[err], "kind": "true"}))
    return pd.concat(jobs, ignore_index=True)


def attribute_run(
    run_id: str,
    model: PeriodClassifier,
    transform: nn.Module,
    pixels: np.ndarray,
    images: pd.DataFrame,
    pred: np.ndarray,
    true: np.ndarray,
    labels: list[str],
    cfg: AttributionConfig,
    device: torch.device,
    backbone: str,
    progress: bool = True,
) -> AttributionResult:
    """Maps for the selected images of one run, their pairwise agreement, and the sanity check."""
    model = model.eval().to(device)
    attributor = Attributor(model, cfg, model.backbone.mean, model.backbone.std)
    jobs = select_targets(images, pred, true, cfg)
    cache_rows = images["cache_index"].to_numpy()
    ids = images["image_id"].to_numpy()
    records, agreement = [], []
    seconds: dict[str, float] = dict.fromkeys(cfg.methods, 0.0)
    for start in tqdm(range(0, len(jobs), cfg.batch_size), desc=f"attributions {run_id}", disable=not progress):
        batch = jobs.iloc[start : start + cfg.batch_size]
        x = _inputs(transform, pixels, cache_rows[batch["row"].to_numpy()], device)
        maps, took = attributor.maps(x, torch.as_tensor(batch["target"].to_numpy(copy=True), device=device))
        for method, t in took.items():
            seconds[method] += t
        for i, job in enumerate(batch.itertuples()):
            per_method = {m: maps[m][i].numpy() for m in cfg.methods}
            for method, heat in per_method.items():
                png, scale = encode_map(heat, cfg.heatmap_size)
                records.append((ids[job.row], method, labels[job.target], job.kind, png, scale, cfg.heatmap_size))
            names = list(per_method)
            for a in range(len(names)):
                for b in range(a + 1, len(names)):
                    ma, mb = per_method[names[a]], per_method[names[b]]
                    agreement.append((run_id, ids[job.row], labels[job.target], job.kind, names[a], names[b],
                                      spearman(ma, mb), top_overlap(ma, mb)))
    table = pa.table({
        "run_id": [run_id] * len(records),
        **{col: [r[i] for r in records] for i, col in enumerate(
            ["image_id", "method", "target_label", "target_kind", "heatmap", "scale", "size"])},
    })
    sanity = randomisation_check(run_id, model, attributor, transform, pixels, images, jobs, cfg, device, backbone)
    return AttributionResult(
        maps=table,
        agreement=pd.DataFrame(agreement, columns=["run_id", "image_id", "target_label", "target_kind", "method_a",
                                                   "method_b", "spearman", "top_overlap"]),
        sanity=sanity,
        seconds=seconds,
        n_maps=len(jobs),
    )


def _inputs(transform: nn.Module, pixels: np.ndarray, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    batch = torch.from_numpy(np.ascontiguousarray(pixels[rows])).to(device)
    return transform(batch, train=False)


def flushes_denormals() -> bool:
    """Whether this thread flushes denormal floats to zero (torch can set the mode but has no getter)."""
    return float(torch.tensor([1e-39]) * 2.0) == 0.0


@contextlib.contextmanager
def flush_denormal() -> Iterator[None]:
    """Denormals flushed to zero inside, the caller's mode restored after.

    A randomised network's activations decay into denormal floats, which are ~100x slower on CPUs; training
    and the next run must not inherit the mode.
    """
    before = flushes_denormals()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)


def randomised_twin(model: PeriodClassifier, backbone: str, seed: int = 0) -> PeriodClassifier:
    """The same architecture with every weight re-initialised (Adebayo et al.'s model randomisation)."""
    torch.manual_seed(seed)
    heads = {task: _classes(head) for task, head in model.heads.items()}
    twin = PeriodClassifier(build_backbone(backbone, pretrained=False), heads)
    return twin.eval().to(next(model.parameters()).device)


def _classes(head: nn.Module) -> int:
    """How many classes a task's head predicts: its last layer is the linear one (models/classifier.py)."""
    last = list(head.children())[-1]
    assert isinstance(last, nn.Linear), f"a head ends in its linear layer, not {type(last).__name__}"
    return last.out_features


def randomisation_check(
    run_id, model, attributor, transform, pixels, images, jobs, cfg, device, backbone
) -> pd.DataFrame:
    """Similarity of each method's maps for the trained vs a randomised network, on a sample.

    A method whose maps barely change when the weights are random does not explain the model
    (Guided Backprop is known to fail this); low rank correlation is what a faithful method shows.
    """
    sample = jobs[jobs["kind"] == "predicted"].head(cfg.sanity_images)
    columns = ["run_id", "method", "n_images", "spearman_mean", "spearman_std", "top_overlap_mean"]
    if sample.empty:
        return pd.DataFrame(columns=columns)
    twin = Attributor(randomised_twin(model, backbone), cfg, model.backbone.mean, model.backbone.std)
    x = _inputs(transform, pixels, images["cache_index"].to_numpy()[sample["row"].to_numpy()], device)
    target = torch.tensor(sample["target"].to_numpy(dtype=np.int64), device=device)  # a copy: pandas' view is read-only
    with flush_denormal():
        trained, _ = attributor.maps(x, target)
        random, _ = twin.maps(x, target)
    rows = []
    for method in cfg.methods:
        rho = [spearman(a.numpy(), b.numpy()) for a, b in zip(trained[method], random[method], strict=True)]
        iou = [top_overlap(a.numpy(), b.numpy()) for a, b in zip(trained[method], random[method], strict=True)]
        rows.append((run_id, method, len(rho), float(np.mean(rho)), float(np.std(rho)), float(np.mean(iou))))
    return pd.DataFrame(rows, columns=columns)

