"""Overview: every run's headline metrics, the data behind them, the store itself."""

from __future__ import annotations

from urllib.parse import urlencode

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard.queries import store_path
from dashboard.queries.runs import datasets, kept_epochs, runs, skipped_summary
from dashboard.ui import best_run, kept_note, md_escape, never_beat_first_stage

METRICS = {"test_accuracy": "accuracy", "test_balanced_accuracy": "balanced accuracy", "test_macro_f1": "macro-F1"}
# What each run's row shows, in order, and how wide (px): every column fits the main area beside the sidebar at
# 1400 px. The frame keeps its other columns (run_id, backbone, …) for tests and the page's own use.
SHOWN = ["run", "evaluation_of", "model", "kept", "train_minutes", "test_accuracy", "test_balanced_accuracy",
         "test_macro_f1", "test_adjacent_error_share", "n_maps", "errors", "curves", "compare"]
COLUMNS = {
    "run": st.column_config.TextColumn("run", width=150, help="the run's name in its experiment (see above)"),
    "evaluation_of": st.column_config.TextColumn(
        "evaluation of", width=120, help="scored on another collection with this run's model (`python -m pipeline "
        "evaluate`); its metrics are that collection's, all of it test"),
    "model": st.column_config.TextColumn("model", width=95, help="training strategy (and tasks, beyond period)"),
    "kept": st.column_config.TextColumn(
        "kept", width=95, help="the stage and epoch whose weights the run kept (best validation accuracy), of the "
        "epochs it trained; † fine-tuning never beat the head stage"),
    "train_minutes": st.column_config.NumberColumn("train min", width=72, format="%.2f"),
    "test_accuracy": st.column_config.NumberColumn("accuracy", width=72, format="%.3f",
                                                   help="on the test split"),
    "test_balanced_accuracy": st.column_config.NumberColumn(
        "balanced", width=72, format="%.3f", help="balanced accuracy: the mean of the per-period recalls"),
    "test_macro_f1": st.column_config.NumberColumn("macro-F1", width=72, format="%.3f"),
    "test_adjacent_error_share": st.column_config.NumberColumn(
        "adjacent", width=72, format="%.2f",
        help="adjacent-error share: of the errors, the share landing on a chronologically neighbouring period"),
    "n_maps": st.column_config.NumberColumn("maps", width=52, help="saliency maps stored"),
    "errors": st.column_config.LinkColumn("errors", width=56, display_text="Errors", help="this run's error gallery"),
    "curves": st.column_config.LinkColumn("curves", width=56, display_text="Curves",
                                          help="this run's training curves"),
    "compare": st.column_config.LinkColumn(
        "compare", width=68, display_text="Compare", help="this run beside the best run of its dataset"),
}


def page_url(page: str, **params: str | list[str]) -> str:
    """A link to another page of this dashboard (relative, so it works behind any host or path)."""
    return f"./{page}?{urlencode(params, doseq=True)}"


def kept_text(row: pd.Series) -> str:
    """'head · 3/6': the stage and epoch a run kept, of the epochs it trained; '' when it trained none."""
    if pd.isna(row["best_epoch"]):
        return ""
    stage = f"{row['kept_stage']} · " if isinstance(row["kept_stage"], str) else ""
    stuck = " †" if never_beat_first_stage(row["stages"], row["kept_stage"]) else ""
    return f"{stage}{int(row['best_epoch'])}/{int(row['epochs'])}{stuck}"


def run_rows(group: pd.DataFrame, kept: pd.DataFrame) -> pd.DataFrame:
    """One dataset's runs as the table shows them: words for what was trained and kept, links to the run's views."""
    rows = group.merge(kept[["run_id", "kept_stage", "stages"]], on="run_id", how="left")
    trained = rows[rows["evaluation_of"].isna()]
    best = trained.sort_values(["test_accuracy", "run_id"], ascending=[False, True])["run_id"].tolist()
    one_experiment = rows["experiment"].nunique() == 1
    tasks = rows["tasks"].where(rows["tasks"] != "period", "")
    model = rows["strategy"] + tasks.map(lambda t: f" ({t})" if t else "")
    return rows.assign(
        run=rows["name"] if one_experiment else rows["run_id"],
        evaluation_of=rows["evaluation_of"].fillna(""),
        model=model if rows["backbone"].nunique() == 1 else rows["backbone"] + " · " + model,
        kept=rows.apply(kept_text, axis=1),
        train_minutes=rows["train_seconds"] / 60,
        errors=[page_url("errors", run=r) for r in rows["run_id"]],
        curves=[page_url("curves", runs=r) for r in rows["run_id"]],
        compare=[page_url("compare", runs=[r, next((b for b in best if b != r), r)]) for r in rows["run_id"]],
    )


