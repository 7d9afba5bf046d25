"""Compare runs: metrics side by side, per-class F1, confusion matrices and their difference,
the images one run gets right and the other wrong, and a McNemar test on those images.

URL state: `runs` (repeated; the first is A, the second B), `split`, `task`, `norm` (row-normalised
confusion), `side` (which disagreements: `ab` A right and B wrong, or `ba`), `page_ab` / `page_ba` (thumbnail pages).
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from scipy.stats import binomtest

from dashboard import state
from dashboard.export import compare_export, export_name, gallery_file
from dashboard.queries import compare as q
from dashboard.queries.runs import labels, runs
from dashboard.text import corrections_words, md_escape, with_interval
from dashboard.ui import PAGE_SIZE, choose_runs, default_runs, pager
from pipeline.intervals import difference_words, paired_difference_from_counts, wilson

GRID = 8
EXPORT_LIMIT = 500
METRIC_NAMES = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "macro_f1": "macro-F1",
    "top2_accuracy": "top-2 accuracy",
    "adjacent_error_share": "adjacent-error share",
    "loss": "loss",
    "n": "images",
}


def class_order(run_ids: list[str], task: str) -> list[str]:
    """Classes in the first run's chronological order; any others the later runs add, after them."""
    order: list[str] = []
    for run_id in run_ids:
        order += [label for label in labels(run_id, task) if label not in order]
    return order


def metrics_table(run_ids: list[str], split: str, task: str) -> pd.DataFrame:
    """Rows = runs (plus B − A for the first two), columns = headline metrics, each as text with its 95 % interval
    ('0.459 ± 0.026'; dashboard.text.with_interval). Accuracies stored without one (before schema 6) get Wilson's
    from the value and the run's n. B − A is the plain difference: its interval is the paired sentence below."""
    long = q.overall_metrics(run_ids, split, task)
    if long.empty:
        return pd.DataFrame()
    wide = {c: long.pivot_table(index="run_id", columns="metric", values=c, aggfunc="first", dropna=False)
            .reindex(index=run_ids) for c in ("value", "low", "high")}
    columns = [m for m in METRIC_NAMES if m in wide["value"].columns]
    value, low, high = (w.reindex(columns=columns) for w in (wide["value"], wide["low"], wide["high"]))
    for metric in ("accuracy", "top2_accuracy"):
        if metric in columns and "n" in columns:
            for run_id in run_ids:
                v, n = value.loc[run_id, metric], value.loc[run_id, "n"]
                if pd.isna(low.loc[run_id, metric]) and not pd.isna(v) and not pd.isna(n) and n > 0:
                    low.loc[run_id, metric], high.loc[run_id, metric] = wilson(round(v * n), n)
    text = pd.DataFrame(
        {m: [f"{value.loc[r, m]:,.0f}" if m == "n" and not pd.isna(value.loc[r, m])
             else with_interval(value.loc[r, m], low.loc[r, m], high.loc[r, m]) for r in run_ids] for m in columns},
        index=run_ids)
    if len(run_ids) >= 2:
        diff = value.loc[run_ids[1]] - value.loc[run_ids[0]]
        text.loc["B − A"] = [("" if pd.isna(d) else f"{d:+,.0f}" if m == "n" else f"{d:+.3f}").replace("-", "−")
                             for m, d in diff.items()]
    return text.rename(columns=METRIC_NAMES).rename_axis(index="run", columns=None)


def paired_words(a: str, b: str, counts: dict[str, int], split: str) -> str:
    """The accuracy difference B − A on the images both runs classified, with its paired-bootstrap 95 % interval,
    in words (Markdown): whether the two runs can be told apart on these images."""
    diff, low, high = paired_difference_from_counts(counts["a_only"], counts["b_only"], counts["n"])
    words = difference_words(diff, low, high, a=f"**{md_escape(a)}**", b=f"**{md_escape(b)}**")
    return (f"Accuracy on the same {md_escape(split)} images (paired bootstrap over the images, 2,000 resamples): "
            f"{words}.")


