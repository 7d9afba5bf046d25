"""Every data source ends in one table: images(image_id, path, period, artist, title, date, row).

A source only reads labels and file names; it never opens an image. Rows it cannot use
(missing label, non-image file, unknown artist …) are returned as skips with the file, the
CSV row and a reason; only input that is unusable as a whole raises ConfigError.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline.config import DEFAULT_SHARED, ConfigError, DataConfig
from pipeline.data.images import SYMLINK_LOOP

IMAGE_COLUMNS = ["image_id", "path", "period", "artist", "title", "date", "row"]
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}


@dataclass
class SourceTable:
    """`images` has IMAGE_COLUMNS; `row` is the CSV line (header = line 1) or <NA>."""

    images: pd.DataFrame
    skipped: list[dict] = field(default_factory=list)
    synthetic: bool = False


def shared_dir() -> Path:
    """The shared real datasets ($PAINTINGS_SHARED, default ../shared/datasets)."""
    return Path(os.environ.get("PAINTINGS_SHARED", str(DEFAULT_SHARED)))


def skip(path: str | Path, row: int | None, reason: str, stage: str = "source") -> dict:
    return {"path": str(path), "row": row, "reason": reason, "stage": stage}


def load_source(cfg: DataConfig, work_dir: Path) -> SourceTable:
    """Read the configured source; `work_dir` is where the demo set is generated."""
    if cfg.source == "demo":
        from pipeline.data.demo import generate_demo

        manifest = generate_demo(Path(cfg.path) if cfg.path else Path(work_dir) / "demo")
        table = read_manifest(manifest)
        table.synthetic = True
    else:
        if not cfg.path:
            raise ConfigError(f"data.path is required for source {cfg.source!r}")
        path = Path(cfg.path).expanduser()
        if not path.exists():
            raise ConfigError(f"data path {path} does not exist (source {cfg.source!r})")
        if cfg.source == "imagefolder":
            table = read_imagefolder(path)
        elif cfg.source == "manifest":
            table = read_manifest(path)
        elif cfg.source == "historic_art":
            from pipeline.data.historic_art import read_historic_art

            table = read_historic_art(path, cfg.subset, shared_dir())
        else:
            raise ConfigError(f"unknown data source {cfg.source!r}")
    if cfg.period_order:
        table = keep_known_periods(table, list(cfg.period_order))
    return table


def to_frame(records: list[dict]) -> pd.DataFrame:
    """Records to the images table: text columns hold str or None, `row` is Int64."""
    df = pd.DataFrame.from_records(records, columns=IMAGE_COLUMNS)
    for col in IMAGE_COLUMNS[:-1]:
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    df["row"] = df["row"].astype("Int64")
    return df


def read_imagefolder(root: Path) -> SourceTable:
    """`root/<label>/<file>`: label from the first folder (stripped, as manifest labels are), image_id the path.

    Hidden files and folders (name starting with '.') are not read but recorded, one row per hidden
    folder; so are symlink loops, files or folders.
    """
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory; an ImageFolder source needs root/<label>/<image>")
    records, skipped, visited = [], [], set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in visited:  # linked class folders are fine, cycles and second links are not read twice
            skipped.append(skip(Path(dirpath).absolute(), None, _revisit_reason(dirpath, real)))
            dirnames[:] = []
            continue
        visited.add(real)
        skipped += [skip((Path(dirpath) / d).absolute(), None, "hidden folder (name starts with '.'; not read)")
                    for d in sorted(dirnames) if d.startswith(".")]
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            record, skipped_row = _imagefolder_entry(root, Path(dirpath) / name)
            if record:
                records.append(record)
            else:
                skipped.append(skipped_row)
    if not records:
        raise ConfigError(f"no images found under {root} (expected root/<label>/<image>, extensions "
                          f"{', '.join(sorted(IMAGE_EXTENSIONS))})")
    return SourceTable(to_frame(records), skipped)


def _imagefolder_entry(root: Path, path: Path) -> tuple[dict | None, dict | None]:
    """One file under an ImageFolder root: its images row, or its skip row."""
    rel = path.relative_to(root)
    label = rel.parts[0].strip() if len(rel.parts) > 1 else ""
    if path.name.startswith("."):
        return None, skip(path.absolute(), None, "hidden file (name starts with '.'; not read)")
    if is_symlink_loop(path):
        return None, skip(path.absolute(), None, SYMLINK_LOOP)
    if len(rel.parts) < 2:
        return None, skip(path.absolute(), None, "not in a class folder (expected root/<label>/<file>)")
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return None, skip(path.absolute(), None, f"not an image file (extension {path.suffix or 'none'!r})")
    if not label:
        return None, skip(path.absolute(), None, f"blank class folder name {rel.parts[0]!r}")
    return {"image_id": rel.as_posix(), "path": str(path.absolute()), "period": label, "artist": None,
            "title": None, "date": None, "row": None}, None


def is_symlink_loop(path: str | Path) -> bool:
    """A link that leads back to itself (os.stat fails with ELOOP): otherwise reported as 'file not found'."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def _revisit_reason(dirpath: str, real: str) -> str:
    """Why a folder reached a second time is not read: a loop (it contains itself) or a second link."""
    inside = os.path.realpath(os.path.dirname(dirpath))
    if inside == real or inside.startswith(real.rstrip(os.sep) + os.sep):
        return f"symlink loop (the folder links back to {real}, which contains it)"
    return f"folder already read through another link ({real})"


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


def read_manifest(csv_path: Path) -> SourceTable:
    """`path,period[,artist,title,date,image_id]`; paths relative to the CSV's folder or absolute."""
    if csv_path.is_dir():
        raise ConfigError(f"{csv_path} is a directory; a manifest source needs a .csv file")
    df = read_csv_checked(csv_path, ["path", "period"])
    base = csv_path.parent.absolute()
    records, skipped, seen = [], [], {}
    for i, r in enumerate(df.to_dict("records")):
        line = i + 2  # header is line 1
        cell = r["path"]
        if not cell:
            skipped.append(skip(csv_path, line, "missing path (empty 'path' cell)"))
            continue
        path = Path(os.path.normpath(base / Path(cell).expanduser()))
        if not r["period"]:
            skipped.append(skip(path, line, "missing period (empty 'period' cell)"))
            continue
        image_id = r.get("image_id") or (path.relative_to(base).as_posix() if path.is_relative_to(base) else str(path))
        if is_symlink_loop(path):
            skipped.append(skip(path, line, SYMLINK_LOOP))
            continue
        if image_id in seen:
            skipped.append(skip(path, line, f"repeated row: image_id {image_id!r} already on line {seen[image_id]}"))
            continue
        seen[image_id] = line
        records.append({"image_id": image_id, "path": str(path), "period": r["period"],
                        "artist": r.get("artist") or None, "title": r.get("title") or None,
                        "date": r.get("date") or None, "row": line})
    if not records:
        raise ConfigError(f"{csv_path}: no usable rows ({len(df)} row(s), none with both a path and a period)")
    return SourceTable(to_frame(records), skipped)


def keep_known_periods(table: SourceTable, order: list[str]) -> SourceTable:
    """Rows whose label is outside `period_order` are skipped, naming the known labels."""
    df = table.images
    unknown = ~df["period"].isin(order)
    known = ", ".join(order)
    skipped = [skip(r.path, None if pd.isna(r.row) else int(r.row), f"unknown period {r.period!r} (known: {known})")
               for r in df[unknown].itertuples(index=False)]
    return SourceTable(df[~unknown].reset_index(drop=True), table.skipped + skipped, table.synthetic)
