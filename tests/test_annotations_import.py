"""Verdicts files (what an exported gallery's "Download my verdicts" writes) come back into the store: good rows
land once, bad rows are reported by row number and reason and skipped, nobody else's annotations change."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import annotations, store
from tests.conftest import REPO_ROOT, sql

EXPORT = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def small_store(folder: Path) -> Path:
    """Two runs on dataset d (six test images h0..h5, the first two predicted right by r1), a copy of h2 in an older
    dataset version d0, written through the store's own schema."""
    path = folder / "small.duckdb"
    with store.connect(path) as con:
        con.execute("INSERT INTO runs (run_id, dataset_id, status) VALUES ('e/r1', 'd', 'complete'), "
                    "('e/r2', 'd', 'complete')")
        con.execute("INSERT INTO images (dataset_id, image_id, content_hash, split, period) "
                    "SELECT 'd', 'i' || k, 'h' || k, 'test', 'Baroque' FROM range(6) t(k)")
        con.execute("INSERT INTO images (dataset_id, image_id, content_hash, split) "
                    "VALUES ('d0', 'old2', 'h2', 'test')")
        con.execute("INSERT INTO predictions (run_id, image_id, split, task, correct) "
                    "SELECT 'e/r1', 'i' || k, 'test', 'period', k < 2 FROM range(6) t(k) UNION ALL "
                    "SELECT 'e/r2', 'i' || k, 'test', 'period', k < 5 FROM range(6) t(k)")
    return path


