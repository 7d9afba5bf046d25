"""One call from a data config to everything training needs: labelled rows, splits, cached pixels.

Flow: source table → content hash + de-duplication → decode into the cache → near-copies (if asked) → splits →
thumbnails. Every row that drops out on the way is recorded in `skipped` with its file, CSV
row, stage and a reason, and a short summary is printed, so bad input is never silent.
Only input that is unusable as a whole raises ConfigError.

A dataset version is its content: the id is the config's key plus a digest of every image's id, bytes, labels
and split, so a folder that changed is a new version (and stored runs keep pointing at theirs).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import SupportsInt

import numpy as np
import pandas as pd

from pipeline.config import DEFAULT_SHARED, ConfigError, DataConfig
from pipeline.data.cache import load_or_build
from pipeline.data.corrections import apply_corrections
from pipeline.data.dedup import content_hash, cross_source_copies, deduplicate
from pipeline.data.images import file_problem
from pipeline.data.near_copies import COLUMNS as NEAR_COLUMNS
from pipeline.data.near_copies import MODEL_DETECTORS, LinkFinder, find_near_copies
from pipeline.data.sources import KNOWN_ORDERS, SOURCES
from pipeline.data.splits import assign_source_splits, assign_splits
from pipeline.data.tables import SourceTable, keep_known_periods, skip

IMAGE_COLUMNS = ["image_id", "path", "period", "artist", "title", "date", "split", "content_hash", "width", "height",
                 "cache_index", "thumbnail", "source"]  # source: the collection's name with data.sources, else None
SKIPPED_COLUMNS = ["path", "row", "reason", "stage"]
VERSION_COLUMNS = ["image_id", "content_hash", "period", "artist", "split"]  # what a run trains and is scored on
_KIND = re.compile(r":| \(")  # a reason's kind is the text before its details


@dataclass
class PreparedData:
    """A dataset ready for training; `decoded` counts images decoded by this call (0: cache reused)."""

    dataset_id: str
    name: str
    config: DataConfig
    images: pd.DataFrame
    skipped: pd.DataFrame
    duplicates: pd.DataFrame
    periods: list[str]
    artists: list[str]
    pixels: np.ndarray
    synthetic: bool
    decoded: int = 0
    corrections: dict | None = None  # what experts' corrections did (pipeline/data/corrections.py); None: off
    near_copies: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=NEAR_COLUMNS))
    near_seconds: float = 0.0  # time of the near-copy step (0: off)


def prepare(cfg: DataConfig, cache_dir: Path, progress: bool = True, store: str | Path | None = None,
            similar: LinkFinder | None = None) -> PreparedData:
    """Load, clean, de-duplicate, decode (cached), group near-copies and split the dataset described by `cfg`;
    `store` is where experts' annotations are read when `cfg.corrections` applies them; `similar` gives extra
    near-copy links from the cached pixels (the embedding detector needs a model: pipeline.similar_images), and
    is required when `cfg.near_copies` asks for embeddings."""
    cache_dir = Path(cache_dir)
    source = load_source(cfg, cache_dir)
    skipped = list(source.skipped)
    df = source.images.copy()

    hashes, reasons = _hash_all(df["path"].tolist())
    df["content_hash"] = hashes
    skipped += [skip(r.path, _row(r.row), reason, "decode")
                for r, reason in zip(df.itertuples(), reasons, strict=True) if reason]
    df = df[df["content_hash"].notna()]
    df, correction_skips, applied = apply_corrections(df, cfg.corrections, store)
    skipped += correction_skips
    df, copies = cross_source_copies(df, source_priority(cfg)) if cfg.sources else (df, df.iloc[:0])

    df, dup_skips, duplicates = deduplicate(df)
    skipped += dup_skips

    cache = load_or_build(df["path"].tolist(), cache_dir, cfg.dataset_name, cfg.resize, cfg.thumbnail_size,
                          _source_id(cfg), progress)
    bad = df["path"].isin(cache.failures)
    skipped += [skip(r.path, _row(r.row), cache.failures[r.path], "decode") for r in df[bad].itertuples()]
    df = df[~bad].copy()
    where = cache.index()
    df["cache_index"] = df["path"].map(where).astype(np.int64)
    df["width"] = cache.widths[df["cache_index"].to_numpy()].astype(int)
    df["height"] = cache.heights[df["cache_index"].to_numpy()].astype(int)

    near, near_seconds = _near_copies(df, cache.pixels, cfg, similar)
    df["near_group"] = df["image_id"].astype(str).map(near.set_index("image_id")["group_id"])
    if cfg.sources:
        df, split_skips = assign_source_splits(df, cfg.split, {s.name or "": s.splits for s in cfg.sources})
        skipped += _copy_skips(copies, df)
    else:
        df, split_skips = assign_splits(df, cfg.split)
    skipped += split_skips
    near = near[near["image_id"].isin(df["image_id"].astype(str))].reset_index(drop=True)
    if df.empty:
        why = _skip_summary(skipped).replace("\n", "; ")
        raise ConfigError(f"no usable images in {cfg.path or cfg.source}: {why}")
    df["thumbnail"] = [cache.thumbnails[i] for i in df["cache_index"]]
    images = df[IMAGE_COLUMNS].sort_values("image_id").reset_index(drop=True)
    artists = sorted({a for a in images["artist"] if isinstance(a, str) and a})
    data = PreparedData(
        dataset_id=dataset_version(cfg.key(), images),
        name="demo (synthetic)" if cfg.source == "demo" else cfg.dataset_name,
        config=cfg,
        images=images,
        skipped=_skipped_frame(skipped),
        duplicates=duplicates.reset_index(drop=True),
        periods=period_order(set(images["period"]), cfg.period_order),
        artists=artists,
        pixels=cache.pixels,
        synthetic=source.synthetic,
        decoded=cache.decoded,
        corrections=None if applied.label_wrong == "off" else applied.record(),
        near_copies=near,
        near_seconds=near_seconds,
    )
    print(summary(data))
    return data


def _near_copies(df: pd.DataFrame, pixels: np.ndarray, cfg: DataConfig, similar: LinkFinder | None
                 ) -> tuple[pd.DataFrame, float]:
    """Near-copy groups of the configured detectors (none when off), and the step's seconds."""
    detectors = cfg.near_copies.detectors
    if not detectors:
        return pd.DataFrame(columns=NEAR_COLUMNS), 0.0
    needs_model = sorted(MODEL_DETECTORS & set(detectors))
    if needs_model and similar is None:
        raise ConfigError(f"data.near_copies.detectors includes {needs_model}, which need a model: prepare through "
                          "pipeline.experiment (or pass `similar`), or drop them")
    start = time.perf_counter()
    near = find_near_copies(df, pixels, cfg.near_copies, similar if needs_model else None)
    return near, time.perf_counter() - start


