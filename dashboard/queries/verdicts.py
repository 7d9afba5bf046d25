"""Expert annotations: the dashboard's only write (through pipeline.annotations), and the reads that list them.

An annotation names its image by (dataset_id, image_id) and also keeps the image's content
hash, so a note still finds its painting when a dataset is prepared again (or the same
painting turns up in another dataset). The pipeline never deletes annotations: the table is
not in `pipeline.store.RUN_TABLES`, and preparing a dataset again replaces only `images`.
An edit or a withdrawal is a new row naming the one it replaces; lists show the current ones.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import duckdb
import pandas as pd

from dashboard.queries import query, store_path
from dashboard.queries.reader import READER
from pipeline import annotations as writer
from pipeline import store as pipeline_store
from pipeline.annotations import CURRENT, LABEL_WRONG, MAX_AUTHOR, MAX_NOTE, VERDICTS, AnnotationError

__all__ = ["CURRENT", "LABEL_WRONG", "MAX_AUTHOR", "MAX_NOTE", "VERDICTS", "AnnotationError"]

_COLUMNS = """a.created_at, a.verdict, a.corrected_period, a.author, a.note, a.run_id, a.dataset_id, a.image_id,
              i.period, i.artist, i.title, p.pred_label, p.confidence, a.content_hash, a.annotation_id"""
_HISTORY = """, a.revises, coalesce(a.withdrawn, false) AS withdrawn, a.source"""
_FROM = """{annotations} a
           LEFT JOIN images i ON i.dataset_id = a.dataset_id AND i.image_id = a.image_id
           LEFT JOIN predictions p ON p.run_id = a.run_id AND p.image_id = a.image_id AND p.task = 'period'"""


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


def writing(path: str | Path | None, write, error: type[Exception] = AnnotationError):
    """Run `write(con)` on a writer's connection to the store, this process's readers stepping aside; a missing or
    busy store raises `error` with one line for the page (the Slices page writes the same way)."""
    path = Path(path or store_path())
    if not path.exists():
        raise error(f"No store at {path}: run `make artifacts` first.")
    try:
        with READER.paused(), connect_retrying(path, read_only=False) as con:
            return write(con)
    except pipeline_store.StoreLockedError as exc:
        raise error(f"The store is busy (the pipeline is writing it); try again shortly. ({exc})") from exc


def save_annotation(dataset_id: str, image_id: str, run_id: str | None, verdict: str, note: str, author: str,
                    path: str | Path | None = None, corrected_period: str | None = None) -> str:
    """Store one verdict on an image (as seen by a run) and return its id; raises AnnotationError. A "label wrong"
    verdict may name the right period (one of the dataset's)."""
    writer.checked(verdict, note, author)  # before waiting for the store
    return writing(path, lambda con: writer.save(con, dataset_id, image_id, run_id, verdict, note, author,
                                                  corrected_period))


def revise_annotation(annotation_id: str, verdict: str, note: str, author: str, path: str | Path | None = None,
                      corrected_period: str | None = None) -> str:
    """A new version of a current annotation; returns its id."""
    writer.checked(verdict, note, author)
    return writing(path, lambda con: writer.revise(con, annotation_id, verdict, note, author, corrected_period))


def withdraw_annotation(annotation_id: str, author: str, path: str | Path | None = None) -> str:
    """Withdraw a current annotation (kept in its history); returns the withdrawal's id."""
    return writing(path, lambda con: writer.withdraw(con, annotation_id, author))


def import_verdicts(data: bytes, path: str | Path | None = None) -> writer.ImportReport:
    """Bring an exported gallery's verdicts file into the store (pipeline.annotations.import_verdicts)."""
    writer.read_verdicts(data)  # a file that is not one fails before waiting for the store
    return writing(path, lambda con: writer.import_verdicts(con, data))


def annotations_for(dataset_id: str, image_id: str) -> pd.DataFrame:
    """Every version of every note on this painting (on this image, or on any image with the same content), newest
    first: `current` marks the ones that count, `withdrawn` the rows that took one back."""
    return query(f"""
        SELECT a.created_at, a.verdict, a.corrected_period, a.author, a.note, a.run_id,
               a.annotation_id IN (SELECT annotation_id FROM {CURRENT} c) AS current,
               coalesce(a.withdrawn, false) AS withdrawn, a.revises, a.source,
               CASE WHEN a.dataset_id = ? AND a.image_id = ? THEN NULL ELSE a.dataset_id || '/' || a.image_id END
                   AS same_painting_as, a.annotation_id
        FROM annotations a
        WHERE (a.dataset_id = ? AND a.image_id = ?)
           OR a.content_hash = (SELECT content_hash FROM images WHERE dataset_id = ? AND image_id = ?)
        ORDER BY a.created_at DESC, a.annotation_id""", (dataset_id, image_id) * 3)


def list_annotations(verdicts: Sequence[str] = (), authors: Sequence[str] = (), runs: Sequence[str] = (),
                     all_versions: bool = False) -> pd.DataFrame:
    """The current annotations (or every version, withdrawals included) with their image and the annotated run's
    prediction, newest first, filtered."""
    where: list[str] = ["TRUE"]
    params: list[str] = []
    for column, values in (("a.verdict", verdicts), ("a.author", authors), ("a.run_id", runs)):
        if values:
            where.append(f"{column} IN ({', '.join('?' * len(values))})")
            params.extend(values)
    source = _FROM.format(annotations="annotations" if all_versions else CURRENT)
    history = _HISTORY if all_versions else ""
    return query(f"SELECT {_COLUMNS}{history} FROM {source} WHERE {' AND '.join(where)} "
                 "ORDER BY a.created_at DESC, a.annotation_id", tuple(params))


def authors() -> list[str]:
    return query("SELECT DISTINCT author FROM annotations WHERE author IS NOT NULL ORDER BY 1")["author"].tolist()


def annotated_runs() -> list[str]:
    return query("SELECT DISTINCT run_id FROM annotations WHERE run_id IS NOT NULL ORDER BY 1")["run_id"].tolist()


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


def candidates(run_id: str, limit: int = 500) -> pd.DataFrame:
    """Images to annotate when none is linked: the run's test errors (most confident first), then the rest."""
    return query("""SELECT image_id, true_label, pred_label, confidence FROM predictions
                    WHERE run_id = ? AND task = 'period'
                    ORDER BY split <> 'test', correct, confidence DESC LIMIT ?""", (run_id, limit))


def run_periods(run_id: str) -> list[str]:
    """The periods of the run's dataset, in its class order: the choices for a "label wrong" verdict's right period."""
    df = query("SELECT d.periods FROM runs r JOIN datasets d ON d.dataset_id = r.dataset_id WHERE r.run_id = ?",
               (run_id,))
    return list(df["periods"].iloc[0]) if len(df) and df["periods"].iloc[0] is not None else []


def image_for_run(run_id: str, image_id: str) -> pd.Series | None:
    """The image a run saw, with the run's period prediction (None when the run's dataset lacks it)."""
    df = query("""SELECT r.dataset_id, i.image_id, i.period, i.artist, i.title, i.date, i.split, i.content_hash,
                         i.thumbnail, p.pred_label, p.confidence, p.correct
                  FROM runs r JOIN images i ON i.dataset_id = r.dataset_id AND i.image_id = ?
                  LEFT JOIN predictions p ON p.run_id = r.run_id AND p.image_id = i.image_id AND p.task = 'period'
                  WHERE r.run_id = ?""", (image_id, run_id))
    return df.iloc[0] if len(df) else None
