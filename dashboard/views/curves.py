"""Training curves: loss, accuracy (and artist accuracy) per epoch, train and val, and the learning
rate on a log axis; a dotted line where a run's stage changes (head → finetune), a star on the
epoch whose weights the run kept.

URL state: `runs` (repeated).
"""

from __future__ import annotations

import math

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from dashboard.queries import curves as q
from dashboard.queries.runs import runs
from dashboard.text import md_escape
from dashboard.ui import choose_runs, kept_note


def long_form(rows: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """Train/val columns stacked into one `value` column with a `series` name, for one plotly line each."""
    present = [c for c in columns if c in rows and rows[c].notna().any()]
    long = rows.melt(id_vars=["run_id", "stage", "epoch"], value_vars=present, var_name="series", value_name="value")
    return long.dropna(subset=["value"]).assign(series=lambda d: d["series"].map(columns))


def run_colours(run_ids: list[str]) -> dict[str, str]:
    """One colour per run, the same on every chart (a chart missing a run would otherwise shift them)."""
    palette = px.colors.qualitative.Plotly
    return {run_id: palette[i % len(palette)] for i, run_id in enumerate(run_ids)}


def mark_stages(fig: go.Figure, changes: pd.DataFrame, several: bool, epochs: tuple[int, int]) -> None:
    """A dotted vertical line between the last epoch of one stage and the first of the next, labelled on the side
    with more room (the x-axis range is fixed, so a long label cannot stretch it); the run is named when several
    are charted (by its short name)."""
    middle = sum(epochs) / 2
    for epoch, group in changes.groupby("epoch", sort=True):
        text = "<br>".join(f"{short(r.run_id)}:<br>{r.previous} → {r.stage}" if several
                           else f"{r.previous} → {r.stage}" for r in group.itertuples())
        fig.add_vline(x=epoch - 0.5, line_dash="dot", line_color="grey", annotation_text=text,
                      annotation_position="top left" if epoch - 0.5 > middle else "top right",
                      annotation_font_size=10)


def short(run_id: str) -> str:
    """A run's name without its experiment ("demo/lite0-head" → "lite0-head"): labels inside a plot stay short."""
    return run_id.rsplit("/", 1)[-1]


DASHES = {"train": "solid", "val": "dot"}


def curve_chart(rows: pd.DataFrame, columns: dict[str, str], title: str, changes: pd.DataFrame,
                colours: dict[str, str], log_y: bool = False, range_y: list[float] | None = None) -> go.Figure | None:
    """One metric family per chart: colour = run, dash = train/val, one legend entry per run below the plot."""
    long = long_form(rows, columns)
    if long.empty:
        return None
    fig = go.Figure()
    charted = [r for r in colours if r in set(long["run_id"])]
    for run_id in charted:
        for n, (series, part) in enumerate(long[long["run_id"] == run_id].groupby("series", sort=False)):
            fig.add_trace(go.Scatter(
                x=part["epoch"], y=part["value"], mode="lines+markers", name=run_id, legendgroup=run_id,
                showlegend=n == 0, meta=series, customdata=part["stage"],
                line={"color": colours[run_id], "dash": DASHES.get(str(series), "solid")},
                hovertemplate=f"{run_id}, {series}<br>epoch %{{x}} (%{{customdata}}): %{{y:.4g}}<extra></extra>"))
    first, last = int(long["epoch"].min()), int(long["epoch"].max())
    fig.update_xaxes(title="epoch", range=[min(first, 1) - 0.3, max(last, 1) + 0.3], autorange=False,
                     dtick=1 if last <= 30 else None)
    fig.update_yaxes(title=title.lower())
    if range_y:
        fig.update_yaxes(range=range_y)
    if log_y:
        log_axis(fig, long["value"])
    fig.update_layout(title=title, height=380 + 22 * math.ceil(len(charted) / 2), margin={"t": 50, "b": 10},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0, "title": {"text": "run"}})
    mark_stages(fig, changes[changes["run_id"].isin(charted)], several=len(charted) > 1,
                epochs=(first, last))
    return fig


def log_axis(fig: go.Figure, values: pd.Series) -> None:
    """A log axis labelled 1e-4 style: every power of ten in range, and 2× and 5× when it spans few decades."""
    positive = values[values > 0]
    if positive.empty:
        return
    low, high = math.floor(math.log10(positive.min())), math.ceil(math.log10(positive.max()))
    high = max(high, low + 1)
    steps = (1, 2, 5) if high - low <= 2 else (1,)
    ticks = [m * 10.0 ** k for k in range(low, high + 1) for m in steps if m * 10.0 ** k <= 10.0 ** high]
    fig.update_yaxes(type="log", range=[low - 0.05, high + 0.05], tickmode="array", tickvals=ticks,
                     ticktext=[sci(v) for v in ticks])


def sci(value: float) -> str:
    """1e-4, 2e-3, 1e0: short scientific notation for a log axis tick."""
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


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
chosen = choose_runs("Runs", table)
if note := kept_note(chosen):
    st.caption(note)

rows = q.epochs(chosen)
if rows.empty:
    st.info("These runs recorded no epochs (nothing was trained).")
    st.stop()
changes = q.stage_changes(chosen)
missing = sorted(set(chosen) - set(rows["run_id"]))
if missing:
    st.caption(f"No epochs recorded for: {md_escape(', '.join(missing))}")

colours = run_colours([r for r in chosen if r in set(rows["run_id"])])
charts = [
    ({"train_loss": "train", "val_loss": "val"}, "Loss", False, None),
    ({"train_acc": "train", "val_acc": "val"}, "Period accuracy", False, [0, 1.02]),
    ({"train_artist_acc": "train", "val_artist_acc": "val"}, "Artist accuracy", False, [0, 1.02]),
    ({"lr": "learning rate"}, "Learning rate", True, None),
]
figures = []
for columns, title, log_y, range_y in charts:
    fig = curve_chart(rows, columns, title, changes, colours, log_y, range_y)
    if fig is None:
        continue
    if title == "Period accuracy":
        mark_best(fig, q.best_epochs(chosen))
    figures.append(fig)
for start in range(0, len(figures), 2):  # rows of two, so a phone stacks them in reading order
    for col, fig in zip(st.columns(2), figures[start:start + 2], strict=False):
        col.plotly_chart(fig, width="stretch")

if not changes.empty:
    st.caption("Dotted lines: where a run moves to its next stage (e.g. from training the head on frozen "
               "features to fine-tuning every layer at a lower learning rate).")
st.caption("Solid lines: the training set; dotted: the validation set. Stars: the epoch whose weights each run "
           "kept (best validation accuracy; ties go to the earlier epoch).")
with st.expander("Epochs as a table"):
    st.dataframe(rows, hide_index=True)
