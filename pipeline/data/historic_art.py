"""The Kaggle "Historic Art" layout (Web Gallery of Art scrape).

`artwork_dataset.csv` lists works (`ID, artist, title, picture data, file info, jpg url`),
`info_dataset.csv` lists artists with their period, and `school` is the artist's profession.
Six artist names occur twice in the info table, so joining on the name duplicates works.
Each artwork is matched to exactly one artist through the WGA folder both URLs share
(`/art/a/aachen/adonis.jpg` ↔ `/html/a/aachen/index.html`), using the longest artist folder
that prefixes the artwork's folder (`b/bruegel/pieter_e`), and falls back to the artist name
only when that name is unique.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.data.tables import SourceTable, read_csv_checked, skip, to_frame
from pipeline.errors import ConfigError

ARTWORKS = "artwork_dataset.csv"
INFO = "info_dataset.csv"
TWELVE = "twelve_artists.csv"
METADATA = "historic-art-metadata"
SUBSETS = ("twelve_artists",)
# The chronology of the `period` column of INFO (every period a painter there has), earliest first.
PERIODS = ["Medieval", "Early Renaissance", "Northern Renaissance", "High Renaissance", "Mannerism", "Baroque",
           "Rococo", "Neoclassicism", "Romanticism", "Realism", "Impressionism", "Art Nouveau"]
_ART_DIR = re.compile(r"/art/(.+)/[^/]+$")
_HTML_DIR = re.compile(r"/html/(.+?)/(?:index\.html?)?$")
_YEARISH = re.compile(r"\d{3,4}")


def is_historic_art(path: Path) -> bool:
    """A folder with the artworks table: what `--data PATH` takes for this layout."""
    return (path / ARTWORKS).exists()


def read_historic_art(root: Path, subset: str | None, shared: Path) -> SourceTable:
    """Painters' works with their artist's period; `subset='twelve_artists'` keeps the reference twelve."""
    if subset is not None and subset not in SUBSETS:
        raise ConfigError(f"historic_art subset {subset!r} unknown; use one of {SUBSETS} or leave it empty")
    artworks_csv = root / ARTWORKS
    if not artworks_csv.exists():
        raise ConfigError(f"{root} has no {ARTWORKS}; a historic_art source needs {ARTWORKS} and artwork/{{ID}}.jpg")
    info_csv = _metadata_file(root, shared, INFO)
    art = read_csv_checked(artworks_csv, ["ID", "artist", "title", "jpg url"])
    info = read_csv_checked(info_csv, ["artist", "period", "school", "url"])
    keep = None
    if subset == "twelve_artists":
        keep = set(read_csv_checked(_metadata_file(root, shared, TWELVE), ["artist"])["artist"])

    by_folder: dict[str, int] = {}
    for i, url in info["url"].items():
        folder = _folder(_HTML_DIR, url)
        if folder:
            by_folder.setdefault(folder, i)
    names = info["artist"].value_counts()
    by_name = {a: i for i, a in info["artist"].items() if names[a] == 1}

    records, skipped = [], []
    for i, r in enumerate(art.to_dict("records")):
        line = i + 2
        image_id = r["ID"]
        path = (root / "artwork" / f"{image_id}.jpg").absolute()
        if not image_id:
            skipped.append(skip(artworks_csv, line, "missing ID (empty 'ID' cell)"))
            continue
        who = _match(r["jpg url"], r["artist"], by_folder, by_name)
        if who is None:
            why = "name occurs twice and no artist folder matches the URL" if names.get(r["artist"], 0) > 1 else \
                f"not in {INFO}"
            skipped.append(skip(path, line, f"unmatched artist {r['artist']!r}: {why}"))
            continue
        artist = info.loc[who]
        if artist["school"].lower() != "painter" or (keep is not None and artist["artist"] not in keep):
            continue  # a selection, not a defect: sculptors, architects … are not paintings
        if not artist["period"]:
            skipped.append(skip(path, line, f"missing period: artist {artist['artist']!r} has none in {INFO}"))
            continue
        records.append({"image_id": image_id, "path": str(path), "period": artist["period"], "artist": artist["artist"],
                        "title": r["title"] or None, "date": parse_date(r.get("picture data", "")), "row": line})
    if not records:
        raise ConfigError(f"{artworks_csv}: no painting matched a painter in {info_csv}")
    return SourceTable(to_frame(records), skipped)


def _metadata_file(root: Path, shared: Path, name: str) -> Path:
    """A metadata table from the dataset root, else from the shared metadata folder."""
    for candidate in (root / name, shared / METADATA / name):
        if candidate.exists():
            return candidate
    raise ConfigError(f"{name} not found in {root} nor in {shared / METADATA} (set PAINTINGS_SHARED)")


def _folder(pattern: re.Pattern, url: str) -> str | None:
    m = pattern.search(url or "")
    return m.group(1).strip("/").lower() if m else None


def _match(url: str, name: str, by_folder: dict[str, int], by_name: dict[str, int]) -> int | None:
    """Info row of the artwork's artist: longest artist folder prefixing the image's folder, else a unique name."""
    folder = _folder(_ART_DIR, url)
    while folder:
        if folder in by_folder:
            return by_folder[folder]
        folder = folder.rpartition("/")[0]
    return by_name.get(name)


def parse_date(picture_data: str | None) -> str | None:
    """Leading year-ish part of 'picture data' ("1574-88, oil on canvas, …" → "1574-88")."""
    head = (picture_data or "").split(",")[0].strip()
    return head if _YEARISH.search(head) and len(head) <= 24 else None

