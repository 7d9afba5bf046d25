"""Small pieces several pages share."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from dashboard import state
from dashboard.queries.runs import kept_epochs
from dashboard.text import md_escape, with_interval


def similarity(value: float, digits: int = 2) -> str:
    """A cosine similarity for a caption; '–' where it is undefined (an all-zero embedding has no direction)."""
    return "–" if pd.isna(value) else f"{value:.{digits}f}"


PAGE_SIZE = 24  # thumbnails per page, on every paged grid


def pager(key: str, total: int, copy: str = "") -> int:
    """The one pager of every paged grid: "page k of n" between ← previous and next →, the page kept in the URL under
    `key` (absent means 1) so a link restores it. A link's page past the end (the store or the filters changed since)
    shows the last page and says so. Draws nothing when everything fits on one page; returns the page, from 1.
    A second pager over the same grid (one above, one below it) passes a `copy` name: its buttons get their own
    widget keys (`{key}_{copy}_next`), and the note about a missing page is not said twice."""
    pages = max(1, math.ceil(total / PAGE_SIZE))
    asked = state.get_int(key, 1)
    page_no = min(max(asked, 1), pages)
    if asked != page_no and not copy:
        st.info(f"There is no page {asked}: {total:,} images fill {pages} page{'s' if pages > 1 else ''}. "
                f"Showing page {page_no}.")
    state.put(**{key: page_no if page_no > 1 else None})
    if pages == 1:
        return page_no
    prev_col, info_col, next_col = st.columns([1, 2, 1], vertical_alignment="center")
    widget = f"{key}_{copy}" if copy else key
    prev_col.button("← previous", key=f"{widget}_previous", disabled=page_no <= 1, on_click=_go,
                    args=(key, page_no - 1))
    info_col.markdown(f"page {page_no} of {pages}")
    next_col.button("next →", key=f"{widget}_next", disabled=page_no >= pages, on_click=_go, args=(key, page_no + 1))
    return page_no


def _go(key: str, page_no: int) -> None:
    """A pager button's click: the URL moves to the page before the rerun draws it."""
    state.put(**{key: page_no if page_no > 1 else None})


def best_run(table: pd.DataFrame) -> str:
    """Every page's default run: the trained run with the best test accuracy (ties: the first by name), not the
    alphabetically first. An evaluation on another collection is not a candidate: its accuracy is that collection's."""
    trained = table[table["evaluation_of"].isna() & table["test_accuracy"].notna()]
    ranked = (trained if not trained.empty else table).sort_values(
        ["test_accuracy", "run_id"], ascending=[False, True], na_position="last")
    return str(ranked["run_id"].iloc[0])


def best_run_caption(table: pd.DataFrame, run_id: str) -> str:
    """Which run is the best by test accuracy, and how the one shown compares: said under every run picker."""
    accuracy = table.set_index("run_id")["test_accuracy"]
    best = best_run(table)
    if pd.isna(accuracy.get(best)):
        return ""
    if run_id == best:
        return f"The best run by test accuracy ({accuracy_text(table, best)}): shown when a link names none."
    own = "" if pd.isna(accuracy.get(run_id)) else f"; this run {accuracy_text(table, run_id)}"
    return f"Best by test accuracy: {md_escape(best)} ({accuracy_text(table, best)}{own})."


def accuracy_text(table: pd.DataFrame, run_id: str) -> str:
    """A run's test accuracy with its 95 % interval ('0.459 ± 0.026'), from runs()."""
    row = table.set_index("run_id").loc[run_id]
    return with_interval(row["test_accuracy"], row.get("test_accuracy_low"), row.get("test_accuracy_high"))


def choose_run(table: pd.DataFrame, label: str = "Run", key: str = "run") -> str:
    """The one run picker of a single-run page: kept in the URL under `key`, the best run by test accuracy when the
    link names none (and a caption saying so), a link's unknown run said on screen (state.choose)."""
    run_id = state.choose(label, table["run_id"].tolist(), key, default=best_run(table))
    assert run_id is not None  # Home.py shows no page over a store without runs
    caption = best_run_caption(table, run_id)
    if caption:
        st.caption(caption)
    return run_id


def default_runs(table: pd.DataFrame, limit: int | None = None) -> list[str]:
    """A multi-run page's default: the runs trained on the best run's dataset (comparable image by image), best test
    accuracy first; at most `limit`."""
    best = best_run(table)
    dataset = table.loc[table["run_id"] == best, "trained_on"].iloc[0]
    same = table[(table["trained_on"] == dataset) & table["evaluation_of"].isna()]
    ranked = same.sort_values(["test_accuracy", "run_id"], ascending=[False, True], na_position="last")
    return ranked["run_id"].head(limit).tolist() if limit else ranked["run_id"].tolist()


def choose_runs(label: str, table: pd.DataFrame, default: list[str] | None = None) -> list[str]:
    """Several runs, kept in the URL under `runs` (by default `default_runs`); stops with a hint when none is
    chosen. Says which run is the best by test accuracy."""
    if not state.get_list("runs"):
        state.put(runs=default if default is not None else default_runs(table))
    chosen = state.choose_many(label, table["run_id"].tolist(), "runs")
    if not chosen:
        st.info("Pick one or more runs.")
        st.stop()
    best = best_run(table)
    accuracy = table.set_index("run_id")["test_accuracy"].get(best)
    if not pd.isna(accuracy):
        st.caption(f"Best by test accuracy: {md_escape(best)} ({accuracy_text(table, best)})"
                   f"{', chosen here' if best in chosen else ''}.")
    return chosen


def kept_note(run_ids: list[str], each: bool = True) -> str:
    """Which stage and epoch each run kept (best validation accuracy), and which two-stage runs kept their head stage
    because fine-tuning never beat it (then the same model as a head run): a caption for the Curves (and, without
    `each` run's line, for the Overview, whose table shows them)."""
    kept = kept_epochs(run_ids)
    if kept.empty:
        return ""
    parts = [f"{md_escape(row.run_id)}: {md_escape(row.kept_stage)} stage, epoch {row.best_epoch}"
             if isinstance(row.kept_stage, str) else f"{md_escape(row.run_id)}: epoch {row.best_epoch}"
             for row in kept.itertuples()]
    note = "Kept weights (best validation accuracy): " + "; ".join(parts) + "." if each else ""
    stuck = [row.run_id for row in kept.itertuples() if never_beat_first_stage(row.stages, row.kept_stage)]
    if stuck:
        note += (f"{' ' if note else '† '}Fine-tuning never beat the head stage in {md_escape(', '.join(stuck))}: "
                 "the head stage's weights were kept, so the stored model is that of a head-only run.")
    return note


def never_beat_first_stage(stages, kept_stage: object) -> bool:
    """A run of several stages that kept the weights of its first one."""
    stages = list(stages) if stages is not None else []
    return len(stages) > 1 and kept_stage == stages[0]


# Plotly draws its toolbar over the top-right of a chart, where a title runs on a phone-width screen (a tap shows it,
# and it stays). Below this width it is hidden: a touch screen zooms and pans with gestures, and double-tap resets.
CHART_TOOLBAR_MAX_HIDDEN_PX = 640


def chart_toolbar_rule() -> None:
    """Every Plotly chart on the page without its toolbar on narrow screens (called once, from Home.py, so every
    page and chart gets it): style only, so it takes no room in the page."""
    st.html(f"<style>@media (max-width: {CHART_TOOLBAR_MAX_HIDDEN_PX}px) {{ .js-plotly-plot .modebar-container "
            "{ display: none !important; } }</style>")