def score_chart(shown: pd.DataFrame):
    long = shown.melt(id_vars="run_id", value_vars=list(METRICS), var_name="metric", value_name="value")
    long["metric"] = long["metric"].map(METRICS)
    fig = px.bar(long, x="run_id", y="value", color="metric", barmode="group", range_y=[0, 1],
                 labels={"run_id": "run", "value": "score on the test split", "metric": "metric"})
    fig.update_layout(height=340, margin={"t": 40, "b": 10},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0, "title": None})
    return fig


st.title("Period Eye")

table = runs()
data = datasets()
if data["synthetic"].any():
    st.warning("Some runs use the **synthetic demo set**: its periods, artists and paintings are generated, not real.")

c1, c2, c3, c4 = st.columns(4)
evaluations = int(table["evaluation_of"].notna().sum())  # a trained run scored on another collection
c1.metric("Runs", len(table) - evaluations, delta=f"+{evaluations} evaluations" if evaluations else None,
          delta_color="off")
latest = data.drop_duplicates("name")  # newest version of each dataset: versions share most of their images
c2.metric("Images", f"{int(latest['n_images'].sum()):,}", help="in the newest version of each dataset")
c3.metric("Skipped images", f"{int(latest['n_skipped'].sum()):,}", help="in the newest version of each dataset")
c4.metric("Store size", f"{store_path().stat().st_size / 2**20:.1f} MB")

st.subheader("Runs")
best = best_run(table)
best_accuracy = table.set_index("run_id").loc[best, "test_accuracy"]
if not pd.isna(best_accuracy):
    st.markdown(f"Best by test accuracy: **{md_escape(best)}** ({best_accuracy:.3f}), the run every page shows "
                "when a link names none.")
kept = kept_epochs(table["run_id"].tolist())
by_id = data.drop_duplicates("dataset_id").set_index("dataset_id")
order = sorted(table["trained_on"].unique(), key=lambda d: (bool(by_id["synthetic"].get(d, False)),
                                                             str(by_id["name"].get(d, d))))
for dataset_id in order:  # real paintings first, then synthetic; each dataset's runs together
    group = table[table["trained_on"] == dataset_id]
    name = md_escape(by_id["name"].get(dataset_id, dataset_id))
    synthetic = bool(by_id["synthetic"].get(dataset_id, False))
    kind = "" if synthetic and "synthetic" in name else " · synthetic" if synthetic else " · real paintings"
    st.markdown(f"##### {name}{kind} · {len(group)} run{'s' if len(group) != 1 else ''}")
    shared = [f"{what} **{md_escape(group[column].iloc[0])}**" for what, column in
              (("experiment", "experiment"), ("backbone", "backbone")) if group[column].nunique() == 1]
    if shared:
        st.caption(f"Every run here: {', '.join(shared)}.")
    shown = run_rows(group, kept)
    columns = [c for c in SHOWN if c != "evaluation_of" or shown["evaluation_of"].any()]
    st.dataframe(shown, hide_index=True, column_order=columns, column_config=COLUMNS)
    note = kept_note(group.loc[group["evaluation_of"].isna(), "run_id"].tolist(), each=False)
    if note:
        st.caption(note)
    st.plotly_chart(score_chart(shown), width="stretch", key=f"scores_{dataset_id}")

st.subheader("Data")
st.dataframe(data[["name", "dataset_id", "created_at", "source", "synthetic", "n_images", "n_skipped",
                   "n_duplicate_groups", "n_conflicting_duplicates", "path"]], hide_index=True,
             column_config={"dataset_id": st.column_config.TextColumn(
                 "version", help="named by its content: a folder that changed is a new version; runs keep theirs"),
                 "created_at": st.column_config.DatetimeColumn("prepared"),
                 "n_images": st.column_config.NumberColumn("images"),
                 "n_skipped": st.column_config.NumberColumn("skipped"),
                 "n_duplicate_groups": st.column_config.NumberColumn("duplicate groups"),
                 "n_conflicting_duplicates": st.column_config.NumberColumn("conflicting duplicates")})
skips = skipped_summary()
if not skips.empty:
    st.caption("Skipped images by reason (recorded during preparation; see the SQL page for each file)")
    st.dataframe(skips, hide_index=True)
