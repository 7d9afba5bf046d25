"""Self-contained exports of a gallery: one HTML file (dashboard.gallery_file renders it) and a CSV, named for
what they hold (run, filter, date).

The HTML opens from disk on any computer with no server and explains itself (model, metrics, legend, confusion
matrix, saliency maps); its verdict buttons download the CSV `python -m pipeline annotations import` reads. In a
CSV, a text cell that a spreadsheet would run as a formula (`=HYPERLINK(…)`, `+1+1`, `@SUM(…)`) gets a leading `'`,
as OWASP advises against CSV injection; numbers stay numbers.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from PIL import Image

from dashboard.gallery_file import Gallery, Overlay, render
from dashboard.model_words import model_words
from dashboard.queries import compare, gallery, verdicts
from dashboard.queries.inspector import geometry
from dashboard.queries.runs import labels
from dashboard.text import method_rank
from pipeline.heatmaps import decode_map, overlay
from pipeline.intervals import wilson

CSV_COLUMNS = ["run_id", "image_id", "split", "true_label", "pred_label", "confidence", "top1", "p1", "top2", "p2",
               "top3", "p3", "verdict", "note", "reviewer", "artist", "title", "date", "loss", "correct"]
# A map's longer side in the file and its JPEG quality: a tile shows maps two or three a row (~110 px), and 500
# tiles × 3 maps add ~6 MB at this size against ~10 MB at 160 px (benchmarks/gallery_export.py, BENCHMARKS.md).
OVERLAY_SIDE = 128
OVERLAY_QUALITY = 65


def slug(text: str, limit: int = 60) -> str:
    """Text as a piece of a file name: letters, digits and single hyphens."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:limit].strip("-") or "all"


def export_name(run_id: str, filter_slug: str, when: datetime, ext: str) -> str:
    """`period-eye_<run>_<filter>_<date>.<ext>`: what it is, from which run and filter, and when."""
    return f"period-eye_{slug(run_id)}_{slug(filter_slug, 80)}_{when:%Y-%m-%d}.{ext}"


def filter_slug(f: gallery.GalleryFilter) -> str:
    """The filter in a few words for a file name: split, outcome, and the periods/artists chosen."""
    parts = [f.split or "all-splits", f.outcome]
    parts += [f"true-{t}" for t in f.true] + [f"pred-{p}" for p in f.pred] + [f"artist-{a}" for a in f.artists]
    if f.conf_min > 0 or f.conf_max < 1:
        parts.append(f"conf-{f.conf_min:.2f}-{f.conf_max:.2f}")
    return "-".join(parts)


def filter_words(f: gallery.GalleryFilter) -> str:
    """The filter as a sentence a reader outside the project follows."""
    split = f"the {f.split} split" if f.split else "every split (train, val and test)"
    which = {"wrong": " that the model got wrong", "correct": " that the model got right",
             gallery.FLAGGED: " whose label a cross-validated check (Cleanlab) finds doubtful"}.get(f.outcome, "")
    text = f"{'all p' if f.outcome == 'all' else 'p'}aintings of {split}{which}"
    if f.true:
        text += ", labelled " + " or ".join(f.true)
    if f.pred:
        text += ", guessed " + " or ".join(f.pred)
    if f.artists:
        text += ", by " + " or ".join(f.artists)
    if f.conf_min > 0 or f.conf_max < 1:
        text += f", the model {f.conf_min:.0%} to {f.conf_max:.0%} sure"
    return text[0].upper() + text[1:]


def overlays_of(thumbnail: bytes, maps: list[tuple[str, bytes]], resize: int, crop: int,
                side: int = OVERLAY_SIDE, quality: int = OVERLAY_QUALITY) -> list[Overlay]:
    """One image's stored maps (method, 8-bit PNG) blended over its thumbnail as the Inspector shows them (opacity
    0.5, placed where the model's input came from), each a JPEG at most `side` px: methods in the Inspector's order."""
    base = Image.open(io.BytesIO(bytes(thumbnail))).convert("RGB")
    base.thumbnail((side, side))
    out = []
    for method, heatmap in sorted(maps, key=lambda m: (method_rank(m[0]), m[0])):
        buffer = io.BytesIO()
        overlay(base, decode_map(bytes(heatmap)), resize, crop, 0.5).save(buffer, "JPEG", quality=quality,
                                                                          optimize=True)
        out.append(Overlay(method, buffer.getvalue()))
    return out


def overlay_jpegs(dataset_id: str, tiles: pd.DataFrame, maps: pd.DataFrame) -> dict[str, list[Overlay]]:
    """`overlays_of` for every tile with stored maps, by image id."""
    if maps.empty:
        return {}
    resize, crop = geometry(dataset_id)
    thumbs = dict(zip(tiles["image_id"], tiles["thumbnail"], strict=True))
    return {str(image_id): overlays_of(thumbs[image_id], list(zip(group["method"], group["heatmap"], strict=True)),
                                       resize, crop)
            for image_id, group in maps.groupby("image_id", sort=False) if thumbs.get(image_id) is not None}


def with_verdicts(run_id: str, tiles: pd.DataFrame) -> pd.DataFrame:
    """The tiles with each image's current expert verdict (verdict, note, author), where there is one."""
    current = verdicts.current_verdicts(run_id)[["image_id", "verdict", "note", "author"]]
    return tiles.merge(current, on="image_id", how="left")


