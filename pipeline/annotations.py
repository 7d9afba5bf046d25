"""Expert annotations: the one place that writes them (save, revise, withdraw, import a verdicts file).

Annotations are people's work, so nothing here updates or deletes a row: an edit is a new row that names the one it
replaces (`revises`), a withdrawal is a row with `withdrawn` true that names the one it takes back, and the current
annotations are the rows no other row revises that are not withdrawals (CURRENT). An annotation keeps its image's
content hash, so it still finds the painting when a dataset is prepared again.

A verdicts file is the CSV the exported gallery's "Download my verdicts" button writes (FORMAT, HEADER). Importing
checks every row, reports a bad one by its row number and reason and skips it (never guesses), and writes the good
ones in one transaction. A row's id is a hash of (export, painting, reviewer, time), so importing a file twice adds
nothing; a newer row from a reviewer becomes a new version of that reviewer's own current verdict on the painting
and run, and nobody else's annotations change.

A "label wrong" verdict may name the period the expert believes is right (`corrected_period`, one of the dataset's
periods); a data option (`data.corrections`, pipeline/data/corrections.py) lets the next preparation drop or
relabel those paintings. The verdicts file's `corrected_period` column is optional: files without it still import.
"""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd

VERDICTS = ("model right", "label wrong", "ambiguous", "outside its period")
MAX_NOTE = 5000
MAX_AUTHOR = 120
FORMAT = "periodeye-verdicts/1"
HEADER = ["format", "export_id", "run_id", "image_id", "content_hash", "verdict", "note", "reviewer", "time"]
OPTIONAL = ["corrected_period"]  # a verdicts file may end its header with these (older files do not)
LABEL_WRONG = "label wrong"  # the one verdict that may carry a corrected period
MAX_BYTES = 20_000_000
MAX_ROWS = 100_000
REPORTED = 20  # skipped rows listed by number and reason; the rest only counted
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what the exporter's defuse prefixes with a quote (OWASP)
NAMESPACE = uuid.UUID("5b0c6c3e-8d3a-4f43-9a57-6a1f1d2b7e01")  # for imported annotations' deterministic ids

CURRENT = """(SELECT * FROM annotations a
              WHERE NOT coalesce(a.withdrawn, false)
                AND NOT EXISTS (SELECT 1 FROM annotations b WHERE b.revises = a.annotation_id))"""


class AnnotationError(ValueError):
    """An annotation or a verdicts file that cannot be saved; str(exc) is the one line shown to the person."""


def checked(verdict: str | None, note: str | None, author: str | None) -> tuple[str, str]:
    """(note, author) stripped, or AnnotationError saying what to change: the form's rules, also for imports."""
    author, note = (author or "").strip(), (note or "").strip()
    if verdict not in VERDICTS:
        raise AnnotationError(f"Choose a verdict: {', '.join(VERDICTS)}.")
    if not author:
        raise AnnotationError("Give your name, so others know whose judgement this is.")
    if len(author) > MAX_AUTHOR or len(note) > MAX_NOTE:
        raise AnnotationError(f"Keep the name under {MAX_AUTHOR} and the note under {MAX_NOTE} characters.")
    return note, author


def checked_period(con: duckdb.DuckDBPyConnection, dataset_id: str, verdict: str,
                   corrected_period: str | None) -> str | None:
    """The corrected period stripped (None when not given), or AnnotationError: only a "label wrong" verdict carries
    one, and it must be one of the dataset's periods (a typo would silently relabel nothing)."""
    period = (corrected_period or "").strip()
    if not period:
        return None
    if verdict != LABEL_WRONG:
        raise AnnotationError(f"A right period goes only with the verdict {LABEL_WRONG!r}, not {verdict!r}.")
    periods = dataset_periods(con, dataset_id)
    if period not in periods:
        raise AnnotationError(f"{period[:60]!r} is not one of this dataset's periods ({', '.join(periods)}).")
    return period


def dataset_periods(con: duckdb.DuckDBPyConnection, dataset_id: str) -> list[str]:
    """The periods a dataset was prepared with (its class order)."""
    row = con.execute("SELECT periods FROM datasets WHERE dataset_id = ?", [dataset_id]).fetchone()
    return list(row[0] or []) if row else []


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def own_current(con: duckdb.DuckDBPyConnection, content_hash: str, run_id: str | None, author: str) -> str | None:
    """The id of `author`'s latest current annotation on this painting and run, if any."""
    row = con.execute(f"""SELECT annotation_id FROM {CURRENT} c
                          WHERE c.content_hash = ? AND c.run_id IS NOT DISTINCT FROM ? AND c.author = ?
                          ORDER BY c.created_at DESC LIMIT 1""", [content_hash, run_id, author]).fetchone()
    return row[0] if row else None


