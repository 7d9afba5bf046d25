"""What every source reader builds on: the images table, skip rows and checked CSV reading.

A reader turns its input into a `SourceTable`: one row per usable image (IMAGE_COLUMNS) and one
skip row, with file, CSV line and reason, per entry it cannot use. This module imports no reader,
so readers in their own modules (`historic_art.py`, …) and the registry in `sources.py` all import it
and never each other in a circle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline.errors import ConfigError

IMAGE_COLUMNS = ["image_id", "path", "period", "artist", "title", "date", "row"]
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}


@dataclass
class SourceTable:
    """`images` has IMAGE_COLUMNS; `row` is the CSV line (header = line 1) or <NA>."""

    images: pd.DataFrame
    skipped: list[dict] = field(default_factory=list)
    synthetic: bool = False


def skip(path: str | Path, row: int | None, reason: str, stage: str = "source") -> dict:
    return {"path": str(path), "row": row, "reason": reason, "stage": stage}


def to_frame(records: list[dict]) -> pd.DataFrame:
    """Records to the images table: text columns hold str or None, `row` is Int64."""
    df = pd.DataFrame.from_records(records, columns=IMAGE_COLUMNS)
    for col in IMAGE_COLUMNS[:-1]:
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    df["row"] = df["row"].astype("Int64")
    return df


def read_csv_checked(path: Path, required: list[str]) -> pd.DataFrame:
    """A CSV as strings ('' for empty), column names stripped; all missing columns in one error."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise ConfigError(f"{path} is empty; expected a header with columns {', '.join(required)}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not a readable CSV: {exc}") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ConfigError(f"{path}: missing required column(s) {', '.join(missing)}; "
                          f"found {', '.join(df.columns) or 'none'}")
    return df.apply(lambda s: s.str.strip())


def keep_known_periods(table: SourceTable, order: list[str]) -> SourceTable:
    """Rows whose label is outside `period_order` are skipped, naming the known labels."""
    df = table.images
    unknown = ~df["period"].isin(order)
    known = ", ".join(order)
    skipped = [skip(r.path, None if pd.isna(r.row) else int(r.row), f"unknown period {r.period!r} (known: {known})")
               for r in df[unknown].itertuples(index=False)]
    return SourceTable(df[~unknown].reset_index(drop=True), table.skipped + skipped, table.synthetic)
