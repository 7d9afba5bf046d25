"""The DuckDB store: the only module that knows the schema.

The store is the contract between the pipeline (the only writer of model results) and the
dashboard. A run is written in one transaction, so it appears whole or not at all; writing it
again replaces it. Connections are short-lived and retry on DuckDB's cross-process file lock,
so the dashboard can stay open while `make artifacts` writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

SCHEMA_VERSION = "6"  # 3: runs.evaluation_of; 4: annotations.revises, withdrawn, source (history);
# 5: near_copies, label_quality (per dataset), annotations.corrected_period (an expert's period for "label wrong");
# 6: metrics.low/high (95 % interval), predictions.raw_confidence/raw_probs (before temperature scaling),
#    calibration (per run and task), slices (named filters shared by URL), images.source (which collection)
# sha256 of the SCHEMA text below, as of SCHEMA_VERSION. tests/test_schema_version.py fails when SCHEMA changes and
# this does not: then bump SCHEMA_VERSION, make ensure_schema migrate an older store, and only then update this.
SCHEMA_DIGEST = (SCHEMA_VERSION, "315c3e35898f8b29cc30883af702244a729f26dac6c1b610a29547984eeca653")

# Tables the pipeline owns per run: deleted and rewritten together when a run is replaced.
RUN_TABLES = ("runs", "run_labels", "epochs", "predictions", "metrics", "confusion", "embeddings", "attributions",
              "attribution_agreement", "attribution_sanity", "calibration")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS datasets (
    dataset_id TEXT PRIMARY KEY, name TEXT, source TEXT, path TEXT, synthetic BOOLEAN,
    periods TEXT[], artists TEXT[], config JSON, n_images INTEGER, n_skipped INTEGER,
    n_duplicate_groups INTEGER, n_conflicting_duplicates INTEGER, created_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS images (
    dataset_id TEXT, image_id TEXT, path TEXT, period TEXT, artist TEXT, title TEXT, date TEXT,
    split TEXT, content_hash TEXT, width INTEGER, height INTEGER, thumbnail BLOB, source TEXT,
    PRIMARY KEY (dataset_id, image_id));
CREATE TABLE IF NOT EXISTS skipped_images (dataset_id TEXT, path TEXT, "row" BIGINT, reason TEXT, stage TEXT);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, experiment TEXT, name TEXT, dataset_id TEXT, backbone TEXT, strategy TEXT,
    freeze_until INTEGER, tasks TEXT[], pretrained BOOLEAN, config JSON, config_hash TEXT, device TEXT,
    status TEXT, started_at TIMESTAMP, finished_at TIMESTAMP, train_seconds DOUBLE, eval_seconds DOUBLE,
    epochs INTEGER, best_epoch INTEGER, lr DOUBLE, test_accuracy DOUBLE, test_balanced_accuracy DOUBLE,
    test_macro_f1 DOUBLE, test_top2_accuracy DOUBLE, test_adjacent_error_share DOUBLE, checkpoint TEXT, summary JSON,
    evaluation_of TEXT);
CREATE TABLE IF NOT EXISTS run_labels (run_id TEXT, task TEXT, class_index INTEGER, label TEXT);
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT, stage TEXT, epoch INTEGER, train_loss DOUBLE, train_acc DOUBLE, train_artist_acc DOUBLE,
    val_loss DOUBLE, val_acc DOUBLE, val_artist_acc DOUBLE, lr DOUBLE);
CREATE TABLE IF NOT EXISTS predictions (
    run_id TEXT, image_id TEXT, split TEXT, task TEXT, true_label TEXT, pred_label TEXT, correct BOOLEAN,
    confidence REAL, true_prob REAL, loss REAL, probs REAL[], raw_confidence REAL, raw_probs REAL[]);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT, split TEXT, task TEXT, metric TEXT, label TEXT, value DOUBLE, low DOUBLE, high DOUBLE);
CREATE TABLE IF NOT EXISTS confusion (
    run_id TEXT, split TEXT, task TEXT, true_label TEXT, pred_label TEXT, count INTEGER);
CREATE TABLE IF NOT EXISTS embeddings (run_id TEXT, image_id TEXT, vector FLOAT[], x REAL, y REAL);
CREATE TABLE IF NOT EXISTS attributions (
    run_id TEXT, image_id TEXT, method TEXT, target_label TEXT, target_kind TEXT, heatmap BLOB, scale REAL,
    size INTEGER);
CREATE TABLE IF NOT EXISTS attribution_agreement (
    run_id TEXT, image_id TEXT, target_label TEXT, target_kind TEXT, method_a TEXT, method_b TEXT,
    spearman REAL, top_overlap REAL);
CREATE TABLE IF NOT EXISTS attribution_sanity (
    run_id TEXT, method TEXT, n_images INTEGER, spearman_mean DOUBLE, spearman_std DOUBLE, top_overlap_mean DOUBLE);
CREATE TABLE IF NOT EXISTS annotations (
    annotation_id TEXT PRIMARY KEY, dataset_id TEXT, image_id TEXT, content_hash TEXT, run_id TEXT,
    verdict TEXT, note TEXT, author TEXT, created_at TIMESTAMP, revises TEXT, withdrawn BOOLEAN, source TEXT,
    corrected_period TEXT);
CREATE TABLE IF NOT EXISTS near_copies (
    dataset_id TEXT, group_id TEXT, image_id TEXT, kind TEXT, score REAL);
CREATE TABLE IF NOT EXISTS label_quality (
    dataset_id TEXT, image_id TEXT, given_label TEXT, quality REAL, suggested_label TEXT, issue BOOLEAN,
    folds INTEGER, created_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS calibration (
    run_id TEXT, task TEXT, temperature DOUBLE, fitted_on TEXT, n INTEGER);
CREATE TABLE IF NOT EXISTS slices (
    slice_id TEXT PRIMARY KEY, name TEXT, filter JSON, author TEXT, created_at TIMESTAMP);
"""


