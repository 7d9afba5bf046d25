"""Calibration: can a run's confidence be trusted? The reliability diagram before and after temperature scaling.

A point per confidence bin: the images' mean confidence across, their accuracy up; on the diagonal a run's
confidence means what it says. Temperature scaling (fitted on the validation split, pipeline/calibration.py)
moves the points towards it without changing any predicted class. The expected calibration error (ECE) is the
size-weighted gap, in words; the bins' counts are in the table below the chart.

URL state: `run`, `split` (default test), `task` (default period).
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import state
from dashboard.queries import calibration as q
from dashboard.queries.runs import runs
from dashboard.text import md_escape
from dashboard.ui import choose_run

SERIES = {"before": ("before scaling", "#d62728", "dot"), "after": ("after scaling", "#1f77b4", "solid")}
ONLY = ("as stored (not scaled)", "#1f77b4", "solid")


def ece_from_bins(part: pd.DataFrame) -> float | None:
    """The ECE of one series' bins (for runs stored before the ECE was): size-weighted |confidence - accuracy|."""
    if part.empty:
        return None
    return float((part["n"] * (part["confidence"] - part["accuracy"]).abs()).sum() / part["n"].sum())


def diagram(bins: pd.DataFrame, scaled: bool) -> go.Figure:
    """Accuracy against confidence per bin, before and after scaling, with the diagonal of perfect calibration."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                             line={"color": "grey", "dash": "dash", "width": 1}, hoverinfo="skip"))
    for scaling, part in bins.groupby("scaling", sort=False):
        name, colour, dash = SERIES[str(scaling)] if scaled else ONLY
        fig.add_trace(go.Scatter(
            x=part["confidence"], y=part["accuracy"], mode="lines+markers", name=name,
            line={"color": colour, "dash": dash}, marker={"size": 6 + 14 * (part["n"] / part["n"].max()) ** 0.5},
            customdata=part[["n", "low", "high"]],
            hovertemplate=(f"{name}<br>confidence %{{customdata[1]:.2f}}–%{{customdata[2]:.2f}}: "
                           "%{customdata[0]} images<br>mean confidence %{x:.3f}, accuracy %{y:.3f}<extra></extra>")))
    fig.update_xaxes(title="mean confidence in the bin", range=[0, 1.02], constrain="domain")
    fig.update_yaxes(title="accuracy in the bin", range=[0, 1.02])
    fig.update_layout(height=460, margin={"t": 30, "b": 10, "l": 10, "r": 10},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.18, "x": 0})
    return fig


def bin_table(bins: pd.DataFrame, scaled: bool) -> pd.DataFrame:
    """One row per confidence bin: images and accuracy before and after scaling, side by side."""
    wide = bins.pivot(index=["low", "high"], columns="scaling", values=["n", "accuracy"]).sort_index()
    out = pd.DataFrame({"confidence": [f"{lo:.2f}–{hi:.2f}" for lo, hi in wide.index]})
    for scaling in ("before", "after") if scaled else ("after",):
        label = "" if not scaled else f" {scaling}"
        out[f"images{label}"] = wide[("n", scaling)].fillna(0).astype(int).to_numpy()
        out[f"accuracy{label}"] = wide[("accuracy", scaling)].to_numpy()
    return out


st.title("Calibration")
st.caption("Whether a run's confidence means what it says: of the images given 80 % confidence, about 80 % "
           "should be right. Temperature scaling divides the logits by one number fitted on the validation split; "
           "it changes confidence, never the predicted period.")

table = runs()
run_id = choose_run(table)
split = state.choose("Split", q.splits(run_id) or ["test"], "split", default="test")
task_options = q.tasks(run_id) or ["period"]
task = state.choose("Task", task_options, "task", default="period") if len(task_options) > 1 else task_options[0]
assert split is not None and task is not None

temps = q.temperatures(run_id)
fit = temps[temps["task"] == task]
scaled = not fit.empty
bins = q.bins(run_id, split, task)
if bins.empty:
    st.info(f"No labelled {md_escape(split)} images for this run: nothing to calibrate against.")
    st.stop()

stored = q.errors(run_id, split, task)
after = stored.get("ece", ece_from_bins(bins[bins["scaling"] == "after"]))
if scaled:
    row = fit.iloc[0]
    on = f"{int(row['n']):,} validation images" if pd.notna(row["n"]) else md_escape(str(row["fitted_on"]))
    before = stored.get("ece_uncalibrated", ece_from_bins(bins[bins["scaling"] == "before"]))
    effect = "softened: the run was overconfident" if row["temperature"] > 1 else "sharpened: it was underconfident"
    st.markdown(f"**Temperature T = {row['temperature']:.3f}**, fitted on {on} ({effect}).")
    st.markdown(f"Expected calibration error on the **{md_escape(split)}** split: **{before:.3f} before scaling, "
                f"{after:.3f} after** (15 bins; 0 means confidence matches accuracy).")
else:
    st.info("This run was not calibrated: it has no temperature of its own (made with `calibrate: false`, before "
            "temperature scaling existed, with too few validation images, or an ensemble, which averages its "
            "members' calibrated probabilities). Its probabilities are shown as stored.")
    st.markdown(f"Expected calibration error on the **{md_escape(split)}** split: **{after:.3f}** "
                "(15 bins; 0 means confidence matches accuracy).")

st.plotly_chart(diagram(bins, scaled), width="stretch", key="reliability")
st.caption("Each point is a confidence bin (its size grows with its images); below the dashed diagonal the run "
           "was more confident than right. Images per bin:")
st.dataframe(bin_table(bins, scaled), hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(format="%.3f")
                            for c in ("accuracy", "accuracy before", "accuracy after")})
