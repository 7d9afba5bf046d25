"""Embedding map: a run's 2-D projection of its image embeddings, coloured by period, predicted
period, artist or right/wrong; box or lasso a region to list its images and see a few of them.

URL state: `run`, `color`, `split`, `image` (the picked image, shown beside the map with its nearest neighbours)
and `lasso` (the box or lasso region, "x,y;x,y;…" in map coordinates, so a link restores the selection).
Plotly's hover label cannot show a picture, so the picked image's thumbnail sits beside the map.
"""

from __future__ import annotations

from urllib.parse import urlencode

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from dashboard import state
from dashboard.queries import embedding as q
from dashboard.queries.runs import labels, runs
from dashboard.text import md_escape
from dashboard.ui import choose_run, similarity

COLOURS = {
    "period": ("true_label", "true period"),
    "predicted": ("pred_label", "predicted period"),
    "artist": ("artist_group", "artist"),
    "correct": ("outcome", "right / wrong"),
}
SPLITS = ["all", "train", "val", "test"]
THUMBS = 12
GRID = 6
# Colour-blind-safe and dark enough to see on white: Okabe-Ito without its yellow, then Paul Tol's darker
# "muted" colours, so up to 12 periods each get their own; every point also gets a thin dark outline.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
           "#882255", "#999933", "#332288", "#44AA99", "#AA4499"]
# Right / wrong: blue circles and orange crosses (never red/green), told apart by shape as well as colour.
OUTCOME_COLOURS = {"right": "#0072B2", "wrong": "#D55E00", "unlabelled": "#777777"}
OUTCOME_SYMBOLS = {"right": "circle", "wrong": "x", "unlabelled": "diamond-open"}
MAX_VERTICES = 200  # a lasso path kept in the URL is thinned to at most this many corners


def map_figure(pts: pd.DataFrame, colour: str, order: list[str], region: list[tuple[float, float]]) -> go.Figure:
    """The scatter: image id first in customdata so a selection can be read back as ids; the region (from the URL)
    drawn as the chart's own selection, its points highlighted."""
    column, title = COLOURS[colour]
    orders = {"true_label": order, "pred_label": order, "outcome": list(OUTCOME_COLOURS)}
    pts = pts.assign(artist_hover=pts["artist"].fillna("unknown"))
    many = pts[column].nunique() > len(PALETTE)
    fig = px.scatter(
        pts, x="x", y="y", color=column, custom_data=["image_id", "true_label", "pred_label", "artist_hover", "split"],
        category_orders={column: orders.get(column, sorted(pts[column].dropna().unique()))},
        color_discrete_map=OUTCOME_COLOURS if column == "outcome" else None,
        symbol=column if column == "outcome" else None,
        symbol_map=OUTCOME_SYMBOLS if column == "outcome" else None,
        color_discrete_sequence=px.colors.qualitative.Alphabet if many else PALETTE,
        labels={column: title}, render_mode="webgl", height=650,
    )
    fig.update_traces(
        marker={"size": 6 if len(pts) > 5000 else 8, "opacity": 0.85, "line": {"width": 0.6, "color": "#222222"}},
        hovertemplate="<b>%{customdata[0]}</b><br>%{customdata[1]} → %{customdata[2]}<br>"
                      "artist: %{customdata[3]}<br>split: %{customdata[4]}<extra></extra>",
    )
    if region:
        inside = set(inside_ids(pts, region))
        for trace in fig.data:
            trace.selectedpoints = [i for i, row in enumerate(trace.customdata) if row[0] in inside]
        fig.add_selection(type="path", path="M" + "L".join(f"{x},{y}" for x, y in region) + "Z")
    fig.update_layout(dragmode="lasso", xaxis_title="", yaxis_title="", margin={"t": 20, "l": 10, "r": 10},
                      legend={"itemsizing": "constant", "orientation": "h", "yanchor": "bottom", "y": 1.01, "x": 0})
    return fig


def encode_region(selection: object) -> str | None:
    """A chart selection's lasso or box as "x,y;x,y;…" for the URL (None: no region, e.g. a clicked point)."""
    try:
        lasso, box = selection.lasso, selection.box
    except AttributeError:
        return None
    if lasso and lasso[0].get("x"):
        xs, ys = lasso[0]["x"], lasso[0]["y"]
    elif box and box[0].get("x"):
        (x0, x1), (y0, y1) = box[0]["x"], box[0]["y"]
        xs, ys = [x0, x1, x1, x0], [y0, y0, y1, y1]
    else:
        return None
    step = max(1, -(-len(xs) // MAX_VERTICES))
    return ";".join(f"{x:.5g},{y:.5g}" for x, y in list(zip(xs, ys, strict=True))[::step])


def decode_region(text: str | None) -> list[tuple[float, float]]:
    """The URL's region; anything unreadable (or under 3 corners) is no region."""
    try:
        corners = [(float(a), float(b)) for a, b in (pair.split(",") for pair in (text or "").split(";"))]
    except ValueError:
        return []
    return corners if len(corners) >= 3 and all(np.isfinite(corners).ravel()) else []


def inside_ids(pts: pd.DataFrame, region: list[tuple[float, float]]) -> list[str]:
    """Ids of the map's points inside the polygon (even-odd rule, as plotly's lasso), in the map's order."""
    x, y = pts["x"].to_numpy(float), pts["y"].to_numpy(float)
    inside = np.zeros(len(pts), bool)
    for (x1, y1), (x2, y2) in zip(region, region[1:] + region[:1], strict=True):
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < at)
    return pts.loc[inside, "image_id"].tolist()


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
                  caption=f"{md_escape(row.image_id)}\ncosine similarity {similarity(row.similarity)}\n"
                          f"{md_escape(row.true_label)} → {md_escape(row.pred_label)}")
    st.caption("Cosine similarity of the run's embedding vectors (before the 2-D projection; 1 the same direction, "
               "0 unrelated); the image itself first.")