class StoreLockedError(RuntimeError):
    """Another process held the store's lock for longer than we were willing to wait."""


class StoreError(ValueError):
    """The file given as the store cannot be used as one: the message is one line naming it and what to do."""


def _is_lock_error(exc: Exception) -> bool:
    """Another process holds the file, or this process has it open in the other mode (read-only vs not)."""
    text = str(exc).lower()
    return ("lock" in text and ("conflicting" in text or "could not set lock" in text)) or (
        "different configuration" in text
    )


def writer_flag(path: str | Path) -> Path:
    """Exists while a writer waits for the store: long-lived readers (the dashboard's) close when they see it."""
    path = Path(path)
    return path.with_name(path.name + ".writer-waiting")


def writer_waiting(path: str | Path) -> bool:
    return writer_flag(path).exists()


def open_connection(path: str | Path, read_only: bool = False, wait_seconds: float = 60.0
                    ) -> duckdb.DuckDBPyConnection:
    """Open the store; wait (with backoff) while another process holds DuckDB's file lock.

    A writer raises the writer flag while it waits, so readers that keep a connection open let go of it. A file
    that is not a DuckDB database is refused before DuckDB sees it (for a SQLite file DuckDB would load, even
    download, an extension), and extensions are never loaded or installed on the connection."""
    path = Path(path)
    if not check_file(path, writing=not read_only) and not read_only:
        _make_room(path)
    started = time.monotonic()
    deadline = started + wait_seconds
    delay = 0.05
    flag = None
    try:
        while True:
            try:
                con = duckdb.connect(str(path), read_only=read_only)
                _no_extensions(con)
                waited = time.monotonic() - started
                if waited > 2:
                    print(f"[store] waited {waited:.1f}s for the lock on {path}", file=sys.stderr)
                return con
            except duckdb.Error as exc:
                if not _is_lock_error(exc) or time.monotonic() > deadline:
                    if _is_lock_error(exc):
                        raise StoreLockedError(
                            f"{path} is locked by another process (waited {wait_seconds:.0f}s)") from exc
                    failure = store_failure(path, exc)
                    if failure is not None:
                        raise failure from exc
                    raise
                if not read_only:  # (again each time: another writer may have got in and taken the flag down)
                    flag = writer_flag(path)
                    flag.touch()
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
    finally:
        if flag is not None:
            flag.unlink(missing_ok=True)


