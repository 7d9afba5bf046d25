"""Training curves: loss, accuracy (and artist accuracy) per epoch, train and val, and the learning
rate on a log axis; a dotted line where a run's stage changes (head → finetune), a star on the
epoch whose weights the run kept.

URL state: `runs` (repeated).
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from dashboard.queries import curves as q
from dashboard.queries.runs import runs
from dashboard.ui import choose_runs, md_escape


def default_runs(table: pd.DataFrame) -> list[str]:
    """Every run of the first run's dataset: curves on one dataset are comparable."""
    first = table.iloc[0]["dataset_id"]
    return table.loc[table["dataset_id"] == first, "run_id"].tolist()


def long_form(rows: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """Train/val columns stacked into one `value` column with a `series` name, for one plotly line each."""
    present = [c for c in columns if c in rows and rows[c].notna().any()]
    long = rows.melt(id_vars=["run_id", "stage", "epoch"], value_vars=present, var_name="series", value_name="value")
    return long.dropna(subset=["value"]).assign(series=lambda d: d["series"].map(columns))


def mark_stages(fig: go.Figure, changes: pd.DataFrame) -> None:
    """A dotted vertical line between the last epoch of one stage and the first of the next."""
    for epoch, group in changes.groupby("epoch", sort=True):
        text = "<br>".join(f"{r.run_id}: {r.previous} → {r.stage}" for r in group.itertuples())
        fig.add_vline(x=epoch - 0.5, line_dash="dot", line_color="grey", annotation_text=text,
                      annotation_position="top left", annotation_font_size=10)


def curve_chart(rows: pd.DataFrame, columns: dict[str, str], title: str, changes: pd.DataFrame,
                log_y: bool = False, range_y: list[float] | None = None) -> go.Figure | None:
    """One metric family per chart: colour = run, dash = train/val."""
    long = long_form(rows, columns)
    if long.empty:
        return None
    fig = px.line(long, x="epoch", y="value", color="run_id", line_dash="series", markers=True, log_y=log_y,
                  range_y=range_y, hover_data=["stage"], title=title,
                  labels={"value": title.lower(), "run_id": "run", "series": ""})
    fig.update_xaxes(dtick=1 if rows["epoch"].max() <= 30 else None)
    mark_stages(fig, changes)
    return fig


def mark_best(fig: go.Figure, best: pd.DataFrame) -> None:
    """A star on each run's kept epoch (best validation accuracy)."""
    best = best.dropna(subset=["val_acc"])
    if best.empty:
        return
    fig.add_trace(go.Scatter(x=best["best_epoch"], y=best["val_acc"], mode="markers", name="kept epoch",
                             marker={"symbol": "star", "size": 14, "color": "gold", "line": {"width": 1}},
                             text=best["run_id"], hovertemplate="%{text}: kept epoch %{x}<extra></extra>"))


st.title("Training curves")

table = runs()
chosen = choose_runs("Runs", table, default_runs(table))

rows = q.epochs(chosen)
if rows.empty:
    st.info("These runs recorded no epochs (nothing was trained).")
    st.stop()
changes = q.stage_changes(chosen)
missing = sorted(set(chosen) - set(rows["run_id"]))
if missing:
    st.caption(f"No epochs recorded for: {md_escape(', '.join(missing))}")

charts = [
    ({"train_loss": "train", "val_loss": "val"}, "Loss", False, None),
    ({"train_acc": "train", "val_acc": "val"}, "Period accuracy", False, [0, 1.02]),
    ({"train_artist_acc": "train", "val_artist_acc": "val"}, "Artist accuracy", False, [0, 1.02]),
    ({"lr": "learning rate"}, "Learning rate", True, None),
]
left, right = st.columns(2)
shown = 0
for columns, title, log_y, range_y in charts:
    fig = curve_chart(rows, columns, title, changes, log_y, range_y)
    if fig is None:
        continue
    if title == "Period accuracy":
        mark_best(fig, q.best_epochs(chosen))
    (left if shown % 2 == 0 else right).plotly_chart(fig, width="stretch")
    shown += 1

if not changes.empty:
    st.caption("Dotted lines: where a run moves to its next stage (e.g. from training the head on frozen "
               "features to fine-tuning every layer at a lower learning rate).")
st.caption("Stars: the epoch whose weights each run kept (best validation accuracy; ties go to the earlier epoch).")
with st.expander("Epochs as a table"):
    st.dataframe(rows, hide_index=True)