def load_source(cfg: DataConfig, work_dir: Path) -> SourceTable:
    """Read the configured source(s) through the registry into one table with a `source` column (the collection's
    name with `data.sources`, else None); `work_dir` is where a generated (demo) set is written."""
    if cfg.sources:
        table = _load_sources(cfg, work_dir)
    else:
        table = _read(cfg.source, cfg.path, cfg.subset, work_dir)
        table.images["source"] = None
    if cfg.period_order:
        table = keep_known_periods(table, list(cfg.period_order))
    return table


def _read(kind: str, where: str | None, subset: str | None, work_dir: Path) -> SourceTable:
    source = SOURCES.get(kind)
    if source is None:
        raise ConfigError(f"unknown data source {kind!r}; use one of {', '.join(SOURCES)}")
    if source.generated:
        path = Path(where) if where else Path(work_dir) / kind
    else:
        if not where:
            raise ConfigError(f"data.path is required for source {kind!r}")
        path = Path(where).expanduser()
        if not path.exists():
            raise ConfigError(f"data path {path} does not exist (source {kind!r})")
    return source.read(path, subset, shared_dir())


def source_priority(cfg: DataConfig) -> list[str]:
    """Source names in the order a painting found in several is kept: those that may go to every split first
    (so the main collection's own test split stays as it is alone), then as listed."""
    ranked = sorted(range(len(cfg.sources)), key=lambda i: (cfg.sources[i].splits is not None, i))
    return [cfg.sources[i].name or "" for i in ranked]