def verdicts_csv(rows: list[list[str]], header: list[str] = annotations.HEADER) -> bytes:
    """A file as the gallery writes it: every cell quoted, a formula-like cell prefixed with one quote."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([("'" + c) if c[:1] in annotations.FORMULA_STARTS else c for c in row])
    return out.getvalue().encode()


def row(image: str, verdict: str, note: str = "", reviewer: str = "Ada", time: str = "2026-03-01T10:00:00.000Z",
        run: str = "e/r1", export: str = EXPORT, content_hash: str | None = None) -> list[str]:
    return [annotations.FORMAT, export, run, image, content_hash or "h" + image[1:], verdict, note, reviewer, time]


def import_bytes(path: Path, data: bytes) -> annotations.ImportReport:
    with store.connect(path) as con:
        return annotations.import_verdicts(con, data)


def test_a_verdicts_file_lands_once_and_again_adds_nothing(tmp_path):
    path = small_store(tmp_path)
    data = verdicts_csv([row("i2", "label wrong", "a Vermeer, surely"), row("i3", "model right", 'said "Rococo"'),
                         row("i4", "ambiguous", "=HYPERLINK(\"http://x\")"), row("i5", "outside its period", "'ok")])
    report = import_bytes(path, data)
    assert (report.added, report.already, report.skipped) == (4, 0, [])
    assert report.lines() == ["4 added, 0 already there, 0 skipped"]
    rows = sql(path, """SELECT dataset_id, image_id, content_hash, run_id, verdict, note, author, created_at::TEXT,
                               revises, withdrawn, source FROM annotations ORDER BY image_id""")
    assert rows[0] == ("d", "i2", "h2", "e/r1", "label wrong", "a Vermeer, surely", "Ada", "2026-03-01 10:00:00",
                       None, False, f"import:{EXPORT}")  # the run's dataset, not the older copy in d0
    notes = [r[5] for r in rows]
    assert notes[1:] == ['said "Rococo"', '=HYPERLINK("http://x")', "'ok"]  # one defusing quote taken off, no more
    again = import_bytes(path, data)
    assert (again.added, again.already, again.skipped) == (0, 4, [])
    assert sql(path, "SELECT count(*) FROM annotations")[0][0] == 4


def test_tampered_rows_are_reported_by_number_and_the_good_rows_land(tmp_path):
    path = small_store(tmp_path)
    good = row("i2", "label wrong")
    data = verdicts_csv([
        good,                                                   # row 2
        row("i3", "model right", run="e/nope"),                 # row 3
        row("i4", "ambiguous", content_hash="deadbeef"),        # row 4
        row("i5", "very wrong"),                                # row 5
        good[:-1],                                              # row 6: a cell missing
        row("i3", "ambiguous", reviewer=""),                    # row 7
        row("i3", "ambiguous", time="yesterday"),               # row 8
        ["periodeye-verdicts/9", *row("i3", "ambiguous")[1:]],  # row 9
        row("i3", "ambiguous", note="x" * (annotations.MAX_NOTE + 1)),  # row 10
        row("i9", "ambiguous", content_hash="h2", reviewer="Bea"),  # row 11: image_id a mere hint, hash matches
    ])
    report = import_bytes(path, data)
    assert report.added == 2
    reasons = dict(report.skipped)
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 9, 10]
    assert "unknown run 'e/nope'" in reasons[3]
    assert "no image with content hash 'deadbeef'" in reasons[4]
    assert "unknown verdict 'very wrong'" in reasons[5]
    assert "has 8 cells, the header has 9" in reasons[6]
    assert "no reviewer" in reasons[7] and "ISO 8601" in reasons[8] and "format" in reasons[9]
    assert "note over" in reasons[10]
    assert report.lines()[0] == "2 added, 0 already there, 8 skipped" and report.lines()[1].startswith("row 3: ")
    assert sql(path, "SELECT author, image_id FROM annotations ORDER BY author") == [("Ada", "i2"), ("Bea", "i2")]


@pytest.mark.parametrize("data, message", [
    (b"image_id,verdict\ni2,label wrong\n", "Not a verdicts file"),
    (verdicts_csv([], header=annotations.HEADER[:-1]), "Not a verdicts file"),
    (b"\xff\xfe\x00bad", "not UTF-8"),
    (b"", "Not a verdicts file"),
])
def test_a_file_that_is_not_a_verdicts_file_is_one_line_and_writes_nothing(tmp_path, data, message):
    path = small_store(tmp_path)
    with pytest.raises(annotations.AnnotationError, match=message) as caught:
        import_bytes(path, data)
    assert "\n" not in str(caught.value)
    assert sql(path, "SELECT count(*) FROM annotations")[0][0] == 0


def test_too_many_rows_or_bytes_are_refused_before_anything_is_written(tmp_path, monkeypatch):
    path = small_store(tmp_path)
    monkeypatch.setattr(annotations, "MAX_ROWS", 3)
    with pytest.raises(annotations.AnnotationError, match="more than 3 rows"):
        import_bytes(path, verdicts_csv([row("i2", "ambiguous", time=f"2026-03-0{d}T10:00:00Z") for d in range(1, 6)]))
    monkeypatch.setattr(annotations, "MAX_BYTES", 100)
    with pytest.raises(annotations.AnnotationError, match="at most"):
        import_bytes(path, verdicts_csv([row("i2", "ambiguous")]))
    assert sql(path, "SELECT count(*) FROM annotations")[0][0] == 0


def test_a_newer_verdict_revises_only_the_reviewers_own(tmp_path):
    path = small_store(tmp_path)
    with store.connect(path) as con:
        ada = annotations.save(con, "d", "i2", "e/r1", "ambiguous", "", "Ada")
        bea = annotations.save(con, "d", "i2", "e/r1", "model right", "", "Bea")
        con.execute("UPDATE annotations SET created_at = '2026-01-01' WHERE annotation_id IN (?, ?)", [ada, bea])
    report = import_bytes(path, verdicts_csv([row("i2", "label wrong"), row("i2", "label wrong", reviewer="Cy")]))
    assert (report.added, report.skipped) == (2, [])
    rows = dict(sql(path, "SELECT author, revises FROM annotations WHERE source LIKE 'import:%'"))
    assert rows == {"Ada": ada, "Cy": None}  # Ada's new version; Bea's untouched; Cy's first
    older = import_bytes(path, verdicts_csv([row("i2", "model right", time="2026-02-01T10:00:00Z", export="e2")]))
    assert older.added == 0 and "has a newer verdict" in older.skipped[0][1]
    current = sql(path, f"SELECT author, verdict FROM {annotations.CURRENT} c ORDER BY author")
    assert current == [("Ada", "label wrong"), ("Bea", "model right"), ("Cy", "label wrong")]
    assert sql(path, "SELECT count(*) FROM annotations")[0][0] == 4  # nothing updated away or deleted


def test_the_command_line_imports_and_reports(tmp_path):
    path = small_store(tmp_path)
    file = tmp_path / "verdicts.csv"
    file.write_bytes(verdicts_csv([row("i2", "label wrong"), row("i3", "nonsense")]))
    command = [sys.executable, "-m", "pipeline", "annotations", "import", str(file), "--store", str(path)]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines()[:2] == ["1 added, 0 already there, 1 skipped",
                                           "row 3: unknown verdict 'nonsense' (one of: model right, label wrong, "
                                           "ambiguous, outside its period)"]
    again = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert again.stdout.splitlines()[0] == "0 added, 1 already there, 1 skipped"
    file.write_text("hello\n")
    wrong = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 2 and wrong.stderr.startswith("error: Not a verdicts file")
