"""Overview: every run's headline metrics, the data behind them, the store itself."""

from __future__ import annotations

import plotly.express as px
import streamlit as st

from dashboard.queries import store_path
from dashboard.queries.runs import datasets, runs, skipped_summary

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
shown = table.assign(minutes=(table["train_seconds"] / 60).round(1))[
    ["run_id", "evaluation_of", "dataset", "backbone", "strategy", "tasks", "epochs", "minutes", "test_accuracy",
     "test_balanced_accuracy", "test_macro_f1", "test_adjacent_error_share", "n_maps"]
]
st.dataframe(
    shown,
    hide_index=True,
    column_config={
        "test_accuracy": st.column_config.NumberColumn("accuracy", format="%.3f"),
        "test_balanced_accuracy": st.column_config.NumberColumn("balanced acc.", format="%.3f"),
        "test_macro_f1": st.column_config.NumberColumn("macro-F1", format="%.3f"),
        "test_adjacent_error_share": st.column_config.NumberColumn(
            "adjacent errors", format="%.2f", help="share of errors landing on a chronologically neighbouring period"),
        "n_maps": st.column_config.NumberColumn("saliency maps"),
        "minutes": st.column_config.NumberColumn("train min"),
        "evaluation_of": st.column_config.TextColumn(
            "evaluation of", help="scored on another collection with this run's model (`python -m pipeline "
            "evaluate`); its metrics are that collection's, all of it test"),
    },
)
long = table.melt(id_vars="run_id", value_vars=["test_accuracy", "test_balanced_accuracy", "test_macro_f1"],
                  var_name="metric", value_name="value")
long["metric"] = long["metric"].str.replace("test_", "").str.replace("_", " ")
fig = px.bar(long, x="run_id", y="value", color="metric", barmode="group", range_y=[0, 1],
             labels={"run_id": "", "value": "test split"})
st.plotly_chart(fig, width="stretch")

st.subheader("Data")
st.dataframe(data[["name", "dataset_id", "created_at", "source", "synthetic", "n_images", "n_skipped",
                   "n_duplicate_groups", "n_conflicting_duplicates", "path"]], hide_index=True,
             column_config={"dataset_id": st.column_config.TextColumn(
                 "version", help="named by its content: a folder that changed is a new version; runs keep theirs"),
                 "created_at": st.column_config.DatetimeColumn("prepared")})
skips = skipped_summary()
if not skips.empty:
    st.caption("Skipped images by reason (recorded during preparation; see the SQL page for each file)")
    st.dataframe(skips, hide_index=True)
