"""Explain one new image with a stored run: period probabilities and every saliency map.

Used by `python -m pipeline explain IMAGE --run RUN_ID` and by the dashboard's upload page.
The image goes through exactly the evaluation path: square-pad + resize (as the cache does), then the
run's own prediction (pipeline/checkpoint.py: its crop, normalisation and test-time views); the maps
explain the centre view.
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
from pipeline.heatmaps import overlay
from pipeline.models.classifier import PeriodClassifier


@dataclass
class LoadedRun:
    """A stored run's saved model (pipeline/checkpoint.py), named by its run."""

    run_id: str
    saved: checkpoint.SavedModel

    @property
    def model(self) -> PeriodClassifier:
        return self.saved.model

    @property
    def transform(self) -> BatchTransform:
        return self.saved.transform

    @property
    def labels(self) -> dict[str, list[str]]:
        return self.saved.labels

    @property
    def resize(self) -> int:
        return self.saved.resize

    @property
    def crop(self) -> int:
        return self.saved.crop


def load_run(store_path: str | Path, run_id: str) -> LoadedRun:
    """Rebuild a stored run's model from its checkpoint (no network: the weights are all in the file)."""
    run = store.get_run(store_path, run_id)
    if run is None:
        known = []
        if Path(store_path).exists():
            with store.connect(store_path, read_only=True) as con:
                known = [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY run_id").fetchall()]
        raise ConfigError(f"no run {run_id!r} in {store_path}; runs: {known}")
    return LoadedRun(run_id, checkpoint.for_run(store_path, run))


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
    probs = run.saved.probabilities(pixels)["period"]  # as evaluation stored them: the run's test-time views
    x = run.transform(torch.from_numpy(pixels)[None], train=False)
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
