"""Near-copies and details of one work, found before splitting so they all land in one split.

Exact copies share a content hash (dedup.py). A re-encoded, resized or re-cropped scan of the same painting does
not, yet in train and test at once it inflates test accuracy just the same. Three detectors give links between
images, each with a score in [0, 1]:

- `phash`: imagehash's perceptual hash of the decoded (cached) square; re-encodes, resizes, small colour shifts;
- `title`: the Historic Art layout's "(detail)" rule: same artist, titles equal once "detail" marks are removed;
- extra links from a caller (the `embedding` and `local` detectors, pipeline/similar_images.py: they need a model,
  and data code never imports one), for details and stronger colour shifts.

Links are joined by union-find into groups named after their smallest image id. A group's labels may disagree:
that is reported (`conflict`), never resolved here; the splitter keeps the group together under its majority label.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

import imagehash
import numpy as np
import pandas as pd
from PIL import Image

from pipeline.config import NearCopyConfig

Link = tuple[str, str, str, float]  # image id, image id, kind ("phash" | "embedding" | "local" | "title"), score
MODEL_DETECTORS = frozenset({"embedding", "local"})  # detectors that need a model: the caller's LinkFinder runs them
LinkFinder = Callable[[pd.DataFrame, np.ndarray], list[Link]]  # (images with cache_index, cached pixels) -> links
COLUMNS = ["group_id", "image_id", "kind", "score", "period", "conflict"]
HASH_BITS = 64
_DETAIL = re.compile(r"\(\s*details?\b[^)]*\)|\bdetails?\b(\s*(of|no\.?|\d+))*", re.IGNORECASE)
_NOISE = re.compile(r"[\s,;:.\-_()\[\]]+")


def phash_of(image: Image.Image) -> int:
    """The 64-bit perceptual hash (DCT of an 8x8 low-frequency block) as an int."""
    return int(str(imagehash.phash(image)), 16)


def cache_hashes(pixels: np.ndarray, rows: Sequence[int]) -> np.ndarray:
    """phash of each cached square (uint64): the cache is already decoded, so no JPEG is read again."""
    return np.array([phash_of(Image.fromarray(np.asarray(pixels[i]))) for i in rows], dtype=np.uint64)


def file_hashes(paths: Iterable[str]) -> np.ndarray:
    """phash of each file as decoded from disk (the slower way; benchmarks/near_copies.py compares the two)."""
    out = []
    for p in paths:
        with Image.open(p) as img:
            out.append(phash_of(img.convert("RGB")))
    return np.array(out, dtype=np.uint64)


def hash_links(ids: Sequence[str], hashes: np.ndarray, max_distance: int, chunk: int = 256) -> list[Link]:
    """Every pair within `max_distance` differing bits (all pairs, in blocks: 33,600 images is 0.6 G pairs)."""
    ids = list(ids)
    links: list[Link] = []
    h = np.asarray(hashes, dtype=np.uint64)
    for start in range(0, len(h), chunk):
        block = h[start:start + chunk]
        distance = np.bitwise_count(block[:, None] ^ h[None, :])
        a, b = np.nonzero(distance <= max_distance)
        a = a + start
        keep = b > a
        for i, j in zip(a[keep], b[keep], strict=True):
            links.append((ids[i], ids[j], "phash", 1.0 - float(distance[i - start, j]) / HASH_BITS))
    return links


def similar_pairs(ids: Sequence[str], vectors: np.ndarray, threshold: float, kind: str = "embedding",
                  chunk: int = 512) -> list[Link]:
    """Every pair whose cosine similarity is at least `threshold` (blocked matrix products, no index needed)."""
    ids = list(ids)
    v = np.asarray(vectors, dtype=np.float32)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    links: list[Link] = []
    for start in range(0, len(v), chunk):
        sim = v[start:start + chunk] @ v.T
        a, b = np.nonzero(sim >= threshold)
        a = a + start
        keep = b > a
        for i, j in zip(a[keep], b[keep], strict=True):
            links.append((ids[i], ids[j], kind, min(1.0, float(sim[i - start, j]))))
    return links


def nearest(vectors: np.ndarray, k: int, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Each row's `k` most cosine-similar other rows, most similar first: (indices (n, k), similarities (n, k)).

    Blocked matrix products with argpartition: benchmarks/nearest_neighbours.py measured it against DuckDB's
    array_cosine_similarity and faiss-cpu at 33,600 x 1280."""
    v = np.asarray(vectors, dtype=np.float32)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    n = len(v)
    k = min(k, n - 1)
    index, similarity = np.zeros((n, max(k, 0)), np.int64), np.zeros((n, max(k, 0)), np.float32)
    if k <= 0:
        return index, similarity
    for start in range(0, n, chunk):
        sim = v[start:start + chunk] @ v.T
        rows = np.arange(len(sim))
        sim[rows, rows + start] = -np.inf  # never its own neighbour
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1, kind="stable")
        index[start:start + len(sim)] = np.take_along_axis(top, order, axis=1)
        similarity[start:start + len(sim)] = np.take_along_axis(sim, index[start:start + len(sim)], axis=1)
    return index, similarity


