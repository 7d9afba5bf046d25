"""Upload: drop in a painting, see a stored run's period probabilities and what each saliency method saw.

The one page that loads a model: dashboard/uploads.py, which imports torch (through pipeline.explain) only when this
page first asks for a model.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import plotly.graph_objects as go
import streamlit as st

from dashboard import state
from dashboard.queries import store_path, store_version
from dashboard.queries.runs import labels, runs
from dashboard.text import md_escape, method_name, methods_legend
from dashboard.ui import choose_run
from dashboard.uploads import Explained, UploadError, explain_upload, load

if TYPE_CHECKING:
    from pipeline.checkpoint import Model

IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "tif", "tiff", "bmp", "gif"]
PREDICTED = "the predicted period"


@st.cache_resource(show_spinner="Loading the model…", max_entries=3)
def cached_run(store: str, run_id: str, version: float) -> Model:
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
    if result.member_maps:
        st.subheader(f"What each member looked at for “{md_escape(result.target)}”")
        st.caption("An ensemble has no one network: these are each member's own saliency maps, all for the "
                   "ensemble's target period.")
        for member, tiles in result.member_overlays(alpha).items():
            row(tiles, f"{member} · ")
    else:
        st.subheader(f"What the network looked at for “{md_escape(result.target)}”")
        row(result.overlays(alpha), "")
    st.caption(methods_legend([*result.maps, *(m for maps in result.member_maps.values() for m in maps)]))
    st.caption("Maps cover the model's input (the center crop of the square-padded image); outside it they are blank.")


def row(tiles: dict, prefix: str) -> None:
    """One network's overlays side by side, captioned by method (after `prefix`, the member for an ensemble)."""
    for col, (method, tile) in zip(st.columns(len(tiles)), tiles.items(), strict=True):
        col.image(tile, caption=md_escape(prefix + method_name(method)), width="stretch")


st.title("Upload")
table = runs()
store = store_path()
with st.sidebar:
    run_id = choose_run(table)
    target = state.choose("Maps explain", [PREDICTED, *labels(run_id)], "target")
    alpha = st.slider("Overlay opacity", 0.0, 1.0, state.get_float("alpha", 0.5), 0.05, key="w_alpha")
    state.put(alpha=None if alpha == 0.5 else alpha)

try:
    model = cached_run(str(store), run_id, store_version())
except UploadError as exc:
    st.error(f"Run {md_escape(run_id)} cannot be used here: {md_escape(exc, lines=True)}")
    st.stop()
views = f"{model.described()}; " if model.described() else ""
st.caption(f"{md_escape(run_id)}: {model.resize} px square, {model.crop} px crop, {md_escape(views)}periods "
           f"{md_escape(', '.join(model.labels['period']))}")

upload = st.file_uploader("A painting", type=IMAGE_TYPES, help="Decoded exactly as the pipeline decodes images.")
if upload is None:
    st.info("Drop an image to see this run's period probabilities and its saliency maps.")
    st.stop()
try:
    result = explained(store, run_id, upload.getvalue(), upload.name, None if target == PREDICTED else target)
except UploadError as exc:
    st.error(md_escape(exc, lines=True))
    st.stop()
show(result, alpha)
