"""The error gallery's SQL: one filter, a count, a page of tiles, the confusion matrix.

Everything is filtered, sorted and paged in DuckDB; only the tiles of the page on screen
(with their thumbnails) come back to Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from dashboard.queries import query, slices
from pipeline.annotations import CURRENT

MISLABELLED = "most likely mislabelled"
FLAGGED = "flagged label issues"  # an outcome: the images whose given label the audit flags, right or wrong

SORTS = {
    "least confident first": "p.confidence ASC, p.image_id",
    "most confident first": "p.confidence DESC, p.image_id",
    "highest loss first": "p.loss DESC NULLS LAST, p.image_id",
    "explanations disagree most": "ag.disagreement DESC NULLS LAST, p.image_id",
    # lowest label quality first (pipeline/audit.py); a dataset never audited has none: most confident first
    MISLABELLED: "lq.quality ASC NULLS LAST, p.confidence DESC, p.image_id",
}
OUTCOMES = ("wrong", "correct", "all", FLAGGED)


@dataclass
class GalleryFilter:
    run_id: str
    split: str | None = "test"  # None: every split
    true: list[str] = field(default_factory=list)
    pred: list[str] = field(default_factory=list)
    artists: list[str] = field(default_factory=list)
    outcome: str = "wrong"
    conf_min: float = 0.0
    conf_max: float = 1.0
    sort: str = "most confident first"
    within: dict[str, list[str]] = field(default_factory=dict)  # a slice (queries/slices.py): {dimension: [values]}

    def where(self) -> tuple[str, list[str | float]]:
        clauses = ["p.run_id = ?", "p.task = 'period'"]
        params: list[str | float] = [self.run_id]
        if self.split:
            clauses.append("p.split = ?")
            params.append(self.split)
        for column, values in (("p.true_label", self.true), ("p.pred_label", self.pred), ("i.artist", self.artists)):
            if values:
                clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
                params += list(values)
        if self.outcome == "wrong":
            clauses.append("NOT p.correct")
        elif self.outcome == "correct":
            clauses.append("p.correct")
        elif self.outcome == FLAGGED:
            clauses.append("coalesce(lq.issue, false)")
        if self.conf_min > 0 or self.conf_max < 1:
            clauses.append("p.confidence BETWEEN ? AND ?")
            params += [self.conf_min, self.conf_max]
        if self.within:
            sliced, values = slices.clause(self.within)
            clauses.append(sliced)
            params += values
        return " AND ".join(clauses), params

    def describe(self) -> str:
        """The filter in words, for exported galleries."""
        outcome = FLAGGED if self.outcome == FLAGGED else f"{self.outcome} predictions"
        parts = [f"run {self.run_id}", f"split {self.split or 'all'}", outcome]
        if self.true:
            parts.append("true period " + " / ".join(self.true))
        if self.pred:
            parts.append("predicted " + " / ".join(self.pred))
        if self.artists:
            parts.append("artist " + " / ".join(self.artists))
        if self.conf_min > 0 or self.conf_max < 1:
            parts.append(f"confidence {self.conf_min:.2f}–{self.conf_max:.2f}")
        if self.within:
            parts.append("slice: " + slices.describe(self.within))
        parts.append(f"sorted {self.sort}")
        return "; ".join(parts)


_FROM = """
    FROM predictions p
    JOIN runs r ON r.run_id = p.run_id
    JOIN images i ON i.dataset_id = r.dataset_id AND i.image_id = p.image_id
    LEFT JOIN label_quality lq ON lq.dataset_id = r.dataset_id AND lq.image_id = p.image_id
"""
_DISAGREEMENT = """
    LEFT JOIN (SELECT image_id, 1 - avg(spearman) AS disagreement FROM attribution_agreement
               WHERE run_id = ? AND target_kind = 'predicted' GROUP BY image_id) ag ON ag.image_id = p.image_id
