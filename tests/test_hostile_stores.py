"""The hostile-store matrix: every kind of bad file given as the store, on every dashboard page and the CLI.

Each must give one line that names the file and says what to do: no traceback, and nothing written to the file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
import yaml
from PIL import Image
from streamlit.testing.v1 import AppTest

from pipeline import store as pipeline_store
from pipeline.__main__ import main
from pipeline.store import check_store
from tests.conftest import REPO_ROOT, TINY_EXPERIMENT, copy_store

pytestmark = pytest.mark.slow  # stores built from the demo store (a session fixture that trains 5 runs)

PAGES = [None, "errors.py", "compare.py", "inspector.py", "embedding.py", "curves.py", "sql.py", "annotations.py",
         "upload.py"]
# Words each kind's message must contain (what is wrong), besides the path and what to do.
SAYS = {
    "empty": "empty", "text": "text", "jpeg": "JPEG", "directory": "directory", "truncated": "truncated",
    "older-no-meta": "no schema version", "older": "older", "no-tables": "no Period Eye tables",
    "other-app": "not a Period Eye store", "sqlite": "SQLite", "corrupt-block": "damaged", "newer": "newer",
    "damaged-header": "damaged", "gzip": "gzip", "parquet": "Parquet",
}
WHAT_TO_DO = ("make artifacts", "python -m pipeline", "--store", "restore", "git pull")
# A writer may start a new store on these (or upgrade them): `run` is checked through check_store instead.
WRITABLE = {"empty", "no-tables", "older"}


def _bytes(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _jpeg(path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue())


def _sqlite(path: Path) -> None:
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE runs (run_id TEXT)")


def _duckdb(path: Path, sql: str = "") -> None:
    with duckdb.connect(str(path)) as con:
        if sql:
            con.execute(sql)


def _parquet(path: Path) -> None:
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT 1 AS run_id) TO '{path}' (FORMAT parquet)")


def _edit(demo: Path, path: Path, sql: str) -> None:
    _duckdb(copy_store(demo, path.parent), sql)


def _corrupt_runs_block(demo: Path, path: Path) -> None:
    """Garble the data block that holds `runs`: the file opens, and fails its checksum when a page reads runs."""
    copy_store(demo, path.parent)
    with duckdb.connect(str(path), read_only=True) as con:
        block_size = con.execute("SELECT block_size FROM pragma_database_size()").fetchone()[0]
        block = con.execute("SELECT min(block_id) FROM pragma_storage_info('runs') WHERE block_id >= 0").fetchone()[0]
    with path.open("r+b") as f:
        f.seek(3 * 4096 + block * block_size + 64)
        f.write(b"\xa5" * 512)


def _truncated(demo: Path, path: Path) -> None:
    data = demo.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _damaged_header(demo: Path, path: Path) -> None:
    data = bytearray(demo.read_bytes())
    data[4096:12288] = b"\x17" * 8192  # both database headers
    path.write_bytes(bytes(data))


BUILDERS: dict[str, Callable[[Path, Path], None]] = {
    "empty": lambda demo, p: _bytes(p, b""),
    "text": lambda demo, p: _bytes(p, b"run_id,accuracy\ntiny/head,0.5\n"),
    "jpeg": lambda demo, p: _jpeg(p),
    "directory": lambda demo, p: p.mkdir(),
    "truncated": _truncated,
    "older-no-meta": lambda demo, p: _edit(demo, p, "DROP TABLE meta"),
    "older": lambda demo, p: _edit(demo, p, "UPDATE meta SET value = '2' WHERE key = 'schema_version'; "
                                            "ALTER TABLE runs DROP COLUMN evaluation_of"),
    "no-tables": lambda demo, p: _duckdb(p),
    "other-app": lambda demo, p: _duckdb(p, "CREATE TABLE customers (id INTEGER, name TEXT); "
                                            "INSERT INTO customers VALUES (1, 'Ada')"),
    "sqlite": lambda demo, p: _sqlite(p),
    "corrupt-block": _corrupt_runs_block,
    "newer": lambda demo, p: _edit(demo, p, "UPDATE meta SET value = '99' WHERE key = 'schema_version'"),
    "damaged-header": _damaged_header,
    "gzip": lambda demo, p: _bytes(p, gzip.compress(demo.read_bytes())),
    "parquet": lambda demo, p: _parquet(p),
}


@pytest.fixture(scope="session")
def hostile(demo_store, tmp_path_factory) -> dict[str, Path]:
    """One file (or folder) of each kind, each in a folder of its own."""
    root = tmp_path_factory.mktemp("hostile")
    stores = {}
    for kind, build in BUILDERS.items():
        (root / kind).mkdir()
        stores[kind] = root / kind / "store.duckdb"
        build(demo_store, stores[kind])
    return stores


def fingerprint(path: Path) -> str:
    """The file's bytes (a folder's listing), and any WAL beside it: must not change."""
    if path.is_dir():
        return repr(sorted(p.name for p in path.iterdir()))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest + repr(sorted(p.name for p in path.parent.iterdir()))


def assert_one_line(message: str, kind: str, path: Path) -> None:
    assert "\n" not in message.strip(), message
    assert "Traceback" not in message, message
    assert str(path) in message, message
    said = message.replace(str(path), "")  # (the folder is named after the kind)
    assert SAYS[kind].lower() in said.lower(), message
    assert any(hint in said for hint in WHAT_TO_DO), message


def open_page(store: Path, page: str | None, monkeypatch) -> AppTest:
    monkeypatch.setenv("PERIODEYE_STORE", str(store))
    at = AppTest.from_file(str(REPO_ROOT / "dashboard" / "Home.py"), default_timeout=120)
    if page:
        at.switch_page(f"views/{page}")
    at.run()
    return at


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_every_page_says_what_is_wrong_with_the_store(kind, hostile, monkeypatch):
    path = hostile[kind]
    before = fingerprint(path)
    for page in PAGES:  # 135 AppTest runs in all: 28 s on 2 busy cores
        at = open_page(path, page, monkeypatch)
        assert not at.exception, (kind, page, at.exception[0].message if at.exception else None)
        errors = [e.value for e in at.error]
        assert len(errors) == 1, (kind, page, errors)
        assert_one_line(errors[0], kind, path)
    assert fingerprint(path) == before


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_list_says_what_is_wrong_and_writes_nothing(kind, hostile, capsys):
    path = hostile[kind]
    before = fingerprint(path)
    assert main(["list", "--store", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: "), err
    assert_one_line(err, kind, path)
    assert fingerprint(path) == before


@pytest.mark.parametrize("kind", sorted(set(BUILDERS) - WRITABLE))
def test_run_refuses_the_store_before_any_work(kind, hostile, tmp_path, capsys, monkeypatch):
    import pipeline.experiment

    def no_work(*args, **kwargs):
        raise AssertionError("the run started work on a store it should have refused")

    monkeypatch.setattr(pipeline.experiment, "prepare_data", no_work)
    path = hostile[kind]
    before = fingerprint(path)
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(yaml.safe_dump({**TINY_EXPERIMENT, "runs": TINY_EXPERIMENT["runs"][:1]}))
    assert main(["run", str(experiment), "--store", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: "), err
    assert_one_line(err, kind, path)
    assert fingerprint(path) == before


@pytest.mark.parametrize("kind", sorted(WRITABLE))
def test_a_writer_may_start_a_store_in_these_or_upgrade_them(kind, hostile):
    path = hostile[kind]
    before = fingerprint(path)
    check_store(path, writing=True)
    assert fingerprint(path) == before


def test_the_dashboard_checks_the_store_once_per_version_of_the_file(demo_store, tmp_path, monkeypatch):
    path = copy_store(demo_store, tmp_path)
    calls = []

    real = pipeline_store.check_open_store

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline_store, "check_open_store", counted)
    for page in (None, "errors.py", None):
        at = open_page(path, page, monkeypatch)
        assert not at.exception and not at.error
    assert len(calls) == 1
    stamp = path.stat().st_mtime_ns + 10**9
    os.utime(path, ns=(stamp, stamp))  # as a writer's commit changes it
    open_page(path, None, monkeypatch)
    assert len(calls) == 2


@pytest.mark.parametrize("kind", ["other-app", "newer", "sqlite", "corrupt-block"])
def test_every_other_command_refuses_too(kind, hostile, tmp_path, capsys):
    path = hostile[kind]
    before = fingerprint(path)
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(yaml.safe_dump(TINY_EXPERIMENT))
    commands = [["prepare", str(experiment)], ["evaluate", "--run", "tiny/head", "--data", str(tmp_path)],
                ["explain", str(tmp_path / "painting.jpg"), "--run", "tiny/head"], ["upgrade"]]
    for command in commands:
        assert main([*command, "--store", str(path)]) == 2, command
        assert_one_line(capsys.readouterr().err.strip().removeprefix("error: "), kind, path)
    assert fingerprint(path) == before
