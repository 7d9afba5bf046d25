"""Annotations: an art historian's verdict on an image and a run's prediction, its history, and every verdict so far.

Reviewers save, edit (a new version) and withdraw verdicts, and import the verdicts file an exported gallery's
reviewer downloaded; viewers read (dashboard/access.py). With `review=1` in the URL the page steps through the
Errors page's filter (its URL keys) one painting at a time: verdict buttons save and move to the next.
"""

from __future__ import annotations

import io
from urllib.parse import urlencode

import pandas as pd
import streamlit as st
from PIL import Image

from dashboard import access, filters, state
from dashboard.export import frame_csv
from dashboard.queries import gallery, verdicts
from dashboard.queries import inspector as q
from dashboard.queries.runs import runs
from dashboard.text import md_escape, method_name, method_rank
from dashboard.ui import choose_run
from pipeline.heatmaps import decode_map, overlay

READ_ONLY = ("You are signed in as a viewer: annotations are read-only here (saving, editing, withdrawing and "
             "importing verdicts are for reviewers).")


def image_label(candidates) -> dict[str, str]:
    """image_id → 'image_id · true → predicted (confidence)' for the picker."""
    return {r.image_id: f"{r.image_id} · {r.true_label} → {r.pred_label} ({r.confidence:.0%})"
            for r in candidates.itertuples()}


def default_author() -> str:
    """The name a verdict is signed with: the one given at sign-in, else the one typed last in this session."""
    return access.reviewer_name() or st.session_state.get("_annotation_author", "")


RIGHT_PERIOD_HELP = ("With the verdict \"label wrong\": the period you believe is right. A run prepared with "
                     "`data.corrections: {label_wrong: relabel}` trains on it (with `exclude`, or without a period, "
                     "the painting is left out). Ignored with any other verdict.")


def annotate_form(run_id: str, meta) -> None:
    """The verdict form for one image; saving writes one row and reruns so every list shows it."""
    with st.form("annotate", clear_on_submit=True):
        verdict = st.radio("Verdict", verdicts.VERDICTS, horizontal=True, index=None)
        # Always shown: a form cannot react to the radio above before it is submitted.
        period = st.selectbox("Right period (optional)", verdicts.run_periods(run_id), index=None,
                              placeholder="only with \"label wrong\"", help=RIGHT_PERIOD_HELP)
        note = st.text_area("Note", placeholder="Why: brushwork, the costume's date, a known attribution …")
        author = st.text_input("Your name", value=default_author())
        if not st.form_submit_button("Save annotation", type="primary", icon=":material/save:"):
            return
    try:
        verdicts.save_annotation(meta["dataset_id"], meta["image_id"], run_id, verdict, note, author,
                                 corrected_period=period if verdict == verdicts.LABEL_WRONG else None)
    except verdicts.AnnotationError as exc:
        st.error(md_escape(exc, lines=True))
        return
    st.session_state["_annotation_author"] = author.strip()
    st.session_state["_annotation_saved"] = f"Saved: {md_escape(verdict)} on {md_escape(meta['image_id'])}."
    st.rerun()


def history_section(dataset_id: str, image_id: str) -> None:
    """Every version of the notes on this painting, and (for reviewers) editing or withdrawing a current one."""
    notes = verdicts.annotations_for(dataset_id, image_id)
    if notes.empty:
        return
    st.caption("Notes on this painting, every version (current: the one that counts; an edit or a withdrawal is "
               "a new row, nothing is deleted)")
    st.dataframe(notes.drop(columns=["annotation_id", "revises"]), hide_index=True, column_config={
        "created_at": st.column_config.DatetimeColumn("when (UTC)", format="YYYY-MM-DD HH:mm")})
    current = notes[notes["current"]]
    if current.empty or not access.can_review():
        return
    names = {r.annotation_id: f"{r.verdict} by {r.author} ({r.created_at:%Y-%m-%d %H:%M})"
             for r in current.itertuples()}
    with st.expander("Edit or withdraw a note"):
        # Labels unlike the form's above ("Verdict", "Note", "Your name"): browser tests find those by label.
        chosen = st.selectbox("Which verdict", list(names), format_func=names.get, key="edit_which")
        old = current.set_index("annotation_id").loc[chosen]
        with st.form("edit"):
            verdict = st.selectbox("New verdict", verdicts.VERDICTS,
                                   index=verdicts.VERDICTS.index(old["verdict"]) if old["verdict"] in verdicts.VERDICTS
                                   else None)
            periods = verdicts.run_periods(old["run_id"]) if isinstance(old["run_id"], str) else []
            before = old["corrected_period"] if old["corrected_period"] in periods else None
            period = st.selectbox("Right period of the new version (optional)", periods,
                                  index=periods.index(before) if before else None, help=RIGHT_PERIOD_HELP)
            note = st.text_area("Text of the new version", value=old["note"] if isinstance(old["note"], str) else "")
            author = st.text_input("Changed by", value=default_author())
            save, withdraw = st.columns(2)
            saved = save.form_submit_button("Save new version", icon=":material/edit:")
            withdrawn = withdraw.form_submit_button("Withdraw it", icon=":material/undo:")
        if not (saved or withdrawn):
            return
        try:
            if saved:
                verdicts.revise_annotation(chosen, verdict, note, author,
                                           corrected_period=period if verdict == verdicts.LABEL_WRONG else None)
            else:
                verdicts.withdraw_annotation(chosen, author)
        except verdicts.AnnotationError as exc:
            st.error(md_escape(exc, lines=True))
            return
    st.session_state["_annotation_author"] = author.strip()
    st.session_state["_annotation_saved"] = "Saved a new version." if saved else "Withdrawn (kept in the history)."
    st.rerun()


