"""Export a store as Parquet files, so Spark, Trino, pandas or DuckDB elsewhere can query the results.

Every table goes to `DIR/<table>/` through DuckDB's COPY; the big per-run tables (and the images, with their
thumbnails) are hive-partitioned (`predictions/run_id=demo%2Flite0-head/data_0.parquet`), so a reader of one run
opens only its files. A table with no rows is one empty file that keeps its columns. `periodeye-export.json` says
the schema version and how each table was written; `python -m pipeline merge DIR` reads it back.

The export is written into a hidden folder beside DIR and renamed to DIR when complete: a kill leaves no half
export under DIR (and the next export removes the dead process's leftovers).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from pipeline import store
from pipeline.data.cache import process_alive

MANIFEST = "periodeye-export.json"
PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # table names that are safe as folder names (all of Period Eye's)
FORMAT = "periodeye-parquet/1"
# Tables big enough that one file per run (or dataset) helps a reader; the rest are one file each.
PARTITIONS = {"predictions": "run_id", "embeddings": "run_id", "attributions": "run_id",
              "attribution_agreement": "run_id", "images": "dataset_id"}


def export_parquet(store_path: str | Path, out_dir: str | Path) -> dict[str, int]:
    """Write every table of the store to `out_dir` (which must not exist yet, or be empty); rows per table."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise store.StoreError(f"{out} already exists and is not an empty folder: remove it or give a new one "
                               "(an export never writes over another)")
    _remove_leftovers(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True)
    try:
        with store.connect(store_path, read_only=True) as con:  # one snapshot: writers wait for the read lock
            tables = sorted(name for (name,) in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
                "AND schema_name = 'main'").fetchall() if PLAIN.fullmatch(name))
            counts, written = {}, {}
            for table in tables:
                counts[table] = int(store.scalar(con, f'SELECT count(*) FROM "{table}"'))
                partition = PARTITIONS.get(table) if counts[table] else None
                if partition:
                    con.execute(f'COPY "{table}" TO {_quote(tmp / table)} (FORMAT parquet, PARTITION_BY ({partition}))')
                else:
                    (tmp / table).mkdir()
                    con.execute(f'COPY "{table}" TO {_quote(tmp / table / "data.parquet")} (FORMAT parquet)')
                written[table] = {"rows": counts[table], "partitioned_by": partition}
            version = store.scalar(con, "SELECT value FROM meta WHERE key = 'schema_version'")
        (tmp / MANIFEST).write_text(json.dumps({"format": FORMAT, "schema_version": version, "tables": written},
                                               indent=1))
        if out.exists():
            out.rmdir()  # empty, checked above
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return counts


def read_manifest(folder: Path) -> dict:
    """A Parquet export's manifest, checked: a StoreError (one line naming the folder) when the folder is not an
    export, is incomplete, or holds another schema."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise store.StoreError(f"{folder} is a folder without {MANIFEST}: not a Period Eye Parquet export (`python -m "
                               "pipeline export --parquet DIR` writes one), nor a store file") from None
    except (OSError, ValueError) as exc:
        raise store.StoreError(f"{path} cannot be read ({exc}): export the store again") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("tables"),
                                                                                            dict):
        raise store.StoreError(f"{path} is not a {FORMAT} manifest: export the store again with this code")
    version = str(manifest.get("schema_version"))
    if version != store.SCHEMA_VERSION:
        what = "an older" if version.isdigit() and int(version) < int(store.SCHEMA_VERSION) else "another"
        raise store.StoreError(
            f"{folder} was exported from {what} Period Eye store (schema {version}; this code merges "
            f"{store.SCHEMA_VERSION}): run `python -m pipeline upgrade --store` on that store and export it again")
    missing = [t for t in manifest["tables"] if not (folder / t).is_dir()]
    if missing:
        raise store.StoreError(f"{folder} lacks the folders of {missing}: an incomplete copy; copy it again")
    return manifest


def _remove_leftovers(out: Path) -> None:
    """Hidden folders of exports to `out` whose process is gone (killed mid-export)."""
    if not out.parent.is_dir():
        return
    for old in out.parent.glob(f".{out.name}.tmp-*"):
        pid = old.name.rpartition(".tmp-")[2]
        if pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"
