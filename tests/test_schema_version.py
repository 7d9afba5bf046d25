"""The store's schema version cannot be forgotten: a SCHEMA change without a new SCHEMA_VERSION fails here, and a
store of the version before is migrated by ensure_schema to exactly the columns of a new store."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import duckdb

from pipeline import store

PREVIOUS = Path(__file__).parent / "data" / "schema_previous.sql"


def columns(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return sorted(con.execute("SELECT table_name, column_name, data_type FROM information_schema.columns").fetchall())


def test_the_schema_text_is_the_one_of_its_version():
    version, digest = store.SCHEMA_DIGEST
    now = hashlib.sha256(store.SCHEMA.encode()).hexdigest()
    assert (version, digest) == (store.SCHEMA_VERSION, now), (
        f"pipeline/store.py SCHEMA changed (sha256 {now}) but SCHEMA_DIGEST is that of version {version}: bump "
        "SCHEMA_VERSION and add the migration (ensure_schema), save the old SCHEMA as tests/data/schema_previous.sql, "
        "then set SCHEMA_DIGEST = (SCHEMA_VERSION, the new sha256)")


def test_a_store_of_the_previous_version_migrates_to_the_columns_of_a_new_one(tmp_path):
    text = PREVIOUS.read_text()
    previous = re.search(r"schema version (\d+)", text)
    assert previous and int(previous.group(1)) == int(store.SCHEMA_VERSION) - 1, (
        f"{PREVIOUS.name} must hold the SCHEMA of version {int(store.SCHEMA_VERSION) - 1}, the one before this code's")
    with duckdb.connect(str(tmp_path / "old.duckdb")) as old:
        old.execute(text)
        old.execute("INSERT INTO meta VALUES ('schema_version', ?)", [previous.group(1)])
        old.execute("INSERT INTO runs (run_id, config_hash) VALUES ('e/r', 'v1')")
        store.ensure_schema(old)
        migrated = columns(old)
        assert old.execute("SELECT run_id, config_hash FROM runs").fetchall() == [("e/r", "v1")]
        assert old.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (store.SCHEMA_VERSION,)
    with duckdb.connect(str(tmp_path / "new.duckdb")) as new:
        store.ensure_schema(new)
        assert migrated == columns(new)
