"""The Slices page's SQL: a run's accuracy on each slice of its images (by artist, period, date, shape, size, near-copy
membership, label audit, expert verdict, whether the artist was seen in training), each with a 95 % Wilson interval
computed in SQL; the slices where a run does worst; and saved slices' accuracy across every run.

A slice is a set of `dimension: value` pairs (`within`): values of one dimension are alternatives, dimensions are all
required. Every dimension is one SQL expression over the gallery's aliases (p predictions, r runs, i images,
lq label_quality), so the Errors gallery filtered to a slice (`within` in its URL) shows exactly the images counted
here. Saving goes through pipeline/slices.py, the one writer of the `slices` table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from dashboard.queries import query
from dashboard.queries.verdicts import writing
from pipeline import slices as writer
from pipeline.annotations import CURRENT
from pipeline.slices import SliceError

__all__ = ["SliceError"]

Z = 1.959963984540054  # the normal quantile of a two-sided 95 % interval
MIN_SIZE = 20  # the slice finder's default smallest slice
NO_DATE = "no date"

# The first four-digit year in the date text ("1574-88", "c. 1500", "1650s"), in 50-year buckets: "1550–1599".
_YEAR = r"try_cast(nullif(regexp_extract(i.date, '\d{4}'), '') AS INTEGER) // 50 * 50"
_PIXELS = "i.width::BIGINT * i.height::BIGINT"


# The dataset's pixel-count terciles in one subquery; a size is how many of them the image exceeds.
_DATASET_PIXELS = "FROM (SELECT width::BIGINT * height::BIGINT AS px FROM images t WHERE t.dataset_id = i.dataset_id)"
_TERCILES = f"(SELECT quantile_disc(px, [1/3, 2/3]) {_DATASET_PIXELS})"
SIZES = ["small (lowest third)", "medium (middle third)", "large (highest third)"]
# A collection of one size (WikiArt's are all 224 × 224) has no thirds: say so rather than call every image small.
ONE_SIZE = "one size (every image)"
_ONE_SIZE = f"(SELECT min(px) = max(px) {_DATASET_PIXELS})"


DIMENSIONS: dict[str, tuple[str, str]] = {  # name in the URL → (words, SQL expression over p, r, i, lq)
    "artist": ("artist", "coalesce(i.artist, 'no artist')"),
    "period": ("true period", "p.true_label"),
    "date": ("date (50 years)", f"coalesce(({_YEAR})::TEXT || '–' || ({_YEAR} + 49)::TEXT, '{NO_DATE}')"),
    "aspect": ("shape", """CASE WHEN coalesce(i.width, 0) = 0 OR coalesce(i.height, 0) = 0 THEN 'unknown'
                               WHEN i.width / i.height < 0.8 THEN 'portrait (w/h < 0.8)'
                               WHEN i.width / i.height > 1.25 THEN 'landscape (w/h > 1.25)'
                               ELSE 'square (0.8–1.25)' END"""),
    "size": ("size (pixels, thirds of the dataset)",
             f"""CASE WHEN i.width IS NULL OR i.height IS NULL THEN 'unknown' WHEN {_ONE_SIZE} THEN '{ONE_SIZE}'
                      ELSE {SIZES}[1 + len(list_filter({_TERCILES}, lambda x: {_PIXELS} > x))] END"""),
    "near_copy": ("near-copy group", """CASE WHEN EXISTS (SELECT 1 FROM near_copies n WHERE n.dataset_id = i.dataset_id
                                                                                 AND n.image_id = i.image_id)
                                             THEN 'in a near-copy group' ELSE 'no near copy' END"""),
    "label_issue": ("label audit", """CASE WHEN lq.issue THEN 'label flagged' WHEN lq.issue IS NULL THEN 'not audited'
                                           ELSE 'label not flagged' END"""),
    # the verdict that counts: a current annotation on the same painting, this run's own first, then the latest
    "verdict": ("expert verdict", f"""coalesce((SELECT arg_max(a.verdict, {{'own': coalesce(a.run_id = p.run_id, false),
                                                                          'at': a.created_at, 'id': a.annotation_id}})
                                              FROM {CURRENT} a WHERE a.content_hash = i.content_hash),
                                             'no verdict')"""),
    "training": ("artist in training", """CASE WHEN i.artist IS NULL THEN 'no artist'
                                               WHEN EXISTS (SELECT 1 FROM images t WHERE t.dataset_id = i.dataset_id
                                                            AND t.split = 'train' AND t.artist = i.artist)
                                               THEN 'artist seen in training' ELSE 'artist not in training' END"""),
}

_FROM = """
    FROM predictions p
    JOIN runs r ON r.run_id = p.run_id
    JOIN images i ON i.dataset_id = r.dataset_id AND i.image_id = p.image_id
    LEFT JOIN label_quality lq ON lq.dataset_id = r.dataset_id AND lq.image_id = p.image_id"""


def wilson(k: str, n: str) -> tuple[str, str]:
    """SQL for the 95 % Wilson score interval (low, high) of k successes in n trials (NULL when n is 0)."""
    centre = f"(({k})::DOUBLE + {Z ** 2 / 2}) / (({n}) + {Z ** 2})"
    half = f"{Z} * sqrt(({k})::DOUBLE * (({n}) - ({k})) / ({n}) + {Z ** 2 / 4}) / (({n}) + {Z ** 2})"
    return (f"CASE WHEN ({n}) > 0 THEN greatest(0.0, {centre} - {half}) END",
            f"CASE WHEN ({n}) > 0 THEN least(1.0, {centre} + {half}) END")


def _metrics(correct: str = "correct") -> str:
    """n, errors, accuracy, low, high over the grouped rows."""
    k, n = f"count(*) FILTER ({correct})", "count(*)"
    low, high = wilson(k, n)
    return (f"{n} AS n, count(*) FILTER (NOT {correct}) AS errors, avg({correct}::INT) AS accuracy, "
            f"{low} AS low, {high} AS high")


# -- a slice as URL values and as SQL


def parse_within(values: Sequence[str]) -> dict[str, list[str]]:
    """URL values `dimension:value` → {dimension: [values]}; unknown dimensions and empty values are left out."""
    within: dict[str, list[str]] = {}
    for text in values:
        dimension, _, value = text.partition(":")
        if dimension in DIMENSIONS and value and value not in within.get(dimension, []):
            within.setdefault(dimension, []).append(value)
    return within


def url_values(within: Mapping[str, Sequence[str]]) -> list[str]:
    """{dimension: [values]} → the URL's repeated `within` values."""
    return [f"{d}:{v}" for d, values in within.items() for v in values]