def show_picked(run_id: str, image_id: str | None) -> None:
    """The picked image beside the map (plotly's hover label cannot show a picture)."""
    if not image_id:
        st.caption("Lasso or box a region (or click a point with the zoom tool) to see its paintings here.")
        return
    near = q.neighbours(run_id, image_id, 1)
    if near.empty:
        st.info(f"{md_escape(image_id)} has no embedding in {md_escape(run_id)}.")
        return
    row = near.iloc[0]
    st.image(bytes(row["thumbnail"]), width="stretch")
    meta = " · ".join(md_escape(v) for v in (row["artist"], row["title"], row["date"]) if isinstance(v, str) and v)
    st.markdown(f"**{md_escape(image_id)}**  \n{md_escape(row['true_label'])} → {md_escape(row['pred_label'])}"
                + (f" ({row['confidence']:.0%})" if pd.notna(row["confidence"]) else "")
                + f"  \n<small>{meta}</small>  \n[inspect](inspector?{urlencode({'run': run_id, 'image': image_id})})",
                unsafe_allow_html=True)


def follow_gesture(event: object, seen_key: str) -> None:
    """A new lasso, box or click on the chart goes into the URL (`lasso`, or `image` for a clicked point); a cleared
    selection removes it. Nothing new from the chart (a fresh load of a link) leaves the URL's region alone."""
    selection = getattr(event, "selection", None)
    region, ids = encode_region(selection), tuple(selected_ids(event))
    if (region, ids) == st.session_state.get(seen_key, (None, ())):
        return
    st.session_state[seen_key] = (region, ids)
    state.put(lasso=region)
    if not region and len(ids) == 1:  # a clicked point: it is the picked image
        state.put(image=ids[0])


st.title("Embedding map")

table = runs()

c1, c2, c3 = st.columns([2, 1, 1])
with c1:
    run_id = choose_run(table)
with c2:
    colour = state.choose("Colour by", list(COLOURS), "color", default="period",
                          format_func=lambda c: COLOURS[c][1])
with c3:
    split = state.choose("Split", SPLITS, "split", default="all")
if st.session_state.get("_map_run", run_id) != run_id:  # a region on one run's map means nothing on another's
    state.put(lasso=None, image=None)
st.session_state["_map_run"] = run_id

pts = q.points(run_id, split)
if pts.empty:
    st.info(f"No embeddings for {md_escape(run_id)} on the {md_escape(split)} split.")
    st.stop()
total = int(pts["total"].iloc[0])
if total > len(pts):
    st.caption(f"Showing a deterministic sample of **{len(pts):,}** of {total:,} images "
               f"(at most {q.MAX_POINTS:,} points; the sample is the same on every visit).")
else:
    st.caption(f"{total:,} images. Hover for details; lasso or box a region to list its images (the region is kept "
               "in the link); double-click to clear.")

if state.get("lasso") and not decode_region(state.get("lasso")):
    st.warning(f"The link's lasso region ({md_escape(state.get('lasso', '')[:60])}) could not be read: it should be "
               "at least three corners, \"x,y;x,y;x,y\". Nothing is selected.")
    state.put(lasso=None)
chart_key = f"map_{run_id}_{split}_{colour}"
# The chart's widget identity is its figure: the region drawn stays the one the URL had when it first rendered.
drawn = st.session_state.setdefault(f"_drawn_{chart_key}", decode_region(state.get("lasso")))
map_col, side = st.columns([3, 1])
with map_col:
    event = st.plotly_chart(map_figure(pts, colour, labels(run_id), drawn), width="stretch", key=chart_key,
                            on_select="rerun", selection_mode=("points", "box", "lasso"))
follow_gesture(event, f"_seen_{chart_key}")
region = decode_region(state.get("lasso"))
ids = inside_ids(pts, region) if region else selected_ids(event)
listed = show_selection(run_id, ids) if ids else []
if state.get("lasso") and not ids:
    st.info("The region in the link holds no image of this map.")
elif not ids:
    st.caption("Nothing selected: drag a lasso or box on the map.")

image = state.choose("Image (from the selection)", listed, "image") if listed else state.get("image")
with side:
    show_picked(run_id, image)
st.subheader("Nearest neighbours")
if image:
    show_neighbours(run_id, image)
else:
    st.caption("Select images on the map to pick one, or open a link with `?image=ID`.")
