"""Experts' corrections feeding the next preparation (`data.corrections`), and nothing else changes a label.

A current "label wrong" annotation (pipeline/annotations.py's CURRENT: not revised, not withdrawn) names a painting
by its content hash, so it finds the painting again in any later preparation of the same files. With
`label_wrong: exclude` those paintings are dropped, each recorded as skipped with the annotation's id; with
`relabel` they take the expert's corrected period, and one without a corrected period (or with a period the
dataset does not have, or two experts naming different ones) is dropped and said so. Cleanlab's flags
(label_quality) are never read here: only an expert's verdict changes a label. What was applied (annotation ids and
counts) goes into the run's resolved config, so a result can be traced to the corrections behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline import store
from pipeline.annotations import CURRENT, LABEL_WRONG
from pipeline.config import ConfigError, CorrectionsConfig
from pipeline.data.tables import skip

STAGE = "corrections"


@dataclass
class Applied:
    """What the corrections did to one preparation; `record()` is what the run's resolved config keeps."""

    label_wrong: str = "off"
    annotations: list[str] = field(default_factory=list)  # ids of the annotations that changed the table
    excluded: int = 0
    relabelled: int = 0

    def record(self) -> dict:
        return {"label_wrong": self.label_wrong, "count": len(self.annotations), "annotations": self.annotations,
                "excluded": self.excluded, "relabelled": self.relabelled}

    def line(self) -> str:
        return (f"corrections (label wrong: {self.label_wrong}): {len(self.annotations)} expert annotation(s) applied, "
                f"{self.relabelled} painting(s) relabelled, {self.excluded} excluded")


def label_wrong_annotations(store_path: str | Path) -> pd.DataFrame:
    """Current "label wrong" annotations (content_hash, annotation_id, corrected_period), oldest first; none when
    the store does not exist yet."""
    columns = ["content_hash", "annotation_id", "corrected_period"]
    if not Path(store_path).exists():
        return pd.DataFrame(columns=columns)
    with store.connect(store_path, read_only=True) as con:
        present = {c for (c,) in con.execute("SELECT column_name FROM information_schema.columns "
                                             "WHERE table_name = 'annotations'").fetchall()}
        if not present:
            return pd.DataFrame(columns=columns)
        period = "c.corrected_period" if "corrected_period" in present else "NULL"  # a store before schema 5
        return con.execute(f"""SELECT c.content_hash, c.annotation_id, {period} AS corrected_period
                               FROM {CURRENT} c WHERE c.verdict = ? ORDER BY c.created_at, c.annotation_id""",
                           [LABEL_WRONG]).df()


def apply_corrections(df: pd.DataFrame, cfg: CorrectionsConfig, store_path: str | Path | None
                      ) -> tuple[pd.DataFrame, list[dict], Applied]:
    """The source table (with content hashes) after the experts' "label wrong" verdicts, the rows dropped (as skips)
    and what was applied. `off` returns the table as it is."""
    applied = Applied(cfg.label_wrong)
    if cfg.label_wrong == "off":
        return df, [], applied
    if store_path is None:
        raise ConfigError("data.corrections needs the experiment's store (where the annotations are)")
    notes = label_wrong_annotations(store_path)
    notes = notes[notes["content_hash"].isin(set(df["content_hash"]))]
    if notes.empty:
        return df, [], applied
    periods = set(df["period"].dropna())
    drop: dict[str, str] = {}  # content hash -> reason
    relabel: dict[str, str] = {}  # content hash -> corrected period
    used: list[str] = []
    for content_hash, group in notes.groupby("content_hash", sort=False):
        ids = ", ".join(group["annotation_id"])
        used += group["annotation_id"].tolist()
        reason = f"expert: label wrong (annotation {ids})"
        named = sorted({p for p in group["corrected_period"] if isinstance(p, str) and p})
        if cfg.label_wrong == "exclude":
            drop[content_hash] = reason
        elif not named:
            drop[content_hash] = f"{reason}: no corrected period given, so excluded"
        elif len(named) > 1:
            drop[content_hash] = f"{reason}: experts name different periods ({', '.join(named)}), so excluded"
        elif named[0] not in periods:
            drop[content_hash] = f"{reason}: corrected period {named[0]!r} is not a period of this dataset, so excluded"
        else:
            relabel[content_hash] = named[0]
    gone = df["content_hash"].isin(drop.keys())
    skips = [skip(r.path, _row(r.row), drop[r.content_hash], STAGE) for r in df[gone].itertuples()]
    out = df[~gone].copy()
    moved = out["content_hash"].isin(relabel.keys())
    out.loc[moved, "period"] = out.loc[moved, "content_hash"].map(relabel)
    applied.annotations = sorted(used)
    applied.excluded, applied.relabelled = int(gone.sum()), int(moved.sum())
    print(applied.line())
    return out, skips, applied


def _row(value: object) -> int | None:
    return None if value is None or pd.isna(value) else int(value)  # type: ignore[call-overload]