@contextmanager
def connect(
    path: str | Path, read_only: bool = False, wait_seconds: float = 60.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the store briefly (see open_connection); a writer's connection has the current schema.

    DuckDB finds a damaged block only when a query reads it: that error becomes a StoreError saying so."""
    con = open_connection(path, read_only, wait_seconds)
    try:
        if not read_only:
            ensure_schema(con)
        yield con
    except duckdb.Error as exc:
        failure = store_failure(path, exc)
        if failure is None:
            raise
        raise failure from exc
    finally:
        con.close()


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> Any:
    """The one value of a query that always returns one row (an aggregate, a pragma, a row known to exist)."""
    row = con.execute(sql, params).fetchone()
    assert row is not None, f"no row from a query that always returns one: {sql}"
    return row[0]


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create missing tables, and add columns a newer schema introduced to an older store."""
    version = None
    if scalar(con, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'"):
        rows = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()  # read it all:
        version = rows[0] if rows else None  # DuckDB 2 refuses register() while a result is pending
    if version and (version[0] == SCHEMA_VERSION or _newer(version[0])):
        return  # never "upgrade" a newer store to this schema (a writer gets here only with --adopt-store)
    con.execute(SCHEMA)
    with duckdb.connect() as reference:
        reference.execute(SCHEMA)
        wanted = reference.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
        ).fetchall()
    have = set(con.execute("SELECT table_name, column_name FROM information_schema.columns").fetchall())
    for table, column, dtype in wanted:
        if (table, column) not in have:
            con.execute(f'ALTER TABLE {table} ADD COLUMN "{column}" {dtype}')
    con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [SCHEMA_VERSION])


# ---------------------------------------------------------------- what the path given as the store holds

DUCKDB_HEADERS = 3 * 4096  # a main header and two database headers, then the blocks
REBUILD = "restore a backup, or move it away and run `make artifacts` to write a new store"
ELSEWHERE = "point --store (or PERIODEYE_STORE) at a Period Eye store"
# The first bytes of files given as the store by mistake, so the message can say what the file is.
SIGNATURES = ((b"SQLite format 3\0", "a SQLite database"), (b"\xff\xd8\xff", "a JPEG image"),
              (b"\x89PNG", "a PNG image"), (b"\x1f\x8b", "a gzip archive"), (b"PK\x03\x04", "a zip archive"),
              (b"PAR1", "a Parquet file"), (b"%PDF", "a PDF document"))
PERIOD_EYE_TABLES = {"runs", "predictions", "images"}  # enough to recognise a Period Eye store that lost its meta


def check_store(path: str | Path, writing: bool = False, adopt: bool = False, wait_seconds: float = 60.0) -> None:
    """Raise StoreError unless the store at `path` can be used; nothing there yet is fine (readers say how to make
    one, writers start one).

    Readers need a current Period Eye store. A writer may also start a store in an empty file or an empty DuckDB
    file and upgrade an older store; with `adopt`, also write into another application's DuckDB file or a newer
    store. Cheap for readers (the dashboard asks whenever the file changes); a writer also reads every block once,
    so a damaged store fails before minutes of work instead of after them. Opens read-only: never writes."""
    path = Path(path)
    if check_file(path, writing):
        with connect(path, read_only=True, wait_seconds=wait_seconds) as con:
            check_open_store(path, con, writing, adopt)


def check_open_store(path: str | Path, con: duckdb.DuckDBPyConnection, writing: bool = False, adopt: bool = False
                     ) -> None:
    """check_store's look inside, on a connection already open (the dashboard's shared one: another connection
    would keep DuckDB's instance of the file alive under it)."""
    path = Path(path)
    _check_length(path, con)
    _check_schema(path, con, writing, adopt)
    if writing:
        _read_every_block(con)