def _load_sources(cfg: DataConfig, work_dir: Path) -> SourceTable:
    """Every source's table, stacked; an image id another source already has gets this source's name in front
    (`<name>/<id>`), sources taken in `source_priority` order so the main collection's ids never change."""
    tables: dict[str, pd.DataFrame] = {}
    skipped: list[dict] = []
    synthetic, taken = False, set[str]()
    by_name = {s.name: s for s in cfg.sources}
    for name in source_priority(cfg):
        spec = by_name[name]
        table = _read(spec.source or "", spec.path, None, work_dir / name)
        images = table.images.copy()
        clash = images["image_id"].isin(taken)
        images.loc[clash, "image_id"] = name + "/" + images.loc[clash, "image_id"].astype(str)
        taken |= set(images["image_id"])
        images["source"] = name
        tables[name] = images
        skipped += table.skipped
        synthetic = synthetic or table.synthetic
    images = pd.concat([tables[s.name or ""] for s in cfg.sources], ignore_index=True)
    return SourceTable(images, skipped, synthetic)


def _copy_skips(copies: pd.DataFrame, kept: pd.DataFrame) -> list[dict]:
    """Skip rows for the copies set aside across sources, saying which split the kept painting went to."""
    where = kept.set_index("image_id")["split"]
    return [skip(r.path, _row(r.row), f"copy of a {where[r.kept_as]} image in {r.kept_in}" if r.kept_as in where
                 else f"copy of an image in {r.kept_in} (not kept there either)", "duplicate")
            for r in copies.itertuples(index=False)]


def shared_dir() -> Path:
    """The shared real datasets ($PAINTINGS_SHARED, default ../shared/datasets)."""
    return Path(os.environ.get("PAINTINGS_SHARED", str(DEFAULT_SHARED)))


def content_digest(images: pd.DataFrame) -> str:
    """sha1 of the rows' ids, content hashes, labels and splits, whatever their order (stored rows give the same)."""
    rows = images[VERSION_COLUMNS].astype(object)
    rows = rows.where(rows.notna(), "")
    lines = sorted("\t".join(str(v) for v in r) for r in rows.itertuples(index=False))
    return hashlib.sha1("\n".join(lines).encode()).hexdigest()


def dataset_version(key: str, images: pd.DataFrame) -> str:
    """`<config key>-<content digest>`: one id per config and content; a changed folder gets a new one."""
    return f"{key}-{content_digest(images)[:8]}"


def check_trainable(data: PreparedData, where: str) -> None:
    """Refuse, before any training, data a classifier cannot learn from or be scored on (one line, naming it)."""
    images = data.images
    periods = sorted(images["period"].unique())
    skipped = f"; {len(data.skipped)} file(s) skipped (see `python -m pipeline prepare`)" if len(data.skipped) else ""
    if len(periods) < 2:
        raise ConfigError(
            f"{where}: fewer than 2 periods after preparation (only {periods[0]!r}, {len(images)} images{skipped}); "
            "a classifier needs at least 2: add images of other periods (ImageFolder: one folder per period)")
    split = data.config.split if data.config is not None else None
    how = f" (split {split.mode}, val={split.val}, test={split.test})" if split is not None else ""
    untrained = sorted(set(periods) - set(images.loc[images["split"] == "train", "period"]))
    if untrained:
        raise ConfigError(f"{where}: no training images for period(s) {untrained}{how}; add images of them or "
                          "lower the val/test share")
    if not (images["split"] == "test").any():
        raise ConfigError(f"{where}: no test images{how}, so no run could be scored; set data.split.test above 0")


