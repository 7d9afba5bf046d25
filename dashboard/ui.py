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


def page_from_url(key: str, total: int) -> tuple[int, int]:
    """The page the URL asks for under `key` (absent means 1), kept within the pages `total` rows fill; and that
    count. A shared link to a page that no longer exists (the store changed) lands on the last one."""
    pages = max(1, math.ceil(total / PAGE_SIZE))
    return min(max(state.get_int(key, 1), 1), pages), pages


def page_buttons(key: str, page_no: int, pages: int) -> None:
    """← previous / next → under a grid: each moves the URL's page under `key` and reruns."""
    prev_col, info_col, next_col = st.columns([1, 2, 1])
    if prev_col.button("← previous", disabled=page_no <= 1):
        state.put(**{key: page_no - 1})
        st.rerun()
    info_col.markdown(f"page {page_no} of {pages}")
    if next_col.button("next →", disabled=page_no >= pages):
        state.put(**{key: page_no + 1})
        st.rerun()


def page_picker(label: str, key: str, total: int) -> int:
    """A page number box for a grid, kept in the URL under `key` (absent means page 1); none for a single page."""
    current, pages = page_from_url(key, total)
    if pages == 1:
        state.put(**{key: None})
        return 1
    widget_key = f"w_{key}_{pages}"
    state.seed(widget_key, current)
    page = int(st.number_input(f"{label} (of {pages})", 1, pages, key=widget_key))
    state.put(**{key: page if page > 1 else None})
    state.remember(widget_key, page)
    return page


def choose_runs(label: str, table: pd.DataFrame, default: list[str]) -> list[str]:
    """Several runs, kept in the URL under `runs`; stops with a hint when none is chosen."""
    if not state.get_list("runs"):
        state.put(runs=default)
    chosen = state.choose_many(label, table["run_id"].tolist(), "runs")
    if not chosen:
        st.info("Pick one or more runs.")
        st.stop()
    return chosen