def confusion_matrix(cells: pd.DataFrame, run_id: str, order: list[str], normalise: bool) -> pd.DataFrame:
    """A full square matrix (rows true, columns predicted) from the stored non-zero cells."""
    mine = cells[cells["run_id"] == run_id]
    matrix = mine.pivot_table(index="true_label", columns="pred_label", values="count", aggfunc="sum", fill_value=0)
    matrix = matrix.reindex(index=order, columns=order, fill_value=0).astype(float)
    if normalise:
        matrix = matrix.div(matrix.sum(axis=1).replace(0, math.nan), axis=0).fillna(0.0)
    return matrix


def matrix_height(order: list[str]) -> int:
    """Room for every class: about 48 px a row, plus the predicted-class labels and the colour bar below."""
    return 230 + 48 * max(len(order), 2)


def wrapped(label: str) -> str:
    """A class name on up to two lines (split at a space, hyphen or underscore), so the labels leave the cells
    room at phone width."""
    parts = re.findall(r"[^ _-]+[ _-]?", label)
    if len(label) <= 10 or len(parts) < 2:
        return label
    cut = min(range(1, len(parts)), key=lambda i: abs(len("".join(parts[:i])) - len(label) / 2))
    return "".join(parts[:cut]).rstrip(" ") + "<br>" + "".join(parts[cut:])


def cell_font(order: list[str]) -> dict:
    """Cell numbers as large as the cells allow at phone width: 14 px up to five classes, 11 px beyond."""
    return {"size": 14 if len(order) <= 5 else 11}


def colour_bar(**extra: object) -> dict:
    """A horizontal colour bar under the plot: at phone width a bar on the side would take a third of it."""
    return {"orientation": "h", "yref": "container", "y": 0.0, "yanchor": "bottom", "x": 0.5, "xanchor": "center",
            "len": 0.8, "thickness": 12, **extra}


def every_label(fig: go.Figure, order: list[str]) -> go.Figure:
    """Every class named on both axes (plotly drops category labels it thinks would overlap)."""
    ticks = [wrapped(label) for label in order]
    fig.update_xaxes(side="bottom", tickangle=-45, tickmode="array", tickvals=order, ticktext=ticks,
                     automargin=True, title="predicted")
    fig.update_yaxes(tickmode="array", tickvals=order, ticktext=ticks, automargin=True, title="true",
                     autorange="reversed")
    fig.update_layout(margin={"l": 10, "r": 10, "t": 10, "b": 80}, height=matrix_height(order))
    return fig


def heatmap(matrix: pd.DataFrame, normalise: bool = False) -> go.Figure:
    """A confusion matrix (rows true, columns predicted), its numbers written in the cells."""
    order = [str(label) for label in matrix.index]
    fmt = ".2f" if normalise else ".0f"
    fig = go.Figure(go.Heatmap(
        z=matrix.to_numpy(), x=order, y=order, colorscale="Blues", zmin=0, texttemplate=f"%{{z:{fmt}}}",
        textfont=cell_font(order), colorbar=colour_bar(),
        hovertemplate=f"true %{{y}}, predicted %{{x}}: %{{z:{fmt}}}<extra></extra>"))
    return every_label(fig, order)


def benefit(diff: pd.DataFrame) -> pd.DataFrame:
    """What B − A means for B: on the diagonal more is better, off it (a confusion) fewer is better.
    Positive = B better, so one colour says "B better" wherever it is."""
    sign = np.where(np.eye(len(diff), dtype=bool), 1.0, -1.0)
    return diff * sign


def difference_heatmap(diff: pd.DataFrame, normalise: bool = False) -> go.Figure:
    """B − A coloured by meaning (blue: B better, red: B worse, white: the same), the signed difference in
    each cell. Identical runs get a plain -1…1 scale in words, never an empty "−1n … 1n"."""
    order = [str(label) for label in diff.index]
    good = benefit(diff)
    bound = float(good.abs().max().max())
    if not bound > 1e-12:
        bound = 1.0
    fmt = "+.2f" if normalise else "+.0f"
    text = [[("0" if abs(v) < 1e-12 else format(v, fmt)) for v in row] for row in diff.to_numpy()]
    verdict = [[("B better" if v > 1e-12 else "B worse" if v < -1e-12 else "the same") for v in row]
               for row in good.to_numpy()]
    fig = go.Figure(go.Heatmap(
        z=good.to_numpy(), x=order, y=order, text=text, customdata=verdict, texttemplate="%{text}",
        textfont=cell_font(order), colorscale="RdBu", zmin=-bound, zmax=bound, zmid=0,
        colorbar=colour_bar(tickmode="array", tickvals=[-bound, 0, bound], ticktext=["B worse", "same", "B better"]),
        hovertemplate="true %{y}, predicted %{x}: B − A = %{text} (%{customdata})<extra></extra>"))
    return every_label(fig, order)


