"""Merge: bring runs trained on other machines (their stores, or a Parquet export of one) into this store.

The cluster pattern is N jobs, each writing its own store (`python -m pipeline run EXP --only RUN --store
job-RUN.duckdb`), then one `python -m pipeline merge job-*.duckdb`: DuckDB's file lock forbids two writers on one
file, so runs never meet before the merge. Every source is checked before any work (missing, damaged, not a Period
Eye store, another schema: one line naming it) and read read-only (ATTACH ... (READ_ONLY); a Parquet folder through
read_parquet), so a source is never written to. Each run is copied in its own transaction with every per-run table
(store.RUN_TABLES) and, when this store lacks it, its dataset: a kill or an error mid-run leaves the store as it was
before that run. A run id already here is reported and skipped, or replaced with `force`.

Datasets are matched by id, which names their content (pipeline.data.prepare.dataset_version); the same id with
other images' content hashes (in the store and a source, or in two sources) is refused before any work, naming both
files. Annotations from every source are kept, de-duplicated
by (content hash, author, time) (pipeline.annotations.merge_annotations); saved slices come by slice_id, an existing
one kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pipeline import store
from pipeline.annotations import merge_annotations
from pipeline.parquet_export import read_manifest

# Per-dataset tables (keyed by dataset_id): they come along with a run whose dataset the store lacks.
DATASET_TABLES = ("datasets", "images", "skipped_images", "near_copies", "label_quality")
SOURCE = "merge_source"  # the alias a source is attached under, one at a time


class MergeError(store.StoreError):
    """A source that cannot be merged, or a run whose copy failed; str(exc) is one line naming the file."""


@dataclass
class MergeReport:
    """What a merge did: runs added, replaced and skipped (already here); datasets, annotations and slices added."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    annotations: int = 0
    slices: int = 0

    def line(self) -> str:
        return (f"{len(self.added)} runs added, {len(self.replaced)} replaced, {len(self.skipped)} skipped (already "
                f"in the store{'' if not self.skipped else '; --force replaces them'}); {len(self.datasets)} datasets, "
                f"{self.annotations} annotations, {self.slices} slices added")


def merge(target: str | Path, sources: list[str | Path], force: bool = False,
          say: Callable[[str], None] | None = None) -> MergeReport:
    """Copy every run of `sources` into the store at `target` (see the module's docstring); one line per run."""
    target, say = Path(target), say or progress
    checked = [check_source(Path(s), target) for s in sources]  # all of them, before any work
    store.check_store(target, writing=True)
    check_datasets(target, checked)
    report = MergeReport()
    with store.connect(target) as con:
        for source in checked:
            attach(con, source)
            try:
                runs = [r for (r,) in con.execute(f"SELECT run_id FROM {SOURCE}.runs ORDER BY run_id").fetchall()]
                for run_id in runs:
                    say(f"{run_id}: {copy_run(con, source, run_id, force, report)} (from {source})")
                report.annotations += merge_annotations(con, f"{SOURCE}.annotations")
                report.slices += _in_transaction(con, lambda: _merge_slices(con))
            finally:
                con.execute(f"DETACH {SOURCE}")
    return report


def progress(line: str) -> None:
    """One line per run, at once (a cluster job's log is a pipe: buffered, it would show nothing until the end)."""
    print(line, flush=True)


def check_source(source: Path, target: Path) -> Path:
    """The source if it can be merged, else MergeError (one line naming it). Never writes to it."""
    if source.exists() and target.exists() and source.resolve() == target.resolve():
        raise MergeError(f"{source} is the store being merged into: give the other stores as sources")
    if source.is_dir():
        read_manifest(source)  # a Parquet export (MergeError-like StoreError when it is not one)
        return source
    if not source.exists():
        raise MergeError(f"{source}: no such store to merge from (a .duckdb file, or a folder written by "
                         "`python -m pipeline export --parquet`)")
    try:
        store.check_store(source)  # a current Period Eye store: else one line (older: run `upgrade` on it)
        store.check_store(source, writing=True)  # read-only still: reads every block, so damage shows now
    except store.StoreError as exc:
        raise MergeError(f"cannot merge from {source}: {exc}") from exc
    return source


