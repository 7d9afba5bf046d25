"""Expert annotations: the dashboard's only write, and the reads that list them.

An annotation names its image by (dataset_id, image_id) and also keeps the image's content
hash, so a note still finds its painting when a dataset is prepared again (or the same
painting turns up in another dataset). The pipeline never deletes annotations: the table is
not in `pipeline.store.RUN_TABLES`, and preparing a dataset again replaces only `images`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd

from dashboard.queries import query, store_path
from dashboard.queries.reader import READER
from pipeline import store as pipeline_store

VERDICTS = ("model right", "label wrong", "ambiguous", "outside its period")
MAX_NOTE = 5000
MAX_AUTHOR = 120

_COLUMNS = """a.created_at, a.verdict, a.author, a.note, a.run_id, a.dataset_id, a.image_id,
              i.period, i.artist, i.title, p.pred_label, p.confidence, a.content_hash, a.annotation_id"""
_FROM = """annotations a
           LEFT JOIN images i ON i.dataset_id = a.dataset_id AND i.image_id = a.image_id
           LEFT JOIN predictions p ON p.run_id = a.run_id AND p.image_id = a.image_id AND p.task = 'period'"""


class AnnotationError(ValueError):
    """An annotation that cannot be saved; str(exc) is the message shown to the person."""


def _same_instance_conflict(exc: Exception) -> bool:
    """DuckDB refuses a read-write open while this process holds a read-only one (and vice versa)."""
    return isinstance(exc, duckdb.ConnectionException) and "different configuration" in str(exc)


@contextmanager
def connect_retrying(path: str | Path, read_only: bool, wait_seconds: float = 15.0
                     ) -> Iterator[duckdb.DuckDBPyConnection]:
    """pipeline.store.connect, also waiting out this process's own connections of the other mode.

    Other Streamlit sessions read the store in short bursts from this same process; DuckDB
    shares one database instance per file and process, so a writer must wait for them too.
    """
    deadline = time.monotonic() + wait_seconds
    delay = 0.05
    while True:
        stack = ExitStack()
        try:
            con = stack.enter_context(
                pipeline_store.connect(path, read_only=read_only, wait_seconds=max(0.0, deadline - time.monotonic())))
            break
        except duckdb.Error as exc:
            if not _same_instance_conflict(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    with stack:
        yield con


def save_annotation(dataset_id: str, image_id: str, run_id: str | None, verdict: str, note: str, author: str,
                    path: str | Path | None = None) -> str:
    """Store one verdict on an image (as seen by a run) and return its id; raises AnnotationError."""
    path = Path(path or store_path())
    author, note = (author or "").strip(), (note or "").strip()
    if verdict not in VERDICTS:
        raise AnnotationError(f"Choose a verdict: {', '.join(VERDICTS)}.")
    if not author:
        raise AnnotationError("Give your name, so others know whose judgement this is.")
    if len(author) > MAX_AUTHOR or len(note) > MAX_NOTE:
        raise AnnotationError(f"Keep the name under {MAX_AUTHOR} and the note under {MAX_NOTE} characters.")
    if not path.exists():
        raise AnnotationError(f"No store at {path}: run `make artifacts` first.")
    annotation_id = str(uuid.uuid4())
    created_at = datetime.now(UTC).replace(tzinfo=None)
    try:
        with READER.paused(), connect_retrying(path, read_only=False) as con:  # this process's readers step aside
            found = con.execute(
                """INSERT INTO annotations
                   SELECT ?, dataset_id, image_id, content_hash, ?, ?, ?, ?, ?::TIMESTAMP FROM images
                   WHERE dataset_id = ? AND image_id = ? RETURNING annotation_id""",
                [annotation_id, run_id, verdict, note or None, author, created_at, dataset_id, image_id],
            ).fetchall()
    except pipeline_store.StoreLockedError as exc:
        raise AnnotationError(f"The store is busy (the pipeline is writing it); try again shortly. ({exc})") from exc
    if not found:
        raise AnnotationError(f"Image {image_id!r} is not in dataset {dataset_id!r}: nothing saved.")
    return annotation_id


def annotations_for(dataset_id: str, image_id: str) -> pd.DataFrame:
    """Every note on this painting: on this image, or on any image with the same content."""
    return query("""
        SELECT a.created_at, a.verdict, a.author, a.note, a.run_id,
               CASE WHEN a.dataset_id = ? AND a.image_id = ? THEN NULL ELSE a.dataset_id || '/' || a.image_id END
                   AS same_painting_as
        FROM annotations a
        WHERE (a.dataset_id = ? AND a.image_id = ?)
           OR a.content_hash = (SELECT content_hash FROM images WHERE dataset_id = ? AND image_id = ?)
        ORDER BY a.created_at DESC""", (dataset_id, image_id) * 3)


def list_annotations(verdicts: Sequence[str] = (), authors: Sequence[str] = (), runs: Sequence[str] = ()
                     ) -> pd.DataFrame:
    """All annotations with their image and the annotated run's prediction, newest first, filtered."""
    where: list[str] = ["TRUE"]
    params: list[str] = []
    for column, values in (("a.verdict", verdicts), ("a.author", authors), ("a.run_id", runs)):
        if values:
            where.append(f"{column} IN ({', '.join('?' * len(values))})")
            params.extend(values)
    return query(f"SELECT {_COLUMNS} FROM {_FROM} WHERE {' AND '.join(where)} ORDER BY a.created_at DESC",
                 tuple(params))