def save(con: duckdb.DuckDBPyConnection, dataset_id: str, image_id: str, run_id: str | None, verdict: str,
         note: str, author: str, corrected_period: str | None = None) -> str:
    """Store one verdict on an image (as seen by a run) and return its id. A person's second verdict on the same
    painting and run is a new version of their first (they changed their mind), not a second opinion."""
    note, author = checked(verdict, note, author)
    period = checked_period(con, dataset_id, verdict, corrected_period)
    found = con.execute("SELECT content_hash FROM images WHERE dataset_id = ? AND image_id = ?",
                        [dataset_id, image_id]).fetchone()
    if found is None:
        raise AnnotationError(f"Image {image_id!r} is not in dataset {dataset_id!r}: nothing saved.")
    revises = own_current(con, found[0], run_id, author)
    return _add(con, dataset_id, image_id, found[0], run_id, verdict, note, author, revises, period=period)


def revise(con: duckdb.DuckDBPyConnection, annotation_id: str, verdict: str, note: str, author: str,
           corrected_period: str | None = None) -> str:
    """A new version of a current annotation (its image and run kept); returns the new row's id."""
    note, author = checked(verdict, note, author)
    old = _current_row(con, annotation_id)
    period = checked_period(con, old["dataset_id"], verdict, corrected_period)
    return _add(con, old["dataset_id"], old["image_id"], old["content_hash"], old["run_id"], verdict, note, author,
                annotation_id, period=period)


def withdraw(con: duckdb.DuckDBPyConnection, annotation_id: str, author: str) -> str:
    """Take a current annotation back: a row saying so (who, when), the annotation itself kept as history."""
    author = (author or "").strip()
    if not author or len(author) > MAX_AUTHOR:
        raise AnnotationError(f"Give your name (under {MAX_AUTHOR} characters), so others know who withdrew it.")
    old = _current_row(con, annotation_id)
    return _add(con, old["dataset_id"], old["image_id"], old["content_hash"], old["run_id"], old["verdict"],
                old["note"] or "", author, annotation_id, withdrawn=True, period=old.get("corrected_period"))


def _current_row(con: duckdb.DuckDBPyConnection, annotation_id: str) -> dict:
    cur = con.execute(f"SELECT * FROM {CURRENT} c WHERE c.annotation_id = ?", [annotation_id])
    row = cur.fetchone()
    if row is None:
        raise AnnotationError("That annotation was edited or withdrawn in the meantime (or never existed): reload "
                              "the page to see its latest version.")
    return dict(zip([d[0] for d in cur.description], row, strict=True))


def _add(con: duckdb.DuckDBPyConnection, dataset_id: str, image_id: str, content_hash: str, run_id: str | None,
         verdict: str, note: str, author: str, revises: str | None, withdrawn: bool = False,
         period: str | None = None) -> str:
    annotation_id = str(uuid.uuid4())
    con.execute("""INSERT INTO annotations (annotation_id, dataset_id, image_id, content_hash, run_id, verdict, note,
                                            author, created_at, revises, withdrawn, source, corrected_period)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?::TIMESTAMP, ?, ?, 'dashboard', ?)""",
                [annotation_id, dataset_id, image_id, content_hash, run_id, verdict, note or None, author, _now(),
                 revises, withdrawn, period])
    return annotation_id


# ---------------------------------------------------------------- importing a verdicts file


@dataclass
class ImportReport:
    """What an import did: rows added, rows already in the store, and the skipped rows with their reasons."""

    added: int = 0
    already: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (row number, the header being row 1; reason)

    def lines(self, limit: int = REPORTED) -> list[str]:
        out = [f"{self.added} added, {self.already} already there, {len(self.skipped)} skipped"]
        out += [f"row {row}: {reason}" for row, reason in self.skipped[:limit]]
        if len(self.skipped) > limit:
            out.append(f"… and {len(self.skipped) - limit} more skipped rows")
        return out


def _unquote(cell: str) -> str:
    """Undo the exporter's formula defuse: one leading quote before = + - @ tab or CR."""
    return cell[1:] if len(cell) > 1 and cell[0] == "'" and cell[1] in FORMULA_STARTS else cell


def _parse_time(text: str) -> datetime:
    when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError("no time zone")
    return when.astimezone(UTC).replace(tzinfo=None)


