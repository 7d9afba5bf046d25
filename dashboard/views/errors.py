"""Errors: a gallery of a run's predictions, filtered and paged in SQL, exportable."""

from __future__ import annotations

from urllib.parse import urlencode

import plotly.graph_objects as go
import streamlit as st

from dashboard import state
from dashboard.export import gallery_csv, gallery_html
from dashboard.queries import gallery
from dashboard.queries.runs import artists, labels, runs
from dashboard.ui import PAGE_SIZE, md_escape, pager

COLUMNS = 6
EXPORT_LIMIT = 500

st.title("Errors")
table = runs()

with st.sidebar:
    run_id = state.choose("Run", table["run_id"].tolist(), "run")
    periods = labels(run_id)
    split = state.choose("Split", ["test", "val", "train", "all"], "split")
    outcome = state.choose("Predictions", list(gallery.OUTCOMES), "outcome")
    true = state.choose_many("True period", periods, "true")
    pred = state.choose_many("Predicted period", periods, "pred")
    chosen_artists = state.choose_many("Artist", artists(run_id), "artist")
    lo, hi = st.slider("Confidence", 0.0, 1.0, (state.get_float("cmin", 0.0), state.get_float("cmax", 1.0)), 0.05,
                       key="w_conf")
    state.put(cmin=lo if lo > 0 else None, cmax=hi if hi < 1 else None)
    sort = state.choose("Sort", list(gallery.SORTS), "sort", default="most confident first")

run = table.set_index("run_id").loc[run_id]
if run["synthetic"]:
    st.caption("Synthetic demo data: generated pictures with invented periods and artists.")
f = gallery.GalleryFilter(run_id, None if split == "all" else split, true, pred, chosen_artists, outcome, lo, hi, sort)

# -- confusion matrix (chronological); clicking a cell filters the gallery to it
cm = gallery.confusion(run_id, f.split)
if not cm.empty:
    grid = cm.pivot_table(index="true_label", columns="pred_label", values="count", fill_value=0)
    grid = grid.reindex(index=periods, columns=periods, fill_value=0)
    fig = go.Figure(go.Heatmap(
        z=grid.values, x=periods, y=periods, colorscale="Blues", text=grid.values, texttemplate="%{text}",
        hovertemplate="true %{y}<br>predicted %{x}<br>%{z}<extra></extra>",
    ))
    fig.update_layout(xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed", height=360,
                      margin=dict(l=10, r=10, t=30, b=10), title="Confusion (click a cell to filter)")
    event = st.plotly_chart(fig, on_select="rerun", selection_mode="points", key="cm", width="stretch")
    points = event.selection.points if event else []
    if points:
        cell_true, cell_pred = points[0]["y"], points[0]["x"]
        if [cell_true] != true or [cell_pred] != pred:
            state.put(true=[cell_true], pred=[cell_pred], outcome="all", page=None)
            st.rerun()

total = gallery.count(f)
st.subheader(f"{total:,} images")
st.caption(md_escape(f.describe()))
if total == 0:
    st.info("No image matches these filters.")
    st.stop()

page_no = pager("page", total)
rows = gallery.page(f, PAGE_SIZE, (page_no - 1) * PAGE_SIZE)
for start in range(0, len(rows), COLUMNS):
    for col, r in zip(st.columns(COLUMNS), rows.iloc[start : start + COLUMNS].itertuples(), strict=False):
        with col:
            st.image(bytes(r.thumbnail), width="stretch")
            mark = ":green" if r.correct else ":red"
            link = "inspector?" + urlencode({"run": run_id, "image": r.image_id})
            meta = " · ".join(md_escape(v) for v in (r.artist, r.title, r.date) if isinstance(v, str) and v)
            st.markdown(
                f"{mark}[{md_escape(r.true_label)} → {md_escape(r.pred_label)}] {r.confidence:.0%}  \n"
                f"<small>{meta}</small>  \n[inspect]({link})"
                + (f" · {r.annotations} note(s)" if r.annotations else ""),
                unsafe_allow_html=True,
            )

with st.expander("Share this gallery"):
    st.write("This page's URL holds every filter: send it to anyone with access to this dashboard. "
             "Or export a file that opens anywhere, with no server:")
    if st.button(f"Prepare HTML and CSV (first {EXPORT_LIMIT} images)", key="prepare_export"):
        export_rows = gallery.page(f, EXPORT_LIMIT, 0)
        title = f"Period Eye — {run_id}"
        st.download_button("Download HTML gallery", gallery_html(title, f.describe(), export_rows, run["synthetic"]),
                           file_name="period-eye-gallery.html", mime="text/html")
        st.download_button("Download CSV", gallery_csv(export_rows), file_name="period-eye-gallery.csv",
                           mime="text/csv")