def flatten(config: object, prefix: str = "") -> dict[str, str]:
    """A nested config (grouped by concern) as dotted field names → values as text, for a side-by-side table."""
    if isinstance(config, dict):
        out: dict[str, str] = {}
        for key, value in config.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: config if isinstance(config, str) else json.dumps(config)}


def config_table(configs: dict[str, str | None], a: str, b: str) -> pd.DataFrame:
    """Rows = every field of either config, columns A and B, plus whether they differ: the differing fields first,
    each group in A's order, so the few that matter are on screen without scrolling."""
    flat = {run_id: flatten(json.loads(text)) if text else {} for run_id, text in configs.items()}
    fields = list(dict.fromkeys([*flat.get(a, {}), *flat.get(b, {})]))
    table = pd.DataFrame({"field": fields, f"A: {a}": [flat.get(a, {}).get(f, "–") for f in fields],
                          f"B: {b}": [flat.get(b, {}).get(f, "–") for f in fields]})
    table["differs"] = table.iloc[:, 1] != table.iloc[:, 2]
    return table.sort_values("differs", ascending=False, kind="stable").reset_index(drop=True)


def mcnemar_words(a: str, b: str, counts: dict[str, int], split: str) -> str:
    """The exact McNemar test (two-sided binomial on the discordant images), stated in words (Markdown)."""
    a, b, split = md_escape(a), md_escape(b), md_escape(split)
    n_b, n_c = counts["a_only"], counts["b_only"]
    discordant = n_b + n_c
    head = (f"On the **{counts['n']:,}** {split} images both runs classified, **{a}** is right where "
            f"**{b}** is wrong on **b = {n_b:,}** images, and **{b}** is right where **{a}** is wrong on "
            f"**c = {n_c:,}**.")
    if discordant == 0:
        return head + " They never disagree on correctness, so there is no evidence of any difference."
    p = binomtest(n_b, discordant, 0.5).pvalue
    better = a if n_b > n_c else b
    verdict = (f"a difference this large would be unlikely if the runs were equally accurate: **{better}** is more "
               "accurate on these images (significant at the 5% level)." if p < 0.05 else
               "a difference this large could easily arise by chance: no significant difference at the 5% level.")
    return (head + f" An exact McNemar test (two-sided binomial test of b out of b + c = {discordant:,} "
            f"discordant images against a fair coin) gives **p = {p:.3g}**; {verdict}")


def url_toggle(label: str, key: str, default: bool) -> bool:
    """A toggle kept in the URL under `key` as 1/0."""
    widget_key = f"w_{key}"
    state.seed(widget_key, state.get(key, "1" if default else "0") == "1")
    value = st.toggle(label, key=widget_key)
    state.put(**{key: "1" if value else "0"})
    state.remember(widget_key, value)
    return value


def url_choice(label: str, options: dict[str, str], key: str, default: str) -> str:
    """A segmented control kept in the URL under `key` (st.tabs cannot be: its choice never reaches the server)."""
    widget_key = f"w_{key}"
    wanted = state.get(key, default)
    state.seed(widget_key, wanted if wanted in options else default)
    value = st.segmented_control(label, list(options), format_func=options.__getitem__, required=True,
                                 key=widget_key) or default
    state.put(**{key: value})
    state.remember(widget_key, value)
    return value


