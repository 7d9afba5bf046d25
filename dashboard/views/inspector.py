"""Inspector: one image — every run's probabilities, every saliency method, neighbours, notes."""

from __future__ import annotations

import io
from urllib.parse import urlencode

import plotly.express as px
import streamlit as st
from PIL import Image

from dashboard import state
from dashboard.queries import inspector as q
from dashboard.queries.embedding import neighbours
from dashboard.queries.runs import runs
from dashboard.queries.verdicts import annotations_for
from dashboard.ui import md_escape, similarity
from pipeline.heatmaps import decode_map, overlay

st.title("Inspector")
table = runs()

run_id = state.choose("Run", table["run_id"].tolist(), "run")
dataset_id = q.run_dataset(run_id)
ids = q.candidates(run_id)["image_id"].tolist()
linked = state.get("image")
if linked and linked not in ids:
    ids.insert(0, linked)
image_id = state.choose("Image (the run's test errors first, or one opened from the Errors page)", ids, "image")
if image_id is None:
    st.info("This run has no test images.")
    st.stop()
meta = q.image(dataset_id, image_id)
if meta is None:
    st.warning(f"Image {md_escape(repr(image_id))} is not in this run's dataset.")
    st.stop()

thumb = Image.open(io.BytesIO(meta["thumbnail"])).convert("RGB")
left, right = st.columns([1, 2])
with left:
    st.image(thumb, width="stretch")
    st.markdown(
        "\n".join(f"- **{k}**: {md_escape(meta[k])}" for k in ("period", "artist", "title", "date", "split")
                  if meta[k])
        + f"\n- **size**: {meta['width']}×{meta['height']}"
    )
    st.caption(f"{md_escape(meta['path'])}  ·  sha1 {md_escape(meta['content_hash'][:12])}")
with right:
    probs = q.probabilities(dataset_id, image_id)
    if not probs.empty:
        fig = px.bar(probs, x="label", y="probability", color="run_id", barmode="group", range_y=[0, 1],
                     labels={"label": "", "run_id": "run"}, title="Period probabilities per run")
        fig.update_xaxes(categoryorder="array", categoryarray=probs.drop_duplicates("label")["label"].tolist())
        st.plotly_chart(fig, width="stretch")

st.subheader("What the networks looked at")
maps = q.maps(dataset_id, image_id)
if maps.empty:
    st.info("No saliency maps stored for this image (they are made for the test split; see `attributions:` in the "
            "experiment config).")
else:
    resize, crop = q.geometry(dataset_id)
    alpha = st.slider("Overlay opacity", 0.0, 1.0, state.get_float("alpha", 0.6), 0.05, key="w_alpha")
    state.put(alpha=alpha)
    kinds = sorted(maps["target_kind"].unique(), key=lambda k: k != "predicted")
    kind = state.choose("Explain", kinds, "target", format_func=lambda k: f"the {k} period",
                        help="the predicted period, or the true one where the prediction was wrong")
    for run, group in maps[maps["target_kind"] == kind].groupby("run_id", sort=False):
        target = group["target_label"].iloc[0]
        st.markdown(f"**{md_escape(run)}** — why *{md_escape(target)}*")
        cols = st.columns(max(4, len(group)))
        for col, m in zip(cols, group.itertuples(), strict=False):
            col.image(overlay(thumb, decode_map(m.heatmap), resize, crop, alpha),
                      caption=md_escape(m.method.replace("_", " ")), width="stretch")
    agree = q.agreement(dataset_id, image_id)
    if not agree.empty:
        st.caption("Agreement between methods (rank correlation of the maps; overlap of their hottest 10%)")
        st.dataframe(agree[agree["target_kind"] == kind].drop(columns="target_kind"), hide_index=True)
    sanity = q.sanity(run_id)
    if not sanity.empty:
        st.caption(f"Sanity check for {md_escape(run_id)}: similarity of each method's maps to those of the same "
                   "network with random weights. High values mean the method barely depends on what the model learned.")
        st.dataframe(sanity, hide_index=True)

st.subheader("Nearest neighbours in the embedding")
near = neighbours(run_id, image_id, 9)
near = near[near["image_id"] != image_id].head(8)
if near.empty:
    st.info("No embedding stored for this image.")
else:
    cols = st.columns(len(near))
    for col, n in zip(cols, near.itertuples(), strict=True):  # one query brought the neighbours' thumbnails too
        col.image(bytes(n.thumbnail), width="stretch")
        col.markdown(f"{md_escape(n.period)} · {similarity(n.similarity)}  \n[inspect](inspector?"
                     f"{urlencode({'run': run_id, 'image': n.image_id})})")

st.subheader("Annotations")
notes = annotations_for(dataset_id, image_id)
if notes.empty:
    st.caption("No annotations yet.")
else:
    st.dataframe(notes, hide_index=True)
st.markdown(f"[Annotate this image](annotations?{urlencode({'run': run_id, 'image': image_id})})")
