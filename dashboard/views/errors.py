"""Errors: a gallery of a run's predictions, filtered and paged in SQL, exportable."""

from __future__ import annotations

from urllib.parse import urlencode

import plotly.graph_objects as go
import streamlit as st

from dashboard import access, filters, state
from dashboard.export import errors_export, export_name, filter_slug, gallery_csv, gallery_file
from dashboard.queries import gallery
from dashboard.queries.runs import artists, labels, runs
from dashboard.text import md_escape
from dashboard.ui import PAGE_SIZE, choose_run, pager

COLUMNS = 6
EXPORT_LIMIT = 500

st.title("Errors")
table = runs()

with st.sidebar:
    run_id = choose_run(table)
    periods = labels(run_id)
    split = state.choose("Split", filters.SPLITS, "split")
    outcome = state.choose("Predictions", list(gallery.OUTCOMES), "outcome")
    true = state.choose_many("True period", periods, "true")
    pred = state.choose_many("Predicted period", periods, "pred")
    known_artists = artists(run_id)
    if known_artists or state.get_list("artist"):  # a link's artist is still said not found
        chosen_artists = state.choose_many("Artist", known_artists, "artist")
    else:
        chosen_artists = []
        st.caption("Artist: this run's dataset names no artists.")
    lo, hi = st.slider("Confidence", 0.0, 1.0, (state.get_float("cmin", 0.0), state.get_float("cmax", 1.0)), 0.05,
                       key="w_conf")
    state.put(cmin=lo if lo > 0 else None, cmax=hi if hi < 1 else None)
    sort = state.choose("Sort", list(gallery.SORTS), "sort", default="most confident first")

run = table.set_index("run_id").loc[run_id]
if run["synthetic"]:
    st.caption("Synthetic demo data: generated pictures with invented periods and artists.")
f = gallery.GalleryFilter(run_id, None if split == "all" else split, true, pred, chosen_artists, outcome, lo, hi, sort,
                          filters.within())

# -- confusion matrix (chronological); clicking a cell filters the gallery to it
cm = gallery.confusion(run_id, f.split)
if not cm.empty:
    grid = cm.pivot_table(index="true_label", columns="pred_label", values="count", fill_value=0)
    grid = grid.reindex(index=periods, columns=periods, fill_value=0)
    fig = go.Figure(go.Heatmap(
        z=grid.values, x=periods, y=periods, colorscale="Blues", text=grid.values, texttemplate="%{text}",
        hoverinfo="skip",
    ))
    # A heatmap cannot be selected (a click on it carries no points), so each cell's centre holds an invisible
    # marker; with no hover distance limit a click picks the nearest centre, which on a grid is the cell's own.
    cells = [(t, p, int(grid.loc[t, p])) for t in periods for p in periods]
    invisible = dict(opacity=0)
    fig.add_trace(go.Scatter(
        x=[c[1] for c in cells], y=[c[0] for c in cells], customdata=[c[2] for c in cells], mode="markers",
        marker=dict(size=10, opacity=0),
        selected=dict(marker=invisible), unselected=dict(marker=invisible), showlegend=False,
        hovertemplate="true %{y}<br>predicted %{x}<br>%{customdata} images: click to show them<extra></extra>",
    ))
    fig.update_layout(xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed", height=360,
                      margin=dict(l=10, r=10, t=30, b=10), title="Confusion (click a cell to filter)",
                      clickmode="event+select", dragmode=False, hovermode="closest", hoverdistance=-1)
    event = st.plotly_chart(fig, on_select="rerun", selection_mode="points", key="cm", width="stretch")
    points = [pt for pt in (event.selection.points if event else []) if pt.get("curve_number", 1) == 1]
    clicked = (points[0]["y"], points[0]["x"]) if points else None
    # Act on a new click only: the chart keeps its selection across reruns, and a filter changed in the sidebar
    # afterwards must not be pulled back to the cell clicked before it.
    if clicked != st.session_state.get("_cm_clicked"):
        st.session_state["_cm_clicked"] = clicked
        if clicked and ([clicked[0]], [clicked[1]]) != (true, pred):
            state.put(true=[clicked[0]], pred=[clicked[1]], outcome="all", page=None)
            st.rerun()