def describe(within: Mapping[str, Sequence[str]]) -> str:
    """A slice in words: "date (50 years) 1600–1649 · shape portrait (w/h < 0.8)"."""
    return " · ".join(f"{DIMENSIONS[d][0]} {' / '.join(values)}" for d, values in within.items() if d in DIMENSIONS)


def clause(within: Mapping[str, Sequence[str]]) -> tuple[str, list[str]]:
    """SQL over p, r, i, lq that keeps the slice's images, and its parameters ("TRUE" for no slice)."""
    parts, params = ["TRUE"], []
    for dimension, values in within.items():
        if dimension in DIMENSIONS and values:
            parts.append(f"({DIMENSIONS[dimension][1]}) IN ({', '.join('?' * len(values))})")
            params += [str(v) for v in values]
    return " AND ".join(parts), params


# -- a run's slices


def _sliced(run_id: str, split: str) -> tuple[str, tuple]:
    columns = ", ".join(f"({sql}) AS {name}" for name, (_, sql) in DIMENSIONS.items())
    return (f"SELECT p.correct, {columns} {_FROM} WHERE p.run_id = ? AND p.task = 'period' AND p.split = ?",
            (run_id, split))


def overall(run_id: str, split: str) -> pd.Series:
    """n, errors, accuracy, low, high of the run on the split."""
    df = query(f"SELECT {_metrics('p.correct')} FROM predictions p WHERE p.run_id = ? AND p.task = 'period' "
               "AND p.split = ?", (run_id, split))
    return df.iloc[0]