def neighbour_pairs(index: np.ndarray) -> list[tuple[int, int]]:
    """The unordered pairs (i < j) where either is among the other's neighbours, sorted."""
    n, k = index.shape
    a = np.repeat(np.arange(n), k)
    b = index.ravel()
    pairs = np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1), axis=0)
    return [(int(i), int(j)) for i, j in pairs if i != j]


def base_title(title: object) -> tuple[str, bool]:
    """A title without its detail marks, normalised, and whether it had one ("Garden (detail 2)" -> "garden")."""
    text = str(title) if isinstance(title, str) else ""
    stripped = _DETAIL.sub(" ", text)
    return _NOISE.sub(" ", stripped).strip().lower(), stripped != text


def title_links(images: pd.DataFrame) -> list[Link]:
    """Details and their whole work: same artist, same title once detail marks are removed, at least one marked.

    Two undetailed works of one title stay apart unless a detail of that title links them (then they may well be
    one work: the group is kept together, which only costs a split a little freedom)."""
    if "title" not in images.columns or "artist" not in images.columns:
        return []
    rows = images[images["artist"].notna() & images["title"].notna()]
    parsed = [base_title(t) for t in rows["title"]]
    frame = pd.DataFrame({"image_id": rows["image_id"].astype(str).to_numpy(), "artist": rows["artist"].to_numpy(),
                          "base": [b for b, _ in parsed], "detail": [d for _, d in parsed]})
    frame = frame[frame["base"] != ""]
    links: list[Link] = []
    for _, members in frame.groupby(["artist", "base"], sort=True):
        if len(members) > 1 and members["detail"].any():
            ids = sorted(members["image_id"])
            links += [(ids[0], other, "title", 1.0) for other in ids[1:]]
    return links


def group_links(images: pd.DataFrame, links: list[Link], label_col: str = "period") -> pd.DataFrame:
    """One row per image in a group of two or more: its group (smallest member id), the kind and score of its
    strongest link, its label, and whether the group's labels disagree."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    best: dict[str, tuple[float, str]] = {}
    for a, b, kind, score in links:
        if a == b:
            continue
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
        for x in (a, b):
            if x not in best or score > best[x][0]:
                best[x] = (score, kind)
    if not best:
        return pd.DataFrame(columns=COLUMNS).astype({"score": float, "conflict": bool})
    labels = images.set_index(images["image_id"].astype(str))[label_col]
    ids = sorted(i for i in best if i in labels.index)
    out = pd.DataFrame({"group_id": [find(i) for i in ids], "image_id": ids,
                        "kind": [best[i][1] for i in ids], "score": [best[i][0] for i in ids],
                        "period": labels.loc[ids].to_numpy()})
    out["conflict"] = out.groupby("group_id")["period"].transform("nunique") > 1
    return out.sort_values(["group_id", "image_id"]).reset_index(drop=True)[COLUMNS]


def find_near_copies(images: pd.DataFrame, pixels: np.ndarray, cfg: NearCopyConfig,
                     extra: LinkFinder | None = None) -> pd.DataFrame:
    """The configured detectors over `images` (with `cache_index` rows into `pixels`), grouped (group_links)."""
    links: list[Link] = []
    ids = images["image_id"].astype(str).tolist()
    if "phash" in cfg.detectors:
        links += hash_links(ids, cache_hashes(pixels, images["cache_index"].tolist()), cfg.phash_distance)
    if "title" in cfg.detectors:
        links += title_links(images)
    if extra is not None:
        links += extra(images, pixels)
    return group_links(images, links)


def straddling(groups: pd.DataFrame, splits: pd.Series) -> int:
    """How many groups have members in more than one split (`splits`: image id -> split)."""
    if groups.empty:
        return 0
    where = groups["image_id"].map(splits)
    return int((where.groupby(groups["group_id"]).nunique() > 1).sum())