"""


def count(f: GalleryFilter) -> int:
    where, params = f.where()
    df = query(f"SELECT count(*) AS n {_FROM} WHERE {where}", tuple(params))
    return int(df["n"].iloc[0]) if len(df) else 0


def page(f: GalleryFilter, limit: int, offset: int = 0, thumbnails: bool = True) -> pd.DataFrame:
    """One page of tiles: labels, confidence, metadata, annotation count (and thumbnails).

    Notes are matched by content hash, as the Annotations page does: a note made on an earlier version of the
    dataset (or on the same painting elsewhere) still shows on its tile. Only current versions count."""
    where, params = f.where()
    thumb = ", i.thumbnail" if thumbnails else ""
    sql = f"""
        SELECT p.image_id, p.true_label, p.pred_label, p.confidence, p.loss, p.correct, p.split,
               i.artist, i.title, i.date, i.dataset_id, ag.disagreement, lq.quality,
               coalesce(lq.issue, false) AS issue, lq.suggested_label,
               (SELECT count(*) FROM {CURRENT} a WHERE a.content_hash = i.content_hash) AS annotations,
               (SELECT string_agg(a.verdict || coalesce(': ' || a.note, '') || ' (' || coalesce(a.author, '?') || ')',
                                  '; ')
                FROM {CURRENT} a WHERE a.content_hash = i.content_hash) AS annotation_text
               {thumb}
        {_FROM} {_DISAGREEMENT}
        WHERE {where}
        ORDER BY {SORTS.get(f.sort, SORTS['most confident first'])}
        LIMIT ? OFFSET ?"""
    return query(sql, (f.run_id, *params, int(limit), int(offset)))


def audited(run_id: str) -> int:
    """How many of the run's images the label audit scored (0: its dataset was never audited)."""
    df = query("""SELECT count(*) AS n FROM label_quality lq JOIN runs r ON r.dataset_id = lq.dataset_id
                  WHERE r.run_id = ?""", (run_id,))
    return int(df["n"].iloc[0]) if len(df) else 0


def confusion(run_id: str, split: str | None) -> pd.DataFrame:
    if split:
        return query("""SELECT true_label, pred_label, count FROM confusion
                        WHERE run_id = ? AND task = 'period' AND split = ?""", (run_id, split))
    return query("""SELECT true_label, pred_label, sum(count)::INT AS count FROM confusion
                    WHERE run_id = ? AND task = 'period' GROUP BY ALL""", (run_id,))


# -- exports: every tile of a filter with what a file needs (probabilities, content hash, path), the run in words


def export_ids(f: GalleryFilter, limit: int) -> list[str]:
    """The first `limit` images of the filter, in its order (no thumbnails: `tiles` fetches those once)."""
    where, params = f.where()
    df = query(f"""SELECT p.image_id {_FROM} {_DISAGREEMENT} WHERE {where}
                   ORDER BY {SORTS.get(f.sort, SORTS['most confident first'])} LIMIT ?""",
               (f.run_id, *params, int(limit)))
    return df["image_id"].tolist()


def tiles(run_id: str, image_ids: list[str]) -> pd.DataFrame:
    """The run's period prediction on each image (probability vector too) with its metadata, content hash, path and
    thumbnail, in the order of `image_ids`."""
    df = query(f"""
        SELECT p.run_id, p.image_id, p.split, p.true_label, p.pred_label, p.confidence, p.loss, p.correct, p.probs,
               i.artist, i.title, i.date, i.path, i.content_hash, i.dataset_id, i.thumbnail
        {_FROM} WHERE p.run_id = ? AND p.task = 'period' AND p.image_id IN (SELECT unnest(?::TEXT[]))""",
               (run_id, list(image_ids)))
    order = {image_id: n for n, image_id in enumerate(image_ids)}
    return df.sort_values("image_id", key=lambda s: s.map(order)).reset_index(drop=True)


def predicted_maps(run_id: str, image_ids: list[str]) -> pd.DataFrame:
    """The stored saliency maps that explain the run's guess on each image (one row per image and method)."""
    return query("""SELECT image_id, method, target_label, heatmap FROM attributions
                    WHERE run_id = ? AND target_kind = 'predicted' AND image_id IN (SELECT unnest(?::TEXT[]))
                    ORDER BY image_id, method""", (run_id, list(image_ids)))


def run_facts(run_id: str) -> dict[str, object]:
    """What the gallery header says about a run: its runs row, its collection's name, how many images the model
    learnt from (its own run's training split, for an evaluation on another collection) and how many periods."""
    df = query("""
        SELECT r.run_id, r.backbone, r.strategy, r.freeze_until, r.pretrained, r.config, r.evaluation_of,
               r.dataset_id, d.name AS dataset, d.synthetic,
               (SELECT count(*) FROM images i WHERE i.dataset_id = coalesce(parent.dataset_id, r.dataset_id)
                                                AND i.split = 'train') AS n_train,
               (SELECT count(*) FROM run_labels l WHERE l.run_id = r.run_id AND l.task = 'period') AS n_periods
        FROM runs r LEFT JOIN datasets d USING (dataset_id) LEFT JOIN runs parent ON parent.run_id = r.evaluation_of
        WHERE r.run_id = ?""", (run_id,))
    return df.iloc[0].to_dict() if len(df) else {"run_id": run_id}


def headline(run_id: str, split: str = "test") -> dict[str, float]:
    """The run's overall metrics on a split (accuracy, balanced_accuracy, macro_f1, n) from the metrics table."""
    df = query("""SELECT metric, value FROM metrics WHERE run_id = ? AND split = ? AND task = 'period'
                  AND label IS NULL AND metric IN ('accuracy', 'balanced_accuracy', 'macro_f1', 'n')""",
               (run_id, split))
    return {str(r.metric): float(r.value) for r in df.itertuples() if r.value is not None}