def store_failure(path: str | Path, exc: duckdb.Error) -> StoreError | None:
    """A DuckDB error that says the file is damaged or unusable, as a StoreError; None for any other error (a lock,
    or a query's own mistake)."""
    text = " ".join(str(exc).split())[:240]  # one line
    lower = text.lower()
    if _is_lock_error(exc):
        return None
    if "could not read enough bytes" in lower:
        return StoreError(f"{path} is truncated ({text}): copy it again, or {REBUILD}")
    damage = (duckdb.SerializationException, duckdb.InternalException, duckdb.FatalException)
    if isinstance(exc, damage) or any(word in lower for word in ("corrupt", "checksum", "invalidated")):
        return StoreError(f"{path} is damaged ({text}): {REBUILD}")
    if isinstance(exc, duckdb.IOException):
        return StoreError(f"{path} cannot be used ({text}): check the path, its permissions and the free disk space")
    return None


def check_file(path: str | Path, writing: bool = False) -> bool:
    """Whether there is a DuckDB file at `path` to open: False when there is nothing yet (or, for a writer, an empty
    file to start a store in). Anything else is a StoreError, before DuckDB sees it."""
    path = Path(path)
    if not path.exists():
        return False
    if path.is_dir():
        raise StoreError(f"{path} is a directory, not a store file: give the path of a .duckdb file in it, e.g. "
                         f"{path / 'periodeye.duckdb'} (--store or PERIODEYE_STORE)")
    if not path.is_file():
        raise StoreError(f"{path} is not a regular file: {ELSEWHERE}")
    try:
        with path.open("rb") as f:
            head, size = f.read(DUCKDB_HEADERS), os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise StoreError(f"{path} cannot be read ({exc.strerror}): check its permissions, or {ELSEWHERE}") from exc
    if size == 0 and writing:
        return False
    if size == 0:
        raise StoreError(f"{path} is an empty file (0 bytes), not a store yet: run `make artifacts` to write one "
                         f"there, or {ELSEWHERE}")
    if head[8:12] != b"DUCK":
        raise StoreError(f"{path} is {_file_kind(head)}, not a Period Eye store (a DuckDB file): {ELSEWHERE}")
    return True


def _file_kind(head: bytes) -> str:
    for magic, kind in SIGNATURES:
        if head.startswith(magic):
            return kind
    sample = head[:1024]
    if b"\0" not in sample and sum(32 <= b < 127 or b in b"\t\r\n" for b in sample) > 0.9 * len(sample):
        return "a text file"
    return "a file of another kind"


def _check_length(path: Path, con: duckdb.DuckDBPyConnection) -> None:
    """A truncated copy opens, and fails only when a query reaches its end: compare the blocks the tables use with
    the file's length (their metadata only, no data read). Measured while this read lock keeps writers out."""
    block_size = scalar(con, "SELECT block_size FROM pragma_database_size()")
    tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() "
                         "WHERE database_name = current_database()").fetchall()
    last = -1
    for schema, table in tables:
        name = ".".join('"' + part.replace('"', '""') + '"' for part in (schema, table)).replace("'", "''")
        try:
            used = scalar(con, f"SELECT max(block_id) FROM pragma_storage_info('{name}')")
        except (duckdb.CatalogException, duckdb.ParserException, duckdb.BinderException):  # a name it cannot take
            continue
        last = max(last, used if used is not None else -1)
    needed, size = DUCKDB_HEADERS + (last + 1) * block_size, path.stat().st_size
    if size < needed:
        raise StoreError(f"{path} is truncated ({size:,} bytes; its tables use {needed:,}: an interrupted copy, or a "
                         f"full disk?): copy it again, or {REBUILD}")