def attach(con: duckdb.DuckDBPyConnection, source: Path) -> None:
    """Make the source's tables readable as merge_source.<table>: the file attached read-only, or views over a
    Parquet export's files."""
    if not source.is_dir():
        con.execute(f"ATTACH {_quote(source)} AS {SOURCE} (READ_ONLY)")
        return
    manifest = read_manifest(source)
    con.execute(f"ATTACH ':memory:' AS {SOURCE}")
    for table, info in manifest["tables"].items():
        partition = info.get("partitioned_by")
        files = _quote(source / table / "**" / "*.parquet")
        hive = f"hive_partitioning = true, hive_types = {{'{partition}': VARCHAR}}" if partition else \
            "hive_partitioning = false"
        con.execute(f"CREATE VIEW {SOURCE}.main.{table} AS SELECT * FROM read_parquet({files}, {hive})")


def check_datasets(target: Path, sources: list[Path]) -> None:
    """A dataset id held by the store and a source, or by two sources, must name the same images (image ids and
    content hashes): else MergeError naming both files, before any work (a digest collision, or a hand-edited store).
    Reads through a connection of its own, every file attached read-only."""
    held: dict[str, tuple[Path, int, int]] = {}  # dataset id -> (first file holding it, images, digest)
    places = ([target] if store.check_file(target, writing=True) else []) + sources
    with duckdb.connect() as con:
        for name in ("autoinstall_known_extensions", "autoload_known_extensions"):
            con.execute(f"SET {name} = false")
        for place in places:
            attach(con, place)
            try:
                rows = con.execute(f"""SELECT dataset_id, count(*), bit_xor(hash(image_id, content_hash))
                                       FROM {SOURCE}.images GROUP BY dataset_id ORDER BY dataset_id""").fetchall()
            except duckdb.CatalogException:  # a target that is an empty DuckDB file: no datasets yet
                rows = []
            finally:
                con.execute(f"DETACH {SOURCE}")
            for dataset_id, count, digest in rows:
                first = held.setdefault(dataset_id, (place, count, digest))
                if first[1:] != (count, digest):
                    raise MergeError(f"dataset {dataset_id} differs between {first[0]} and {place}: the same id with "
                                     f"other images or content hashes ({first[1]} vs {count} images); nothing merged")


def copy_run(con: duckdb.DuckDBPyConnection, source: Path, run_id: str, force: bool, report: MergeReport) -> str:
    """Copy one run (and its dataset, if new here) in one transaction; what happened, in words."""
    present = store.scalar(con, "SELECT count(*) FROM runs WHERE run_id = ?", [run_id])
    if present and not force:
        report.skipped.append(run_id)
        return "skipped, already in the store (--force replaces it)"
    dataset_id = store.scalar(con, f"SELECT dataset_id FROM {SOURCE}.runs WHERE run_id = ?", [run_id])
    con.execute("BEGIN")
    try:
        new_dataset = dataset_id is not None and not store.scalar(
            con, "SELECT count(*) FROM datasets WHERE dataset_id = ?", [dataset_id])
        if new_dataset:
            for table in DATASET_TABLES:
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {SOURCE}.{table} WHERE dataset_id = ?",
                            [dataset_id])
        rows = 0
        for table in store.RUN_TABLES:
            con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {SOURCE}.{table} WHERE run_id = ?", [run_id])
            if table == "predictions":
                rows = store.scalar(con, "SELECT count(*) FROM predictions WHERE run_id = ?", [run_id])
        con.execute("COMMIT")
    except duckdb.Error as exc:
        con.execute("ROLLBACK")
        text = " ".join(str(exc).split())[:240]
        raise MergeError(f"{run_id} from {source} not merged ({text}); the store is as it was before it") from exc
    except BaseException:
        con.execute("ROLLBACK")
        raise
    (report.replaced if present else report.added).append(run_id)
    if new_dataset:
        report.datasets.append(dataset_id)
    return f"{'replaced' if present else 'added'}, {rows:,} predictions" + (
        f", with its dataset {dataset_id}" if new_dataset else "")


def _merge_slices(con: duckdb.DuckDBPyConnection) -> int:
    """Saved slices the store lacks, by slice_id (an existing one is kept: someone's link already points at it)."""
    before = store.scalar(con, "SELECT count(*) FROM slices")
    con.execute(f"""INSERT INTO slices BY NAME SELECT * FROM {SOURCE}.slices
                    WHERE slice_id NOT IN (SELECT slice_id FROM slices)""")
    return int(store.scalar(con, "SELECT count(*) FROM slices")) - int(before)


def _in_transaction(con: duckdb.DuckDBPyConnection, work: Callable[[], int]) -> int:
    con.execute("BEGIN")
    try:
        result = work()
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return result


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"

