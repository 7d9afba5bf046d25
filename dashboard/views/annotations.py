"""Annotations: an art historian's verdict on an image and a run's prediction, and every verdict so far."""

from __future__ import annotations

from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from dashboard import state
from dashboard.export import frame_csv
from dashboard.queries import verdicts
from dashboard.queries.runs import runs
from dashboard.text import md_escape
from dashboard.ui import choose_run


def image_label(candidates) -> dict[str, str]:
    """image_id → 'image_id · true → predicted (confidence)' for the picker."""
    return {r.image_id: f"{r.image_id} · {r.true_label} → {r.pred_label} ({r.confidence:.0%})"
            for r in candidates.itertuples()}


def annotate_form(run_id: str, meta) -> None:
    """The verdict form for one image; saving writes one row and reruns so every list shows it."""
    with st.form("annotate", clear_on_submit=True):
        verdict = st.radio("Verdict", verdicts.VERDICTS, horizontal=True, index=None)
        note = st.text_area("Note", placeholder="Why: brushwork, the costume's date, a known attribution …")
        author = st.text_input("Your name", value=st.session_state.get("_annotation_author", ""))
        if not st.form_submit_button("Save annotation", type="primary", icon=":material/save:"):
            return
    try:
        verdicts.save_annotation(meta["dataset_id"], meta["image_id"], run_id, verdict, note, author)
    except verdicts.AnnotationError as exc:
        st.error(md_escape(exc, lines=True))
        return
    st.session_state["_annotation_author"] = author.strip()
    st.session_state["_annotation_saved"] = f"Saved: {md_escape(verdict)} on {md_escape(meta['image_id'])}."
    st.rerun()


def annotate_section(table: pd.DataFrame) -> None:
    st.subheader("Annotate")
    run_id = choose_run(table)
    shown = verdicts.candidates(run_id)
    labels = image_label(shown)
    ids = list(labels)
    linked = state.get("image")
    if linked and linked not in labels:
        ids.insert(0, linked)
    image_id = state.choose("Image (the run's test errors first, or one linked from the Errors or Inspector page)",
                            ids, "image", format_func=lambda i: labels.get(i, i))
    if image_id is None:
        st.info("This run has no predictions to annotate.")
        return
    meta = verdicts.image_for_run(run_id, image_id)
    if meta is None:
        st.warning(f"Image {md_escape(repr(image_id))} is not in the dataset of run {md_escape(run_id)}.")
        return
    left, right = st.columns([1, 2])
    with left:
        st.image(bytes(meta["thumbnail"]), width="stretch")
    with right:
        facts = [f"**{k}**: {md_escape(meta[k])}" for k in ("period", "artist", "title", "date", "split") if meta[k]]
        if meta["pred_label"]:
            facts.append(f"**{md_escape(run_id)} predicts**: {md_escape(meta['pred_label'])} "
                         f"({meta['confidence']:.0%})")
        st.markdown("\n".join(f"- {f}" for f in facts))
        st.markdown(f"[Open in the Inspector](inspector?{urlencode({'run': run_id, 'image': image_id})})")
        if "_annotation_saved" in st.session_state:
            st.success(st.session_state.pop("_annotation_saved"))
        annotate_form(run_id, meta)
    notes = verdicts.annotations_for(meta["dataset_id"], image_id)
    if not notes.empty:
        st.caption("Notes on this painting")
        st.dataframe(notes, hide_index=True)


def list_section() -> None:
    st.subheader("All annotations")
    c1, c2, c3 = st.columns(3)
    with c1:
        chosen_verdicts = state.choose_many("Verdict", verdicts.VERDICTS, "verdict")
    with c2:
        authors = state.choose_many("Author", verdicts.authors(), "author")
    with c3:
        chosen_runs = state.choose_many("Run annotated", verdicts.annotated_runs(), "runs")
    table = verdicts.list_annotations(chosen_verdicts, authors, chosen_runs)
    if table.empty:
        st.caption("No annotations match." if chosen_verdicts or authors or chosen_runs else "No annotations yet.")
        return
    table.insert(0, "inspect", [f"inspector?{urlencode({'run': r or '', 'image': i})}"
                                for r, i in zip(table["run_id"], table["image_id"], strict=True)])
    st.caption(f"{len(table):,} annotations · times in UTC")
    st.dataframe(table, hide_index=True, column_config={
        "inspect": st.column_config.LinkColumn("inspect", display_text="open"),
        "confidence": st.column_config.NumberColumn(format="%.2f"),
        "created_at": st.column_config.DatetimeColumn("when (UTC)", format="YYYY-MM-DD HH:mm"),
    })
    st.download_button("Download CSV", frame_csv(table.drop(columns="inspect")),
                       file_name="periodeye-annotations.csv", mime="text/csv", on_click="ignore",
                       icon=":material/download:")


st.title("Annotations")
annotate_section(runs())
list_section()