total = gallery.count(f)
st.subheader(f"{total:,} images")
st.caption(md_escape(f.describe()))
if (sort == gallery.MISLABELLED or outcome == gallery.FLAGGED) and not gallery.audited(run_id):
    st.caption("No label audit for this run's data yet, so no label is scored or flagged: run "
               "`python -m pipeline audit EXPERIMENT` (or set `audit: true` in it)"
               + ("; meanwhile sorted most confident first." if sort == gallery.MISLABELLED else "."))
if total == 0:
    st.info("No image matches these filters.")
    st.stop()

st.caption("Each tile: :green[true period → model's guess] (right) or :red[true period → model's guess] (wrong), "
           "then the model's confidence: the probability it gave its guess."
           + (" The tile names its split (train, val or test)." if f.split is None else ""))
# the Inspector's "next error" and the review mode walk this filter: their links carry the gallery's URL keys
kept = [(k, v) for k in st.query_params if k not in ("run", "image", "page") for v in st.query_params.get_all(k)]
if access.can_review():  # a page link, not Markdown: it stays in this tab
    st.page_link("views/annotations.py", label="Review these one by one", icon=":material/rate_review:",
                 query_params=[("review", "1"), ("run", run_id), *kept],
                 help="Each painting large, with its maps and verdict buttons that save and move to the next.")
page_no = pager("page", total)
rows = gallery.page(f, PAGE_SIZE, (page_no - 1) * PAGE_SIZE)
for start in range(0, len(rows), COLUMNS):
    for col, r in zip(st.columns(COLUMNS), rows.iloc[start : start + COLUMNS].itertuples(), strict=False):
        with col:
            st.image(bytes(r.thumbnail), width="stretch")
            mark = ":green" if r.correct else ":red"
            link = "inspector?" + urlencode([("run", run_id), ("image", r.image_id), *kept])
            meta = " · ".join(md_escape(v) for v in (r.artist, r.title, r.date) if isinstance(v, str) and v)
            where = f" · {md_escape(r.split)}" if f.split is None else ""
            st.markdown(
                f"{mark}[{md_escape(r.true_label)} → {md_escape(r.pred_label)}] {r.confidence:.0%}{where}  \n"
                f"<small>{meta}</small>  \n[inspect]({link})"
                + (f" · {r.annotations} note(s)" if r.annotations else "")
                + (f"  \n<small>:orange[label doubtful: quality {r.quality:.2f}, audit suggests "
                   f"{md_escape(r.suggested_label)}]</small>" if r.issue else ""),
                unsafe_allow_html=True,
            )
pager("page", total, copy="bottom")

with st.expander("Share this gallery"):
    st.write("This page's URL holds every filter: send it to anyone with access to this dashboard. "
             "Or export a file that opens anywhere, with no server: it says what the model is and how good, explains "
             "each tile, shows the saliency maps, and lets an art historian give verdicts and send them back as a "
             "file (import it on the Annotations page).")
    paths = st.checkbox("include file paths (can give the label away)", value=False, key="export_paths")
    # Both files are made at once and kept for this filter: a download does not rerun the page (on_click="ignore"),
    # and any later rerun still finds them, so the other button stays until the filter changes.
    wanted = (f.describe(), paths)
    if st.button(f"Prepare HTML and CSV (first {EXPORT_LIMIT} images)", key="prepare_export"):
        with st.spinner("Drawing the saliency maps into the file…"):
            made, export_rows = errors_export(f, EXPORT_LIMIT, include_paths=paths)
            name = export_name(run_id, filter_slug(f), made.made_at, "{}")
            st.session_state["_export"] = (wanted, gallery_file(made), gallery_csv(export_rows, periods), name)
    prepared = st.session_state.get("_export")
    if prepared and prepared[0] == wanted:
        _, html_file, csv_file, name = prepared
        st.download_button("Download HTML gallery", html_file, file_name=name.format("html"), mime="text/html",
                           on_click="ignore", key="download_html")
        st.download_button("Download CSV", csv_file, file_name=name.format("csv"), mime="text/csv",
                           on_click="ignore", key="download_csv")
        st.caption(f"{md_escape(name.format('html'))}: {len(html_file) / 1e6:.1f} MB")