def read_verdicts(data: bytes) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """The rows of a verdicts file that are well formed on their own, and the others' (row, reason); an
    AnnotationError (one line) when the file as a whole is not a verdicts file or is too big."""
    if len(data) > MAX_BYTES:
        raise AnnotationError(f"The file is {len(data) / 1e6:.1f} MB; a verdicts file may be at most "
                              f"{MAX_BYTES / 1e6:.0f} MB: split it and import the parts.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"The file is not UTF-8 text (byte {exc.start}): not a verdicts file.") from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        names = [h.strip() for h in header] if header is not None else []
        if names not in (HEADER, HEADER + OPTIONAL):
            raise AnnotationError("Not a verdicts file: its first line must be the header "
                                  f"{','.join(HEADER)} (the gallery's \"Download my verdicts\" button writes it), "
                                  f"optionally ending with ,{','.join(OPTIONAL)}.")
        good, bad = [], []
        for number, cells in enumerate(reader, start=2):
            if number - 1 > MAX_ROWS:
                raise AnnotationError(f"The file has more than {MAX_ROWS:,} rows: split it and import the parts.")
            if not any(c.strip() for c in cells):
                continue  # a blank line
            problem, row = _check_row(cells, names)
            if problem:
                bad.append((number, problem))
            else:
                good.append({"row": number, **row})
    except csv.Error as exc:
        raise AnnotationError(f"The file is not valid CSV near line {reader.line_num} ({exc}): nothing imported."
                              ) from exc
    columns = ["row", *HEADER, *OPTIONAL]
    return pd.DataFrame(good, columns=columns), bad


def _check_row(cells: list[str], names: list[str]) -> tuple[str | None, dict]:
    if len(cells) != len(names):
        return f"has {len(cells)} cells, the header has {len(names)}", {}
    row = {name: _unquote(cell) for name, cell in zip(names, cells, strict=True)}
    row = {k: (v if k == "note" else v.strip()) for k, v in row.items()}
    row.setdefault("corrected_period", "")  # a file without the column; "" reads as none
    if row["corrected_period"] and row["verdict"] != LABEL_WRONG:
        return f"a corrected period goes only with the verdict {LABEL_WRONG!r}, not {row['verdict'][:40]!r}", {}
    if row["format"] != FORMAT:
        return f"format is {row['format'][:40]!r}, not {FORMAT!r}", {}
    for name in ("export_id", "run_id", "content_hash"):
        if not row[name]:
            return f"no {name}", {}
    try:
        row["note"], row["reviewer"] = checked(row["verdict"], row["note"], row["reviewer"])
    except AnnotationError:
        if row["verdict"] not in VERDICTS:
            return f"unknown verdict {row['verdict'][:40]!r} (one of: {', '.join(VERDICTS)})", {}
        if not row["reviewer"]:
            return "no reviewer name", {}
        return f"reviewer name over {MAX_AUTHOR} or note over {MAX_NOTE} characters", {}
    try:
        when = _parse_time(row["time"])
    except ValueError:
        return f"time {row['time'][:40]!r} is not an ISO 8601 UTC time (like 2026-03-01T12:00:00.000Z)", {}
    return None, {**row, "time": when}


def import_verdicts(con: duckdb.DuckDBPyConnection, data: bytes) -> ImportReport:
    """Bring a verdicts file's good rows into `annotations` in one transaction (see the module's docstring)."""
    rows, skipped = read_verdicts(data)
    report = ImportReport(skipped=skipped)
    if rows.empty:
        return report
    runs = dict(con.execute("SELECT run_id, dataset_id FROM runs WHERE list_contains(?, run_id)",
                            [rows["run_id"].unique().tolist()]).fetchall())
    images: dict[str, list[tuple[str, str]]] = {}
    for dataset_id, image_id, content_hash in con.execute(
            "SELECT dataset_id, image_id, content_hash FROM images WHERE list_contains(?, content_hash) "
            "ORDER BY dataset_id, image_id", [rows["content_hash"].unique().tolist()]).fetchall():
        images.setdefault(content_hash, []).append((dataset_id, image_id))
    rows["annotation_id"] = [str(uuid.uuid5(NAMESPACE, "\0".join((e, h, r, t.isoformat()))))
                             for e, h, r, t in zip(rows["export_id"], rows["content_hash"], rows["reviewer"],
                                                   rows["time"], strict=True)]
    stored = {a for (a,) in con.execute("SELECT annotation_id FROM annotations WHERE list_contains(?, annotation_id)",
                                        [rows["annotation_id"].tolist()]).fetchall()}
    latest = {(h, r, a): (i, t) for i, h, r, a, t in con.execute(
        f"""SELECT annotation_id, content_hash, run_id, author, created_at FROM {CURRENT} c
            WHERE list_contains(?, content_hash) AND list_contains(?, author) ORDER BY created_at""",
        [rows["content_hash"].unique().tolist(), rows["reviewer"].unique().tolist()]).fetchall()}
    new = []
    periods: dict[str, list[str]] = {}
    for r in rows.sort_values(["time", "row"]).itertuples():
        if r.annotation_id in stored:
            report.already += 1
            continue
        if r.run_id not in runs:
            report.skipped.append((r.row, f"unknown run {r.run_id[:80]!r}"))
            continue
        matches = images.get(r.content_hash, [])
        if not matches:
            report.skipped.append((r.row, f"no image with content hash {r.content_hash[:80]!r} in the store"))
            continue
        key = (r.content_hash, r.run_id, r.reviewer)
        previous = latest.get(key)
        if previous is not None and previous[1] >= r.time:
            report.skipped.append((r.row, f"{r.reviewer[:40]!r} has a newer verdict on this painting and run "
                                          f"({previous[1]:%Y-%m-%d %H:%M} UTC): kept that one"))
            continue
        dataset_id, image_id = _pick(matches, runs[r.run_id], r.image_id)
        period = r.corrected_period if isinstance(r.corrected_period, str) and r.corrected_period else None
        if period and period not in periods.setdefault(dataset_id, dataset_periods(con, dataset_id)):
            report.skipped.append((r.row, f"corrected period {period[:40]!r} is not one of the dataset's "
                                          f"periods ({', '.join(periods[dataset_id])})"))
            continue
        new.append({"annotation_id": r.annotation_id, "dataset_id": dataset_id, "image_id": image_id,
                    "content_hash": r.content_hash, "run_id": r.run_id, "verdict": r.verdict, "note": r.note or None,
                    "author": r.reviewer, "created_at": r.time, "revises": previous[0] if previous else None,
                    "withdrawn": False, "source": f"import:{r.export_id[:80]}",
                    "corrected_period": period})
        latest[key] = (r.annotation_id, r.time)
        stored.add(r.annotation_id)
    report.skipped.sort()
    if new:
        frame = pd.DataFrame(new)
        con.execute("BEGIN")
        try:
            con.register("_verdicts", frame)
            con.execute(f"INSERT INTO annotations ({', '.join(frame.columns)}) "
                        f"SELECT {', '.join(frame.columns)} FROM _verdicts")
            con.unregister("_verdicts")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    report.added = len(new)
    return report


def _pick(matches: list[tuple[str, str]], run_dataset: str, hint: str) -> tuple[str, str]:
    """The image a row means: in the run's dataset if the painting is there, the row's image_id if it names one."""
    for pool in ([m for m in matches if m[0] == run_dataset], matches):
        if pool:
            return next((m for m in pool if m[1] == hint), pool[0])
    raise AssertionError("no matches")  # callers pass a non-empty list


def import_file(store_path: str | Path, file: str | Path) -> ImportReport:
    """`python -m pipeline annotations import FILE`: read the file (refusing a huge one before reading it)."""
    from pipeline import store

    file = Path(file)
    try:
        size = file.stat().st_size
    except OSError as exc:
        raise AnnotationError(f"Cannot read {file} ({exc.strerror}).") from exc
    if size > MAX_BYTES:
        raise AnnotationError(f"{file} is {size / 1e6:.1f} MB; a verdicts file may be at most "
                              f"{MAX_BYTES / 1e6:.0f} MB: split it and import the parts.")
    if not Path(store_path).exists():
        raise AnnotationError(f"No store at {store_path}: run `make artifacts` first.")
    with store.connect(store_path) as con:
        return import_verdicts(con, file.read_bytes())


# ---------------------------------------------------------------- merging another store's annotations


def merge_annotations(con: duckdb.DuckDBPyConnection, relation: str) -> int:
    """The bulk path for `python -m pipeline merge` (pipeline/merge.py): add the rows of another store's annotations
    table (`relation`, e.g. an attached store's `merge_source.annotations`) in one transaction; returns how many.

    Rows are people's work, so all are kept, de-duplicated by (content hash, author, time): a row already here
    under its own id or under another id with that key is not added again, and a `revises` naming such a row is
    pointed at the row kept here, so version chains stay whole."""
    before = int(con.execute("SELECT count(*) FROM annotations").fetchall()[0][0])
    con.execute("BEGIN")
    try:
        con.execute(f"""CREATE OR REPLACE TEMP TABLE _merging AS
                        SELECT i.*, coalesce(same.annotation_id, (SELECT t.annotation_id FROM annotations t
                            WHERE t.content_hash IS NOT DISTINCT FROM i.content_hash
                              AND t.author IS NOT DISTINCT FROM i.author
                              AND t.created_at IS NOT DISTINCT FROM i.created_at
                            ORDER BY t.annotation_id LIMIT 1)) AS _kept
                        FROM {relation} i LEFT JOIN annotations same ON same.annotation_id = i.annotation_id""")
        con.execute("""INSERT INTO annotations BY NAME
                       SELECT * EXCLUDE (_kept, revises),
                              coalesce((SELECT k._kept FROM _merging k WHERE k.annotation_id = m.revises),
                                       m.revises) AS revises
                       FROM _merging m WHERE _kept IS NULL""")
        con.execute("DROP TABLE _merging")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return int(con.execute("SELECT count(*) FROM annotations").fetchall()[0][0]) - before
