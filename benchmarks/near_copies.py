"""Near-copy detection: precision and recall per kind of copy (phash, embeddings), and its time per 1,000 images.

A labelled set from real shared paintings (wikiart-styles): each original gets re-encodes (JPEG quality 30-90),
resizes (50-200 %), details (crops of 30-70 % of the painting's area) and small colour/brightness shifts; other
paintings of the same styles are the negatives. It is prepared as the pipeline does (ImageFolder, cache at 160 px),
then every threshold is scored on the same hashes and features: recall = share of copies of a kind linked to their
original; precision = share of all links that join two images of one work. Then, on the 7,000 WikiArt paintings
with the seeded split of configs/wikiart-styles.yaml: how many near-copy groups that split puts on both sides, and
the step's time per 1,000 images (phash from the decoded cache against from the files).

    .venv/bin/python -m benchmarks.near_copies [--full]
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance

from benchmarks import common
from pipeline.config import DataConfig, NearCopyConfig, SplitConfig
from pipeline.data.near_copies import cache_hashes, file_hashes, group_links, hash_links, similar_pairs, straddling
from pipeline.data.prepare import PreparedData, prepare
from pipeline.similar_images import embed_cached

NAME = "near copies"
KINDS = ("reencode", "resize", "detail", "colour")
PHASH_DISTANCES = (4, 6, 8, 10, 12, 14, 16)
SIMILARITIES = (0.80, 0.85, 0.88, 0.90, 0.92, 0.95)
CHOSEN_DISTANCE, CHOSEN_SIMILARITY = NearCopyConfig.phash_distance, NearCopyConfig.embedding_similarity
RESIZE = 160  # configs/wikiart-styles.yaml's cache size


@dataclasses.dataclass
class Settings:
    originals: int  # per style
    negatives: int  # per style
    per_kind: int  # copies of each kind per original


QUICK = Settings(originals=6, negatives=30, per_kind=1)
FULL = Settings(originals=20, negatives=140, per_kind=2)


def painting_box(img: Image.Image) -> Image.Image:
    """The painting without the shared set's black letterbox bars."""
    box = img.convert("L").point(lambda v: 255 if v > 12 else 0).getbbox()
    return img.crop(box) if box else img


def make_copy(img: Image.Image, kind: str, rng: np.random.Generator) -> tuple[Image.Image, int]:
    """One near-copy of `img` of the given kind, and the JPEG quality to save it at."""
    w, h = img.size
    if kind == "reencode":
        return img, int(rng.integers(30, 91))
    if kind == "resize":
        s = float(rng.uniform(0.5, 2.0))
        return img.resize((max(8, round(w * s)), max(8, round(h * s))), Image.Resampling.BICUBIC), 92
    if kind == "detail":
        share = float(rng.uniform(0.3, 0.7))
        aspect = float(rng.uniform(0.8, 1.25))
        cw = min(w, round(w * np.sqrt(share) * np.sqrt(aspect)))
        ch = min(h, round(w * h * share / max(cw, 1)))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return img.crop((x, y, x + cw, y + ch)), 92
    bright, colour = float(rng.uniform(0.85, 1.15)), float(rng.uniform(0.85, 1.15))
    return ImageEnhance.Color(ImageEnhance.Brightness(img).enhance(bright)).enhance(colour), 92


def write_labelled_set(source: Path, out: Path, originals: int, negatives: int, per_kind: int, seed: int = 0
                       ) -> pd.DataFrame:
    """An ImageFolder of originals, their copies and negatives under `out`; returns (image_id, work, kind) where
    image_id is the path relative to `out` (the ImageFolder reader's id) and kind is 'original' or 'negative'."""
    rng = np.random.default_rng(seed)
    rows = []
    for style in sorted(p.name for p in source.iterdir() if p.is_dir()):
        files = sorted((source / style).glob("*.jpg"))
        picked = [files[i] for i in rng.permutation(len(files))[:originals + negatives]]
        (out / style).mkdir(parents=True, exist_ok=True)
        for n, path in enumerate(picked):
            work = f"{style}/{path.stem}"
            img = Image.open(path).convert("RGB")
            img.save(out / style / path.name, quality=95)
            rows.append({"image_id": f"{work}.jpg", "work": work, "kind": "original" if n < originals else "negative"})
            if n >= originals:
                continue
            painting = painting_box(img)
            for kind in KINDS:
                for k in range(per_kind):
                    copy, quality = make_copy(painting, kind, rng)
                    name = f"{path.stem}__{kind}{k}.jpg"
                    copy.save(out / style / name, quality=quality)
                    rows.append({"image_id": f"{style}/{name}", "work": work, "kind": kind})
    return pd.DataFrame(rows)


def prepared(root: Path, split: SplitConfig | None = None) -> PreparedData:
    cfg = DataConfig(source="imagefolder", path=str(root), resize=RESIZE, crop=RESIZE - 16,
                     split=split or SplitConfig())
    with common.quiet():
        return prepare(cfg, common.CACHE_DIR, progress=False)