def _make_room(path: Path) -> None:
    """Let a writer start a new store at `path`: its folder, and no empty file (DuckDB refuses a 0-byte file, which
    `touch` or an interrupted copy leaves) unless another writer holds its lock (it is writing the header now)."""
    import fcntl

    with contextlib.suppress(OSError), path.open("rb+") as f:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(f.fileno()).st_size == 0:
            path.unlink()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the store {path} ({exc.strerror}): give a path in a folder you can write "
                         "(--store or PERIODEYE_STORE)") from exc


def _no_extensions(con: duckdb.DuckDBPyConnection) -> None:
    """Reading a store never loads an extension, nor downloads one (another application's file may ask for some)."""
    for name in ("autoinstall_known_extensions", "autoload_known_extensions"):
        with contextlib.suppress(duckdb.Error):  # an instance the dashboard locked down has them off already
            con.execute(f"SET {name} = false")


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {name for (name,) in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database() "
        "AND table_schema = 'main'").fetchall()}


def _schema_version(con: duckdb.DuckDBPyConnection) -> str | None:
    try:
        rows = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    except (duckdb.BinderException, duckdb.CatalogException, duckdb.ConversionException):  # another app's `meta`
        return None
    return str(rows[0][0]) if rows and rows[0][0] is not None else None


def _newer(version: str) -> bool:
    return version.isdigit() and int(version) > int(SCHEMA_VERSION)


def _check_schema(path: Path, con: duckdb.DuckDBPyConnection, writing: bool, adopt: bool) -> None:
    tables = _tables(con)
    if not tables and writing:
        return
    if not tables:
        raise StoreError(f"{path} is a DuckDB file with no Period Eye tables in it (nothing stored yet): run `make "
                         f"artifacts` to write runs into it, or {ELSEWHERE}")
    version = _schema_version(con) if "meta" in tables else None
    if (version is None or not version.isdigit() or _newer(version)) and writing and adopt:
        return
    if version is None or not version.isdigit():
        raise StoreError(_not_ours(path, tables))
    if _newer(version):
        anyway = ", or pass --adopt-store to write to it anyway" if writing else ""
        raise StoreError(f"{path} was written by a newer Period Eye (schema {version}; this code knows "
                         f"{SCHEMA_VERSION}): update this code (git pull) to use it{anyway}")
    if int(version) < int(SCHEMA_VERSION) and not writing:
        raise StoreError(f"{path} was written by an older Period Eye (schema {version}; this code reads "
                         f"{SCHEMA_VERSION}): run `python -m pipeline upgrade --store {path}` once to upgrade it in "
                         "place (runs and annotations are kept)")


def _not_ours(path: Path, tables: set[str]) -> str:
    if tables >= PERIOD_EYE_TABLES:
        return (f"{path} has Period Eye's tables but no schema version (made by an unknown version, or damaged): "
                f"{REBUILD}, or run `python -m pipeline upgrade --store {path} --adopt-store` to upgrade it in place")
    names = ", ".join(" ".join(name.split())[:40] for name in sorted(tables)[:3]) + (", ..." if len(tables) > 3 else "")
    return (f"{path} is not a Period Eye store (a DuckDB file with other tables: {names}): {ELSEWHERE}, or pass "
            "--adopt-store to a writing command to add Period Eye's tables to it")


def _read_every_block(con: duckdb.DuckDBPyConnection) -> None:
    """DuckDB checks a block's checksum when it reads the block: hashing every column of every table reads them all."""
    tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() "
                         "WHERE database_name = current_database()").fetchall()
    for schema, table in tables:
        name = ".".join('"' + part.replace('"', '""') + '"' for part in (schema, table))
        con.execute(f"SELECT bit_xor(hash(COLUMNS(*))) FROM {name}").fetchall()


def _insert(con: duckdb.DuckDBPyConnection, table: str, data: pa.Table | pd.DataFrame) -> None:
    """Append rows whose columns are named like the table's (order free)."""
    if len(data) == 0:
        return
    con.register("_incoming", data)
    try:
        names = data.column_names if isinstance(data, pa.Table) else list(data.columns)
        cols = ", ".join(f'"{c}"' for c in names)
        con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _incoming")
    finally:
        con.unregister("_incoming")


