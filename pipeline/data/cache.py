"""Decode every image once into a memory-mapped uint8 array on disk.

Training reads the cache every epoch instead of decoding JPEGs, and a second run on the same
files reuses it. The key covers what shapes the pixels: the source identity, every file's
path, size and mtime, the square size and the thumbnail size; touching one image rebuilds.
Files are written under a temporary name and renamed when complete (pixels first, the index
last), so a killed build leaves no cache that looks valid.

Decoding runs in worker processes, never in this one: a file can make its decoder die (the
out-of-memory killer takes the worker, not the run). A dead worker breaks the pool; the chunks it
took down are decoded again, each alone in a fresh process, and the files of a chunk that kills
again are decoded one per process, so the file that kills is found and recorded as skipped and
every other file is decoded. Nothing waits on a worker that is gone.

Layout under cache_dir: `<name>-<key>-<size>.npy` (uint8, n x size x size x 3, .npy header so
it is self-describing) and `<name>-<key>-<size>.index.npz` (paths, original sizes, thumbnails,
decode failures). Row i of the pixels is the i-th path in sorted order.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
import re
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, as_completed, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from pipeline.data.images import BadImage, decode_square

CACHE_VERSION = 2  # 2: squares resized before padding (pad_resize), large non-JPEGs reduced after decoding
CHUNK = 64  # most images per worker task
WORKER_DIED = "decode worker died (killed, out of memory?)"

Row = tuple[int, int, int, bytes, str]  # cache row, width, height, thumbnail, failure reason ("" = decoded)
Chunk = tuple[str, list[int], list[str], int, int, int | None]  # what _decode_chunk takes


@dataclass
class DecodedImages:
    """The cache of one image list; `decoded` is how many images this call had to decode (0 = reused)."""

    pixels: np.ndarray
    paths: list[str]
    widths: np.ndarray
    heights: np.ndarray
    thumbnails: list[bytes]
    failures: dict[str, str]
    decoded: int
    file: Path

    def index(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.paths)}


def cache_key(paths: list[str], source_id: str, size: int, thumb_size: int) -> str:
    """Hash of everything that shapes the cached pixels and thumbnails."""
    stats = []
    for p in sorted(paths):
        try:
            st = os.stat(p)
            stats.append((p, st.st_size, st.st_mtime_ns))
        except OSError:
            stats.append((p, -1, -1))
    spec = {"version": CACHE_VERSION, "source": source_id, "size": size, "thumb": thumb_size, "files": stats}
    return hashlib.sha1(json.dumps(spec).encode()).hexdigest()[:16]


def load_or_build(
    paths: list[str],
    cache_dir: Path,
    name: str,
    size: int,
    thumb_size: int = 192,
    source_id: str = "",
    progress: bool = True,
    workers: int | None = None,
) -> DecodedImages:
    """Return the decoded cache for `paths`, building it (in parallel) only if it is missing."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    paths = sorted(set(paths))
    if not paths:
        empty = np.zeros((0, size, size, 3), np.uint8)
        return DecodedImages(empty, [], np.zeros(0, np.int64), np.zeros(0, np.int64), [], {}, 0, cache_dir)
    stem = f"{_slug(name)}-{cache_key(paths, source_id, size, thumb_size)}-{size}"
    pixels_file, index_file = cache_dir / f"{stem}.npy", cache_dir / f"{stem}.index.npz"
    cached = _load(pixels_file, index_file, paths, size)
    if cached is not None:
        return cached
    _remove_stale_temps(cache_dir)
    _build(paths, pixels_file, index_file, size, thumb_size, progress, workers or os.cpu_count() or 1)
    built = _load(pixels_file, index_file, paths, size)
    assert built is not None, f"cache {pixels_file} unreadable right after writing it"
    built.decoded = len(paths)
    return built


def _load(pixels_file: Path, index_file: Path, paths: list[str], size: int) -> DecodedImages | None:
    if not (pixels_file.exists() and index_file.exists()):
        return None
    try:
        with np.load(index_file, allow_pickle=False) as idx:
            stored = idx["paths"].tolist()
            widths, heights, reasons = idx["widths"], idx["heights"], idx["reasons"].tolist()
            data, offsets = idx["thumbs"], idx["thumb_offsets"]
        pixels = np.load(pixels_file, mmap_mode="r")
    except (OSError, ValueError, KeyError):
        return None  # unreadable: rebuild
    if stored != paths or pixels.shape != (len(paths), size, size, 3):
        return None
    thumbs = [data[offsets[i] : offsets[i + 1]].tobytes() for i in range(len(paths))]
    failures = {p: r for p, r in zip(paths, reasons, strict=True) if r}
    return DecodedImages(pixels, paths, widths, heights, thumbs, failures, 0, pixels_file)


