"""A realistic synthetic store at the size of the full Historic Art set, for the dashboard's scale benchmark.

Every table is written by the pipeline's own code, so the schema and the row shapes are exactly the real ones:
`pipeline.store.write_dataset` for the images (real JPEG thumbnails), `pipeline.evaluate.score_outputs` for
predictions, metrics, confusion and embeddings (with the 2-D projection), `pipeline.attribute.select_targets`
for which test images get saliency maps, `pipeline.heatmaps.encode_map` / `spearman` / `top_overlap` for the
maps and their agreement, and `pipeline.store.write_run` for each run. Only the model is fake: its
probabilities come from a Dirichlet that is right 50-75% of the time (better on train), with most mistakes on a
chronologically adjacent period, and its embeddings cluster by class.

    .venv/bin/python -m benchmarks.make_big_store /tmp/periodeye-big.duckdb            # 12 runs x 33,600 images
    .venv/bin/python -m benchmarks.make_big_store /tmp/periodeye-quick.duckdb --quick  # 3 runs x 5,000 images

A checkpoint (an untrained ResNet-18 with the run's head) is written beside the store so the Upload page can load
a model; `--no-checkpoint` skips it. Annotations (the dashboard's only write) are inserted with the same columns
`dashboard.queries.verdicts.save_annotation` writes.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import io
import os
import platform
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from pipeline import store
from pipeline.config import DEFAULT_SHARED, AttributionConfig, DataConfig, SplitConfig, build_run
from pipeline.data.historic_art import PERIODS as HISTORIC_ART_PERIODS
from pipeline.data.prepare import PreparedData
from pipeline.heatmaps import encode_map, spearman, top_overlap

# Rough shares of the Historic Art painters' works per period (Baroque and the Renaissances dominate).
PERIOD_WEIGHTS = [0.05, 0.10, 0.10, 0.10, 0.07, 0.25, 0.07, 0.05, 0.08, 0.06, 0.04, 0.03]
PERIOD_YEARS = [(1250, 1420), (1400, 1500), (1420, 1560), (1490, 1530), (1520, 1600), (1600, 1720),
                (1710, 1780), (1760, 1830), (1790, 1860), (1840, 1890), (1860, 1910), (1885, 1915)]
RUN_SPECS = [("partial", 1), ("partial", 2), ("partial", 3), ("partial", 4), ("head", None), ("finetune", None),
             ("two_stage", None)]
EXPERIMENT = "historic-art-scale"
BACKBONE = "resnet18"
VERDICTS = ("model right", "label wrong", "ambiguous", "outside its period")
TITLE_WORDS = (["Portrait of", "Madonna with", "Landscape with", "The Adoration of", "Still-Life with",
                "Saint", "View of", "Allegory of", "The Death of", "Interior with", "Self-Portrait", "Study of"],
               ["a Young Man", "the Child", "Ruins", "the Magi", "Flowers", "Jerome", "Venice", "Peace",
                "Cleopatra", "a Woman Reading", "the Artist", "Hands", "Cows", "a Windmill", "Saints"])
THUMB_POOL = 200
MAP_POOL = 300


def periods_for(n: int) -> tuple[list[str], np.ndarray, list[tuple[int, int]]]:
    """The first n Historic Art periods (more are made up), their sampling weights and year ranges."""
    names = HISTORIC_ART_PERIODS[:n] + [f"Period {i + 1}" for i in range(len(HISTORIC_ART_PERIODS), n)]
    weights = np.array((PERIOD_WEIGHTS + [0.03] * n)[:n], float)
    years = (PERIOD_YEARS + [(1900 + 10 * i, 1910 + 10 * i) for i in range(n)])[:n]
    return names, weights / weights.sum(), years


def artist_names(periods: list[str], weights: np.ndarray, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """n painters with a period each (works per period follow `weights`); real names from the shared
    Historic Art artist table where it is present, made-up ones otherwise."""
    real: dict[str, list[str]] = {}
    info = Path(os.environ.get("PAINTINGS_SHARED", DEFAULT_SHARED)) / "historic-art-metadata" / "info_dataset.csv"
    if info.exists():
        with info.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row.get("school") == "painter":
                    real.setdefault(row["period"], []).append(row["artist"])
    per_period = np.maximum(1, np.round(weights * n).astype(int))
    while per_period.sum() > n and per_period.max() > 1:
        per_period[per_period.argmax()] -= 1
    while per_period.sum() < n:
        per_period[per_period.argmin()] += 1
    rows = []
    for period, count in zip(periods, per_period, strict=True):
        pool = sorted(set(real.get(period, [])))
        rng.shuffle(pool)
        names = pool[:count] + [f"PAINTER, {period} {i + 1:03d}" for i in range(len(pool), count)]
        rows += [(name, period) for name in names]
    return pd.DataFrame(rows, columns=["artist", "period"])


def thumbnail_pool(n: int, rng: np.random.Generator) -> list[bytes]:
    """n distinct small JPEGs (128 px on the longer side) of gradients and blotches, ~5-10 KB like real ones."""
    out = []
    for _ in range(n):
        w, h = (128, int(rng.integers(90, 129))) if rng.random() < 0.5 else (int(rng.integers(90, 129)), 128)
        yy, xx = np.mgrid[0:h, 0:w] / 128.0
        base = rng.uniform(40, 200, 3)
        grad = rng.uniform(-80, 80, (2, 3))
        low = np.asarray(Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).resize(
            (w, h), Image.Resampling.BICUBIC), float) - 128
        img = base + xx[..., None] * grad[0] + yy[..., None] * grad[1] + 0.6 * low
        img += rng.normal(0, 14, (h, w, 3))  # brushwork / canvas texture: what makes real thumbnails 5-10 KB
        buf = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def heat_pool(n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """n smooth non-negative 224x224 fields (a few Gaussian blobs plus speckle), like saliency maps."""
    yy, xx = np.mgrid[0:224, 0:224].astype(np.float32)
    maps = []
    for _ in range(n):
        heat = np.zeros((224, 224), np.float32)
        for _ in range(int(rng.integers(1, 5))):
            cy, cx = rng.uniform(20, 204, 2)
            s = rng.uniform(10, 50)
            heat += rng.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        heat += np.abs(rng.normal(0, 0.05, heat.shape)).astype(np.float32)
        maps.append(heat)
    return maps


def make_dataset(n: int, periods: list[str], weights: np.ndarray, years, n_artists: int, test_share: float,
                 rng: np.random.Generator) -> PreparedData:
    """The dataset as `pipeline.data.prepare.prepare` would hand it over (pixels left empty: only training
    reads them)."""
    cfg = DataConfig(source="historic_art", path="/data/historic-art", name="historic-art", resize=256, crop=224,
                     split=SplitConfig(mode="fractions", val=test_share, test=test_share, seed=0))
    artists = artist_names(periods, weights, n_artists, rng)
    artists["w"] = 0.0
    for period, group in artists.groupby("period"):  # a few prolific painters per period, a long tail
        zipf = 1.0 / np.arange(1, len(group) + 1) ** 0.9
        artists.loc[group.index, "w"] = weights[periods.index(period)] * zipf / zipf.sum()
    who = rng.choice(len(artists), n, p=(artists["w"] / artists["w"].sum()).to_numpy())
    period = artists["period"].to_numpy()[who]
    pidx = np.array([periods.index(p) for p in period])
    lo = np.array([years[i][0] for i in pidx])
    hi = np.array([years[i][1] for i in pidx])
    year = (lo + rng.random(n) * (hi - lo)).astype(int)
    kind = rng.random(n)
    date = np.where(kind < 0.5, year.astype(str),
                    np.where(kind < 0.75, [f"{y}-{(y + int(d)) % 100:02d}" for y, d in zip(year, rng.integers(1, 9, n),
                                                                                          strict=True)],
                             np.where(kind < 0.9, [f"c. {y}" for y in year], "")))
    titles = [f"{a} {b}" for a, b in zip(rng.choice(TITLE_WORDS[0], n), rng.choice(TITLE_WORDS[1], n), strict=True)]
    u = rng.random(n)  # stratified-looking 60/20/20 (fractions), per image
    split = np.where(u < test_share, "test", np.where(u < 2 * test_share, "val", "train"))
    thumbs = thumbnail_pool(THUMB_POOL, rng)
    ids = [str(i) for i in range(n)]
    images = pd.DataFrame({
        "image_id": ids,
        "path": [f"/data/historic-art/artwork/{i}.jpg" for i in ids],
        "period": period,
        "artist": artists["artist"].to_numpy()[who],
        "title": titles,
        "date": date,
        "split": split,
        "content_hash": [hashlib.sha1(f"historic-art/{i}".encode()).hexdigest() for i in ids],
        "width": rng.integers(500, 2400, n),
        "height": rng.integers(500, 2400, n),
        "cache_index": np.arange(n),
        "thumbnail": [thumbs[i % len(thumbs)] for i in range(n)],
    }).sort_values("image_id").reset_index(drop=True)
    n_skipped = max(1, n // 900)  # the real set loses a few dozen files: missing, truncated, duplicates
    reasons = ["file not found", "truncated image: image file is truncated", "exact duplicate of 1234.jpg",
               "not an image: cannot identify image file"]
    skipped = pd.DataFrame({
        "path": [f"/data/historic-art/artwork/{n + i}.jpg" for i in range(n_skipped)],
        "row": np.arange(n + 2, n + 2 + n_skipped),
        "reason": [reasons[i % len(reasons)] for i in range(n_skipped)],
        "stage": ["decode" if i % len(reasons) != 2 else "dedup" for i in range(n_skipped)],
    })
    dup_hashes = [hashlib.sha1(f"dup{i}".encode()).hexdigest() for i in range(max(1, n_skipped // 4))]
    duplicates = pd.DataFrame({"content_hash": np.repeat(dup_hashes, 2),
                               "conflict": np.repeat([i % 3 == 0 for i in range(len(dup_hashes))], 2)})
    return PreparedData(dataset_id=cfg.key(), name=cfg.dataset_name, config=cfg, images=images, skipped=skipped,
                        duplicates=duplicates, periods=periods,
                        artists=sorted(images["artist"].unique().tolist()), pixels=np.zeros((0,), np.uint8),
                        synthetic=False)


def fake_model_outputs(y: np.ndarray, split: np.ndarray, accuracy: float, k: int, dim: int, centroids: np.ndarray,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(logits, embeddings): right with probability `accuracy` on val/test (more on train), mistakes mostly on
    an adjacent period; probabilities from a Dirichlet peaked on the prediction (and on the truth when wrong)."""
    n = len(y)
    acc = np.where(split == "train", min(0.97, accuracy + 0.2), accuracy)
    right = rng.random(n) < acc
    step = np.where(rng.random(n) < 0.5, -1, 1)
    adjacent = y + step
    adjacent = np.where((adjacent < 0) | (adjacent >= k), y - step, adjacent)
    other = (y + rng.integers(1, max(2, k), n)) % k
    wrong = np.where(rng.random(n) < 0.6, adjacent, other)
    pred = np.where(right | (k == 1), y, wrong)
    alpha = np.full((n, k), 0.25)
    alpha[np.arange(n), pred] += np.where(right, rng.uniform(1.5, 8.0, n), rng.uniform(0.8, 3.0, n))
    alpha[np.arange(n), y] += np.where(right, 0.0, rng.uniform(0.3, 1.5, n))
    probs = rng.gamma(alpha)
    probs /= probs.sum(1, keepdims=True)
    top = probs.argmax(1)  # make the prediction the arg-max: swap it with whatever won
    rows = np.arange(n)
    p_top, p_pred = probs[rows, top].copy(), probs[rows, pred].copy()
    probs[rows, top], probs[rows, pred] = p_pred, p_top
    logits = np.log(np.clip(probs, 1e-9, None)).astype(np.float32)
    mix = np.where(right, 0.0, rng.uniform(0.3, 0.7, n))[:, None]
    emb = (1 - mix) * centroids[y] + mix * centroids[pred] + rng.normal(0, 1.0, (n, dim))
    return logits, np.maximum(emb, 0).astype(np.float32)  # pooled ReLU features are non-negative