def thumbnail_grid(images: pd.DataFrame) -> None:
    """Thumbnails in rows of GRID, captioned with the truth and the wrong run's guess."""
    for start in range(0, len(images), GRID):
        cols = st.columns(GRID)
        for col, row in zip(cols, images.iloc[start:start + GRID].itertuples(), strict=False):
            caption = (f"{md_escape(row.true_label)} → {md_escape(row.wrong_pred)} ({row.wrong_confidence:.0%})\n"
                       f"{md_escape(row.image_id.rsplit('/', 1)[-1])}")  # the file name: a folder may be the label
            col.image(bytes(row.thumbnail), caption=caption, width="stretch")


def disagreement_tab(right: str, wrong: str, split: str, task: str, total: int, key: str) -> None:
    """One direction of the disagreements: count, pager, one page of thumbnails (paged in SQL)."""
    r, w = md_escape(right), md_escape(wrong)
    st.caption(f"{total:,} {md_escape(split)} images: **{r}** right, **{w}** wrong "
               f"(most confident mistakes of {w} first; caption: true → {w}'s guess)")
    if total == 0:
        st.write("None.")
        return
    page = pager(key, total)
    images = q.right_wrong_images(right, wrong, split, task, PAGE_SIZE, (page - 1) * PAGE_SIZE)
    thumbnail_grid(images)
    if task == "period":
        export_gallery(right, wrong, split, total, key)


def export_gallery(right: str, wrong: str, split: str, total: int, key: str) -> None:
    """These disagreements as the Errors page's self-explaining HTML file, made on demand and kept for them."""
    with st.expander("Share these images as a gallery file"):
        st.write(f"A file that opens anywhere with no server: {md_escape(wrong)}'s guesses on the images "
                 f"{md_escape(right)} gets right, with its saliency maps and verdict buttons for an art historian.")
        paths = st.checkbox("include file paths (can give the label away)", value=False, key=f"w_paths_{key}")
        wanted = (right, wrong, split, paths)
        if st.button(f"Prepare HTML gallery (first {min(total, EXPORT_LIMIT):,} images)", key=f"prepare_{key}"):
            with st.spinner("Drawing the saliency maps into the file…"):
                made, _ = compare_export(right, wrong, split, EXPORT_LIMIT, include_paths=paths)
                name = export_name(wrong, f"{split}-wrong-where-{right}-right", made.made_at, "html")
                st.session_state[f"_export_{key}"] = (wanted, gallery_file(made), name)
        prepared = st.session_state.get(f"_export_{key}")
        if prepared and prepared[0] == wanted:
            _, html_file, name = prepared
            st.download_button("Download HTML gallery", html_file, file_name=name, mime="text/html",
                               on_click="ignore", key=f"download_{key}")
            st.caption(f"{md_escape(name)}: {len(html_file) / 1e6:.1f} MB")


st.title("Compare runs")

table = runs()
chosen = choose_runs("Runs (the first is A, the second B)", table, default_runs(table, 2))

c1, c2, c3 = st.columns(3)
with c1:
    split = state.choose("Split", q.splits(chosen) or ["test"], "split", default="test")
with c2:
    task = state.choose("Task", q.common_tasks(chosen) or ["period"], "task", default="period")
with c3:
    normalise = url_toggle("Row-normalised confusion", "norm", default=True)

st.subheader("Metrics")
metrics = metrics_table(chosen, split, task)
if metrics.empty:
    st.info(f"No {md_escape(split)} metrics for the {md_escape(task)} task in these runs.")
    st.stop()
st.dataframe(metrics)
st.caption("Each score with its 95 % interval over the images (Wilson for accuracies, a bootstrap over images for "
           "the others; ± its wider side): runs whose intervals overlap may not differ. "
           "Adjacent-error share: of the errors, the share landing on a chronologically neighbouring period. "
           "B − A compares the first two runs chosen; the paired test under their confusion matrices says whether "
           "the difference is real.")

info = table.set_index("run_id").loc[chosen]
if info["dataset_id"].nunique() > 1:
    names = md_escape(", ".join(sorted(info["dataset"].astype(str).unique())))
    st.warning(f"These runs were trained on **different datasets** ({names}), so they cannot be compared image by "
               "image: only their metrics are shown. Pick runs of one dataset for the rest.")
    st.stop()