def _build(paths: list[str], pixels_file: Path, index_file: Path, size: int, thumb_size: int, progress: bool,
           workers: int) -> None:
    n = len(paths)
    tmp_pixels = pixels_file.with_name(f"{pixels_file.name}.tmp-{os.getpid()}")
    tmp_index = index_file.with_name(f"{index_file.name}.tmp-{os.getpid()}")
    out = np.lib.format.open_memmap(tmp_pixels, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    del out  # workers open the file themselves; the header is written
    step = min(CHUNK, max(1, math.ceil(n / (4 * workers))))  # several chunks per worker: balanced, smooth bar
    chunks = [(str(tmp_pixels), list(range(i, min(i + step, n))), paths[i : i + step], size, thumb_size,
               Image.MAX_IMAGE_PIXELS) for i in range(0, n, step)]
    widths, heights = np.zeros(n, np.int64), np.zeros(n, np.int64)
    reasons, thumbs = [""] * n, [b""] * n
    bar = tqdm(total=n, desc=f"decoding {pixels_file.stem}", unit="img", disable=not progress)

    def collect(rows: list[Row]) -> None:
        for i, w, h, thumb, reason in rows:
            widths[i], heights[i], thumbs[i], reasons[i] = w, h, thumb, reason
        bar.update(len(rows))

    try:
        decode_chunks(chunks, max(1, min(workers, len(chunks))), collect)
        offsets = np.zeros(n + 1, np.int64)
        offsets[1:] = np.cumsum([len(t) for t in thumbs])
        with open(tmp_index, "wb") as f:
            np.savez(f, paths=np.array(paths, dtype=str), widths=widths, heights=heights,
                     reasons=np.array(reasons, dtype=str), thumb_offsets=offsets,
                     thumbs=np.frombuffer(b"".join(thumbs), np.uint8))
        os.replace(tmp_pixels, pixels_file)
        os.replace(tmp_index, index_file)
    finally:
        bar.close()
        for tmp in (tmp_pixels, tmp_index):
            tmp.unlink(missing_ok=True)


def decode_chunks(chunks: list[Chunk], workers: int, collect: Callable[[list[Row]], None]) -> None:
    """Decode every chunk in worker processes; every row reaches `collect` once, even if a worker dies.

    Pool first (fast); the chunks a dead worker took down, each alone; then the files of chunks that
    still kill, one per process: the file whose process dies is recorded with WORKER_DIED.
    """
    lost = _pooled(chunks, workers, collect)
    if lost:
        lost = _isolated(lost, workers, collect)
    singles: list[Chunk] = [(file, [i], [path], size, thumb_size, pixel_limit)
                            for file, rows, paths, size, thumb_size, pixel_limit in lost
                            for i, path in zip(rows, paths, strict=True)]
    for single in _isolated(singles, workers, collect):
        collect([(single[1][0], 0, 0, b"", WORKER_DIED)])


def _pooled(chunks: list[Chunk], workers: int, collect: Callable[[list[Row]], None]) -> list[Chunk]:
    """Chunks through one pool; returns those that a dead worker took down (BrokenProcessPool)."""
    lost: list[Chunk] = []
    pool = ProcessPoolExecutor(workers, mp_context=_context())
    try:
        futures: dict[Future, Chunk] = {}
        for chunk in chunks:
            try:
                futures[pool.submit(_decode_chunk, chunk)] = chunk
            except BrokenProcessPool:  # broke while still submitting
                lost.append(chunk)
        for future in as_completed(futures):
            try:
                collect(future.result())
            except BrokenProcessPool:
                lost.append(futures[future])
    finally:
        pool.shutdown(cancel_futures=True)  # on an interrupt, queued chunks are dropped, not decoded first
    return lost


def _isolated(chunks: list[Chunk], workers: int, collect: Callable[[list[Row]], None]) -> list[Chunk]:
    """Each chunk in its own fresh single-worker process, `workers` at a time; returns those whose process died."""
    lost: list[Chunk] = []
    todo = list(reversed(chunks))
    running: dict[Future, tuple[ProcessPoolExecutor, Chunk]] = {}
    try:
        while todo or running:
            while todo and len(running) < workers:
                chunk = todo.pop()
                pool = ProcessPoolExecutor(1, mp_context=_context())
                running[pool.submit(_decode_chunk, chunk)] = (pool, chunk)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                pool, chunk = running.pop(future)
                pool.shutdown()
                try:
                    collect(future.result())
                except BrokenProcessPool:
                    lost.append(chunk)
    finally:
        for pool, _ in running.values():
            pool.shutdown(cancel_futures=True)
    return lost


def _decode_chunk(task: Chunk) -> list[Row]:
    """Worker: decode a chunk straight into the memory-mapped file; failures become reasons."""
    file, rows, paths, size, thumb_size, pixel_limit = task
    Image.MAX_IMAGE_PIXELS = pixel_limit
    out = np.load(file, mmap_mode="r+")
    results = []
    for i, path in zip(rows, paths, strict=True):
        try:
            arr, w, h, thumb = decode_square(path, size, thumb_size)
            out[i] = arr
            results.append((i, w, h, thumb, ""))
        except BadImage as exc:
            results.append((i, 0, 0, b"", str(exc)))
        except Exception as exc:  # never let one file stop the build
            results.append((i, 0, 0, b"", f"unreadable image: {type(exc).__name__}: {exc}"))
    out.flush()
    del out
    return results


def _context() -> mp.context.BaseContext:
    """fork where available: workers start instantly and need nothing but PIL and numpy."""
    return mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()


def _remove_stale_temps(cache_dir: Path) -> None:
    """Delete temp files of builds whose process is gone (a killed build); live builds keep theirs."""
    for tmp in cache_dir.glob("*.tmp-*"):
        pid = tmp.name.rpartition(".tmp-")[2]
        if not pid.isdigit() or not process_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (a temporary file named after a dead writer may be removed)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "data"
