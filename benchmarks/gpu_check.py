"""The GPU-relevant parts of `make bench FULL=1` in one short command, with one JSON of results.

- ResNet18 training steps at 224 px (bf16 autocast and channels_last on a GPU, as the pipeline trains) from the
  decoded cache against the same steps on batches already on the device (its in-memory ceiling);
- one epoch of a real run through pipeline.train (Lightning), then its evaluation, attributions and store write:
  `make artifacts`' path (pipeline.experiment.run_experiment), each stage clocked.

Real paintings (../shared/datasets/wikiart-styles) when there, else the rehearsal's generated set. ResNet18 runs
without pretrained weights (none can be downloaded on these machines; speed does not depend on them). `--tiny`
(or PERIODEYE_GPU_CHECK_TINY=1): a few generated images at 64 px, so it runs in seconds on a CPU, in a test.

    bash benchmarks/gpu_check.sh OUT.json            # ≤ 8 min on one GPU
    PERIODEYE_GPU_CHECK_TINY=1 bash benchmarks/gpu_check.sh OUT.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks import common, full_workload, input_pipeline
from pipeline import experiment, store
from pipeline.config import load_experiment
from pipeline.data.historic_art import PERIODS


@dataclasses.dataclass
class Check:
    crop: int
    resize: int
    generated: int  # generated images when the real paintings are absent (always in tiny mode)
    steps: input_pipeline.Settings
    batch: int
    attribution_images: int
    ig_steps: int


TINY = Check(crop=64, resize=72, generated=144,
             steps=input_pipeline.Settings(crop=64, batch=8, rounds=1, steps=2, block=1, warmup=1, loader_rounds=1,
                                           loader_batches=1, loop_workers=(), loader_workers=(),
                                           train_per_class=0),
             batch=16, attribution_images=4, ig_steps=4)
GPU = Check(crop=224, resize=256, generated=7_000,
            steps=input_pipeline.Settings(crop=224, batch=64, rounds=3, steps=30, block=10, warmup=5,
                                          loader_rounds=1, loader_batches=1, loop_workers=(), loader_workers=(),
                                          train_per_class=0),
            batch=64, attribution_images=200, ig_steps=32)


def data_config(c: Check, work: Path, tiny: bool) -> dict:
    """The real paintings (ImageFolder) when present and not tiny, else a generated set of the reference's shape."""
    root = common.paintings_root()
    if not tiny and root.exists():
        return {"source": "imagefolder", "path": str(root), "resize": c.resize, "crop": c.crop}
    manifest = full_workload.generate(work / "images", c.generated)
    return {"source": "manifest", "path": str(manifest), "resize": c.resize, "crop": c.crop,
            "period_order": list(PERIODS)}


def experiment_file(c: Check, work: Path, tiny: bool) -> Path:
    config = {
        "name": "gpu-check",
        "data": {**data_config(c, work, tiny), "thumbnail_size": 64,
                 "split": {"mode": "fractions", "val": 0.2, "test": 0.2, "seed": 0}},
        "defaults": {"backbone": "resnet18", "pretrained": False, "batch_size": c.batch, "lr": 0.01,
                     "momentum": 0.9, "patience": 3, "epochs": 1},
        "attributions": {"methods": ["guided_backprop", "integrated_gradients", "grad_cam"], "splits": ["test"],
                         "max_images": c.attribution_images, "ig_steps": c.ig_steps, "heatmap_size": 64,
                         "sanity_images": 2},
        "runs": [{"name": "resnet18-finetune-1epoch", "strategy": "finetune"}],
    }
    path = work / "gpu-check.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def ceiling(c: Check, data) -> dict:
    """ResNet18 training images/s from the decoded cache and from batches already on the device."""
    dev = common.device()
    periods = list(data.periods)[:7]  # input_pipeline's model has 7 outputs (WikiArt's styles); speed is the same
    data = dataclasses.replace(data, images=data.images[data.images["period"].isin(periods)], periods=periods)
    with common.quiet():
        rates = input_pipeline.measure_model("resnet18", data, c.steps, dev)
    cache, top = common.median(rates["cache"]), common.median(rates["ceiling"])
    return {"backbone": "resnet18", "crop": c.crop, "batch": c.steps.batch,
            "bf16_channels_last": dev.type == "cuda", "cache_images_per_s": cache, "ceiling_images_per_s": top,
            "cache_over_ceiling": common.ratio(rates["cache"], rates["ceiling"])}


def check(out: Path, tiny: bool) -> dict:
    c = TINY if tiny else GPU
    started = time.perf_counter()
    result: dict = {"mode": "tiny" if tiny else "gpu", "started": common.now(), "machine": common.machine(),
                    "device": str(common.device())}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        exp = load_experiment(experiment_file(c, work, tiny))
        exp.artifacts_dir, exp.store = str(work / "artifacts"), str(work / "artifacts" / "periodeye.duckdb")
        with common.quiet():
            prepare_s, data = common.timed(lambda: experiment.prepare_data(exp, progress=False))
        result["data"] = {"source": exp.data.source, "images": len(data.images), "crop": c.crop,
                          "prepare_seconds": prepare_s}
        result["ceiling"] = ceiling(c, data)
        clock = full_workload.Clock()
        with common.quiet(), clock.installed():
            wall, _ = common.timed(lambda: experiment.run_experiment(exp, progress=False))
        stages = clock.stages()
        with store.connect(exp.store, read_only=True) as con:
            n_train = con.execute("SELECT count(*) FROM images WHERE split = 'train'").fetchone()[0]
            maps = con.execute("SELECT count(*) FROM attributions").fetchone()[0]
            run = con.execute("SELECT train_seconds, eval_seconds FROM runs").fetchone()
    result["train_epoch"] = {"run": "resnet18 finetune, 1 epoch (pipeline.train, Lightning)",
                             "seconds": stages.get("training", 0.0), "train_images": int(n_train),
                             "images_per_s": n_train / max(stages.get("training", 0.0), 1e-9),
                             "store_train_seconds": run[0]}
    result["evaluation"] = {"seconds": stages.get("evaluation", 0.0), "map_2d_seconds": stages.get("2-D map", 0.0),
                            "images": len(data.images), "store_eval_seconds": run[1]}
    result["attributions"] = {"seconds": stages.get("attributions", 0.0), "stored_maps": int(maps),
                              "images": c.attribution_images, "ig_steps": c.ig_steps}
    result["store_write"] = {"seconds": stages.get("store write", 0.0)}
    result["run_experiment_seconds"] = wall
    result["total_seconds"] = time.perf_counter() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="where the JSON of results goes")
    parser.add_argument("--tiny", action="store_true", default=os.environ.get("PERIODEYE_GPU_CHECK_TINY") == "1",
                        help="a few generated images at 64 px (CPU, tests)")
    args = parser.parse_args()
    result = check(args.out, args.tiny)
    print(json.dumps({k: result[k] for k in ("device", "ceiling", "train_epoch", "evaluation", "attributions",
                                             "total_seconds")}, indent=2, default=str))
    print(f"results in {args.out}")


if __name__ == "__main__":
    main()
