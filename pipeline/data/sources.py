"""The data sources, as a registry: each kind of input, how it is read, recognised and ordered.

Every source ends in one table: images(image_id, path, period, artist, title, date, row)
(`pipeline.data.tables`). A source only reads labels and file names; it never opens an image.
Rows it cannot use (missing label, non-image file, unknown artist …) are returned as skips with
the file, the CSV row and a reason; only input that is unusable as a whole raises ConfigError.

`SOURCES` is the one list of kinds: the config's allowed `data.source` values come from its keys,
`--data PATH` tries its recognisers in order, and its chronologies order the periods.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.data import demo, historic_art
from pipeline.data.images import SYMLINK_LOOP
from pipeline.data.tables import IMAGE_EXTENSIONS, SourceTable, read_csv_checked, skip, to_frame
from pipeline.errors import ConfigError

Reader = Callable[[Path, str | None, Path], SourceTable]  # (path, data.subset, the shared datasets folder)


@dataclass(frozen=True)
class Source:
    """One kind of input.

    `read(path, subset, shared)` builds its table; `recognises(path)` says whether `--data PATH` is this kind
    (None: never guessed); `chronology` is its own period order, earliest first (empty: none of its own);
    `generated` sources need no path: they write their input under the work folder when none is given.
    """

    read: Reader
    recognises: Callable[[Path], bool] | None = None
    chronology: Sequence[str] = ()
    generated: bool = False


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
            elif skipped_row:  # exactly one of the two is set
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


def read_manifest(csv_path: Path) -> SourceTable:
    """`path,period[,artist,title,date,image_id]`; paths relative to the CSV's folder or absolute."""
    if csv_path.is_dir():
        raise ConfigError(f"{csv_path} is a directory; a manifest source needs a .csv file")
    df = read_csv_checked(csv_path, ["path", "period"])
    base = csv_path.parent.absolute()
    records, skipped = [], []
    seen: dict[str, int] = {}  # image_id -> the line that first named it
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


def read_demo(folder: Path, subset: str | None = None, shared: Path | None = None) -> SourceTable:
    """The synthetic set, generated into `folder` unless already there, read as the manifest it writes."""
    table = read_manifest(demo.generate_demo(folder))
    table.synthetic = True
    return table


def _path_only(read: Callable[[Path], SourceTable]) -> Reader:
    return lambda path, subset, shared: read(path)


def _is_manifest(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".csv"


# Insertion order is the order `--data PATH` tries them: a Historic Art folder is a directory too.
SOURCES: dict[str, Source] = {
    "manifest": Source(_path_only(read_manifest), recognises=_is_manifest),
    "historic_art": Source(historic_art.read_historic_art, recognises=historic_art.is_historic_art,
                           chronology=historic_art.PERIODS),
    "imagefolder": Source(_path_only(read_imagefolder), recognises=Path.is_dir),
    "demo": Source(read_demo, chronology=demo.PERIODS, generated=True),
}

# An ImageFolder has no chronology of its own; the shared set ../shared/datasets/wikiart-styles (7 styles as
# folders) is ordered by this one, whether named in a config or given as `--data PATH`.
WIKIART_STYLES = ["Baroque", "Romanticism", "Impressionism", "Post-Impressionism", "Symbolism", "Art_Nouveau",
                  "Expressionism"]
# Period orders `period_order` tries, by name: every source's own, then the named sets above.
KNOWN_ORDERS: dict[str, list[str]] = {
    **{name: list(source.chronology) for name, source in SOURCES.items() if source.chronology},
    "wikiart-styles": WIKIART_STYLES,
}


def recognise(path: Path) -> str:
    """The kind of source at `path`, for `--data PATH`: the first whose recogniser accepts it."""
    for name, source in SOURCES.items():
        if source.recognises is not None and source.recognises(path):
            return name
    raise ConfigError(f"data path {path} is neither a directory nor a manifest .csv")
