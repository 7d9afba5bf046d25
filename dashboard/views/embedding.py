"""Embedding map: a run's 2-D projection of its image embeddings, coloured by period, predicted
period, artist or right/wrong; box or lasso a region to list its images and see a few of them.

URL state: `run`, `color`, `split`, `image` (the selected image whose nearest neighbours are shown).
The box/lasso selection itself lives in the chart (plotly cannot be handed a selection from a link).
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from dashboard import state
from dashboard.queries import embedding as q
from dashboard.queries.runs import labels, runs
from dashboard.ui import md_escape, similarity

COLOURS = {
    "period": ("true_label", "true period"),
    "predicted": ("pred_label", "predicted period"),
    "artist": ("artist_group", "artist"),
    "correct": ("outcome", "right / wrong"),
}
SPLITS = ["all", "train", "val", "test"]
THUMBS = 12
GRID = 6


def map_figure(pts: pd.DataFrame, colour: str, order: list[str]) -> go.Figure:
    """The scatter: image id first in customdata so a selection can be read back as ids."""
    column, title = COLOURS[colour]
    orders = {"true_label": order, "pred_label": order, "outcome": ["right", "wrong", "unlabelled"]}
    pts = pts.assign(artist_hover=pts["artist"].fillna("unknown"))
    fig = px.scatter(
        pts, x="x", y="y", color=column, custom_data=["image_id", "true_label", "pred_label", "artist_hover", "split"],
        category_orders={column: orders.get(column, sorted(pts[column].dropna().unique()))},
        color_discrete_map={"right": "#2ca02c", "wrong": "#d62728", "unlabelled": "#bbbbbb"},
        color_discrete_sequence=px.colors.qualitative.Alphabet if pts[column].nunique() > 10 else None,
        labels={column: title}, render_mode="webgl", height=650,
    )
    fig.update_traces(
        marker={"size": 5 if len(pts) > 5000 else 7, "opacity": 0.75},
        hovertemplate="<b>%{customdata[0]}</b><br>%{customdata[1]} → %{customdata[2]}<br>"
                      "artist: %{customdata[3]}<br>split: %{customdata[4]}<extra></extra>",
    )
    fig.update_layout(dragmode="lasso", xaxis_title="", yaxis_title="", margin={"t": 20})
    return fig


def selected_ids(event: object) -> list[str]:
    """Image ids of the box/lasso-selected points (each point's first customdata entry)."""
    try:
        points = event.selection.points
    except AttributeError:
        return []
    ids = [p.get("customdata", [None])[0] for p in points]
    return list(dict.fromkeys(i for i in ids if i))


def show_thumbnails(run_id: str, ids: list[str], captions: dict[str, str]) -> None:
    """A few thumbnails, fetched from the store by id."""
    thumbs = q.thumbnails(run_id, ids)
    for start in range(0, len(thumbs), GRID):
        cols = st.columns(GRID)
        for col, row in zip(cols, thumbs.iloc[start:start + GRID].itertuples(), strict=False):
            col.image(bytes(row.thumbnail), caption=captions.get(row.image_id, md_escape(row.image_id)),
                      width="stretch")


def show_selection(run_id: str, ids: list[str]) -> list[str]:
    """The selected images: counts by period, a table and a few thumbnails; returns the listed ids."""
    st.subheader(f"Selection: {len(ids):,} images")
    summary = q.selection_summary(run_id, ids).set_index("true_label")
    order = labels(run_id)
    summary = summary.reindex([o for o in order if o in summary.index] + [t for t in summary.index if t not in order])
    st.dataframe(summary.rename_axis("true period"))
    table = q.selected(run_id, ids)
    if len(ids) > len(table):
        st.caption(f"The table lists {len(table):,} of them (wrong first, most confident first).")
    st.dataframe(table, hide_index=True, column_config={
        "confidence": st.column_config.ProgressColumn("confidence", min_value=0.0, max_value=1.0, format="%.2f")})
    head = table.head(THUMBS)
    show_thumbnails(run_id, head["image_id"].tolist(),
                    {r.image_id: f"{md_escape(r.image_id)}\n{md_escape(r.true_label)} → {md_escape(r.pred_label)}"
                     for r in head.itertuples()})
    return table["image_id"].tolist()


def show_neighbours(run_id: str, image_id: str, k: int = 8) -> None:
    """The image and its nearest neighbours in the run's embedding space (cosine, in DuckDB)."""
    near = q.neighbours(run_id, image_id, k)
    if near.empty:
        st.info(f"{md_escape(image_id)} has no embedding in {md_escape(run_id)}.")
        return
    cols = st.columns(len(near))
    for col, row in zip(cols, near.itertuples(), strict=False):
        col.image(bytes(row.thumbnail), width="stretch",
                  caption=f"{md_escape(row.image_id)}\ncos {similarity(row.similarity, 3)}\n"
                          f"{md_escape(row.true_label)} → {md_escape(row.pred_label)}")
    st.caption("Cosine similarity of the run's embedding vectors (before the 2-D projection); the image itself first.")


st.title("Embedding map")

table = runs()

c1, c2, c3 = st.columns([2, 1, 1])
with c1:
    run_id = state.choose("Run", table["run_id"].tolist(), "run")
with c2:
    colour = state.choose("Colour by", list(COLOURS), "color", default="period",
                          format_func=lambda c: COLOURS[c][1])
with c3:
    split = state.choose("Split", SPLITS, "split", default="all")

pts = q.points(run_id, split)
if pts.empty:
    st.info(f"No embeddings for {md_escape(run_id)} on the {md_escape(split)} split.")
    st.stop()
total = int(pts["total"].iloc[0])
if total > len(pts):
    st.caption(f"Showing a deterministic sample of **{len(pts):,}** of {total:,} images "
               f"(at most {q.MAX_POINTS:,} points; the sample is the same on every visit).")
else:
    st.caption(f"{total:,} images. Hover for details; box or lasso a region to list its images.")

event = st.plotly_chart(map_figure(pts, colour, labels(run_id)), width="stretch", key=f"map_{run_id}_{split}",
                        on_select="rerun", selection_mode=("box", "lasso"))
ids = selected_ids(event)
listed = show_selection(run_id, ids) if ids else []
if not ids:
    st.caption("Nothing selected: drag a box or lasso on the map.")

st.subheader("Nearest neighbours")
if listed:
    image = state.choose("Image (from the selection)", listed, "image")
else:
    image = state.get("image")
    if image is None:
        st.caption("Select images on the map to pick one, or open a link with `?image=ID`.")
if image:
    show_neighbours(run_id, image)