def annotate_section(table: pd.DataFrame) -> None:
    st.subheader("Annotate")
    run_id = choose_run(table)
    shown = verdicts.candidates(run_id)
    labels_ = image_label(shown)
    ids = list(labels_)
    linked = state.get("image")
    if linked and linked not in labels_:
        ids.insert(0, linked)
    image_id = state.choose("Image (the run's test errors first, or one linked from the Errors or Inspector page)",
                            ids, "image", format_func=lambda i: labels_.get(i, i))
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
        if access.can_review():
            annotate_form(run_id, meta)
    history_section(meta["dataset_id"], image_id)


# ---------------------------------------------------------------- review mode


def _go(image_id: str | None) -> None:
    state.put(image=image_id)


def review_maps(run_id: str, dataset_id: str, image_id: str, thumb: Image.Image) -> None:
    """The run's stored saliency maps of its guess over the painting (the Inspector's overlays, one run)."""
    maps = q.maps(dataset_id, image_id)
    maps = maps[(maps["run_id"] == run_id) & (maps["target_kind"] == "predicted")]
    if maps.empty:
        st.caption("No saliency maps stored for this painting.")
        return
    resize, crop = q.geometry(dataset_id)
    maps = maps.assign(rank=maps["method"].map(method_rank)).sort_values(["rank", "method"], kind="stable")
    st.caption(f"Where the model looked for *{md_escape(maps['target_label'].iloc[0])}* (strongest: red)")
    cols = st.columns(4)
    for n, m in enumerate(maps.itertuples()):
        cols[n % 4].image(overlay(thumb, decode_map(m.heatmap), resize, crop, 0.5), caption=method_name(m.method),
                          width="stretch")


def review_section(table: pd.DataFrame) -> None:
    """One painting of the Errors filter at a time; a verdict button saves and moves to the next."""
    st.subheader("Review")
    run_id = choose_run(table)
    f = filters.errors_filter(run_id)
    link = "errors?" + urlencode({"run": run_id, **filters.params()}, doseq=True)
    first = gallery.page(f, 1, 0, thumbnails=False)
    if first.empty:
        st.info(f"No painting in [this Errors filter]({link}): nothing to review.")
        return
    image_id = state.get("image")
    where = q.place(f, image_id) if image_id else None
    if where is None or where.position is None:
        image_id = str(first["image_id"].iloc[0])
        where = q.place(f, image_id)
    state.put(image=image_id)
    meta = verdicts.image_for_run(run_id, image_id)
    assert meta is not None and where.position is not None  # the filter's rows join the run's images
    st.markdown(f"**{where.position:,} of {where.total:,}** in [this Errors filter]({link})")
    st.caption(md_escape(f.describe()))
    if "_annotation_saved" in st.session_state:
        st.success(st.session_state.pop("_annotation_saved"))
    thumb = Image.open(io.BytesIO(bytes(meta["thumbnail"]))).convert("RGB")
    left, right = st.columns([3, 2])
    with left:
        st.image(thumb, width="stretch")
    with right:
        mark = ":green" if meta["correct"] else ":red"
        st.markdown(f"The collection's label: **{md_escape(meta['period'])}**  \n"
                    f"The model's guess: {mark}[**{md_escape(meta['pred_label'])}**] "
                    f"({meta['confidence']:.0%} confident)")
        facts = " · ".join(md_escape(meta[k]) for k in ("artist", "title", "date") if meta[k])
        if facts:
            st.caption(facts)
        if access.can_review():
            verdict_buttons(run_id, str(meta["dataset_id"]), image_id, where)
        nav = st.columns(2)
        nav[0].button("← previous", key="review_previous", disabled=where.previous is None, on_click=_go,
                      args=(where.previous,), width="stretch")
        nav[1].button("skip →", key="review_skip", disabled=where.next in (None, image_id), on_click=_go,
                      args=(where.next,), width="stretch")
        current = verdicts.annotations_for(str(meta["dataset_id"]), image_id)
        current = current[current["current"]]
        if not current.empty:
            st.caption("Current verdicts on this painting: " + "; ".join(
                f"{md_escape(r.verdict)} ({md_escape(r.author)})" for r in current.itertuples()))
    review_maps(run_id, str(meta["dataset_id"]), image_id, thumb)