# ---------------------------------------------------------------- datasets


def write_dataset(path: str | Path, data) -> list[str]:
    """Store one prepared dataset version (metadata, splits, thumbnails, skips) in one transaction.

    The id names the content (pipeline.data.prepare.dataset_version), so writing it again only refreshes what
    no run depends on (thumbnails, titles, skips); other versions stay as runs saw them. Older versions of the
    same config that no run and no annotation points at any more are dropped; returns their ids."""
    columns = ["image_id", "path", "period", "artist", "title", "date", "split", "content_hash", "width", "height"]
    source = ["source"] if "source" in data.images.columns else []  # its collection (data.sources); None for one
    images = data.images[[*columns, "thumbnail", *source]].copy()
    images.insert(0, "dataset_id", data.dataset_id)
    skipped = data.skipped[["path", "row", "reason", "stage"]].copy()
    skipped.insert(0, "dataset_id", data.dataset_id)
    near = getattr(data, "near_copies", None)  # near-copy groups (pipeline/data/near_copies.py); none when off
    near = near[["group_id", "image_id", "kind", "score"]].copy() if near is not None else pd.DataFrame()
    near.insert(0, "dataset_id", data.dataset_id)
    conflicts = int(data.duplicates["conflict"].sum()) if len(data.duplicates) else 0
    groups = int(data.duplicates["content_hash"].nunique()) if len(data.duplicates) else 0
    with connect(path) as con:
        con.execute("BEGIN")
        try:
            dropped = _unused_versions(con, data.config.key(), data.dataset_id) if data.config is not None else []
            for table in ("datasets", "images", "skipped_images", "near_copies"):
                con.execute(f"DELETE FROM {table} WHERE list_contains(?, dataset_id)", [[data.dataset_id, *dropped]])
            # the audit of this version stays (same images); that of a dropped version goes with it
            con.execute("DELETE FROM label_quality WHERE list_contains(?, dataset_id)", [dropped])
            con.execute(
                "INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now())",
                [
                    data.dataset_id, data.name, data.config.source, data.config.path, data.synthetic,
                    list(data.periods), list(data.artists), json.dumps(_jsonable(data.config)), len(images),
                    len(skipped), groups, conflicts,
                ],
            )
            _insert(con, "images", images)
            _insert(con, "skipped_images", skipped)
            _insert(con, "near_copies", near)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return dropped


def write_label_quality(path: str | Path, dataset_id: str, table: pd.DataFrame) -> None:
    """Replace one dataset's label-audit rows (pipeline/audit.py) in one transaction; rows of datasets the store no
    longer holds go too. `table`: image_id, given_label, quality, suggested_label, issue, folds."""
    rows = table[["image_id", "given_label", "quality", "suggested_label", "issue", "folds"]].copy()
    rows.insert(0, "dataset_id", dataset_id)
    rows["created_at"] = pd.Timestamp.now()
    with connect(path) as con:
        con.execute("BEGIN")
        try:
            con.execute("""DELETE FROM label_quality WHERE dataset_id = ?
                           OR dataset_id NOT IN (SELECT dataset_id FROM datasets)""", [dataset_id])
            _insert(con, "label_quality", rows)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


def audited(path: str | Path, dataset_id: str) -> int:
    """How many label-audit rows the store holds for a dataset (0: not audited, or no store yet)."""
    if not Path(path).exists():
        return 0
    with connect(path, read_only=True) as con:
        return int(scalar(con, "SELECT count(*) FROM label_quality WHERE dataset_id = ?", [dataset_id]))


# ---------------------------------------------------------------- runs


