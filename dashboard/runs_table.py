"""The Overview's runs table: which columns it shows and how wide (so every one fits at 1400 px), and its rows in
words with links to each run's Errors, Curves and Compare views."""

from __future__ import annotations

from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from dashboard.text import with_interval
from dashboard.ui import never_beat_first_stage
from pipeline.intervals import wilson

# What each run's row shows, in order, and how wide (px): every column fits the main area beside the sidebar at
# 1400 px. The frame keeps its other columns (run_id, backbone, …) for tests and the page's own use.
SHOWN = ["run", "evaluation_of", "model", "kept", "train_minutes", "accuracy_shown", "balanced_shown",
         "macro_f1_shown", "adjacent_shown", "artist_seen", "artist_unseen", "n_maps", "errors", "curves", "compare"]
# Headline metrics as text with their 95 % interval (dashboard.text.with_interval): shown column -> runs() metric.
SHOWN_METRICS = {"accuracy_shown": "test_accuracy", "balanced_shown": "test_balanced_accuracy",
                 "macro_f1_shown": "test_macro_f1", "adjacent_shown": "test_adjacent_error_share"}
ARTIST_SHOWN = {"artist_seen": "accuracy_artist_seen", "artist_unseen": "accuracy_artist_unseen"}
INTERVAL_HELP = " (± the wider side of its 95 % interval over the test images)"
COLUMNS = {
    "run": st.column_config.TextColumn("run", width=120, help="the run's name in its experiment (see above)"),
    "evaluation_of": st.column_config.TextColumn(
        "evaluation of", width=120, help="scored on another collection with this run's model (`python -m pipeline "
        "evaluate`); its metrics are that collection's, all of it test"),
    "model": st.column_config.TextColumn("model", width=90, help="training strategy (and tasks, beyond period)"),
    "kept": st.column_config.TextColumn(
        "kept", width=78, help="the stage and epoch whose weights the run kept (best validation accuracy), of the "
        "epochs it trained; † fine-tuning never beat the head stage"),
    "train_minutes": st.column_config.NumberColumn("train min", width=62, format="%.2f"),
    "accuracy_shown": st.column_config.TextColumn("accuracy", width=96, help="on the test split" + INTERVAL_HELP),
    "balanced_shown": st.column_config.TextColumn(
        "balanced", width=96, help="balanced accuracy: the mean of the per-period recalls" + INTERVAL_HELP),
    "macro_f1_shown": st.column_config.TextColumn("macro-F1", width=96, help="on the test split" + INTERVAL_HELP),
    "adjacent_shown": st.column_config.TextColumn(
        "adjacent", width=84, help="adjacent-error share: of the errors, the share landing on a chronologically "
        "neighbouring period" + INTERVAL_HELP),
    "artist_seen": st.column_config.TextColumn(
        "artist seen", width=96, help="test accuracy on paintings whose artist is in the training split: the "
        "model may recognise the painter rather than the period" + INTERVAL_HELP),
    "artist_unseen": st.column_config.TextColumn(
        "artist unseen", width=100, help="test accuracy on paintings whose artist the training split never showed: "
        "period from style alone" + INTERVAL_HELP),
    "n_maps": st.column_config.NumberColumn("maps", width=46, help="saliency maps stored"),
    "errors": st.column_config.LinkColumn("errors", width=50, display_text="Errors", help="this run's error gallery"),
    "curves": st.column_config.LinkColumn("curves", width=52, display_text="Curves",
                                          help="this run's training curves"),
    "compare": st.column_config.LinkColumn(
        "compare", width=62, display_text="Compare", help="this run beside the best run of its dataset"),
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
        **{shown: metric_text(rows, metric, 2 if "adjacent" in metric else 3)
           for shown, metric in SHOWN_METRICS.items()},
        **{shown: metric_text(rows, metric) for shown, metric in ARTIST_SHOWN.items()},
    )


def metric_text(rows: pd.DataFrame, metric: str, digits: int = 3) -> list[str]:
    """A metric column of runs() with its `<metric>_low/_high` as '0.459 ± 0.026' per run ('' where it has none)."""
    if metric not in rows:
        return [""] * len(rows)
    missing = pd.Series(float("nan"), index=rows.index)
    low, high = rows.get(f"{metric}_low", missing), rows.get(f"{metric}_high", missing)
    return [with_interval(v, lo, hi, digits) for v, lo, hi in zip(rows[metric], low, high, strict=True)]


# The experts' verdicts per run (test split), a table of its own under the runs (they would not fit beside them).
VERDICT_SHOWN = ["run_id", "errors", "reviewed_errors", "label_wrong", "model_right", "ambiguous", "outside",
                 "accuracy_shown", "if_experts_right_shown", "review"]
VERDICT_COLUMNS = {
    "run_id": st.column_config.TextColumn("run", width=150),
    "errors": st.column_config.NumberColumn("errors", width=60, help="test paintings the run got wrong"),
    "reviewed_errors": st.column_config.NumberColumn("reviewed", width=70, help="errors with an expert's verdict"),
    "label_wrong": st.column_config.NumberColumn("label wrong", width=84, help="the collection's label is wrong"),
    "model_right": st.column_config.NumberColumn("model right", width=84, help="the model's guess is right"),
    "ambiguous": st.column_config.NumberColumn("ambiguous", width=80),
    "outside": st.column_config.NumberColumn("outside its period", width=120,
                                             help="the painting is outside its period's style"),
    "accuracy_shown": st.column_config.TextColumn("accuracy", width=104, help="on the test split" + INTERVAL_HELP),
    "if_experts_right_shown": st.column_config.TextColumn(
        "if experts are right", width=124,
        help="test accuracy counting an error judged 'label wrong' or 'model right' as correct" + INTERVAL_HELP),
    "review": st.column_config.LinkColumn("review", width=60, display_text="Review",
                                          help="step through this run's errors one at a time, giving verdicts"),
}


def verdict_rows(summary: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """The expert summary (dashboard.queries.verdicts.expert_summary) with a link to review each run's errors, and
    both accuracies with Wilson's 95 % interval over the run's test images (`table`: runs(), for its test n)."""
    n = summary["run_id"].map(table.set_index("run_id")["test_n"]) if "test_n" in table else None

    def shown(column: str) -> list[str]:
        if n is None:
            return [with_interval(v, None, None) for v in summary[column]]
        return [with_interval(v, *(wilson(round(v * k), k) if k == k and k else (None, None)))
                for v, k in zip(summary[column], n, strict=True)]

    return summary.assign(review=[page_url("annotations", run=r, review="1") for r in summary["run_id"]],
                          accuracy_shown=shown("accuracy"), if_experts_right_shown=shown("accuracy_if_experts_right"))
