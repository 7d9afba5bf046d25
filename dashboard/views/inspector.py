"""Inspector: one image — every run's probabilities, every saliency method, neighbours, notes.

URL state: `run`, `image`, `alpha`, `target`, and the Errors page's filter keys (`split`, `outcome`, `true`, `pred`,
`artist`, `cmin`, `cmax`, `sort`), so "previous / next error" walks the gallery the user came from.
"""

from __future__ import annotations

import io
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from dashboard import filters, state
from dashboard.queries import gallery
from dashboard.queries import inspector as q
from dashboard.queries.embedding import neighbours
from dashboard.queries.runs import runs
from dashboard.queries.verdicts import annotations_for
from dashboard.text import md_escape, method_name, method_rank, methods_legend
from dashboard.ui import choose_run, similarity
from pipeline.heatmaps import colorize, decode_map, overlay

DEFAULT_ALPHA = 0.5  # as on the Upload page
RUN_COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000"]  # Okabe-Ito


def go_to(image_id: str) -> None:
    """A previous/next click: the URL moves to the image before the rerun draws it."""
    state.put(image=image_id)


def stepper(f: gallery.GalleryFilter, image_id: str) -> None:
    """← previous / next → within the Errors filter, and where this image stands in it."""
    where = q.place(f, image_id)
    noun = {"wrong": "error", "correct": "correct prediction"}.get(f.outcome, "image")
    prev_col, info_col, next_col = st.columns([1, 2, 1], vertical_alignment="center")
    prev_col.button(f"← previous {noun}", key="previous_image", disabled=where.previous is None,
                    on_click=go_to, args=(where.previous,), width="stretch")
    next_col.button(f"next {noun} →", key="next_image", disabled=where.next is None or where.next == image_id,
                    on_click=go_to, args=(where.next,), width="stretch")
    link = "errors?" + urlencode({"run": f.run_id, **filters.params()}, doseq=True)
    if where.position is None:
        info_col.markdown(f"Not in [this Errors filter]({link}) ({where.total:,} images): next goes to its first.")
    else:
        info_col.markdown(f"{noun} {where.position:,} of {where.total:,} in [this Errors filter]({link})")
    info_col.caption(md_escape(f.describe()))