order = class_order(chosen, task)

st.subheader("Per-class F1")
f1 = q.class_metric(chosen, split, task, "f1")
f1 = f1.assign(above=(f1["high"] - f1["value"]).fillna(0), below=(f1["value"] - f1["low"]).fillna(0),
              shown=[with_interval(v, lo, hi) for v, lo, hi in zip(f1["value"], f1["low"], f1["high"], strict=True)])
fig = px.bar(f1, x="label", y="value", color="run_id", barmode="group", range_y=[0, 1.05], error_y="above",
             error_y_minus="below", custom_data=["shown", "run_id"],
             category_orders={"label": order, "run_id": chosen}, labels={"label": "", "value": "F1", "run_id": "run"})
fig.update_traces(hovertemplate="%{x}: F1 %{customdata[0]}<br>%{customdata[1]}<extra></extra>")
st.plotly_chart(fig, width="stretch")
st.caption("Whiskers: each F1's 95 % interval (bootstrap over the images); hover a bar for the numbers.")

st.subheader("Confusion matrices")
cells = q.confusion(chosen, split, task)
matrices = {run_id: confusion_matrix(cells, run_id, order, normalise) for run_id in chosen}
names = "AB"
for i, run_id in enumerate(chosen):
    st.markdown(f"**{names[i] + ' = ' if i < 2 else ''}{md_escape(run_id)}** (rows: true period, columns: predicted; "
                f"cells: {'share of the row' if normalise else 'images'})")
    st.plotly_chart(heatmap(matrices[run_id], normalise=normalise), width="stretch", key=f"matrix_{i}")
if len(chosen) >= 2:
    a, b = chosen[0], chosen[1]
    st.markdown(f"**Difference B − A** ({md_escape(b)} − {md_escape(a)})")
    st.plotly_chart(difference_heatmap(matrices[b] - matrices[a], normalise=normalise), width="stretch",
                    key="matrix_difference")
    st.caption("Each cell shows B − A. Blue where B does better: more of that class right (on the diagonal) or "
               "fewer of that confusion (off it); red where B does worse; white where they agree.")
else:
    st.info("Add a second run for the difference of confusion matrices, the McNemar test and the disagreements.")
    st.stop()

st.subheader("Configurations")
stored_configs = q.configs([a, b])
configs = config_table(stored_configs, a, b)
n_diff = int(configs["differs"].sum())
st.caption(f"The two runs' stored configs, field by field: **{n_diff}** of {len(configs)} fields differ "
           "(highlighted, listed first).")
only_diff = st.toggle("Only the fields that differ", key="w_config_diff")
shown = configs[configs["differs"]] if only_diff else configs
styled = shown.drop(columns="differs").style.apply(
    lambda row: ["background-color: #fde68a; font-weight: 600" if shown.loc[row.name, "differs"] else ""] * len(row),
    axis=1)
st.dataframe(styled, hide_index=True, width="stretch")

st.subheader(f"A = {md_escape(a)} vs B = {md_escape(b)}, image by image")
counts = q.agreement(a, b, split, task)
m1, m2, m3, m4 = st.columns(4)
m1.metric("Both right", f"{counts['both_right']:,}")
m2.metric("A right, B wrong (b)", f"{counts['a_only']:,}")
m3.metric("B right, A wrong (c)", f"{counts['b_only']:,}")
m4.metric("Both wrong", f"{counts['both_wrong']:,}")
corrections_line = corrections_words(a, b, stored_configs)
if corrections_line:
    st.markdown(md_escape(corrections_line))
st.markdown(mcnemar_words(a, b, counts, split))
if counts["n"]:
    st.markdown(paired_words(a, b, counts, split))

side = url_choice("Disagreements", {"ab": f"A right, B wrong ({counts['a_only']:,})",
                                     "ba": f"B right, A wrong ({counts['b_only']:,})"}, "side", default="ab")
if side == "ab":
    disagreement_tab(a, b, split, task, counts["a_only"], "page_ab")
else:
    disagreement_tab(b, a, split, task, counts["b_only"], "page_ba")