def verdict_buttons(run_id: str, dataset_id: str, image_id: str, where: q.Place) -> None:
    """Name, note and one button per verdict: a click saves the verdict and moves to the next painting."""
    author = st.text_input("Your name", value=default_author(), key="review_author")
    note = st.text_input("Note (optional)", key=f"review_note_{image_id}")
    buttons = st.columns(2)
    for n, verdict in enumerate(verdicts.VERDICTS):
        if buttons[n % 2].button(verdict, key=f"review_{verdict}", width="stretch", type="primary"):
            try:
                verdicts.save_annotation(dataset_id, image_id, run_id, verdict, note, author)
            except verdicts.AnnotationError as exc:
                st.error(md_escape(exc, lines=True))
                return
            st.session_state["_annotation_author"] = author.strip()
            st.session_state["_annotation_saved"] = f"Saved: {md_escape(verdict)} on {md_escape(image_id)}."
            last = where.next in (None, image_id) or where.position == where.total
            _go(image_id if last else where.next)
            st.rerun()


# ---------------------------------------------------------------- import and the list


def import_section() -> None:
    """An upload box for the verdicts file an exported gallery's "Download my verdicts" button wrote."""
    with st.expander("Import verdicts from an exported gallery", expanded="_import_report" in st.session_state):
        st.caption("The CSV the gallery's \"Download my verdicts\" button wrote. Rows are matched to paintings by "
                   "content hash; a row that does not fit is listed and skipped; importing a file again adds nothing.")
        upload = st.file_uploader("Verdicts file (CSV)", type=["csv"], key="verdicts_upload")
        if upload is not None and st.session_state.get("_import_done") != upload.file_id:
            st.session_state["_import_done"] = upload.file_id
            if upload.size > verdicts.writer.MAX_BYTES:
                st.session_state["_import_report"] = ("error", [
                    f"The file is {upload.size / 1e6:.1f} MB; a verdicts file may be at most "
                    f"{verdicts.writer.MAX_BYTES / 1e6:.0f} MB."])
            else:
                try:
                    report = verdicts.import_verdicts(upload.getvalue())
                    st.session_state["_import_report"] = ("warning" if report.skipped else "success", report.lines())
                except verdicts.AnnotationError as exc:
                    st.session_state["_import_report"] = ("error", [str(exc)])
        if "_import_report" in st.session_state:
            kind, lines = st.session_state["_import_report"]
            text = f"Imported {md_escape(upload.name) if upload else 'the file'}: {md_escape(lines[0])}"
            if kind == "error":
                text = md_escape(lines[0])
            getattr(st, kind)("  \n".join([text, *(md_escape(line) for line in lines[1:])]))


def list_section() -> None:
    st.subheader("All annotations")
    c1, c2, c3 = st.columns(3)
    with c1:
        chosen_verdicts = state.choose_many("Verdict", verdicts.VERDICTS, "verdict")
    with c2:
        authors = state.choose_many("Author", verdicts.authors(), "author")
    with c3:
        chosen_runs = state.choose_many("Run annotated", verdicts.annotated_runs(), "runs")
    state.seed("w_versions", state.get("versions") == "all")
    every = st.toggle("Show every version (edits and withdrawals)", key="w_versions")
    state.put(versions="all" if every else None)
    state.remember("w_versions", every)
    table = verdicts.list_annotations(chosen_verdicts, authors, chosen_runs, all_versions=every)
    if table.empty:
        st.caption("No annotations match." if chosen_verdicts or authors or chosen_runs else "No annotations yet.")
        return
    table.insert(0, "inspect", [f"inspector?{urlencode({'run': r or '', 'image': i})}"
                                for r, i in zip(table["run_id"], table["image_id"], strict=True)])
    noun = "rows, every version" if every else "current annotations"
    st.caption(f"{len(table):,} {noun} · times in UTC")
    st.dataframe(table, hide_index=True, column_config={
        "inspect": st.column_config.LinkColumn("inspect", display_text="open"),
        "confidence": st.column_config.NumberColumn(format="%.2f"),
        "created_at": st.column_config.DatetimeColumn("when (UTC)", format="YYYY-MM-DD HH:mm"),
    })
    st.download_button("Download CSV", frame_csv(table.drop(columns="inspect")),
                       file_name="periodeye-annotations.csv", mime="text/csv", on_click="ignore",
                       icon=":material/download:")


st.title("Annotations")
if not access.can_review():
    st.info(READ_ONLY, icon=":material/visibility:")
if state.get("review") == "1":
    review_section(runs())
else:
    annotate_section(runs())
if access.can_review():
    import_section()
list_section()
