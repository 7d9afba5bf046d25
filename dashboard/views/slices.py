"""Slices: where a model fails, not only how often. The slices (artist, period, date, shape, size, near copies, label
audit, expert verdict, artist seen in training) where a run is worst against its own accuracy, each with its 95 %
interval and a link to its Errors gallery; every slice of the run; and slices saved under a name, shared by URL and
shown across every run on one screen (as Zeno does). All numbers are SQL over the store (queries/slices.py).

URL state: `run`, `split`, `min` (smallest slice the finder lists), `within` (repeated `dimension:value`: the slice
being made), `slice` (a saved slice's id).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from dashboard import access, state
from dashboard.queries import slices as q
from dashboard.queries.runs import runs
from dashboard.text import md_escape
from dashboard.ui import choose_run

SPLITS = ["test", "val", "train"]


def interval(row) -> str:
    """"0.712 (0.61–0.80)": an accuracy and its 95 % interval; "–" for an empty slice."""
    if pd.isna(row.accuracy):
        return "–"
    return f"{row.accuracy:.3f} ({row.low:.2f}–{row.high:.2f})"


def gallery_link(run_id: str, split: str, within: Mapping[str, Sequence[str]], outcome: str = "wrong") -> str:
    """The Errors gallery of the run, split and slice (the gallery's own URL keys)."""
    return "errors?" + urlencode([("run", run_id), ("split", split), ("outcome", outcome)]
                                 + [("within", v) for v in q.url_values(within)])


def words(dimension: str) -> str:
    return q.DIMENSIONS[dimension][0]


def finder(run_id: str, split: str) -> None:
    st.subheader("Where this run fails")
    state.seed("w_min", max(1, state.get_int("min", q.MIN_SIZE)))
    min_size = int(st.number_input("Smallest slice (images)", 1, 100_000, key="w_min",
                                   help="Slices with fewer images are not listed: their accuracy is too uncertain "
                                        "to read."))
    state.put(min=min_size if min_size != q.MIN_SIZE else None)
    state.remember("w_min", min_size)
    whole = q.overall(run_id, split)
    if not whole["n"]:
        st.info(f"This run has no {split} predictions.")
        return
    st.caption(f"Accuracy on all {int(whole['n']):,} {split} images: **{whole['accuracy']:.3f}** "
               f"(95 % interval {whole['low']:.2f}–{whole['high']:.2f}). Slices are ranked by how far the top of their "
               "interval falls below it: a slice is clearly worse only when that gap is positive, so a small slice's "
               "low accuracy is not over-read.")
    found = q.worst(run_id, split, min_size)
    if found.empty:
        st.info(f"No slice has {min_size} images or more: lower the smallest slice size.")
        return
    lines = ["| slice | accuracy (95 % interval) | gallery |", "|---|---|---|"]  # three columns: a phone's width
    for r in found.itertuples():
        mark = f":red[**clearly worse**] by {r.gap * 100:.1f} points" if r.gap > 0 else "within noise"
        link = gallery_link(run_id, split, {r.dimension: [r.value]})
        lines.append(f"| {md_escape(words(r.dimension))}: **{md_escape(r.value)}** · {mark} | {interval(r)} of "
                     f"{r.n:,} | [{r.errors:,} errors]({link}) |")
    st.markdown("\n".join(lines))


def every_slice(run_id: str, split: str) -> pd.DataFrame:
    st.subheader("Every slice of this run")
    table = q.slice_metrics(run_id, split)
    if table.empty:
        return table
    tabs = st.tabs([words(d) for d in q.DIMENSIONS])
    for tab, dimension in zip(tabs, q.DIMENSIONS, strict=True):
        with tab:
            rows = table[table["dimension"] == dimension].drop(columns="dimension")
            rows.insert(len(rows.columns), "gallery",
                        [gallery_link(run_id, split, {dimension: [v]}) for v in rows["value"]])
            st.dataframe(rows, hide_index=True, column_config={
                "value": st.column_config.TextColumn(words(dimension)),
                "accuracy": st.column_config.NumberColumn("accuracy", format="%.3f"),
                "low": st.column_config.NumberColumn("95 % low", format="%.3f"),
                "high": st.column_config.NumberColumn("95 % high", format="%.3f"),
                "gallery": st.column_config.LinkColumn("gallery", display_text="errors")})
    return table


def across_runs(within: Mapping[str, Sequence[str]], split: str, run_id: str) -> None:
    """The slice's accuracy on every run of the store, runs as rows."""
    table = q.across_runs(within, split)
    lines = ["| run | accuracy (95 % interval) | run's accuracy on all | gallery |", "|---|---|---:|---|"]
    for r in table.itertuples():
        run_all = "–" if pd.isna(r.run_accuracy) else f"{r.run_accuracy:.3f}"
        link = f"[{r.errors:,} errors]({gallery_link(r.run_id, split, within)})" if r.n else "–"
        own = " (picked)" if r.run_id == run_id else ""
        lines.append(f"| {md_escape(r.run_id)}{own} | {interval(r)} of {r.n:,} | {run_all} | {link} |")
    st.markdown("\n".join(lines))
    st.caption(f"Every run in the store, on its {split} images in this slice. Runs whose intervals overlap cannot be "
               "told apart on this slice.")


def saved_slices(split: str, run_id: str) -> None:
    st.subheader("Saved slices")
    table = q.saved()
    asked = state.get("slice")
    if table.empty:
        st.caption("None yet: make one below and save it under a name, to share it by link and see it across runs.")
        if asked:
            st.warning(f"Not found: saved slice **{md_escape(asked)}**, which this link asks for.")
        return
    names = dict(zip(table["slice_id"], table["name"], strict=True))
    if asked and asked not in names:  # the URL rule: said with what exists, the link kept, nothing in its place
        listed = ", ".join(md_escape(n) for n in names.values())
        st.warning(f"Not found: saved slice **{md_escape(asked)}**, which this link asks for (it was deleted). "
                   f"Saved slices: {listed}. Pick one here.", icon=":material/search_off:")
        picked = st.selectbox("Saved slice", list(names), index=None, placeholder="Pick one",
                              format_func=lambda s: names.get(s, s), key="w_slice_missing")
        if picked is not None:
            state.put(slice=picked)
            st.rerun()
        return
    slice_id = state.choose("Saved slice", list(names), "slice", format_func=lambda s: names.get(s, s))
    assert slice_id is not None  # names is not empty
    row = table.set_index("slice_id").loc[slice_id]
    within = row["filter"]
    by = f" · saved by {md_escape(row['author'])}" if isinstance(row["author"], str) else ""
    st.markdown(f"**{md_escape(row['name'])}**: {md_escape(q.describe(within)) or 'nothing this dashboard can read'}"
                f"{by} · link: `?slice={md_escape(slice_id)}`")
    if within:
        across_runs(within, split, run_id)
    if access.can_review():
        with st.expander("Rename or delete this slice"):
            new_name = st.text_input("New name", value=str(row["name"]), key=f"rename_{slice_id}")
            rename, delete = st.columns(2)
            if rename.button("Rename", key="slice_rename"):
                act(lambda: q.rename_slice(slice_id, new_name))
            if delete.button("Delete", key="slice_delete"):
                act(lambda: q.delete_slice(slice_id), slice=None)


def act(change, **url) -> None:
    try:
        change()
    except q.SliceError as exc:
        st.error(str(exc))
        return
    state.put(**url)
    st.rerun()


def make_slice(table: pd.DataFrame, split: str, run_id: str) -> None:
    st.subheader("Make a slice")
    options = q.url_values({d: table.loc[table["dimension"] == d, "value"].tolist() for d in q.DIMENSIONS})
    chosen = state.choose_many("Images in the slice", options, "within",
                               format_func=lambda v: q.describe(q.parse_within([v])),
                               help="Values of one kind are alternatives; different kinds must all hold.")
    within = q.parse_within(chosen)
    if not within:
        st.caption("Pick values above (or follow a slice's gallery link back here) to see a slice across every run.")
        return
    across_runs(within, split, run_id)
    if not access.can_review():
        st.caption("Saving slices is for reviewers: you are signed in as a viewer.")
        return
    with st.form("save_slice"):
        name = st.text_input("Name of the slice", max_chars=80)
        author = access.reviewer_name() or ""
        if st.form_submit_button("Save slice", type="primary", icon=":material/save:"):
            try:
                slice_id = q.save_slice(name, within, author or None)
            except q.SliceError as exc:
                st.error(str(exc))
                return
            state.put(slice=slice_id, within=None)
            st.rerun()


st.title("Slices")
st.caption("Accuracy on groups of images (slices), each with its 95 % interval (Wilson), to see where a model fails, "
           "not only how often.")
all_runs = runs()
with st.sidebar:
    chosen_run = choose_run(all_runs)
    chosen_split = state.choose("Split", SPLITS, "split") or "test"

saved_slices(chosen_split, chosen_run)
finder(chosen_run, chosen_split)
slices_table = every_slice(chosen_run, chosen_split)
make_slice(slices_table, chosen_split, chosen_run)
