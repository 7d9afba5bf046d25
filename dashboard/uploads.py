"""An uploaded painting explained by a stored run: the dashboard's one model, for the Upload page only.

torch comes in through pipeline.explain, imported inside the functions that need it, so importing this module (or
opening any other page) loads no model code. It predicts as the run's evaluation did (the checkpoint's own
prediction, test-time views included), so a stored image shows its stored probabilities. An ensemble shows its
members' mean probabilities and each member's own maps (it has no one network).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
from PIL import Image

from pipeline.config import AttributionConfig, ConfigError
from pipeline.data.images import BadImage, open_rgb
from pipeline.heatmaps import overlay
from pipeline.store import StoreLockedError

if TYPE_CHECKING:
    from pipeline.checkpoint import Model

DISPLAY_SIZE = 512


class UploadError(Exception):
    """Why an upload cannot be explained; str(exc) is shown to people."""


@dataclass
class Explained:
    run_id: str
    image: Image.Image  # the upload, RGB, at most DISPLAY_SIZE on its longer side
    probabilities: dict[str, float]  # period → probability, chronological
    maps: dict[str, np.ndarray]  # method → map over the model's input, [0, 1]; empty for an ensemble
    target: str  # the period the maps explain
    resize: int
    crop: int
    member_maps: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # an ensemble's: member → maps

    def overlays(self, alpha: float) -> dict[str, Image.Image]:
        """Each method's map blended over the upload, placed where the model's input came from."""
        return self._blend(self.maps, alpha)

    def member_overlays(self, alpha: float) -> dict[str, dict[str, Image.Image]]:
        """An ensemble's: per member, each method's map blended over the upload."""
        return {member: self._blend(maps, alpha) for member, maps in self.member_maps.items()}

    def _blend(self, maps: dict[str, np.ndarray], alpha: float) -> dict[str, Image.Image]:
        return {m: overlay(self.image, heat, self.resize, self.crop, alpha) for m, heat in maps.items()}


def load(store: str | Path, run_id: str) -> Model:
    """A stored run's model, or UploadError saying why not (unknown run, checkpoint gone or unreadable)."""
    from pipeline.explain import load_run  # torch: only when a model is wanted

    if not Path(store).exists():
        raise UploadError(f"No store at {store}: run `make artifacts` first.")
    try:
        return load_run(store, run_id)
    except ConfigError as exc:
        raise UploadError(str(exc)) from None
    except (duckdb.Error, StoreLockedError) as exc:
        raise UploadError(f"Could not read the store ({exc}); try again shortly.") from None
    except Exception as exc:  # a corrupt or foreign checkpoint file
        raise UploadError(f"The checkpoint of {run_id} could not be loaded ({type(exc).__name__}: {exc}); re-run it "
                          "with `python -m pipeline run`.") from None


def explain_upload(store: str | Path, run_id: str, data: bytes, filename: str = "upload", target: str | None = None,
                   run: Model | None = None, cfg: AttributionConfig | None = None) -> Explained:
    """Probabilities and saliency maps for uploaded bytes; UploadError for a file that is not a usable image."""
    from pipeline.explain import explain_image  # torch: only when a model is wanted

    if not data:
        raise UploadError(f"{filename} is empty (0 bytes).")
    run = run or load(store, run_id)
    suffix = Path(filename).suffix.lower()[:10] or ".img"
    with tempfile.TemporaryDirectory(prefix="periodeye-upload-") as tmp:
        path = Path(tmp) / f"upload{suffix}"  # explain_image reads a path: the same decoder as the pipeline
        path.write_bytes(data)
        try:
            image = open_rgb(path, draft=DISPLAY_SIZE)
            explanation = explain_image(run, path, cfg, target=target)
        except BadImage as exc:
            raise UploadError(f"{filename} cannot be used as a painting: {exc}.") from None
        except ConfigError as exc:
            raise UploadError(str(exc)) from None
    image.thumbnail((DISPLAY_SIZE, DISPLAY_SIZE))
    return Explained(run_id, image, explanation.probabilities, explanation.maps, explanation.target, run.resize,
                     run.crop, explanation.member_maps)
