"""The error gallery's SQL: one filter, a count, a page of tiles, the confusion matrix.

Everything is filtered, sorted and paged in DuckDB; only the tiles of the page on screen
(with their thumbnails) come back to Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from dashboard.queries import query

SORTS = {
    "least confident first": "p.confidence ASC, p.image_id",
    "most confident first": "p.confidence DESC, p.image_id",
    "highest loss first": "p.loss DESC NULLS LAST, p.image_id",
    "explanations disagree most": "ag.disagreement DESC NULLS LAST, p.image_id",
}
OUTCOMES = ("wrong", "correct", "all")


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
        if self.conf_min > 0 or self.conf_max < 1:
            clauses.append("p.confidence BETWEEN ? AND ?")
            params += [self.conf_min, self.conf_max]
        return " AND ".join(clauses), params

    def describe(self) -> str:
        """The filter in words, for exported galleries."""
        parts = [f"run {self.run_id}", f"split {self.split or 'all'}", f"{self.outcome} predictions"]
        if self.true:
            parts.append("true period " + " / ".join(self.true))
        if self.pred:
            parts.append("predicted " + " / ".join(self.pred))
        if self.artists:
            parts.append("artist " + " / ".join(self.artists))
        if self.conf_min > 0 or self.conf_max < 1:
            parts.append(f"confidence {self.conf_min:.2f}–{self.conf_max:.2f}")
        parts.append(f"sorted {self.sort}")
        return "; ".join(parts)


_FROM = """
    FROM predictions p
    JOIN runs r ON r.run_id = p.run_id
    JOIN images i ON i.dataset_id = r.dataset_id AND i.image_id = p.image_id
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
    dataset (or on the same painting elsewhere) still shows on its tile."""
    where, params = f.where()
    thumb = ", i.thumbnail" if thumbnails else ""
    sql = f"""
        SELECT p.image_id, p.true_label, p.pred_label, p.confidence, p.loss, p.correct, p.split,
               i.artist, i.title, i.date, i.dataset_id, ag.disagreement,
               (SELECT count(*) FROM annotations a WHERE a.content_hash = i.content_hash) AS annotations,
               (SELECT string_agg(a.verdict || coalesce(': ' || a.note, '') || ' (' || coalesce(a.author, '?') || ')',
                                  '; ')
                FROM annotations a WHERE a.content_hash = i.content_hash) AS annotation_text
               {thumb}
        {_FROM} {_DISAGREEMENT}
        WHERE {where}
        ORDER BY {SORTS.get(f.sort, SORTS['most confident first'])}
        LIMIT ? OFFSET ?"""
    return query(sql, (f.run_id, *params, int(limit), int(offset)))


def confusion(run_id: str, split: str | None) -> pd.DataFrame:
    if split:
        return query("""SELECT true_label, pred_label, count FROM confusion
                        WHERE run_id = ? AND task = 'period' AND split = ?""", (run_id, split))
    return query("""SELECT true_label, pred_label, sum(count)::INT AS count FROM confusion
                    WHERE run_id = ? AND task = 'period' GROUP BY ALL""", (run_id,))
