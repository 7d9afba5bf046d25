"""Overview: every run's headline metrics, the data behind them, the store itself."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard.queries import store_path
from dashboard.queries.runs import datasets, kept_epochs, runs, skipped_summary
from dashboard.queries.verdicts import expert_summary
from dashboard.runs_table import (
    ARTIST_SHOWN,
    COLUMNS,
    SHOWN,
    VERDICT_COLUMNS,
    VERDICT_SHOWN,
    run_rows,
    verdict_rows,
)
from dashboard.text import md_escape, with_interval
from dashboard.ui import best_run, kept_note

METRICS = {"test_accuracy": "accuracy", "test_balanced_accuracy": "balanced accuracy", "test_macro_f1": "macro-F1"}


def score_chart(shown: pd.DataFrame):
    """Each run's three test scores side by side, on one 0–1 axis, whiskers at their 95 % intervals."""
    parts = []
    for column, name in METRICS.items():
        part = shown[["run_id", column]].rename(columns={column: "value"}).assign(metric=name)
        low = shown.get(f"{column}_low", pd.Series(float("nan"), index=shown.index))
        high = shown.get(f"{column}_high", pd.Series(float("nan"), index=shown.index))
        parts.append(part.assign(above=(high - shown[column]).fillna(0), below=(shown[column] - low).fillna(0)))
    long = pd.concat(parts, ignore_index=True)
    fig = px.bar(long, x="run_id", y="value", color="metric", barmode="group", range_y=[0, 1],
                 error_y="above", error_y_minus="below",
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
best_row = table.set_index("run_id").loc[best]
if not pd.isna(best_row["test_accuracy"]):
    best_shown = with_interval(best_row["test_accuracy"], best_row["test_accuracy_low"], best_row["test_accuracy_high"])
    st.markdown(f"Best by test accuracy: **{md_escape(best)}**, {best_shown}: the run every page shows "
                "when a link names none. Each score carries its 95 % interval over the test images: two runs whose "
                "intervals overlap widely may not differ at all (Compare tests the pair on the same images).")
kept = kept_epochs(table["run_id"].tolist())
by_id = data.drop_duplicates("dataset_id").set_index("dataset_id")
order = sorted(table["trained_on"].unique(), key=lambda d: (bool(by_id["synthetic"].get(d, False)),
                                                             str(by_id["name"].get(d, d)),
                                                             bool(by_id["artist_disjoint"].get(d, False))))
for dataset_id in order:  # real paintings first, then synthetic; each dataset's runs together
    group = table[table["trained_on"] == dataset_id]
    name = md_escape(by_id["name"].get(dataset_id, dataset_id))
    synthetic = bool(by_id["synthetic"].get(dataset_id, False))
    kind = "" if synthetic and "synthetic" in name else " · synthetic" if synthetic else " · real paintings"
    apart = (" · artist-disjoint split (no test painter in training: period from style, not from painter)"
             if by_id["artist_disjoint"].get(dataset_id, False) else "")
    st.markdown(f"##### {name}{kind}{apart} · {len(group)} run{'s' if len(group) != 1 else ''}")
    shared = [f"{what} **{md_escape(group[column].iloc[0])}**" for what, column in
              (("experiment", "experiment"), ("backbone", "backbone")) if group[column].nunique() == 1]
    if shared:
        st.caption(f"Every run here: {', '.join(shared)}.")
    shown = run_rows(group, kept)
    # Seen/unseen accuracies only where the test split has both kinds of painter: with one kind, that column is the
    # accuracy again, and a line says which kind it is.
    measured = {c: bool(group[m].notna().any()) if m in group else False for c, m in ARTIST_SHOWN.items()}
    both = all(measured.values())
    columns = [c for c in SHOWN if (c != "evaluation_of" or shown["evaluation_of"].any())
               and (c not in ARTIST_SHOWN or both)]
    st.dataframe(shown, hide_index=True, column_order=columns, column_config=COLUMNS)
    if measured["artist_seen"] and not both:
        st.caption("Every test painting's painter also has paintings in training: the model may recognise the "
                   "painter rather than the period (an artist-disjoint split tells them apart).")
    elif measured["artist_unseen"] and not both:
        st.caption("No test painting's painter is in training: these scores are period from style alone.")
    note = kept_note(group.loc[group["evaluation_of"].isna(), "run_id"].tolist(), each=False)
    if note:
        st.caption(note)
    st.plotly_chart(score_chart(shown), width="stretch", key=f"scores_{dataset_id}")

st.subheader("Expert verdicts")
summary = expert_summary(table["run_id"].tolist())
reviewed = summary[summary["reviewed_errors"] > 0] if not summary.empty else summary
if reviewed.empty:
    st.caption("No expert has judged a test error yet: the Annotations page reviews a run's errors one at a time "
               "(or imports the verdicts sent back from an exported gallery).")
else:
    st.caption("Test errors the experts judged, per run. \"Label wrong\" and \"model right\" errors count as "
               "correct in the accuracy if the experts are right; the other verdicts (ambiguous, outside its period) "
               "and unreviewed errors stay errors.")
    st.dataframe(verdict_rows(reviewed, table), hide_index=True, column_order=VERDICT_SHOWN,
                 column_config=VERDICT_COLUMNS)

st.subheader("Data")
st.dataframe(data[["name", "dataset_id", "created_at", "source", "synthetic", "n_images", "n_skipped",
                   "n_duplicate_groups", "n_conflicting_duplicates", "path"]], hide_index=True,
             column_config={"dataset_id": st.column_config.TextColumn(
                 "version", help="named by its content: a folder that changed is a new version; runs keep theirs"),
                 "created_at": st.column_config.DatetimeColumn("prepared"),
                 "n_images": st.column_config.NumberColumn("images"),
                 "n_skipped": st.column_config.NumberColumn("skipped"),
                 "n_duplicate_groups": st.column_config.NumberColumn("duplicate groups"),
                 "n_conflicting_duplicates": st.column_config.NumberColumn("conflicting duplicates"),
                 "path": st.column_config.TextColumn("path", width=160)})
skips = skipped_summary()
if not skips.empty:
    st.caption("Skipped images by reason (recorded during preparation; see the SQL page for each file)")
    st.dataframe(skips, hide_index=True)