def period_order(labels: set[str], given: list[str] | None = None) -> list[str]:
    """Class order: the configured one, else a known chronology containing every label (a source's own or a named
    set's, `KNOWN_ORDERS`), else sorted."""
    if given:
        return [p for p in given if p in labels]
    for order in KNOWN_ORDERS.values():
        if labels <= set(order):
            return [p for p in order if p in labels]
    return sorted(labels)


def summary(data: PreparedData) -> str:
    """A few lines for the run log: sizes, split counts, skips by reason, duplicates."""
    splits = data.images["split"].value_counts()
    lines = [
        f"prepared {data.name} [{data.dataset_id}]: {len(data.images)} images, {len(data.periods)} periods, "
        f"{len(data.artists)} artists (train {splits.get('train', 0)} / val {splits.get('val', 0)} / "
        f"test {splits.get('test', 0)}); decoded {data.decoded} (0 = cache reused)"
    ]
    if data.images["source"].notna().any():
        per = data.images.groupby(["source", "split"]).size().unstack(fill_value=0)
        lines += [f"  source {name}: {int(row.sum())} images (" + " / ".join(
            f"{s} {int(row.get(s, 0))}" for s in ("train", "val", "test")) + ")" for name, row in per.iterrows()]
    if len(data.duplicates):
        groups = data.duplicates.groupby("content_hash")["conflict"].first()
        lines.append(f"exact duplicates: {len(groups)} groups of identical files, {int(groups.sum())} with "
                     f"conflicting labels (excluded)")
    if len(data.near_copies):
        near = data.near_copies.groupby("group_id")["conflict"].first()
        kinds = ", ".join(f"{k} {n}" for k, n in data.near_copies["kind"].value_counts().items())
        per_1000 = 1000 * data.near_seconds / max(1, len(data.images))
        lines.append(f"near-copies: {len(near)} groups of {len(data.near_copies)} images ({kinds}), "
                     f"{int(near.sum())} with conflicting labels (kept, one split each); "
                     f"{data.near_seconds:.1f} s ({per_1000:.2f} s per 1,000 images)")
    lines.append(_skip_summary(data.skipped.to_dict("records")))
    return "\n".join(lines)


def _skip_summary(skipped: list[dict]) -> str:
    if not skipped:
        return "skipped: none"
    kinds = pd.Series([f"{s['stage']}: {_KIND.split(s['reason'], maxsplit=1)[0]}" for s in skipped])
    counts = kinds.value_counts()
    return f"skipped {len(skipped)}:\n" + "\n".join(f"  {n:6d}  {kind}" for kind, n in counts.items())


def _hash_all(paths: list[str]) -> tuple[list[str | None], list[str | None]]:
    """Content hashes (threads: it is I/O); missing, empty or unreadable files get a reason instead."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(_hash_one, paths))
    return [h for h, _ in results], [r for _, r in results]


def _hash_one(path: str) -> tuple[str | None, str | None]:
    problem = file_problem(path)  # missing, a symlink loop, a directory, empty: named as the decoder names them
    if problem:
        return None, problem
    try:
        return content_hash(Path(path)), None
    except OSError as exc:
        return None, f"unreadable file: {exc.strerror or exc}"


def _source_id(cfg: DataConfig) -> str:
    if cfg.sources:
        return "+".join(f"{s.source}|{Path(s.path).expanduser().resolve()}|{s.name}" for s in cfg.sources)
    where = str(Path(cfg.path).expanduser().resolve()) if cfg.path else "generated"
    return f"{cfg.source}|{where}|{cfg.subset}"


def _row(value: SupportsInt | None) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _skipped_frame(skipped: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame.from_records(skipped, columns=SKIPPED_COLUMNS)
    df["row"] = pd.array([_row(v) for v in df["row"]], dtype="Int64")
    return df.astype({"path": str, "reason": str, "stage": str})
