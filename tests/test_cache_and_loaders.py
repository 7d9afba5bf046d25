"""The decoded-image cache (built once, reused, atomic), the batch transform and the loaders."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import DataConfig
from pipeline.data.cache import load_or_build
from pipeline.data.images import decode_square, open_rgb
from pipeline.data.loaders import CachedImages, make_loader
from pipeline.data.prepare import prepare
from pipeline.data.transforms import BatchTransform, reference_transform
from tests.conftest import painting


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "set"
    for label in ("Baroque", "Rococo"):
        (root / label).mkdir(parents=True)
        for i in range(6):
            painting(40 + 7 * i, 30 + 5 * i, seed=i + 10 * len(label)).save(root / label / f"{i}.jpg")
    return root


def cache_files(cache_dir: Path) -> list[Path]:
    return sorted(p for p in cache_dir.iterdir() if p.suffix in (".npy", ".npz"))


def test_cache_is_built_once_and_reused(folder: Path, tmp_path: Path) -> None:
    cfg = DataConfig(source="imagefolder", path=str(folder), resize=32, crop=28)
    cache_dir = tmp_path / "cache"
    first = prepare(cfg, cache_dir, progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in cache_files(cache_dir)}
    second = prepare(cfg, cache_dir, progress=False)

    assert first.decoded == 12 and second.decoded == 0
    assert {p: p.stat().st_mtime_ns for p in cache_files(cache_dir)} == stamps
    assert isinstance(second.pixels, np.memmap) and second.pixels.shape == (12, 32, 32, 3)
    assert np.array_equal(first.pixels, second.pixels)
    assert first.images.drop(columns="thumbnail").equals(second.images.drop(columns="thumbnail"))
    assert list(first.images["thumbnail"]) == list(second.images["thumbnail"])
    row = first.images.iloc[3]
    expected = decode_square(row["path"], 32)[0]
    assert np.array_equal(second.pixels[row["cache_index"]], expected)

    painting(50, 50, seed=99).save(folder / "Rococo" / "0.jpg")  # a changed image invalidates the cache
    os.utime(folder / "Rococo" / "0.jpg", ns=(1, 1))
    assert prepare(cfg, cache_dir, progress=False).decoded == 12


def test_parallel_build_matches_serial(folder: Path, tmp_path: Path) -> None:
    paths = sorted(str(p) for p in folder.rglob("*.jpg"))
    serial = load_or_build(paths, tmp_path / "a", "s", 24, thumb_size=16, progress=False, workers=1)
    parallel = load_or_build(paths, tmp_path / "b", "s", 24, thumb_size=16, progress=False, workers=2)
    assert serial.decoded == parallel.decoded == len(paths)
    assert np.array_equal(serial.pixels, parallel.pixels) and serial.thumbnails == parallel.thumbnails
    assert (serial.widths == parallel.widths).all() and serial.failures == parallel.failures == {}


def test_partial_or_leftover_files_are_not_trusted(folder: Path, tmp_path: Path) -> None:
    paths = sorted(str(p) for p in folder.rglob("*.jpg"))
    cache_dir = tmp_path / "cache"
    built = load_or_build(paths, cache_dir, "s", 24, progress=False)
    pixels_file, index_file = built.file, Path(str(built.file).replace(".npy", ".index.npz"))
    del built

    # a build killed after the pixels rename but before the index: rebuilt, not used
    index_file.unlink()
    leftover = cache_dir / f"{pixels_file.name}.tmp-999999999"  # a dead process's temp file
    leftover.write_bytes(b"half a cache")
    rebuilt = load_or_build(paths, cache_dir, "s", 24, progress=False)
    assert rebuilt.decoded == len(paths) and index_file.exists()
    assert not leftover.exists()
    assert not list(cache_dir.glob("*.tmp-*"))

    # a corrupt pixels file (wrong size) is rebuilt too
    pixels_file.write_bytes(pixels_file.read_bytes()[:1000])
    assert load_or_build(paths, cache_dir, "s", 24, progress=False).decoded == len(paths)


@pytest.mark.parametrize("fmt,size", [("PNG", (300, 200)), ("JPEG", (1200, 700))])
def test_batch_transform_matches_reference(tmp_path: Path, fmt: str, size: tuple[int, int]) -> None:
    path = tmp_path / f"p.{fmt.lower()}"
    painting(*size, seed=1).save(path, fmt, quality=95)
    cached = torch.from_numpy(decode_square(path, 256)[0])[None]

    batch = BatchTransform(224)(cached, train=False)[0]
    reference = reference_transform(256, 224)(open_rgb(path))

    assert batch.shape == reference.shape == (3, 224, 224) and batch.dtype == torch.float32
    assert (batch - reference).abs().mean() < 0.05
    if fmt == "PNG":  # no JPEG draft scaling: the same pixels exactly
        assert (batch - reference).abs().max() < 1e-5


def test_hflip_only_in_training() -> None:
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (64, 20, 20, 3), dtype=np.uint8))
    plain = BatchTransform(16)(x, train=True)
    flipping = BatchTransform(16, hflip=True)
    assert torch.equal(flipping(x, train=False), plain)

    torch.manual_seed(0)
    out = flipping(x, train=True)
    flipped = torch.tensor([torch.equal(o, p.flip(-1)) for o, p in zip(out, plain, strict=True)])
    unchanged = torch.tensor([torch.equal(o, p) for o, p in zip(out, plain, strict=True)])
    assert (flipped | unchanged).all() and flipped.any() and unchanged.any()


def test_loader_order_is_reproducible_and_batches_are_right(tmp_path: Path) -> None:
    pixels = np.lib.format.open_memmap(tmp_path / "p.npy", mode="w+", dtype=np.uint8, shape=(50, 4, 4, 3))
    pixels[:] = np.arange(50, dtype=np.uint8)[:, None, None, None]
    pixels.flush()
    pixels = np.load(tmp_path / "p.npy", mmap_mode="r")
    rows = np.arange(49, 9, -1)  # 40 cache rows, out of order
    targets = np.stack([rows % 5, rows % 3], axis=1)

    def order(seed: int, shuffle: bool = True) -> list[int]:
        loader = make_loader(pixels, rows, targets, batch_size=8, shuffle=shuffle, seed=seed)
        seen = []
        for images, y in loader:
            assert images.dtype == torch.uint8 and images.shape[1:] == (4, 4, 3) and y.dtype == torch.int64
            values = images[:, 0, 0, 0].tolist()
            assert y.tolist() == [[v % 5, v % 3] for v in values]
            seen += values
        return seen

    assert order(0) == order(0) and sorted(order(0)) == sorted(rows.tolist())
    assert order(0) != order(1)
    assert order(0, shuffle=False) == rows.tolist()

    clone = pickle.loads(pickle.dumps(CachedImages(pixels, rows, targets)))  # what a worker process receives
    assert isinstance(clone.pixels, np.memmap) and np.array_equal(clone[0][0].numpy(), pixels[rows[0]])


def test_loader_serves_feature_arrays_too() -> None:
    features = np.random.default_rng(0).normal(size=(10, 6)).astype(np.float32)
    loader = make_loader(features, np.arange(10), np.arange(10), batch_size=4, shuffle=True, seed=0)
    for x, y in loader:
        assert x.dtype == torch.float32 and torch.equal(x, torch.from_numpy(features[y[:, 0].numpy()]))