def scores(data: PreparedData, truth: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float]]:
    """Precision/recall per detector and threshold, and seconds per 1,000 images of each way of hashing."""
    images = data.images.merge(truth, on="image_id")
    ids, rows = images["image_id"].tolist(), images["cache_index"].to_numpy()
    seconds = {}
    t = time.perf_counter()
    hashes = cache_hashes(data.pixels, rows)
    seconds["phash from the cache"] = time.perf_counter() - t
    t = time.perf_counter()
    file_hashes(images["path"])
    seconds["phash from the files"] = time.perf_counter() - t
    t = time.perf_counter()
    features = embed_cached(data.pixels, rows)
    seconds["embedding (efficientnet_lite0, CPU)"] = time.perf_counter() - t
    per_1000 = {k: 1000 * v / len(ids) for k, v in seconds.items()}

    work = dict(zip(ids, images["work"], strict=True))
    position = {i: n for n, i in enumerate(ids)}
    original = {w: position[i] for i, w, k in zip(ids, images["work"], images["kind"], strict=True)
                if k == "original"}
    copies = images[images["kind"].isin(KINDS)]
    a = copies["image_id"].map(position).to_numpy()
    b = copies["work"].map(original).to_numpy()
    distance = np.bitwise_count(hashes[a] ^ hashes[b])
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    cosine = np.sum(unit[a] * unit[b], axis=1)

    out = []
    candidates = {"phash": hash_links(ids, hashes, max(PHASH_DISTANCES)),
                  "embedding": similar_pairs(ids, features, min(SIMILARITIES))}
    for detector, thresholds in (("phash", PHASH_DISTANCES), ("embedding", SIMILARITIES)):
        links = candidates[detector]
        score = np.array([s for *_, s in links])
        same = np.array([work[x] == work[y] for x, y, *_ in links])
        for th in thresholds:
            cut = 1 - th / 64 if detector == "phash" else th
            linked = (distance <= th) if detector == "phash" else (cosine >= th)
            kept = score >= cut - 1e-9
            row = {"detector": detector, "threshold": th,
                   "precision": float(same[kept].mean()) if kept.any() else 1.0,
                   "false links": int((~same[kept]).sum())}
            for kind in KINDS:
                row[f"recall {kind}"] = float(linked[(copies["kind"] == kind).to_numpy()].mean())
            out.append(row)
    return pd.DataFrame(out), per_1000


def wikiart_straddle(embeddings: bool) -> list[list[object]]:
    """Near-copy groups of the 7,000 paintings at the chosen thresholds, and how many the seeded split divides
    (embeddings of all 7,000 take minutes on a CPU: --full only)."""
    data = prepared(common.paintings_root(), SplitConfig(mode="fractions", val=0.2, test=0.2, seed=0))
    images = data.images
    ids, rows = images["image_id"].tolist(), images["cache_index"].to_numpy()
    split = images.set_index("image_id")["split"]
    t = time.perf_counter()
    phash = hash_links(ids, cache_hashes(data.pixels, rows), CHOSEN_DISTANCE)
    t_phash = time.perf_counter() - t
    runs = [("phash", phash, t_phash)]
    if embeddings:
        t = time.perf_counter()
        embedding = similar_pairs(ids, embed_cached(data.pixels, rows), CHOSEN_SIMILARITY)
        t_embedding = time.perf_counter() - t
        runs += [("embedding", embedding, t_embedding), ("both", phash + embedding, t_phash + t_embedding)]
    out = []
    for name, links, seconds in runs:
        groups = group_links(images, links)
        n_groups = groups["group_id"].nunique()
        conflicts = groups.groupby("group_id")["conflict"].first().sum() if n_groups else 0
        out.append([name, n_groups, len(groups), int(conflicts), straddling(groups, split),
                    f"{1000 * seconds / len(ids):.1f}"])
    return out


def run(quick: bool = True) -> list[dict]:
    s = QUICK if quick else FULL
    root = common.REPO / "artifacts" / "bench-near" / ("quick" if quick else "full")
    truth_file = root / "truth.csv"
    if not truth_file.exists():
        truth = write_labelled_set(common.paintings_root(), root / "images", s.originals, s.negatives, s.per_kind)
        truth.to_csv(truth_file, index=False)
    truth = pd.read_csv(truth_file)
    data = prepared(root / "images")
    table, per_1000 = scores(data, truth)
    n = truth["kind"].value_counts().to_dict()
    common.table(f"Near-copy detection on {len(truth)} real-painting images ({n})",
                 list(table.columns), [[f"{v:.3f}" if isinstance(v, float) else v for v in r]
                                       for r in table.itertuples(index=False)])
    common.table("Time per 1,000 images", ["step", "seconds"], [[k, f"{v:.2f}"] for k, v in per_1000.items()])
    straddle = wikiart_straddle(embeddings=not quick)
    common.table(f"WikiArt 7,000, seeded split (fractions 0.2/0.2, seed 0), phash <= {CHOSEN_DISTANCE} bits, "
                 f"cosine >= {CHOSEN_SIMILARITY}",
                 ["detector", "groups", "images", "groups with conflicting labels", "groups on both sides",
                  "s per 1,000 images"], straddle)
    ratio = per_1000["phash from the files"] / per_1000["phash from the cache"]
    return [common.result(NAME, "phash from the cache vs from the files", ratio, None, "x",
                          note="speed-up of hashing the decoded cache")]


if __name__ == "__main__":
    common.standalone(run, __doc__, "20 originals per style, 2 copies of each kind, 140 negatives per style")
