"""Small pieces several pages share."""

from __future__ import annotations

import html
import math
import re

import pandas as pd
import streamlit as st

from dashboard import state

# Characters that mean something anywhere in a line of Markdown: emphasis, code, links and images, strikethrough,
# Streamlit's :emoji: and :color[…], $math$, tables. (HTML's < > & are escaped as entities.)
_INLINE = re.compile(r"([\\`*_\[\]()!~$:{}|^])")
# ... and what means something only at the start of a line: a heading, a list, a quote, a setext rule.
_LINE_START = re.compile(r"^(\s*)(#|[-+=]|\d+(?=[.)]))")
_WWW = re.compile(r"\b(www)\.", re.IGNORECASE)  # GFM links www.… by itself


def md_escape(value: object, lines: bool = False) -> str:
    """Text from the store (a title, an artist, a period, a path, a run name) or from a URL, shown literally by
    st.markdown and by everything that reads Markdown (captions, alerts, labels, image captions): HTML-escaped, so
    no tag survives even where HTML is allowed, and Markdown-escaped, so `![t](http://…)` fetches nothing and
    `_x_` stays as typed. One line (whitespace collapsed), or with `lines` its line breaks kept."""
    rows = str(value).splitlines() if lines else [" ".join(str(value).split())]
    return "  \n".join(_escape_line(row) for row in rows)


def _escape_line(row: str) -> str:
    row = _WWW.sub(r"\1\\.", _INLINE.sub(r"\\\1", html.escape(row, quote=False)))
    match = _LINE_START.match(row)
    if match:  # "# x", "- x", "1. x": the marker (for a number, the dot after it) escaped
        cut = match.end(1) + (len(match.group(2)) if match.group(2)[0].isdigit() else 0)
        row = f"{row[:cut]}\\{row[cut:]}"
    return row


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


def choose_runs(label: str, table: pd.DataFrame, default: list[str]) -> list[str]:
    """Several runs, kept in the URL under `runs`; stops with a hint when none is chosen."""
    if not state.get_list("runs"):
        state.put(runs=default)
    chosen = state.choose_many(label, table["run_id"].tolist(), "runs")
    if not chosen:
        st.info("Pick one or more runs.")
        st.stop()
    return chosen