@dataclass
class RunRecord:
    """Everything one run stores; `write_run` writes it atomically."""

    run: dict  # one row of `runs`
    labels: dict[str, list[str]]  # task -> class names, in the order of `probs`
    epochs: pd.DataFrame
    predictions: pa.Table
    metrics: pd.DataFrame
    confusion: pd.DataFrame
    embeddings: pa.Table
    attributions: pa.Table | None = None
    attribution_agreement: pd.DataFrame | None = None
    attribution_sanity: pd.DataFrame | None = None
    calibration: pd.DataFrame | None = None  # per task: the temperature fitted on the validation split


def write_run(path: str | Path, record: RunRecord) -> None:
    """Replace a run and all its rows in one transaction: readers see the old run or the new one."""
    run_id = record.run["run_id"]
    labels = pd.DataFrame(
        [(run_id, task, i, label) for task, names in record.labels.items() for i, label in enumerate(names)],
        columns=["run_id", "task", "class_index", "label"],
    )
    run_row = pd.DataFrame([{k: _db_value(v) for k, v in record.run.items()}])
    with connect(path) as con:
        con.execute("BEGIN")
        try:
            for table in RUN_TABLES:
                con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
            _insert(con, "runs", run_row)
            _insert(con, "run_labels", labels)
            _insert(con, "epochs", record.epochs)
            _insert(con, "predictions", record.predictions)
            _insert(con, "metrics", record.metrics)
            _insert(con, "confusion", record.confusion)
            _insert(con, "embeddings", record.embeddings)
            for table in ("attributions", "attribution_agreement", "attribution_sanity", "calibration"):
                if getattr(record, table) is not None:
                    _insert(con, table, getattr(record, table))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise


@dataclass
class Members:
    """What an ensemble needs of its member runs: their shared labels, and per member its probabilities per task
    and its embeddings (Series of lists indexed by image_id)."""

    labels: dict[str, list[str]]
    probs: list[dict[str, pd.Series]]
    embeddings: list[pd.Series]
    train_seconds: float


def load_members(path: str | Path, run_ids: list[str], dataset_id: str) -> Members:
    """Stored outputs of the runs an ensemble averages; each must be complete, on this dataset, with the same
    labels (the ConfigError says which is not)."""
    from pipeline.config import ConfigError

    with connect(path, read_only=True) as con:
        runs = con.execute("SELECT run_id, dataset_id, train_seconds FROM runs WHERE list_contains(?, run_id)",
                           [run_ids]).df().set_index("run_id")
        missing = [r for r in run_ids if r not in runs.index]
        if missing:
            raise ConfigError(f"ensemble members {missing} are not in {path}: run them first (they must come "
                              "before the ensemble in the experiment)")
        other = [r for r in run_ids if runs.loc[r, "dataset_id"] != dataset_id]
        if other:
            raise ConfigError(f"ensemble members {other} were trained on another dataset version; re-run them")
        labels = [_labels(con, r) for r in run_ids]
        if any(lab != labels[0] for lab in labels):
            raise ConfigError(f"ensemble members {run_ids} do not share the same labels and tasks")
        probs, embeddings = [], []
        for r in run_ids:
            pred = con.execute("SELECT image_id, task, probs FROM predictions WHERE run_id = ?", [r]).df()
            probs.append({task: g.set_index("image_id")["probs"] for task, g in pred.groupby("task")})
            emb = con.execute("SELECT image_id, vector FROM embeddings WHERE run_id = ?", [r]).df()
            embeddings.append(emb.set_index("image_id")["vector"])
    return Members(labels[0], probs, embeddings, float(runs["train_seconds"].fillna(0).sum()))


def _labels(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, list[str]]:
    rows = con.execute("SELECT task, label FROM run_labels WHERE run_id = ? ORDER BY task DESC, class_index",
                       [run_id]).fetchall()
    out: dict[str, list[str]] = {}
    for task, label in rows:
        out.setdefault(task, []).append(label)
    return out