def headline_with_bounds(run_id: str, split: str) -> dict[str, float]:
    """The split's headline metrics (gallery.headline) and their 95 % intervals as `<metric>_low/_high`; an accuracy
    stored without one (a run from before schema 6) gets Wilson's from its value and n."""
    metrics = gallery.headline(run_id, split)
    for row in compare.overall_metrics([run_id], split, "period").itertuples():
        if row.metric in metrics and not pd.isna(row.low) and not pd.isna(row.high):
            metrics[f"{row.metric}_low"], metrics[f"{row.metric}_high"] = float(row.low), float(row.high)
    if "accuracy" in metrics and "accuracy_low" not in metrics and metrics.get("n"):
        metrics["accuracy_low"], metrics["accuracy_high"] = wilson(round(metrics["accuracy"] * metrics["n"]),
                                                                   metrics["n"])
    return metrics


def experts_with_bounds(run_id: str, summary: pd.DataFrame) -> dict | None:
    """The run's expert summary row, both accuracies with Wilson's 95 % interval over its test images."""
    if summary.empty:
        return None
    row = summary.iloc[0].to_dict()
    n = gallery.headline(run_id, "test").get("n")
    for key in ("accuracy", "accuracy_if_experts_right"):
        if n and row.get(key) is not None and not pd.isna(row[key]):
            row[f"{key}_low"], row[f"{key}_high"] = wilson(round(row[key] * n), n)
    return row


def build(run_id: str, tiles: pd.DataFrame, title: str, words: str, split: str | None,
          include_paths: bool) -> Gallery:
    """A Gallery of these tiles of the run: header facts, metrics and confusion of the split, maps, verdicts."""
    facts = gallery.run_facts(run_id)
    periods = labels(run_id)
    image_ids = tiles["image_id"].tolist()
    dataset_id = str(facts.get("dataset_id") or "")
    summary = verdicts.expert_summary([run_id])
    metrics_split = split or "test"
    return Gallery(
        title=title, run_id=run_id, export_id=uuid.uuid4().hex, made_at=datetime.now(UTC).replace(tzinfo=None),
        model=model_words(facts), periods=periods, filter_words=words, tiles=with_verdicts(run_id, tiles),
        metrics=headline_with_bounds(run_id, metrics_split), metrics_split=metrics_split,
        confusion=gallery.confusion(run_id, split), confusion_split=split or "all",
        overlays=overlay_jpegs(dataset_id, tiles, gallery.predicted_maps(run_id, image_ids)),
        experts=experts_with_bounds(run_id, summary),
        include_paths=include_paths, synthetic=bool(facts.get("synthetic")))


def errors_export(f: gallery.GalleryFilter, limit: int, include_paths: bool = False
                  ) -> tuple[Gallery, pd.DataFrame]:
    """The Errors filter's first `limit` images as a gallery, and its tiles (for the CSV)."""
    tiles = gallery.tiles(f.run_id, gallery.export_ids(f, limit))
    words = filter_words(f)
    g = build(f.run_id, tiles, f"Period Eye: {words[0].lower()}{words[1:]} ({f.run_id})", f"{words}, {f.sort}",
              f.split, include_paths)
    return g, g.tiles


def compare_export(right: str, wrong: str, split: str, limit: int, include_paths: bool = False
                   ) -> tuple[Gallery, pd.DataFrame]:
    """The images run `right` classifies correctly and run `wrong` does not, as a gallery of `wrong`'s guesses."""
    tiles = gallery.tiles(wrong, compare.right_wrong_ids(right, wrong, split, "period", limit))
    words = (f"Paintings of the {split} split that run {right} classifies right and this run ({wrong}) wrong; "
             f"this run's most confident mistakes first")
    g = build(wrong, tiles, f"Period Eye: what {wrong} gets wrong and {right} right", words, split, include_paths)
    return g, g.tiles


def gallery_file(g: Gallery) -> bytes:
    return render(g).encode("utf-8")


# OWASP's list of first characters that make a spreadsheet read a cell as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def defuse(value: object) -> object:
    """A text cell a spreadsheet would run as a formula, prefixed with a single quote; anything else as it is."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its text columns defused; numeric columns (a negative number is data) untouched."""
    out = frame.copy()
    for i in range(out.shape[1]):  # by position: a query may repeat a column name
        column = out.iloc[:, i]
        if pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column):
            out.isetitem(i, column.map(defuse))
    return out


def frame_csv(frame: pd.DataFrame) -> bytes:
    """Any table as CSV bytes that a spreadsheet opens without running formulas. Text is quoted: pandas leaves a
    lone carriage return unquoted, and a spreadsheet would start a new row (and a formula) after it."""
    return csv_safe(frame).to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC).encode("utf-8")


def top3(probs: object, order: list[str]) -> list[object]:
    """[top1, p1, top2, p2, top3, p3] from a probability vector in the run's label order (None where missing)."""
    values = np.asarray(probs if probs is not None else [], dtype=float)
    if values.ndim != 1 or len(values) != len(order):
        return [None] * 6
    out: list[object] = []
    for i in np.argsort(-values, kind="stable")[:3]:
        out += [order[i], round(float(values[i]), 4)]
    return out + [None] * (6 - len(out))


def gallery_csv(rows: pd.DataFrame, order: list[str] | None = None) -> bytes:
    """One row per tile: the run, the prediction with its three likeliest periods, the current expert verdict
    (verdict, note, reviewer), and the painting's metadata."""
    out = rows.rename(columns={"author": "reviewer"}).copy()
    if order is not None and "probs" in out:
        tops = pd.DataFrame([top3(p, order) for p in out["probs"]], columns=["top1", "p1", "top2", "p2", "top3", "p3"],
                            index=out.index)
        out = out.drop(columns=[c for c in tops.columns if c in out]).join(tops)
    return frame_csv(out.reindex(columns=CSV_COLUMNS))