def fake_epochs(run_id: str, strategy: str, accuracy: float, rng: np.random.Generator) -> tuple[pd.DataFrame, int]:
    stages = [("head", 10), ("finetune", 5)] if strategy == "two_stage" else [(strategy, int(rng.integers(8, 21)))]
    rows, epoch, lr = [], 0, 1e-3
    for stage, count in stages:
        for i in range(count):
            epoch += 1
            t = epoch / sum(c for _, c in stages)
            val_acc = accuracy * (0.55 + 0.45 * (1 - np.exp(-4 * t))) + rng.normal(0, 0.01)
            train_acc = min(0.99, val_acc + 0.25 * t)
            rows.append({"run_id": run_id, "stage": stage, "epoch": epoch, "train_loss": 2.4 * (1 - 0.7 * t),
                         "train_acc": train_acc, "train_artist_acc": None, "val_loss": 2.4 * (1 - 0.5 * t) + 0.1 * t,
                         "val_acc": val_acc, "val_artist_acc": None, "lr": lr * (0.1 if i > count * 0.7 else 1)})
        lr *= 0.1
    frame = pd.DataFrame(rows)
    return frame, int(frame.loc[frame["val_acc"].idxmax(), "epoch"])


def fake_attributions(run_id: str, images: pd.DataFrame, pred: np.ndarray, true: np.ndarray, labels: list[str],
                      cfg: AttributionConfig, encoded: list[tuple[bytes, float]], agree: dict, offset: int,
                      rng: np.random.Generator):
    """Maps for the test split exactly where `make artifacts` makes them (pipeline.attribute.select_targets:
    the predicted class, plus the true class where wrong), drawn cyclically from a pool of encoded maps; the
    agreement rows are the real statistics of the pooled maps."""
    from pipeline.attribute import select_targets  # imports torch/captum: only when attributions are made

    jobs = select_targets(images, pred, true, cfg)
    methods = list(cfg.methods)
    m = len(methods)
    n_pool = len(encoded)
    ids = images["image_id"].to_numpy()
    rows = jobs["row"].to_numpy()
    targets = np.array(labels, dtype=object)[jobs["target"].to_numpy()]
    kinds = jobs["kind"].to_numpy()
    base = (offset + np.arange(len(jobs)) * m) % n_pool
    idx = (base[:, None] + np.arange(m)[None, :]) % n_pool  # (jobs, methods) -> pool entry
    flat = idx.ravel()
    maps = {
        "run_id": [run_id] * flat.size,
        "image_id": np.repeat(ids[rows], m).tolist(),
        "method": methods * len(jobs),
        "target_label": np.repeat(targets, m).tolist(),
        "target_kind": np.repeat(kinds, m).tolist(),
        "heatmap": [encoded[i][0] for i in flat],
        "scale": np.array([encoded[i][1] for i in flat], np.float32),
        "size": np.full(flat.size, cfg.heatmap_size, np.int32),
    }
    agreement = []
    for a in range(m):
        for b in range(a + 1, m):  # pool offsets 1 and 2 apart: precomputed in `agree`
            stats = np.array([agree[(int(i), int(j))] for i, j in zip(idx[:, a], idx[:, b], strict=True)])
            agreement.append(pd.DataFrame({
                "run_id": run_id, "image_id": ids[rows], "target_label": targets, "target_kind": kinds,
                "method_a": methods[a], "method_b": methods[b], "spearman": stats[:, 0].astype(np.float32),
                "top_overlap": stats[:, 1].astype(np.float32)}))
    sanity_mean = {"guided_backprop": 0.8, "integrated_gradients": 0.25, "grad_cam": 0.1}
    sanity = pd.DataFrame([
        (run_id, method, cfg.sanity_images, float(np.clip(sanity_mean.get(method, 0.3) + rng.normal(0, 0.05), -1, 1)),
         float(rng.uniform(0.05, 0.2)), float(rng.uniform(0.05, 0.6)))
        for method in methods
    ], columns=["run_id", "method", "n_images", "spearman_mean", "spearman_std", "top_overlap_mean"])
    import pyarrow as pa

    return pa.table(maps), pd.concat(agreement, ignore_index=True), sanity