def get_run(path: str | Path, run_id: str) -> dict | None:
    """One `runs` row as a dict (config and summary parsed), or None when the store or the run is missing."""
    if not Path(path).exists():
        return None
    with connect(path, read_only=True) as con:
        cur = con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
        row = cur.fetchone()
        names = [d[0] for d in cur.description]
    if row is None:
        return None
    run = dict(zip(names, row, strict=True))
    for key in ("config", "summary"):
        run[key] = json.loads(run[key]) if isinstance(run.get(key), str) else {}
    return run


def seen_hashes(path: str | Path, dataset_id: str, splits: tuple[str, ...] = ("train", "val")) -> set[str]:
    """Content hashes of a dataset's images in `splits`: what a run trained or picked its epoch on."""
    with connect(path, read_only=True) as con:
        rows = con.execute("SELECT content_hash FROM images WHERE dataset_id = ? AND list_contains(?, split)",
                           [dataset_id, list(splits)]).fetchall()
    return {h for (h,) in rows}


def completed_runs(path: str | Path) -> dict[str, str]:
    """run_id -> config_hash of every complete run (used to resume `make artifacts`)."""
    if not Path(path).exists():
        return {}
    with connect(path, read_only=True) as con:
        if not _tables(con) >= {"runs"}:
            return {}
        rows = con.execute("SELECT run_id, config_hash FROM runs WHERE status = 'complete'").fetchall()
    return dict(rows)


def list_runs(path: str | Path) -> pd.DataFrame:
    cols = (
        "run_id, backbone, strategy, freeze_until, tasks, epochs, round(train_seconds, 1) AS train_s, "
        "round(test_accuracy, 3) AS test_acc, round(test_balanced_accuracy, 3) AS test_bal_acc, "
        "round(test_macro_f1, 3) AS test_f1, finished_at"
    )
    if not Path(path).exists():
        return pd.DataFrame()
    with connect(path, read_only=True) as con:  # a read-only command never writes (not even the schema)
        return con.execute(f"SELECT {cols} FROM runs ORDER BY run_id").df()


def _db_value(value):
    if isinstance(value, dict):
        return json.dumps(_jsonable(value))
    return value


def _jsonable(obj: Any) -> Any:
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):  # an instance; a class has no fields to give
        return dataclasses.asdict(obj)
    return obj


# ---------------------------------------------------------------- dataset versions and checkpoints


def _unused_versions(con: duckdb.DuckDBPyConnection, key: str, keep: str) -> list[str]:
    """Versions of the dataset with config key `key` (`key` itself: stored before versions) other than `keep`
    that no run and no annotation refers to."""
    import re

    rows = con.execute("""
        SELECT dataset_id FROM datasets d
        WHERE starts_with(dataset_id, ?) AND dataset_id <> ?
          AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.dataset_id = d.dataset_id)
          AND NOT EXISTS (SELECT 1 FROM annotations a WHERE a.dataset_id = d.dataset_id)""", [key, keep]).fetchall()
    version = re.compile(re.escape(key) + r"(-[0-9a-f]{8})?")
    return sorted(d for (d,) in rows if version.fullmatch(d))


def dataset_content(path: str | Path, dataset_id: str) -> pd.DataFrame | None:
    """The stored rows that make a dataset version (pipeline.data.prepare.VERSION_COLUMNS); None if not stored."""
    if not Path(path).exists():
        return None
    with connect(path, read_only=True) as con:
        if not scalar(con, "SELECT count(*) FROM datasets WHERE dataset_id = ?", [dataset_id]):
            return None
        return con.execute("SELECT image_id, content_hash, period, artist, split FROM images WHERE dataset_id = ?",
                           [dataset_id]).df()


def run_checkpoints(path: str | Path) -> dict[str, tuple[str | None, str | None]]:
    """run_id -> (checkpoint path, checkpoint token) of every complete run (token: None for older runs)."""
    if not Path(path).exists():
        return {}
    with connect(path, read_only=True) as con:
        rows = con.execute("""SELECT run_id, checkpoint, json_extract_string(summary, '$.checkpoint_token')
                              FROM runs WHERE status = 'complete'""").fetchall()
    return {run_id: (ckpt, token) for run_id, ckpt, token in rows}