def probability_chart(probs: pd.DataFrame, true_label: str | None) -> go.Figure:
    """Each run's period probabilities (chronological), the true period marked by a band and a label."""
    order = probs.drop_duplicates("label")["label"].tolist()
    fig = go.Figure()
    for n, (run, group) in enumerate(probs.groupby("run_id", sort=False)):
        fig.add_bar(x=group["label"], y=group["probability"], name=run, marker_color=RUN_COLOURS[n % len(RUN_COLOURS)],
                    hovertemplate=f"{run}<br>%{{x}}: %{{y:.1%}}<extra></extra>")
    fig.update_xaxes(categoryorder="array", categoryarray=order)
    if true_label in order:
        at = order.index(true_label)
        fig.add_vrect(x0=at - 0.5, x1=at + 0.5, fillcolor="#bbbbbb", opacity=0.35, line_width=0, layer="below")
        fig.add_annotation(x=true_label, y=1.0, yref="y", text="<b>true period</b>", showarrow=False, yanchor="bottom")
    fig.update_layout(barmode="group", yaxis_range=[0, 1.1], yaxis_title="probability", xaxis_title="",
                      legend={"title_text": "", "orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
                      height=420, margin=dict(l=10, r=10, t=10, b=10))
    return fig


def verdict(probs: pd.DataFrame, run_id: str) -> str:
    """What the chosen run predicted, in words."""
    mine = probs[probs["run_id"] == run_id]
    if mine.empty:
        return f"{md_escape(run_id)} has no prediction for this image."
    row = mine.loc[mine["probability"].idxmax()]
    pred, true = row["pred_label"], row["true_label"]
    share = float(mine.loc[mine["label"] == pred, "probability"].max())
    said = f"**{md_escape(run_id)}** predicted **{md_escape(pred)}** ({share:.0%})"
    if pd.isna(true):
        return said + "; this image has no known period."
    if pred == true:
        return said + ": right."
    p_true = float(mine.loc[mine["label"] == true, "probability"].max())
    return said + f": wrong, the true period is **{md_escape(true)}** ({p_true:.0%})."


def label_audit(row: pd.Series | None) -> str:
    """The label audit's view of this image's period, in words (pipeline/audit.py)."""
    if row is None:
        return "Label audit: not run on this dataset (`python -m pipeline audit EXPERIMENT`)."
    given, suggested = md_escape(row["given_label"]), md_escape(row["suggested_label"])
    said = (f"Label audit: label quality **{row['quality']:.2f}** for **{given}** (the probability of the given "
            f"period from a linear head that never saw this painting, {int(row['folds'])}-fold)")
    if bool(row["issue"]):
        return said + f"; **flagged as a likely label error**, the audit suggests **{suggested}**."
    if suggested != given:
        return said + f"; not flagged, though the audit would guess **{suggested}**."
    return said + "; not flagged."


def colour_scale() -> str:
    """The overlays' colour bar as HTML: the heat ramp from none (the painting shows through) to the strongest."""
    stops = ", ".join("#" + bytes(colorize(np.array([v]))[0]).hex() for v in np.linspace(0, 1, 9))
    return (f'<div style="display:flex;align-items:center;gap:.5em;font-size:.85em">'
            f'<span>none</span><div style="flex:0 1 16em;height:.9em;border:1px solid #888;'
            f'background:linear-gradient(to right, {stops})"></div><span>strongest</span></div>')


def agreement_words(rho: float) -> str:
    if rho >= 0.6:
        return "agree"
    if rho >= 0.3:
        return "partly agree"
    return "disagree"


def sanity_words(method: str, rho: float) -> str:
    """Adebayo et al.'s model-randomisation check, said as what it means for this run."""
    name = method_name(method)
    if rho >= 0.5:
        return f"{name} barely changes when the weights are randomised: it does not explain this model."
    if rho >= 0.25:
        return f"{name} changes only partly when the weights are randomised: read its maps with care."
    return f"{name} changes when the weights are randomised: its maps depend on what the model learned."


def show_maps(run_id: str, dataset_id: str, image_id: str, thumb: Image.Image) -> None:
    maps = q.maps(dataset_id, image_id)
    if maps.empty:
        st.info("No saliency maps stored for this image (they are made for the test split; see `attributions:` in "
                "the experiment config).")
        return
    resize, crop = q.geometry(dataset_id)
    alpha = st.slider("Overlay opacity", 0.0, 1.0, state.get_float("alpha", DEFAULT_ALPHA), 0.05, key="w_alpha")
    state.put(alpha=None if alpha == DEFAULT_ALPHA else alpha)
    kinds = sorted(maps["target_kind"].unique(), key=lambda k: k != "predicted")
    kind = state.choose("Explain", kinds, "target", format_func=lambda k: f"the {k} period",
                        help="the predicted period, or the true one where the prediction was wrong")
    st.markdown(colour_scale(), unsafe_allow_html=True)
    st.caption("Each map is scaled to its own strongest pixels; outside the model's input (the centre crop) it is "
               "blank.")
    chosen = maps[maps["target_kind"] == kind]
    chosen = chosen.assign(rank=chosen["method"].map(method_rank)).sort_values(["rank", "method"], kind="stable")
    for run, group in chosen.groupby("run_id", sort=False):
        st.markdown(f"**{md_escape(run)}** — why *{md_escape(group['target_label'].iloc[0])}*")
        cols = st.columns(max(4, len(group)))
        for col, m in zip(cols, group.itertuples(), strict=False):
            col.image(overlay(thumb, decode_map(m.heatmap), resize, crop, alpha), caption=method_name(m.method),
                      width="stretch")
    st.caption(methods_legend(chosen["method"]))
    show_agreement(q.agreement(dataset_id, image_id), kind)
    show_sanity(run_id, q.sanity(run_id))


def show_agreement(agree: pd.DataFrame, kind: str) -> None:
    agree = agree[agree["target_kind"] == kind] if not agree.empty else agree
    if agree.empty:
        return
    st.markdown("**Do the methods agree on this image?**")
    table = pd.DataFrame({
        "run": agree["run_id"],
        "methods": [f"{method_name(a)} and {method_name(b)}" for a, b in zip(agree["method_a"], agree["method_b"],
                                                                              strict=True)],
        "in words": agree["spearman"].map(agreement_words),
        "rank correlation": agree["spearman"], "hottest 10% shared": agree["top_overlap"]})
    st.dataframe(table, hide_index=True, column_config={
        "rank correlation": st.column_config.NumberColumn(format="%.2f", help="Spearman correlation of the two maps"),
        "hottest 10% shared": st.column_config.NumberColumn(format="%.2f", help="overlap (IoU) of their hottest 10%")})
    st.caption("Rank correlation of the two maps: 1 the same ranking of pixels, 0 unrelated; 0.6 or more is "
               "read as agreeing, under 0.3 as disagreeing.")


def show_sanity(run_id: str, sanity: pd.DataFrame) -> None:
    if sanity.empty:
        return
    sanity = sanity.assign(rank=sanity["method"].map(method_rank)).sort_values(["rank", "method"], kind="stable")
    st.markdown(f"**Do the maps depend on what {md_escape(run_id)} learned?**")
    st.markdown("\n".join(f"- {sanity_words(m, rho)}" for m, rho in zip(sanity["method"], sanity["spearman_mean"],
                                                                          strict=True)))
    table = pd.DataFrame({"method": sanity["method"].map(method_name), "images": sanity["n_images"],
                          "similarity to random weights": sanity["spearman_mean"],
                          "hottest 10% shared": sanity["top_overlap_mean"]})
    st.dataframe(table, hide_index=True, column_config={
        "similarity to random weights": st.column_config.NumberColumn(format="%.2f"),
        "hottest 10% shared": st.column_config.NumberColumn(format="%.2f")})
    st.caption("Each method's maps compared with those of the same network with random weights (mean rank "
               "correlation; Adebayo et al. 2018): a method whose maps stay the same explains the picture, not the "
               "model.")


def show_neighbours(run_id: str, image_id: str) -> None:
    near = neighbours(run_id, image_id, 9)
    near = near[near["image_id"] != image_id].head(8)
    if near.empty:
        st.info("No embedding stored for this image.")
        return
    st.caption(f"The images whose embedding in {md_escape(run_id)} points the same way (cosine similarity: 1 the "
               "same direction, 0 unrelated).")
    cols = st.columns(len(near))
    for col, n in zip(cols, near.itertuples(), strict=True):  # one query brought the neighbours' thumbnails too
        col.image(bytes(n.thumbnail), width="stretch")
        link = "inspector?" + urlencode({"run": run_id, "image": n.image_id, **filters.params()}, doseq=True)
        col.markdown(f"{md_escape(n.period)}  \ncosine similarity {similarity(n.similarity)}  \n[inspect]({link})")


st.title("Inspector")
table = runs()

run_id = choose_run(table)
dataset_id = q.run_dataset(run_id)
errors = filters.errors_filter(run_id)
picks = q.candidates(errors)
ids = picks["image_id"].tolist()
described = {r.image_id: f"{r.image_id} — {r.true_label} → {r.pred_label} ({r.confidence:.0%})"
             for r in picks.itertuples()}
linked = state.get("image")
if linked and linked not in ids:
    ids.insert(0, linked)
if not ids:  # nothing in the filter: fall back to the run's test images
    ids = q.candidates(gallery.GalleryFilter(run_id, outcome="all"))["image_id"].tolist()
image_id = state.choose("Image (in the Errors filter's order)", ids, "image",
                        format_func=lambda i: described.get(i, i))
if image_id is None:
    st.info("This run has no test images.")
    st.stop()
meta = q.image(dataset_id, image_id)
if meta is None:
    st.warning(f"Image {md_escape(repr(image_id))} is not in this run's dataset.")
    st.stop()
stepper(errors, image_id)

thumb = Image.open(io.BytesIO(meta["thumbnail"])).convert("RGB")
probs = q.probabilities(dataset_id, image_id)
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
    st.markdown(verdict(probs, run_id))
    st.markdown(label_audit(q.label_quality(dataset_id, image_id)))
    if not probs.empty:
        st.markdown("**Period probabilities per run** (the true period shaded)")
        true_label = probs["true_label"].dropna().iloc[0] if probs["true_label"].notna().any() else meta["period"]
        st.plotly_chart(probability_chart(probs, true_label), width="stretch")

st.subheader("What the networks looked at")
show_maps(run_id, dataset_id, image_id, thumb)

st.subheader("Nearest neighbours in the embedding")
show_neighbours(run_id, image_id)

st.subheader("Annotations")
notes = annotations_for(dataset_id, image_id)
if notes.empty:
    st.caption("No annotations yet.")
else:
    st.dataframe(notes, hide_index=True)
st.markdown(f"[Annotate this image](annotations?{urlencode({'run': run_id, 'image': image_id})})")