# The current annotations: rows no other row revises (an edit or a withdrawal is a new row naming the one it
# replaces) that are not themselves a withdrawal. pipeline/annotations.py writes the history; this reads it.
CURRENT = """(SELECT * FROM annotations a
              WHERE NOT coalesce(a.withdrawn, false)
                AND NOT EXISTS (SELECT 1 FROM annotations b WHERE b.revises = a.annotation_id))"""

# The verdict that counts for each image of a run's dataset: a current annotation on the same painting (content
# hash), the ones made on this run's predictions first (a "model right" is about a prediction), then the latest.
_RUN_VERDICTS = f"""
    SELECT r.run_id, i.image_id, a.verdict, a.note, a.author, a.created_at
    FROM runs r JOIN images i ON i.dataset_id = r.dataset_id
         JOIN {CURRENT} a ON a.content_hash = i.content_hash
    WHERE list_contains(?, r.run_id)
    QUALIFY row_number() OVER (PARTITION BY r.run_id, i.image_id
                               ORDER BY a.run_id IS NOT DISTINCT FROM r.run_id DESC, a.created_at DESC,
                                        a.annotation_id) = 1"""


def current_verdicts(run_id: str) -> pd.DataFrame:
    """image_id, verdict, note, author, created_at: the verdict that counts on each annotated image of the run's
    dataset (see _RUN_VERDICTS), for pages and exports that show a run's images with the experts' word."""
    return query(f"SELECT image_id, verdict, note, author, created_at FROM ({_RUN_VERDICTS}) ORDER BY image_id",
                 ([run_id],))


def expert_summary(run_ids: Sequence[str]) -> pd.DataFrame:
    """Per run, on the test split: its errors, how many an expert reviewed and what they said, its accuracy, and
    its accuracy if the experts are right (an error judged "label wrong" or "model right" counts as correct)."""
    return query(f"""
        WITH v AS ({_RUN_VERDICTS})
        SELECT p.run_id,
               count(*) FILTER (NOT p.correct) AS errors,
               count(v.verdict) FILTER (NOT p.correct) AS reviewed_errors,
               count(*) FILTER (NOT p.correct AND v.verdict = 'label wrong') AS label_wrong,
               count(*) FILTER (NOT p.correct AND v.verdict = 'model right') AS model_right,
               count(*) FILTER (NOT p.correct AND v.verdict = 'ambiguous') AS ambiguous,
               count(*) FILTER (NOT p.correct AND v.verdict = 'outside its period') AS outside,
               avg(p.correct::INT) AS accuracy,
               avg((p.correct OR coalesce(v.verdict IN ('label wrong', 'model right'), false))::INT)
                   AS accuracy_if_experts_right
        FROM predictions p LEFT JOIN v ON v.run_id = p.run_id AND v.image_id = p.image_id
        WHERE list_contains(?, p.run_id) AND p.task = 'period' AND p.split = 'test'
        GROUP BY p.run_id ORDER BY p.run_id""", (list(run_ids), list(run_ids)))


def authors() -> list[str]:
    return query("SELECT DISTINCT author FROM annotations WHERE author IS NOT NULL ORDER BY 1")["author"].tolist()


def annotated_runs() -> list[str]:
    return query("SELECT DISTINCT run_id FROM annotations WHERE run_id IS NOT NULL ORDER BY 1")["run_id"].tolist()


def candidates(run_id: str, limit: int = 500) -> pd.DataFrame:
    """Images to annotate when none is linked: the run's test errors (most confident first), then the rest."""
    return query("""SELECT image_id, true_label, pred_label, confidence FROM predictions
                    WHERE run_id = ? AND task = 'period'
                    ORDER BY split <> 'test', correct, confidence DESC LIMIT ?""", (run_id, limit))


def image_for_run(run_id: str, image_id: str) -> pd.Series | None:
    """The image a run saw, with the run's period prediction (None when the run's dataset lacks it)."""
    df = query("""SELECT r.dataset_id, i.image_id, i.period, i.artist, i.title, i.date, i.split, i.content_hash,
                         i.thumbnail, p.pred_label, p.confidence, p.correct
                  FROM runs r JOIN images i ON i.dataset_id = r.dataset_id AND i.image_id = ?
                  LEFT JOIN predictions p ON p.run_id = r.run_id AND p.image_id = i.image_id AND p.task = 'period'
                  WHERE r.run_id = ?""", (image_id, run_id))
    return df.iloc[0] if len(df) else None
