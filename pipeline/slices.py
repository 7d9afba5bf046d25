"""Saved slices: the one writer of the `slices` table (save, rename, delete).

A slice is a filter saved under a name so people can share it (`?slice=<id>` on the Slices page) and see it across
every run. The filter is JSON {dimension: [values]}; what the dimensions mean is the dashboard's business (its
queries), so this module checks only the shape. The id is made once from the name (lower-case letters, digits and
hyphens, so it is safe in a URL and in SQL) and kept on rename, so links already sent keep working.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import duckdb

MAX_NAME = 80
MAX_VALUES = 200  # values across all dimensions of one slice
MAX_TEXT = 200  # characters of one dimension name or value
MAX_AUTHOR = 120


class SliceError(ValueError):
    """A slice that cannot be saved, renamed or deleted; str(exc) is the one line shown to the person."""


def checked_name(name: str | None) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise SliceError("Give the slice a name.")
    if len(name) > MAX_NAME:
        raise SliceError(f"Keep the name under {MAX_NAME} characters.")
    if not slug(name):
        raise SliceError("Put at least one letter or digit in the name.")
    return name


def checked_filter(within: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """{dimension: [values]} with strings only, at least one value, none too long; else SliceError."""
    if not isinstance(within, Mapping):
        raise SliceError("A slice is a set of dimension: value pairs.")
    clean = {str(d): [str(v) for v in values] for d, values in within.items() if values}
    count = sum(len(v) for v in clean.values())
    if not count:
        raise SliceError("Pick at least one dimension: value for the slice.")
    if count > MAX_VALUES or any(len(t) > MAX_TEXT for d, vs in clean.items() for t in (d, *vs)):
        raise SliceError(f"A slice holds at most {MAX_VALUES} values of at most {MAX_TEXT} characters.")
    return clean


def slug(name: str) -> str:
    """The id's form of a name: ASCII lower-case letters and digits joined by single hyphens."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60].strip("-")


def save(con: duckdb.DuckDBPyConnection, name: str, within: Mapping[str, Sequence[str]], author: str | None
         ) -> str:
    """Save a new slice and return its id (the name's slug; "-2", "-3"… when an older slice holds it). Names are
    unique, ignoring case, spacing and punctuation: a taken name is refused, never an overwrite of someone's slice."""
    name, clean = checked_name(name), checked_filter(within)
    author = (author or "").strip()[:MAX_AUTHOR] or None
    _refuse_taken(con, name)
    base = slug(name)
    taken = {row[0] for row in con.execute("SELECT slice_id FROM slices WHERE slice_id = ? OR slice_id LIKE ?",
                                           [base, base + "-%"]).fetchall()}
    slice_id, n = base, 1
    while slice_id in taken:
        n += 1
        slice_id = f"{base}-{n}"
    con.execute("INSERT INTO slices (slice_id, name, filter, author, created_at) VALUES (?, ?, ?, ?, ?)",
                [slice_id, name, json.dumps(clean, ensure_ascii=False), author,
                 datetime.now(UTC).replace(tzinfo=None)])
    return slice_id


def rename(con: duckdb.DuckDBPyConnection, slice_id: str, name: str) -> None:
    """Give a slice a new name; its id (and so its links) stay."""
    name = checked_name(name)
    _existing(con, slice_id)
    _refuse_taken(con, name, slice_id)
    con.execute("UPDATE slices SET name = ? WHERE slice_id = ?", [name, slice_id])


def delete(con: duckdb.DuckDBPyConnection, slice_id: str) -> None:
    _existing(con, slice_id)
    con.execute("DELETE FROM slices WHERE slice_id = ?", [slice_id])


def _existing(con: duckdb.DuckDBPyConnection, slice_id: str) -> None:
    if con.execute("SELECT 1 FROM slices WHERE slice_id = ?", [slice_id]).fetchone() is None:
        raise SliceError("That slice was deleted in the meantime (or never existed): reload the page.")


def _refuse_taken(con: duckdb.DuckDBPyConnection, name: str, other_than: str | None = None) -> None:
    """Names are the same when their slugs are (case, spacing and punctuation aside)."""
    rows = con.execute("SELECT name FROM slices WHERE slice_id IS DISTINCT FROM ?", [other_than]).fetchall()
    same = next((row[0] for row in rows if slug(row[0]) == slug(name)), None)
    if same is not None:
        raise SliceError(f"A slice named {same!r} exists already: choose another name.")