def slice_metrics(run_id: str, split: str) -> pd.DataFrame:
    """Every slice of one dimension value: dimension, value, n, errors, accuracy, low, high (dimension order, then
    value)."""
    sliced, params = _sliced(run_id, split)
    order = ", ".join(f"'{name}'" for name in DIMENSIONS)
    return query(f"""
        WITH s AS ({sliced}),
             u AS (UNPIVOT s ON {', '.join(DIMENSIONS)} INTO NAME dimension VALUE value)
        SELECT dimension, value, {_metrics()} FROM u GROUP BY dimension, value
        ORDER BY list_position([{order}], dimension), value""", params)


def worst(run_id: str, split: str, min_size: int = MIN_SIZE, limit: int = 10) -> pd.DataFrame:
    """The slices (of at least `min_size` images) where the run does worst against its accuracy on the whole split,
    ranked by how far the slice's upper 95 % bound falls below that accuracy (`gap`; positive: clearly worse), so a
    small slice's noisy low accuracy does not outrank a large slice's sure one. A dimension with one value is no
    slice of the split. Ranked from slice_metrics' rows (SQL, cached: the page shows both), a few hundred at most."""
    table = slice_metrics(run_id, split)
    whole = overall(run_id, split)
    if table.empty or not whole["n"]:
        return table.assign(gap=pd.Series(dtype=float))
    values = table.groupby("dimension")["value"].transform("count")
    found = table[(table["n"] >= int(min_size)) & (values > 1)].assign(gap=lambda t: whole["accuracy"] - t["high"])
    return (found.sort_values(["gap", "n", "dimension", "value"], ascending=[False, False, True, True])
            .head(int(limit)).reset_index(drop=True))


def across_runs(within: Mapping[str, Sequence[str]], split: str) -> pd.DataFrame:
    """One row per run (every run in the store): the slice's n, errors, accuracy, low, high on the split, and the
    run's accuracy on the whole split; n is 0 where the run's images have none of the slice."""
    where, params = clause(within)
    return query(f"""
        WITH m AS (SELECT p.run_id, {_metrics('p.correct')} {_FROM}
                   WHERE p.task = 'period' AND p.split = ? AND {where} GROUP BY p.run_id),
             a AS (SELECT run_id, avg(correct::INT) AS run_accuracy FROM predictions
                   WHERE task = 'period' AND split = ? GROUP BY run_id)
        SELECT r.run_id, coalesce(m.n, 0) AS n, coalesce(m.errors, 0) AS errors, m.accuracy, m.low, m.high,
               a.run_accuracy
        FROM runs r LEFT JOIN m USING (run_id) LEFT JOIN a USING (run_id)
        ORDER BY m.accuracy DESC NULLS LAST, r.run_id""", (split, *params, split))


# -- saved slices


def saved() -> pd.DataFrame:
    """slice_id, name, filter (as a dict), author, created_at of every saved slice, by name."""
    df = query("SELECT slice_id, name, filter, author, created_at FROM slices ORDER BY lower(name), slice_id")
    if len(df):
        df["filter"] = [parse_saved(f) for f in df["filter"]]
    return df


def parse_saved(text: object) -> dict[str, list[str]]:
    """A stored filter (JSON {dimension: [values]}) as a slice; what this dashboard cannot read is left out."""
    try:
        value = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return parse_within([f"{d}:{v}" for d, values in value.items() if isinstance(values, list) for v in values])


def save_slice(name: str, within: Mapping[str, Sequence[str]], author: str | None,
               path: str | Path | None = None) -> str:
    """Save the slice under a name; returns its id (for `?slice=`). Raises SliceError."""
    wanted = {d: list(v) for d, v in within.items() if d in DIMENSIONS and v}
    writer.checked_name(name)
    writer.checked_filter(wanted)
    return writing(path, lambda con: writer.save(con, name, wanted, author), SliceError)


def rename_slice(slice_id: str, name: str, path: str | Path | None = None) -> None:
    writer.checked_name(name)
    writing(path, lambda con: writer.rename(con, slice_id, name), SliceError)


def delete_slice(slice_id: str, path: str | Path | None = None) -> None:
    writing(path, lambda con: writer.delete(con, slice_id), SliceError)
