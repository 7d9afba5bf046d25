"""Explain one new image with a stored run: period probabilities and every saliency map.

Used by `python -m pipeline explain IMAGE --run RUN_ID` and by the dashboard's upload page.
The image goes through exactly the evaluation path: square-pad + resize (as the cache does), then the
run's own prediction (pipeline/checkpoint.py: its crop, normalisation and test-time views); the maps
explain the centre view. An ensemble's probabilities are its members' mean; it has no one network, so its maps
are each member's own, all for the ensemble's target period.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from pipeline import checkpoint, store
from pipeline.attribute import Attributor
from pipeline.config import AttributionConfig, ConfigError
from pipeline.data.images import decode_square, open_rgb
from pipeline.heatmaps import overlay

PER_MEMBER = "an ensemble has no one network: each member's own maps, for the ensemble's target period"


def load_run(store_path: str | Path, run_id: str) -> checkpoint.Model:
    """Rebuild a stored run's model from its checkpoint (no network: the weights are all in the file)."""
    run = store.get_run(store_path, run_id)
    if run is None:
        known = []
        if Path(store_path).exists():
            with store.connect(store_path, read_only=True) as con:
                known = [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY run_id").fetchall()]
        raise ConfigError(f"no run {run_id!r} in {store_path}; runs: {known}")
    return checkpoint.for_run(store_path, run)


@dataclass
class Explanation:
    probabilities: dict[str, float]  # period → probability
    maps: dict[str, np.ndarray]  # method → (crop, crop) map, [0, 1]; empty for an ensemble
    target: str  # the period the maps explain
    member_maps: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # an ensemble's: member → maps

    def groups(self, run_id: str) -> dict[str, dict[str, np.ndarray]]:
        """The maps by the network that made them: the run's own, or each member's."""
        return self.member_maps or {run_id: self.maps}


def explain_image(model: checkpoint.Model, image_path: str | Path, cfg: AttributionConfig | None = None,
                  target: str | None = None) -> Explanation:
    """Probabilities for one image and each method's map for `target` (default: the predicted period)."""
    cfg = cfg or AttributionConfig()
    pixels, _, _, _ = decode_square(image_path, model.resize)
    probs = model.probabilities(pixels)["period"]  # as evaluation stored them: test-time views, members' mean
    periods = model.labels["period"]
    if target is not None and target not in periods:
        raise ConfigError(f"unknown period {target!r}; this run knows {periods}")
    index = periods.index(target) if target else int(probs.argmax())
    probabilities = dict(zip(periods, probs.tolist(), strict=True))
    if isinstance(model, checkpoint.Ensemble):  # the one place the kind matters: saliency needs a network
        member_maps = {name: _maps(m, pixels, index, cfg) for name, m in model.members.items()}
        return Explanation(probabilities, {}, periods[index], member_maps)
    return Explanation(probabilities, _maps(model, pixels, index, cfg), periods[index])


def _maps(saved: checkpoint.SavedModel, pixels: np.ndarray, index: int, cfg: AttributionConfig
          ) -> dict[str, np.ndarray]:
    """Each method's map of one network's centre view for class `index`, scaled to [0, 1]."""
    x = saved.transform(torch.from_numpy(pixels)[None], train=False)
    maps, _ = Attributor(saved.model, cfg, saved.model.backbone.mean, saved.model.backbone.std).maps(
        x, torch.tensor([index])
    )
    return {m: _unit(v[0].numpy()) for m, v in maps.items()}


def _unit(heat: np.ndarray) -> np.ndarray:
    top = float(np.percentile(heat, 99.5)) or float(heat.max()) or 1.0
    return np.clip(heat / top, 0, 1)


def overlay_panel(run_id: str, model: checkpoint.Model, image_path: str | Path, explanation: Explanation,
                  alpha: float = 0.5) -> Image.Image:
    """The image and one overlay per method side by side, captioned, for a PNG on disk (a row per member for an
    ensemble, each caption naming its member)."""
    image = open_rgb(image_path)
    image.thumbnail((320, 320))
    groups = explanation.groups(run_id)
    rows = [[("image", image)] + [
        (f"{name}: {method}" if explanation.member_maps else method,
         overlay(image, heat, model.resize, model.crop, alpha)) for method, heat in maps.items()
    ] for name, maps in groups.items()]
    best = max(explanation.probabilities.items(), key=lambda kv: kv[1])
    w, h = image.size
    head = 36 if not explanation.member_maps else 52
    panel = Image.new("RGB", (w * max(len(r) for r in rows), head + (h + 20) * len(rows) - 20), "white")
    draw = ImageDraw.Draw(panel)
    draw.text((4, 4), f"{run_id}: {best[0]} ({best[1]:.0%}); maps explain {explanation.target}", fill="black")
    if explanation.member_maps:
        draw.text((4, 20), PER_MEMBER, fill="black")
    for r, tiles in enumerate(rows):
        top = head + r * (h + 20)
        for i, (caption, tile) in enumerate(tiles):
            panel.paste(tile, (i * w, top))
            draw.text((i * w + 4, top - 16), caption.replace("_", " "), fill="black")
    return panel


def explain_to_file(store_path: str | Path, run_id: str, image_path: str | Path, out: str | Path,
                    target: str | None = None) -> Explanation:
    model = load_run(store_path, run_id)
    explanation = explain_image(model, image_path, target=target)
    overlay_panel(run_id, model, image_path, explanation).save(out)
    facts = {"image": str(image_path), "run": run_id, "target": explanation.target,
             "probabilities": {k: round(v, 4) for k, v in explanation.probabilities.items()}, "overlay": str(out)}
    if explanation.member_maps:
        facts["maps"] = f"per member ({', '.join(explanation.member_maps)}): {PER_MEMBER}"
    print(json.dumps(facts, indent=2))
    return explanation
