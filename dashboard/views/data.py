"""Data: what is wrong with a dataset rather than with a model. Groups of images that show one work (exact duplicates
and near-copies: re-encodes, resizes, details) with their splits and labels, those that straddle splits or carry
conflicting labels marked; and the label audit's likely label errors. Filtered and paged in SQL.

URL state: `dataset`, `kind` (repeated), `straddle=1`, `conflict=1`, `page` (groups), `lq_page` (label errors).
"""

from __future__ import annotations

from urllib.parse import urlencode

import streamlit as st

from dashboard import state
from dashboard.queries import data as q
from dashboard.queries.runs import datasets, runs
from dashboard.text import md_escape
from dashboard.ui import PAGE_SIZE, best_run, pager

COLUMNS = 4  # thumbnails per row inside a group
THUMB_PX = 180  # not stretched: on a phone the columns stack, and full-width paintings would fill screens
KIND_WORDS = {"exact": "exact duplicate", "phash": "perceptual hash", "embedding": "embedding", "title": "title"}


def url_toggle(label: str, key: str, help_text: str) -> bool:
    """A toggle kept in the URL as `key=1` (absent: off)."""
    widget_key = f"w_{key}"
    state.seed(widget_key, state.get(key) == "1")
    value = st.toggle(label, key=widget_key, help=help_text)
    state.put(**{key: "1" if value else None})
    state.remember(widget_key, value)
    return value


def listed(values) -> str:
    return ", ".join(md_escape(v) for v in values if isinstance(v, str)) or "–"


def group_header(g) -> str:
    kinds = " + ".join(md_escape(KIND_WORDS.get(k, k)) for k in g.kinds)
    marks = []
    if g.straddles:
        marks.append(":orange[**straddles splits**]")
    if g.conflicts:
        marks.append(":red[**conflicting labels**]")
    score = f" · score {g.score:.2f}" if g.source == "near" and g.score == g.score and g.score is not None else ""
    return (f"**{kinds}** · {g.n_images} images · splits: {listed(g.splits)} · labels: {listed(g.labels)}{score}"
            + (" · " + " · ".join(marks) if marks else ""))


def show_group(g, images, run_id: str | None) -> None:
    with st.container(border=True):
        st.markdown(group_header(g))
        for start in range(0, len(images), COLUMNS):
            for col, r in zip(st.columns(COLUMNS), images.iloc[start:start + COLUMNS].itertuples(), strict=False):
                with col:
                    st.image(bytes(r.thumbnail), width=THUMB_PX)
                    name = md_escape(r.image_id.rsplit("/", 1)[-1])
                    where = urlencode({"run": run_id, "image": r.image_id}) if run_id else ""
                    link = f" · [inspect](inspector?{where})" if run_id else ""
                    st.markdown(f"{md_escape(r.split)} · {md_escape(r.period)}{link}  \n<small>{name}</small>",
                                unsafe_allow_html=True)
        if g.n_images > len(images):
            st.caption(f"… and {g.n_images - len(images)} more images in this group")


def label_errors(dataset_id: str, run_id: str | None) -> None:
    found = q.label_issue_count(dataset_id)
    st.subheader("Likely label errors")
    if not found["scored"]:
        st.caption("No label audit of this dataset yet: `python -m pipeline audit EXPERIMENT` scores every image.")
        return
    st.caption(f"{int(found['flagged']):,} of {int(found['scored']):,} images flagged by the label audit (Cleanlab's "
               "confident learning on out-of-sample predictions), least likely label first. A flag changes no "
               "label: an expert's \"label wrong\" verdict on the Annotations page does, through `data.corrections`.")
    if not found["flagged"]:
        return
    page_no = pager("lq_page", int(found["flagged"]))
    table = q.label_issues(dataset_id, PAGE_SIZE, (page_no - 1) * PAGE_SIZE)
    if run_id:
        table.insert(0, "inspect", [f"inspector?{urlencode({'run': run_id, 'image': i})}" for i in table["image_id"]])
    st.dataframe(table, hide_index=True, column_config={
        "inspect": st.column_config.LinkColumn("inspect", display_text="open"),
        "quality": st.column_config.NumberColumn("label quality", format="%.3f")})


st.title("Data")
st.caption("Images that show one work (exact copies, and near-copies: re-encodes, resizes, details) should sit in one "
           "split, or test accuracy is inflated; copies with different labels cannot all be right.")
table = runs()
known = datasets()
names = dict(zip(known["dataset_id"], known["name"], strict=True))
default = table.loc[table["run_id"] == best_run(table), "dataset_id"].iloc[0] if len(table) else None
with st.sidebar:
    dataset_id = state.choose("Dataset", list(names), "dataset", default=default,
                              format_func=lambda d: f"{names.get(d) or d} ({d})")
if dataset_id is None:
    st.info("No prepared dataset in this store yet.")
    st.stop()
run_id = q.inspector_run(dataset_id)
info = known.set_index("dataset_id").loc[dataset_id]
excluded = int(info["n_conflicting_duplicates"] or 0)
st.caption(f"{md_escape(names.get(dataset_id) or dataset_id)}: {int(info['n_images'] or 0):,} images. "
           + (f"{excluded} group(s) of identical files with conflicting labels were excluded at preparation (see the "
              "skipped files on the Overview). " if excluded else "")
           + ("" if run_id else "No run was trained on this version, so images do not link to the Inspector."))
parts = q.sources(dataset_id)
if len(parts):
    st.caption(f"From {len(parts)} sources: " + "; ".join(
        f"{md_escape(r.source)} {r.images:,} (train {r.train:,} · val {r.val:,} · test {r.test:,})"
        for r in parts.itertuples()) + ". A source limited to train and val is never tested on.")

with st.sidebar:
    chosen_kinds = state.choose_many("Kind of match", q.kinds(dataset_id), "kind",
                                     format_func=lambda k: KIND_WORDS.get(k, k))
    straddling = url_toggle("Only groups across splits", "straddle", "Groups whose images lie in more than one split.")
    conflicting = url_toggle("Only conflicting labels", "conflict", "Groups whose images carry different labels.")

total = q.counts(dataset_id, chosen_kinds, straddling, conflicting)
st.subheader(f"{int(total['groups']):,} groups of copies ({int(total['images']):,} images)")
st.caption(f"Of all {int(total['all_groups']):,} groups in this dataset: {int(total['straddling']):,} straddle splits, "
           f"{int(total['conflicting']):,} have conflicting labels. Straddling and conflicting groups come first.")
if total["groups"]:
    page_no = pager("page", int(total["groups"]))
    shown = q.groups(dataset_id, chosen_kinds, straddling, conflicting, PAGE_SIZE, (page_no - 1) * PAGE_SIZE)
    members = q.members(dataset_id, list(zip(shown["source"], shown["group_id"], strict=True)))
    for g in shown.itertuples():
        mine = members[(members["source"] == g.source) & (members["group_id"] == g.group_id)]
        show_group(g, mine, run_id)
    pager("page", int(total["groups"]), copy="bottom")
elif total["all_groups"]:
    st.info("No group matches these filters.")
else:
    st.info("No copies found in this dataset: no two images share their bytes, and no near-copies were recorded "
            "(`data.near_copies` finds them at preparation).")

label_errors(dataset_id, run_id)
