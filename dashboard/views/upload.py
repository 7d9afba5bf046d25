"""Upload: drop in a painting, see a stored run's period probabilities and what each saliency method saw.

The one page that loads a model (pipeline.explain, hence torch). It predicts as the run's evaluation did (the
checkpoint's own prediction, test-time views included), so a stored image shows its stored probabilities.
The page body is `main()`,
which Streamlit runs (it executes pages as `__main__`); tests import `explain_upload` without it.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from dashboard import state
from dashboard.queries import store_path, store_version
from dashboard.queries.runs import labels, runs
from dashboard.ui import md_escape
from pipeline.config import AttributionConfig, ConfigError
from pipeline.data.images import BadImage, open_rgb
from pipeline.explain import LoadedRun, explain_image, load_run
from pipeline.heatmaps import overlay
from pipeline.store import StoreLockedError

IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "tif", "tiff", "bmp", "gif"]
DISPLAY_SIZE = 512
PREDICTED = "the predicted period"


class UploadError(Exception):
    """Why an upload cannot be explained; str(exc) is shown to people."""


@dataclass
class Explained:
    run_id: str
    image: Image.Image  # the upload, RGB, at most DISPLAY_SIZE on its longer side
    probabilities: dict[str, float]  # period → probability, chronological
    maps: dict[str, np.ndarray]  # method → map over the model's input, [0, 1]
    target: str  # the period the maps explain
    resize: int
    crop: int

    def overlays(self, alpha: float) -> dict[str, Image.Image]:
        """Each method's map blended over the upload, placed where the model's input came from."""
        return {m: overlay(self.image, heat, self.resize, self.crop, alpha) for m, heat in self.maps.items()}


def load(store: str | Path, run_id: str) -> LoadedRun:
    """A stored run's model, or UploadError saying why not (unknown run, checkpoint gone or unreadable)."""
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
                   run: LoadedRun | None = None, cfg: AttributionConfig | None = None) -> Explained:
    """Probabilities and saliency maps for uploaded bytes; UploadError for a file that is not a usable image."""
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
                     run.crop)


@st.cache_resource(show_spinner="Loading the model…", max_entries=3)
def cached_run(store: str, run_id: str, version: float) -> LoadedRun:
    """One model per (store, run), loaded again when the store changes (a run may have been retrained)."""
    return load(store, run_id)


def explained(store: Path, run_id: str, data: bytes, filename: str, target: str | None) -> Explained:
    """This session's explanation of the upload, computed once per (file, run, target): sliders rerun the page."""
    key = (str(store), store_version(), run_id, hashlib.sha1(data).hexdigest(), target)
    last = st.session_state.get("_upload_last")
    if last and last[0] == key:
        return last[1]
    model = cached_run(str(store), run_id, store_version())
    with st.spinner("Computing probabilities and saliency maps…"):
        result = explain_upload(store, run_id, data, filename, target, run=model)
    st.session_state["_upload_last"] = (key, result)
    return result


def probability_chart(result: Explained) -> go.Figure:
    periods = list(result.probabilities)  # the run's class order, which is chronological
    values = [result.probabilities[p] for p in periods]
    best = max(result.probabilities, key=result.probabilities.get)
    fig = go.Figure(go.Bar(x=periods, y=values, marker_color=["#d62728" if p == best else "#1f77b4" for p in periods],
                           text=[f"{v:.0%}" for v in values], textposition="outside",
                           hovertemplate="%{x}: %{y:.1%}<extra></extra>"))
    fig.update_layout(yaxis_range=[0, 1.1], yaxis_title="probability", height=360, margin=dict(l=10, r=10, t=40, b=10),
                      title=f"{result.run_id}: {best} ({result.probabilities[best]:.0%})")
    fig.update_xaxes(categoryorder="array", categoryarray=periods)
    return fig


def show(result: Explained, alpha: float) -> None:
    left, right = st.columns([1, 1])
    with left:
        st.image(result.image, caption="your upload", width="stretch")
    with right:
        st.plotly_chart(probability_chart(result), width="stretch")
    st.subheader(f"What the network looked at for “{md_escape(result.target)}”")
    tiles = result.overlays(alpha)
    for col, (method, tile) in zip(st.columns(len(tiles)), tiles.items(), strict=True):
        col.image(tile, caption=md_escape(method.replace("_", " ")), width="stretch")
    st.caption("Maps cover the model's input (the center crop of the square-padded image); outside it they are blank.")


def main() -> None:
    st.title("Upload")
    table = runs()
    store = store_path()
    with st.sidebar:
        run_id = state.choose("Run", table["run_id"].tolist(), "run")
        target = state.choose("Maps explain", [PREDICTED, *labels(run_id)], "target")
        alpha = st.slider("Overlay opacity", 0.0, 1.0, state.get_float("alpha", 0.5), 0.05, key="w_alpha")
        state.put(alpha=None if alpha == 0.5 else alpha)
    try:
        model = cached_run(str(store), run_id, store_version())
    except UploadError as exc:
        st.error(f"Run {md_escape(run_id)} cannot be used here: {md_escape(exc, lines=True)}")
        st.stop()
    views = f"probabilities averaged over its test-time views ({', '.join(model.saved.tta)}), as evaluated; " \
        if model.saved.tta else ""
    st.caption(f"{md_escape(run_id)}: {model.resize} px square, {model.crop} px crop, {md_escape(views)}periods "
               f"{md_escape(', '.join(model.labels['period']))}")
    upload = st.file_uploader("A painting", type=IMAGE_TYPES, help="Decoded exactly as the pipeline decodes images.")
    if upload is None:
        st.info("Drop an image to see this run's period probabilities and its saliency maps.")
        return
    try:
        result = explained(store, run_id, upload.getvalue(), upload.name, None if target == PREDICTED else target)
    except UploadError as exc:
        st.error(md_escape(exc, lines=True))
        return
    show(result, alpha)


if __name__ == "__main__":
    main()