def write_checkpoint(path: Path, labels: dict[str, list[str]], resize: int, crop: int) -> None:
    """An untrained ResNet-18 with the runs' head, in the format pipeline.explain.load_run reads."""
    import torch

    from pipeline.models.backbones import build_backbone
    from pipeline.models.classifier import PeriodClassifier

    model = PeriodClassifier(build_backbone(BACKBONE, pretrained=False), {t: len(n) for t, n in labels.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"backbone": BACKBONE, "labels": labels, "dropout": 0.0, "resize": resize, "crop": crop,
                "state_dict": model.state_dict()}, path)


def add_annotations(path: Path, data: PreparedData, run_ids: list[str], n: int, rng: np.random.Generator) -> None:
    """n expert verdicts on test images, with the columns save_annotation writes (one transaction)."""
    if n <= 0:
        return
    test = data.images.loc[data.images["split"] == "test", ["image_id", "content_hash"]].to_numpy()
    pick = test[rng.choice(len(test), min(n, len(test)), replace=False)]
    authors = ["A. Historian", "B. Curator", "C. Conservator", "D. Student", "E. Expert"]
    start = datetime(2025, 1, 1)
    rows = pd.DataFrame({
        "annotation_id": [str(uuid.UUID(int=int(rng.integers(0, 2**63)))) for _ in range(len(pick))],
        "dataset_id": data.dataset_id,
        "image_id": pick[:, 0],
        "content_hash": pick[:, 1],
        "run_id": rng.choice(run_ids, len(pick)),
        "verdict": rng.choice(VERDICTS, len(pick)),
        "note": [f"note {i}: brushwork and costume suggest otherwise" if i % 3 else None for i in range(len(pick))],
        "author": rng.choice(authors, len(pick)),
        "created_at": [start + timedelta(minutes=int(m)) for m in rng.integers(0, 500_000, len(pick))],
    })
    with store.connect(path) as con:
        con.execute("BEGIN")  # also completes ensure_schema's pending result, which register() refuses to follow
        store._insert(con, "annotations", rows)
        con.execute("COMMIT")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the store to write (a new file; --force replaces it)")
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--images", type=int, default=33_600)
    parser.add_argument("--dim", type=int, default=512, help="embedding size (ResNet-18: 512)")
    parser.add_argument("--periods", type=int, default=12)
    parser.add_argument("--artists", type=int, default=300)
    parser.add_argument("--test-share", type=float, default=0.2, help="val and test share each (60/20/20)")
    parser.add_argument("--maps-per-image", type=int, default=3, help="saliency methods per explained target")
    parser.add_argument("--annotations", type=int, default=300)
    parser.add_argument("--projection", choices=("pca", "tsne"), default="pca",
                        help="2-D map (tsne is what runs use by default; minutes per run at full size)")
    parser.add_argument("--no-checkpoint", action="store_true", help="skip the model file the Upload page loads")
    parser.add_argument("--quick", action="store_true", help="3 runs x 5,000 images, for a smoke check")
    parser.add_argument("--force", action="store_true", help="replace an existing store")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.images = 3, 5_000
    if not 1 <= args.maps_per_image <= 3:
        parser.error("--maps-per-image must be 1, 2 or 3 (the pipeline has three methods)")
    out: Path = args.out
    if out.exists():
        if not args.force:
            parser.error(f"{out} exists; pass --force to replace it")
        out.unlink()
        out.with_name(out.name + ".wal").unlink(missing_ok=True)

    from pipeline.evaluate import score_outputs  # torch import: after argument errors

    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    periods, weights, years = periods_for(args.periods)
    data = make_dataset(args.images, periods, weights, years, args.artists, args.test_share, rng)
    store.write_dataset(out, data)
    seconds["dataset"] = time.perf_counter() - t0
    labels = {"period": periods}
    k = len(periods)
    y = np.array([periods.index(p) for p in data.images["period"]])
    split = data.images["split"].to_numpy()

    t0 = time.perf_counter()
    heats = heat_pool(MAP_POOL, 64, rng)
    encoded = [encode_map(h, AttributionConfig().heatmap_size) for h in heats]
    agree = {}
    for i in range(MAP_POOL):
        for d in (1, 2):
            j = (i + d) % MAP_POOL
            agree[(i, j)] = (spearman(heats[i], heats[j]), top_overlap(heats[i], heats[j]))
    seconds["map pool"] = time.perf_counter() - t0

    checkpoint = out.with_name(out.stem + "-checkpoints") / f"{BACKBONE}.pt"
    if not args.no_checkpoint:
        write_checkpoint(checkpoint, labels, data.config.resize, data.config.crop)

    centroids = rng.normal(0, 1.5, (k, args.dim))
    attribution_cfg = AttributionConfig(methods=list(AttributionConfig().methods)[: args.maps_per_image])
    run_ids = []
    timing = {"model": 0.0, "evaluate": 0.0, "attributions": 0.0, "write": 0.0}
    for r in tqdm(range(args.runs), desc="runs"):
        strategy, freeze = RUN_SPECS[r % len(RUN_SPECS)]
        seed = r // len(RUN_SPECS)
        name = f"{BACKBONE}-{strategy}{freeze or ''}-seed{seed}"
        run_id = f"{EXPERIMENT}/{name}"
        run_ids.append(run_id)
        accuracy = 0.5 + 0.25 * (r / max(1, args.runs - 1))
        t0 = time.perf_counter()
        logits, embeddings = fake_model_outputs(y, split, accuracy, k, args.dim, centroids, rng)
        timing["model"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        ev = score_outputs(run_id, data.images, y[:, None], labels, embeddings, {"period": logits}, args.projection,
                           seed)
        timing["evaluate"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        pred = logits.argmax(1)
        maps, agreement, sanity = fake_attributions(run_id, data.images, pred, y, periods, attribution_cfg, encoded,
                                                    agree, r * 7, rng)
        timing["attributions"] += time.perf_counter() - t0

        epochs, best_epoch = fake_epochs(run_id, strategy, accuracy, rng)
        run_cfg = build_run(name=name, backbone=BACKBONE, strategy=strategy, freeze_until=freeze, seed=seed,
                            projection=args.projection)
        resolved = {"experiment": EXPERIMENT, "run_id": run_id, "data": dataclasses.asdict(data.config),
                    "dataset_id": data.dataset_id, "run": dataclasses.asdict(run_cfg)}
        h = ev.headline
        finished = datetime(2025, 1, 1) + timedelta(hours=3 * r)
        summary = {
            "run_id": run_id, "experiment": EXPERIMENT, "name": name, "dataset_id": data.dataset_id,
            "backbone": BACKBONE, "strategy": strategy, "freeze_until": freeze, "tasks": ["period"],
            "pretrained": True, "config": resolved,
            "config_hash": hashlib.sha1(repr(resolved).encode()).hexdigest()[:12], "device": "cuda",
            "status": "complete", "started_at": finished - timedelta(hours=2), "finished_at": finished,
            "train_seconds": float(rng.uniform(1800, 7200)), "eval_seconds": float(rng.uniform(60, 200)),
            "epochs": len(epochs), "best_epoch": best_epoch, "lr": 1e-3,
            "test_accuracy": h.get("accuracy"), "test_balanced_accuracy": h.get("balanced_accuracy"),
            "test_macro_f1": h.get("macro_f1"), "test_top2_accuracy": h.get("top2_accuracy"),
            "test_adjacent_error_share": h.get("adjacent_error_share"), "checkpoint": str(checkpoint),
            "summary": {"notes": ["synthetic: benchmarks/make_big_store.py"], "n_images": len(data.images),
                        "n_skipped": len(data.skipped), "attribution_seconds": {}, "attribution_maps": maps.num_rows},
        }
        t0 = time.perf_counter()
        store.write_run(out, store.RunRecord(
            run=summary, labels=labels, epochs=epochs, predictions=ev.predictions, metrics=ev.metrics,
            confusion=ev.confusion, embeddings=ev.embeddings, attributions=maps, attribution_agreement=agreement,
            attribution_sanity=sanity))
        timing["write"] += time.perf_counter() - t0
    seconds.update(timing)

    add_annotations(out, data, run_ids, args.annotations, rng)
    with store.connect(out) as con:
        con.execute("CHECKPOINT")
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("images", "predictions", "embeddings", "attributions", "attribution_agreement",
                            "metrics", "confusion", "epochs", "annotations")}
    total = time.perf_counter() - started
    size = out.stat().st_size
    print(f"\nwrote {out}: {args.runs} runs x {args.images:,} images, dim {args.dim}, "
          f"{size / 2**30:.2f} GiB ({size / 2**20:,.0f} MiB) on disk, in {total:.0f} s")
    print("  rows: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))
    print("  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    thumbs = data.images["thumbnail"].map(len)
    print(f"  thumbnails: mean {thumbs.mean() / 1024:.1f} KB; heatmaps: mean "
          f"{np.mean([len(b) for b, _ in encoded]) / 1024:.2f} KB; checkpoint: "
          f"{'none' if args.no_checkpoint else checkpoint}")
    print(f"  machine: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")


if __name__ == "__main__":
    main()
