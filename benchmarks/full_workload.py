"""The reference-full workload rehearsed on this machine: a set of the reference's shape through `make artifacts`.

The reference study's big experiment is 33,611 paintings of the Kaggle "Historic Art" set in 12 periods. Its
artwork table is not shared here, so the class sizes are derived from its real artist table
(../shared/datasets/historic-art-metadata/info_dataset.csv: 5,571 artists, period per artist): 33,600 images split
over the 12 periods in proportion to their artists, each artist a real row of that table (anonymised: "Baroque
painter 0042"). The pictures are generated (pipeline/data/demo.py's painter, one of its five styles per period
with a colour permutation for the other seven), so the rehearsal needs no download.

Then the whole `make artifacts` path, each stage timed from outside (the pipeline's own functions wrapped):
prepare (generation excluded, decoded cache included), the frozen-backbone feature pass, training, evaluation,
the 2-D map, attributions and the store write. Two frozen-backbone runs on every image (the second reuses the
first's features from disk), one partial fine-tune on a subset, attributions on a capped number of test images.
Each stage gives seconds per 1,000 images, extrapolated to 33,600 (linear) and to a GPU (see GPU_SPEEDUP).

    .venv/bin/python -m benchmarks.full_workload [--quick]     # full: ~30 min on an idle 2-core CPU
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import os
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from benchmarks import common
from pipeline import evaluate, experiment, store
from pipeline import train as train_module
from pipeline.config import DEFAULT_SHARED, load_experiment
from pipeline.data import demo
from pipeline.data.historic_art import PERIODS

NAME = "full workload"
REFERENCE_IMAGES = 33_600
ARTIST_TABLE = "historic-art-metadata/info_dataset.csv"
# Assumed speed-up of the model stages (feature pass, training, evaluation's forward pass, attributions) on one
# data-centre GPU (bf16, channels_last) over this 2-core CPU; stages that run on the CPU either way (prepare, the
# 2-D map, the store write) keep their CPU time. An assumption until benchmarks/gpu_check.sh measures it.
GPU_SPEEDUP = 50.0
MODEL_STAGES = ("features", "training", "evaluation", "attributions")


@dataclasses.dataclass
class Settings:
    images: int  # generated images, at the reference's class shares
    finetune_images: int  # the partial fine-tune's subset
    resize: int
    crop: int
    head_epochs: int
    finetune_epochs: int
    attribution_images: int  # per run (max_images)
    ig_steps: int


QUICK = Settings(images=360, finetune_images=120, resize=72, crop=64, head_epochs=5, finetune_epochs=1,
                 attribution_images=16, ig_steps=8)
FULL = Settings(images=REFERENCE_IMAGES, finetune_images=2_000, resize=72, crop=64, head_epochs=10,
                finetune_epochs=1, attribution_images=200, ig_steps=16)


# ----------------------------------------------------------------------------------------------- the data set

def artist_table() -> pd.DataFrame:
    """The real artist table (artist, period), or, without the shared folder, 5,571 artists at its shares."""
    path = Path(os.environ.get("PAINTINGS_SHARED", DEFAULT_SHARED)) / ARTIST_TABLE
    if path.exists():
        table = pd.read_csv(path, usecols=["artist", "period"])
        return table[table["period"].isin(PERIODS)].reset_index(drop=True)
    shares = [289, 382, 341, 279, 423, 1945, 458, 397, 408, 355, 186, 108]  # info_dataset.csv, 2026-11-29
    return pd.DataFrame({"artist": [f"a{i}" for i in range(sum(shares))],
                         "period": np.repeat(PERIODS, shares)})


def class_sizes(total: int, artists: pd.DataFrame, floor: int = 12) -> dict[str, int]:
    """Images per period: `total` in proportion to the period's artists (at least `floor`, so every split fills)."""
    counts = artists["period"].value_counts().reindex(PERIODS).fillna(0).to_numpy()
    floor = min(floor, total // len(PERIODS))
    sizes = np.maximum(floor, np.floor(total * counts / counts.sum()).astype(int))
    sizes[np.argmax(sizes)] += total - sizes.sum()  # the rounding remainder goes to the largest class
    return dict(zip(PERIODS, sizes.tolist(), strict=True))


def generate(out_dir: Path, total: int, seed: int = 0) -> Path:
    """Write `total` generated paintings of the reference's shape and their manifest.csv; reused when present."""
    manifest = out_dir / "manifest.csv"
    tag = out_dir / ".rehearsal"
    stamp = f"demo-version={demo.VERSION} total={total} seed={seed}"
    if manifest.exists() and tag.exists() and tag.read_text() == stamp:
        return manifest
    rng = np.random.default_rng(seed)
    artists = artist_table()
    rows = []
    for p, (period, size) in enumerate(class_sizes(total, artists).items()):
        names = np.flatnonzero(artists["period"].to_numpy() == period)
        # works per artist: skewed, as in the real set (a few prolific painters, many with a handful)
        weights = rng.lognormal(0.0, 1.0, len(names))
        who = rng.choice(len(names), size=size, p=weights / weights.sum())
        folder = out_dir / f"p{p:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        order = [(2, 0, 1), (1, 2, 0), (0, 1, 2)][p // 5 % 3] if p >= 5 else (0, 1, 2)
        for k, a in enumerate(who):
            w, h = (int(v) for v in rng.integers(80, 141, size=2))
            pixels = demo._work(p % 5, int(a) % 3, w, h, rng)[:, :, order]  # noqa: SLF001 (the demo's painter)
            rel = f"p{p:02d}/{k:05d}.jpg"
            Image.fromarray(np.ascontiguousarray(pixels)).save(out_dir / rel, "JPEG", quality=85)
            rows.append([rel, period, f"{period} painter {names[a]:04d}", f"Rehearsal study {p}-{k}",
                         str(1300 + 50 * p)])
    tmp = manifest.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(demo.MANIFEST_FIELDS)
        writer.writerows(rows)
    os.replace(tmp, manifest)
    tag.write_text(stamp)
    return manifest


def subset_manifest(manifest: Path, n: int, seed: int = 0) -> Path:
    """`n` rows of `manifest`, stratified by period (the partial fine-tune's smaller set)."""
    table = pd.read_csv(manifest)
    share = n / len(table)
    rng = np.random.default_rng(seed)
    picked = [rng.choice(idx, min(len(idx), max(12, round(share * len(idx)))), replace=False)
              for idx in table.groupby("period").indices.values()]
    keep = table.iloc[np.sort(np.concatenate(picked))]
    out = manifest.with_name(f"manifest-{n}.csv")
    keep.to_csv(out, index=False)
    return out


# ----------------------------------------------------------------------------------------------- the experiment

def experiment_file(folder: Path, name: str, manifest: Path, s: Settings, runs: list[dict]) -> Path:
    config = {
        "name": name,
        "data": {"source": "manifest", "path": str(manifest), "resize": s.resize, "crop": s.crop,
                 "thumbnail_size": 128, "period_order": list(PERIODS),
                 "split": {"mode": "fractions", "val": 0.2, "test": 0.2, "seed": 0}},
        "defaults": {"backbone": "efficientnet_lite0", "pretrained": True, "batch_size": 32, "lr": 0.01,
                     "momentum": 0.9, "patience": 3},
        "attributions": {"methods": ["guided_backprop", "integrated_gradients", "grad_cam"], "splits": ["test"],
                         "max_images": s.attribution_images, "ig_steps": s.ig_steps, "heatmap_size": 64,
                         "sanity_images": 4},
        "runs": runs,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class Clock:
    """Seconds per stage, from wrappers around the pipeline's functions while `installed` (none changed)."""

    PATCHES = {  # (module, function) -> stage; nested stages are subtracted from their parent in `stages()`
        (experiment, "prepare_data"): "prepare",
        (experiment, "train"): "training",
        (train_module, "frozen_features"): "features",
        (experiment, "predict"): "evaluation",
        (experiment, "score_outputs"): "evaluation",
        (experiment, "temperatures"): "evaluation",
        (evaluate, "project_2d"): "2-D map",
        (experiment, "attribute_run"): "attributions",
        (store, "write_run"): "store write",
    }

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, fn: Callable, stage: str) -> Callable:
        def clocked(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - t0

        return clocked

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        with common.wrapped(self.PATCHES, self.wrap):
            yield

    def stages(self) -> dict[str, float]:
        """Exclusive seconds: the feature pass out of training, the 2-D map out of evaluation."""
        t = dict(self.seconds)
        t["training"] = t.get("training", 0.0) - t.get("features", 0.0)
        t["evaluation"] = t.get("evaluation", 0.0) - t.get("2-D map", 0.0)
        return t


def timed_experiment(config: Path, folder: Path) -> tuple[dict[str, float], int, float]:
    """Run one experiment into `folder` with its stages clocked: (seconds per stage, images, wall seconds)."""
    shutil.rmtree(folder, ignore_errors=True)  # a fresh store and cache: every stage runs, cold
    exp = load_experiment(config)
    exp.artifacts_dir = str(folder)
    exp.store = str(folder / "periodeye.duckdb")
    clock = Clock()
    with common.quiet(), clock.installed():
        wall, _ = common.timed(lambda: experiment.run_experiment(exp, progress=False))
    with store.connect(exp.store, read_only=True) as con:
        images = con.execute("SELECT count(*) FROM images").fetchone()[0]
    return clock.stages(), int(images), wall


# ----------------------------------------------------------------------------------------------- report

def rows_for(label: str, stages: dict[str, float], images: dict[str, int], at_full: dict[str, int],
             totals: dict[str, float]) -> list[list[object]]:
    """Table rows: measured here; then, where the measured size is not the full one, extrapolated linearly to what
    the stage handles at 33,600 images (`at_full`: every test image for attributions), on the CPU and on a GPU."""
    out = []
    for stage, seconds in stages.items():
        n, full = images[stage], at_full[stage]
        per_k = 1000 * seconds / n
        cpu = seconds if n == full else per_k * full / 1000
        gpu = cpu / GPU_SPEEDUP if stage in MODEL_STAGES else cpu
        totals["CPU"] += cpu
        totals["GPU"] += gpu
        out.append([f"{stage} ({label})", n, seconds, per_k, "measured", "CPU"])
        if n != full:
            out.append([f"{stage} ({label})", full, cpu, per_k, "extrapolated (linear)", "CPU"])
        out.append([f"{stage} ({label})", full, gpu, 1000 * gpu / full,
                    f"extrapolated ({'÷ ' + str(int(GPU_SPEEDUP)) if stage in MODEL_STAGES else 'CPU-bound, same'})",
                    "GPU"])
    return out


def run(quick: bool = True, keep: Path | None = None) -> list[dict]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        return rehearse(QUICK if quick else FULL, keep, quick)
    common.CACHE_DIR.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-rehearsal-", dir=common.CACHE_DIR.parent) as tmp:
        return rehearse(QUICK if quick else FULL, Path(tmp), quick)


def rehearse(s: Settings, base: Path, quick: bool) -> list[dict]:
    gen_seconds, manifest = common.timed(lambda: generate(base / "images", s.images))
    assert isinstance(manifest, Path)
    sizes = pd.read_csv(manifest)
    print(f"{len(sizes)} generated images, {sizes['period'].nunique()} periods, {sizes['artist'].nunique()} artists "
          f"(generated in {gen_seconds:.0f} s); class sizes {sizes['period'].value_counts().reindex(PERIODS).tolist()}"
          f"; {s.crop}px (cache {s.resize}px); into {base}", flush=True)
    head_runs = [{"name": "lite0-head", "strategy": "head", "epochs": s.head_epochs},
                 {"name": "lite0-head-lr", "strategy": "head", "epochs": s.head_epochs, "lr": 0.003}]
    fine_runs = [{"name": "lite0-freeze5", "strategy": "partial", "freeze_until": 5, "epochs": s.finetune_epochs}]
    heads, n_all, wall_heads = timed_experiment(
        experiment_file(base, "rehearsal-heads", manifest, s, head_runs), base / "heads")
    small = subset_manifest(manifest, s.finetune_images)
    fine, n_small, wall_fine = timed_experiment(
        experiment_file(base, "rehearsal-finetune", small, s, fine_runs), base / "finetune")
    n_test = round(0.2 * n_all)
    per_run_attr = min(s.attribution_images, n_test)
    images_heads = {"prepare": n_all, "features": n_all, "training": len(head_runs) * n_all,
                    "evaluation": len(head_runs) * n_all, "2-D map": len(head_runs) * n_all,
                    "attributions": len(head_runs) * per_run_attr, "store write": len(head_runs) * n_all}
    images_fine = {"prepare": n_small, "features": n_small, "training": n_small, "evaluation": n_small,
                   "2-D map": n_small, "attributions": min(s.attribution_images, round(0.2 * n_small)),
                   "store write": n_small}
    heads = {k: v for k, v in heads.items() if k in images_heads and v > 0}
    fine = {k: v for k, v in fine.items() if k in images_fine and k != "features" and v > 0}
    test_full = round(0.2 * REFERENCE_IMAGES)  # attributions at full size: every test image of every run
    full_heads = {k: (len(head_runs) * test_full if k == "attributions" else round(v * REFERENCE_IMAGES / n_all))
                  for k, v in images_heads.items()}
    full_fine = {k: (test_full if k == "attributions" else REFERENCE_IMAGES) for k in images_fine}
    total = {"CPU": 0.0, "GPU": 0.0}
    rows = rows_for(f"{len(head_runs)} head runs", heads, images_heads, full_heads, total)
    rows += rows_for("partial fine-tune", fine, images_fine, full_fine, total)
    common.table(f"reference-full rehearsal ({'quick' if quick else 'full'} mode, {s.crop}px, device "
                 f"{common.device()})", ["stage", "images", "seconds", "per 1,000 images", "measured/extrapolated",
                                         "CPU/GPU"], rows,
                 note=f"Head runs: {s.head_epochs} epochs on frozen features, the second reusing the first's from "
                      f"disk; images = images x runs. Fine-tune: {n_small} images, {s.finetune_epochs} epoch(s), "
                      f"freeze_until 5. Attributions: {s.attribution_images} test images per run, 3 methods, "
                      f"IG {s.ig_steps} steps; at full size every test image (6,720 per run). The 2-D map's "
                      f"linear extrapolation is a floor (t-SNE grows faster than n; benchmarks/projection.py "
                      f"measures it at 33,600). Wall: heads "
                      f"{wall_heads:.0f} s, fine-tune {wall_fine:.0f} s. GPU rows assume model stages "
                      f"{GPU_SPEEDUP:.0f}x faster (not measured).")
    what = "2 head runs + 1 fine-tune at 33,600 images"
    return [common.result(NAME, f"{what}, {dev}, hours (extrapolated where not measured)", total[dev] / 3600,
                          unit="h") for dev in total]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few hundred images, about a minute")
    parser.add_argument("--keep", type=Path, help="work folder kept afterwards (default: a temporary one)")
    args = parser.parse_args()
    print(common.machine_line(common.machine()))
    common.summary_table(run(args.quick, args.keep))


if __name__ == "__main__":
    main()
