"""SQL: ask the store anything it can answer with one read-only query; the query lives in the URL."""

from __future__ import annotations

import streamlit as st

from dashboard import state
from dashboard.export import frame_csv
from dashboard.queries import sql_console, store_path, store_version
from dashboard.text import md_escape

WIDGET = "w_q"
KEEP_BYTES = 2 * 2**20  # a result kept in the session (to redraw without running again) is at most this big


def seed_editor(url_sql: str) -> None:
    """Show the URL's query in the editor when the URL changed (a shared link); keep the user's edits otherwise."""
    state.seed(WIDGET, url_sql)


def use_example(text: str) -> None:
    st.session_state[WIDGET] = text
    state.remember(WIDGET, text)
    state.put(q=text)


def result_for(sql: str, force: bool) -> sql_console.Result:
    """Run the query, or reuse this session's last result while the query and the store are unchanged.

    Only a small result is kept: sessions live as long as their browser tabs, and a big one runs again."""
    key = (str(store_path()), store_version(), sql)
    last = st.session_state.pop("_sql_last", None)
    if not force and last and last[0] == key:
        result = last[1]
    else:
        with st.spinner("Running…"):
            result = sql_console.run_query(store_path(), sql)
    if result.frame is None or result.frame.memory_usage(deep=True).sum() <= KEEP_BYTES:
        st.session_state["_sql_last"] = (key, result)
    return result


def limits_note(result: sql_console.Result) -> str | None:
    """What the console left out, in words (None when the whole result is shown)."""
    notes = []
    if result.stopped == "rows":
        notes.append(f"showing the first {len(result.frame):,} rows: the console fetches at most "
                     f"{sql_console.MAX_ROWS:,}")
    elif result.stopped == "bytes":
        notes.append(f"showing the first {len(result.frame):,} rows: the console returns at most "
                     f"{sql_console.MAX_BYTES // 2**20} MB")
    if result.cells_cut:
        notes.append(f"{result.cells_cut:,} long values are cut to {sql_console.MAX_CELL_CHARS:,} characters")
    if not notes:
        return None
    text = "; ".join(notes)
    return f"{text[0].upper()}{text[1:]}. Aggregate, select fewer or shorter columns, or add a LIMIT/OFFSET."


def show(result: sql_console.Result) -> None:
    if not result.ok:
        st.error(md_escape(result.error, lines=True))  # it may quote the query, which a shared link wrote
        return
    frame = result.frame
    note = limits_note(result)
    if note:
        st.warning(note)
    st.caption(f"{len(frame):,} rows · {result.seconds:.2f} s")
    st.dataframe(frame, hide_index=True)
    st.download_button("Download CSV", frame_csv(frame), file_name="periodeye-query.csv", mime="text/csv",
                       on_click="ignore", icon=":material/download:")


st.title("SQL")
sql_console.warm_up()

st.caption(f"One read-only query over the store: no writes, no files, no network; at most "
           f"{sql_console.MAX_ROWS:,} rows, {sql_console.MAX_BYTES // 2**20} MB, {sql_console.TIME_LIMIT_S:g} s "
           f"and {sql_console.MEMORY_LIMIT} of memory. The query is kept in the URL, so a link to this page shares it.")
with st.expander("Tables"):
    st.dataframe(sql_console.tables(), hide_index=True)

# Buttons as wide as their labels, wrapping onto more lines when narrow: in equal columns the labels were cut off.
examples = st.container(horizontal=True, wrap=True, gap="small")
for name, text in sql_console.EXAMPLES.items():
    examples.button(name, on_click=use_example, args=(text,), width="content")

seed_editor(state.get("q", "") or "")
with st.form("sql"):
    st.text_area("Query", key=WIDGET, height=200, placeholder="SELECT * FROM runs")
    submitted = st.form_submit_button("Run", type="primary", icon=":material/play_arrow:")
sql = st.session_state[WIDGET].strip()
if submitted:
    state.put(q=sql)
    state.remember(WIDGET, sql)
if sql:
    show(result_for(sql, force=submitted))
