"""Explain one new image with a stored run: period probabilities and every saliency map.

Used by `python -m pipeline explain IMAGE --run RUN_ID` and by the dashboard's upload page.
The image goes through exactly the evaluation path: square-pad + resize (as the cache does),
then the run's center crop and normalisation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from pipeline import checkpoint, store
from pipeline.attribute import Attributor
from pipeline.config import AttributionConfig, ConfigError
from pipeline.data.images import decode_square, open_rgb
from pipeline.data.transforms import BatchTransform
from pipeline.evaluate import softmax
from pipeline.heatmaps import overlay
from pipeline.models.backbones import build_backbone
from pipeline.models.classifier import PeriodClassifier


@dataclass
class LoadedRun:
    run_id: str
    model: PeriodClassifier
    transform: BatchTransform
    labels: dict[str, list[str]]
    resize: int
    crop: int


def load_run(store_path: str | Path, run_id: str) -> LoadedRun:
    """Rebuild a stored run's model from its checkpoint (no network: the weights are all in the file)."""
    run = store.get_run(store_path, run_id)
    if run is None:
        known = []
        if Path(store_path).exists():
            with store.connect(store_path, read_only=True) as con:
                known = [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY run_id").fetchall()]
        raise ConfigError(f"no run {run_id!r} in {store_path}; runs: {known}")
    if not run.get("checkpoint"):
        raise ConfigError(f"run {run_id} keeps no checkpoint (an ensemble has none), so it cannot explain images")
    token = (run.get("summary") or {}).get("checkpoint_token")
    path = checkpoint.locate(Path(run["checkpoint"]), token)  # also when a re-run stopped before moving it in
    if not path.exists():
        raise ConfigError(f"checkpoint of {run_id} not found at {path}; re-run it with `python -m pipeline run`")
    why = checkpoint.problem(path)
    if why is not None:
        raise ConfigError(f"checkpoint of {run_id} is {why}; `python -m pipeline run` on its experiment trains "
                          "such runs again")
    ckpt = checkpoint.load(path)
    backbone = build_backbone(ckpt["backbone"], pretrained=False)
    labels = ckpt["labels"]
    model = PeriodClassifier(backbone, {t: len(n) for t, n in labels.items()}, dropout=ckpt["dropout"],
                             pooling=ckpt.get("pooling", "avg"))
    model.load_state_dict(ckpt["state_dict"])
    transform = BatchTransform(ckpt["crop"], mean=backbone.mean, std=backbone.std)
    return LoadedRun(run_id, model.eval(), transform, labels, ckpt["resize"], ckpt["crop"])


@dataclass
class Explanation:
    probabilities: dict[str, float]  # period → probability
    maps: dict[str, np.ndarray]  # method → (crop, crop) map, [0, 1]
    target: str  # the period the maps explain


def explain_image(run: LoadedRun, image_path: str | Path, cfg: AttributionConfig | None = None,
                  target: str | None = None) -> Explanation:
    """Probabilities for one image and each method's map for `target` (default: the predicted period)."""
    cfg = cfg or AttributionConfig()
    pixels, _, _, _ = decode_square(image_path, run.resize)
    x = run.transform(torch.from_numpy(pixels)[None], train=False)
    with torch.inference_mode():
        probs = softmax(run.model(x)["period"].numpy().astype(np.float64))[0]
    periods = run.labels["period"]
    if target is not None and target not in periods:
        raise ConfigError(f"unknown period {target!r}; this run knows {periods}")
    index = periods.index(target) if target else int(probs.argmax())
    maps, _ = Attributor(run.model, cfg, run.model.backbone.mean, run.model.backbone.std).maps(
        x, torch.tensor([index])
    )
    scaled = {m: _unit(v[0].numpy()) for m, v in maps.items()}
    return Explanation(dict(zip(periods, probs.tolist(), strict=True)), scaled, periods[index])


def _unit(heat: np.ndarray) -> np.ndarray:
    top = float(np.percentile(heat, 99.5)) or float(heat.max()) or 1.0
    return np.clip(heat / top, 0, 1)


def overlay_panel(run: LoadedRun, image_path: str | Path, explanation: Explanation, alpha: float = 0.5) -> Image.Image:
    """The image and one overlay per method side by side, captioned, for a PNG on disk."""
    image = open_rgb(image_path)
    image.thumbnail((320, 320))
    tiles = [("image", image)] + [
        (method, overlay(image, heat, run.resize, run.crop, alpha)) for method, heat in explanation.maps.items()
    ]
    best = max(explanation.probabilities.items(), key=lambda kv: kv[1])
    w, h = image.size
    panel = Image.new("RGB", (w * len(tiles), h + 36), "white")
    draw = ImageDraw.Draw(panel)
    for i, (caption, tile) in enumerate(tiles):
        panel.paste(tile, (i * w, 36))
        draw.text((i * w + 4, 20), caption.replace("_", " "), fill="black")
    draw.text((4, 4), f"{run.run_id}: {best[0]} ({best[1]:.0%}); maps explain {explanation.target}", fill="black")
    return panel


def explain_to_file(store_path: str | Path, run_id: str, image_path: str | Path, out: str | Path,
                    target: str | None = None) -> Explanation:
    run = load_run(store_path, run_id)
    explanation = explain_image(run, image_path, target=target)
    overlay_panel(run, image_path, explanation).save(out)
    print(json.dumps({"image": str(image_path), "run": run_id, "target": explanation.target,
                      "probabilities": {k: round(v, 4) for k, v in explanation.probabilities.items()},
                      "overlay": str(out)}, indent=2))
    return explanation
