"""One image across runs: metadata, probabilities, saliency maps, method agreement, and where the image stands in
an Errors filter (so the Inspector can step to the previous or next error the gallery shows)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from dashboard.queries import query
from dashboard.queries.gallery import SORTS, GalleryFilter


def run_dataset(run_id: str) -> str | None:
    df = query("SELECT dataset_id FROM runs WHERE run_id = ?", (run_id,))
    return df["dataset_id"].iloc[0] if len(df) else None


def geometry(dataset_id: str) -> tuple[int, int]:
    """(resize, crop) the models saw: where a saliency map lies on the thumbnail."""
    df = query("SELECT config FROM datasets WHERE dataset_id = ?", (dataset_id,))
    cfg = json.loads(df["config"].iloc[0]) if len(df) else {}
    return int(cfg.get("resize", 256)), int(cfg.get("crop", 224))


def image(dataset_id: str, image_id: str) -> pd.Series | None:
    df = query("""SELECT image_id, period, artist, title, date, split, width, height, path, content_hash, thumbnail
                  FROM images WHERE dataset_id = ? AND image_id = ?""", (dataset_id, image_id))
    return df.iloc[0] if len(df) else None


# The Errors page's rows (predictions of its run, with image metadata and the methods' disagreement for its sort).
_FILTERED = """
    FROM predictions p
    JOIN runs r ON r.run_id = p.run_id
    JOIN images i ON i.dataset_id = r.dataset_id AND i.image_id = p.image_id
    LEFT JOIN label_quality lq ON lq.dataset_id = r.dataset_id AND lq.image_id = p.image_id
    LEFT JOIN (SELECT image_id, 1 - avg(spearman) AS disagreement FROM attribution_agreement
               WHERE run_id = ? AND target_kind = 'predicted' GROUP BY image_id) ag ON ag.image_id = p.image_id"""


def candidates(f: GalleryFilter, limit: int = 300) -> pd.DataFrame:
    """Images to pick from: the first `limit` of the Errors filter `f`, in its order (by default the run's test
    errors, most confident first)."""
    where, params = f.where()
    return query(f"""SELECT p.image_id, p.true_label, p.pred_label, p.confidence {_FILTERED} WHERE {where}
                     ORDER BY {SORTS.get(f.sort, SORTS['most confident first'])} LIMIT ?""",
                 (f.run_id, *params, int(limit)))


@dataclass(frozen=True)
class Place:
    """Where an image stands in a filter's order: its 1-based position (None: not in the filter), the images
    before and after it (for a missing image: None and the filter's first), and how many the filter holds."""

    position: int | None
    previous: str | None
    next: str | None
    total: int


def place(f: GalleryFilter, image_id: str) -> Place:
    """The image's position in the Errors filter `f` and its neighbours there, ranked in DuckDB (one query)."""
    where, params = f.where()
    order = SORTS.get(f.sort, SORTS["most confident first"])
    df = query(f"""
        WITH ranked AS (SELECT p.image_id, row_number() OVER (ORDER BY {order}) AS n {_FILTERED} WHERE {where}),
             me AS (SELECT n FROM ranked WHERE image_id = ?)
        SELECT (SELECT n FROM me) AS position, (SELECT count(*) FROM ranked) AS total,
               (SELECT image_id FROM ranked WHERE n = (SELECT n FROM me) - 1) AS previous,
               (SELECT image_id FROM ranked WHERE n = coalesce((SELECT n FROM me) + 1, 1)) AS next""",
               (f.run_id, *params, image_id))
    row = df.iloc[0]
    position = None if pd.isna(row["position"]) else int(row["position"])
    return Place(position, _text(row["previous"]), _text(row["next"]), int(row["total"]))


def _text(value: object) -> str | None:
    return None if value is None or pd.isna(value) else str(value)


def label_quality(dataset_id: str, image_id: str) -> pd.Series | None:
    """The label audit's row for the image (given label, quality, suggested label, issue, folds); None: not audited."""
    df = query("""SELECT given_label, quality, suggested_label, issue, folds FROM label_quality
                  WHERE dataset_id = ? AND image_id = ?""", (dataset_id, image_id))
    return df.iloc[0] if len(df) else None


def probabilities(dataset_id: str, image_id: str) -> pd.DataFrame:
    """Every run's period probabilities for the image, one row per (run, class), chronological."""
    return query("""
        SELECT p.run_id, l.class_index, l.label, p.probs[l.class_index + 1] AS probability,
               p.pred_label, p.true_label
        FROM predictions p JOIN runs r ON r.run_id = p.run_id
        JOIN run_labels l ON l.run_id = p.run_id AND l.task = p.task
        WHERE r.dataset_id = ? AND p.image_id = ? AND p.task = 'period'
        ORDER BY p.run_id, l.class_index""", (dataset_id, image_id))


def maps(dataset_id: str, image_id: str) -> pd.DataFrame:
    return query("""
        SELECT a.run_id, a.method, a.target_label, a.target_kind, a.heatmap
        FROM attributions a JOIN runs r ON r.run_id = a.run_id
        WHERE r.dataset_id = ? AND a.image_id = ? ORDER BY a.run_id, a.target_kind DESC, a.method""",
                 (dataset_id, image_id))


def agreement(dataset_id: str, image_id: str) -> pd.DataFrame:
    return query("""
        SELECT g.run_id, g.target_kind, g.method_a, g.method_b, g.spearman, g.top_overlap
        FROM attribution_agreement g JOIN runs r ON r.run_id = g.run_id
        WHERE r.dataset_id = ? AND g.image_id = ? ORDER BY ALL""", (dataset_id, image_id))


def sanity(run_id: str) -> pd.DataFrame:
    return query("""SELECT method, n_images, spearman_mean, top_overlap_mean FROM attribution_sanity
                    WHERE run_id = ? ORDER BY method""", (run_id,))
