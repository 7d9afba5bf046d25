"""SQL behind the Embedding map page, and the nearest-neighbour helper the Inspector imports.

The map is sampled in DuckDB (deterministically, by a hash of the image id) so a 33,600-image
run sends at most `limit` points to the browser; neighbours are ranked by cosine similarity
in DuckDB, never by loading the vectors into Python.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from dashboard.queries import query

MAX_POINTS = 20_000
TOP_ARTISTS = 20

# One run's images with their 2-D position, metadata and period prediction.
_POINTS = """
    SELECT e.image_id, e.x, e.y, i.split, i.artist, i.title, i.date,
           coalesce(p.true_label, i.period) AS true_label, p.pred_label, p.correct, p.confidence
    FROM embeddings e
    JOIN runs r ON r.run_id = e.run_id
    JOIN images i ON i.dataset_id = r.dataset_id AND i.image_id = e.image_id
    LEFT JOIN predictions p ON p.run_id = e.run_id AND p.image_id = e.image_id AND p.task = 'period'
    WHERE e.run_id = ?"""


def points(run_id: str, split: str = "all", limit: int | None = None) -> pd.DataFrame:
    """At most `limit` (default MAX_POINTS) points of the map (a deterministic sample if more), with `total`.

    Artists beyond the TOP_ARTISTS most frequent are lumped into '(other artists)' so a legend stays readable."""
    return query(
        f"""WITH pts AS ({_POINTS} AND (? = 'all' OR i.split = ?)),
                 top AS (SELECT artist FROM pts WHERE artist IS NOT NULL
                         GROUP BY artist ORDER BY count(*) DESC, artist LIMIT {TOP_ARTISTS})
            SELECT pts.*,
                   CASE WHEN artist IS NULL THEN '(unknown)'
                        WHEN artist IN (SELECT artist FROM top) THEN artist
                        ELSE '(other artists)' END AS artist_group,
                   CASE WHEN correct THEN 'right' WHEN NOT correct THEN 'wrong' ELSE 'unlabelled' END AS outcome,
                   count(*) OVER () AS total
            FROM pts ORDER BY hash(image_id), image_id LIMIT ?""",
        (run_id, split, split, int(limit or MAX_POINTS)),
    )


def selected(run_id: str, image_ids: Sequence[str], limit: int = 500) -> pd.DataFrame:
    """The selected images' details (no thumbnails), most confident mistakes first."""
    return query(
        f"""SELECT image_id, split, true_label, pred_label, correct, confidence, artist, title, date
            FROM ({_POINTS}) WHERE image_id IN (SELECT unnest(?::TEXT[]))
            ORDER BY correct NULLS LAST, confidence DESC, image_id LIMIT ?""",
        (run_id, list(image_ids), int(limit)),
    )


def selection_summary(run_id: str, image_ids: Sequence[str]) -> pd.DataFrame:
    """How the selected images split by true period and outcome (counts)."""
    return query(
        f"""SELECT true_label, count(*) AS images, count(*) FILTER (WHERE correct) AS right,
                   count(*) FILTER (WHERE NOT correct) AS wrong
            FROM ({_POINTS}) WHERE image_id IN (SELECT unnest(?::TEXT[])) GROUP BY true_label""",
        (run_id, list(image_ids)),
    )


def thumbnails(run_id: str, image_ids: Sequence[str]) -> pd.DataFrame:
    """Thumbnails (JPEG bytes) of a few images of the run's dataset, fetched by id."""
    return query(
        """SELECT i.image_id, i.thumbnail FROM images i JOIN runs r ON r.dataset_id = i.dataset_id
           WHERE r.run_id = ? AND i.image_id IN (SELECT unnest(?::TEXT[])) ORDER BY i.image_id""",
        (run_id, list(image_ids)),
    )


def neighbours(run_id: str, image_id: str, k: int = 8) -> pd.DataFrame:
    """The image itself (similarity 1, first) and its k − 1 nearest images by cosine similarity of the
    run's embedding vectors, with metadata, the run's period prediction and the thumbnail.

    Empty when the run has no vector for `image_id`."""
    return query(
        """WITH target AS (SELECT vector FROM embeddings WHERE run_id = ? AND image_id = ? LIMIT 1),
                ranked AS (
                    SELECT e.image_id,
                           CASE WHEN e.image_id = ? THEN 1.0  -- an all-zero vector has no direction: NULL, last
                                ELSE nullif(list_cosine_similarity(e.vector, t.vector), 'nan'::FLOAT) END
                               AS similarity
                    FROM embeddings e, target t WHERE e.run_id = ?
                    ORDER BY e.image_id = ? DESC, similarity DESC NULLS LAST, e.image_id LIMIT ?)
           SELECT n.image_id, n.similarity, i.split, i.period, i.artist, i.title, i.date,
                  p.true_label, p.pred_label, p.correct, p.confidence, i.thumbnail
           FROM ranked n
           JOIN runs r ON r.run_id = ?
           JOIN images i ON i.dataset_id = r.dataset_id AND i.image_id = n.image_id
           LEFT JOIN predictions p ON p.run_id = r.run_id AND p.image_id = n.image_id AND p.task = 'period'
           ORDER BY n.image_id = ? DESC, n.similarity DESC NULLS LAST, n.image_id""",
        (run_id, image_id, image_id, run_id, image_id, int(k), run_id, image_id),
    )
