"""CSV exports open in a spreadsheet without running formulas (OWASP's CSV-injection advice); numbers stay numbers."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest

from dashboard.export import FORMULA_STARTS, csv_safe, frame_csv, gallery_csv

PAYLOADS = ["=HYPERLINK(\"http://127.0.0.1:8799/x\",\"click\")", "+1+1", "-2+3", "@SUM(1+1)", "\t=1+1", "\r=1+1",
            "=cmd|' /C calc'!A0"]


def cells(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def gallery_rows(**text) -> pd.DataFrame:
    row = {"run_id": "e/r", "image_id": "a.jpg", "split": "test", "true_label": "Baroque", "pred_label": "Rococo",
           "confidence": 0.9, "loss": -1.5, "correct": False, "artist": "A", "title": "T", "date": "1600",
           "verdict": None, "note": None, "author": None}
    return pd.DataFrame([{**row, **text}])


@pytest.mark.parametrize("payload", PAYLOADS)
def test_gallery_csv_defuses_formulas_in_every_text_column(payload):
    rows = gallery_rows(run_id=payload, image_id=payload, true_label=payload, artist=payload, title=payload,
                        date=payload, note=payload, author=payload)
    (row,) = cells(gallery_csv(rows))
    for column in ("run_id", "image_id", "true_label", "artist", "title", "date", "note", "reviewer"):
        assert row[column] == "'" + payload, column
        assert not row[column].startswith(FORMULA_STARTS)
    assert row["loss"] == "-1.5" and row["confidence"] == "0.9"  # numbers, negative ones too, untouched


def test_plain_text_and_missing_values_are_unchanged():
    rows = gallery_rows(title="Night Watch (1642) = masterpiece", artist=None, note="")
    (row,) = cells(gallery_csv(rows))
    assert row["title"] == "Night Watch (1642) = masterpiece" and row["artist"] == "" and row["note"] == ""


def test_a_line_break_inside_a_cell_cannot_start_a_row():
    """Unquoted, a carriage return ends the row in a spreadsheet, and what follows it is a new first cell."""
    data = gallery_csv(gallery_rows(title="Study\r=1+1", artist="A\n@SUM(1)"))
    assert b'"Study\r=1+1"' in data and b'"A\n@SUM(1)"' in data
    (row,) = cells(data)
    assert row["title"] == "Study\r=1+1"


def test_any_table_keeps_numbers_and_defuses_text_even_with_repeated_names():
    frame = pd.DataFrame([[-1, "=1+1", -2.5, "-x"], [3, "ok", None, "@a"]], columns=["n", "t", "x", "t"])
    reader = csv.reader(io.StringIO(frame_csv(frame).decode("utf-8")))
    assert list(reader) == [["n", "t", "x", "t"], ["-1", "'=1+1", "-2.5", "'-x"], ["3", "ok", "", "'@a"]]
    mixed = pd.DataFrame({"m": [-1, "=2", None]}, dtype=object)  # a text column may hold numbers: they stay
    assert csv_safe(mixed)["m"].tolist()[:2] == [-1, "'=2"]
    assert frame.iloc[0, 1] == "=1+1"  # the caller's frame is not changed


def test_sql_console_download_is_defused(tmp_path):
    """The SQL page's CSV goes through the same function: a query's text cell cannot become a formula."""
    import duckdb

    from dashboard.queries.sql_console import run_query

    store = tmp_path / "s.duckdb"
    duckdb.connect(str(store)).close()
    result = run_query(store, "SELECT '=HYPERLINK(\"http://x\")' AS t, -3 AS n")
    assert result.ok, result.error
    assert cells(frame_csv(result.frame)) == [{"t": "'=HYPERLINK(\"http://x\")", "n": "-3"}]
