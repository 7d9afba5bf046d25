"""Issue 17's best recipe on a GPU (configs/wikiart-best-gpu.yaml), measured in one command: see gpu_best.sh.

- `probe OUT.json`: training images/s of each backbone of the config at its crop and batch (bf16, channels_last, as
  the pipeline trains), on batches already on the device: what the run's epochs cost, known before it starts.
- `summary STORE OUT.json`: every run in the store with its test and validation accuracy, balanced accuracy and
  macro-F1 and their 95 % intervals, its epochs (validation accuracy per epoch) and its training and evaluation
  seconds: the README row, from the store the run wrote (the store itself stays on the GPU machine).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from benchmarks import common, input_pipeline
from pipeline import store
from pipeline.config import load_experiment
from pipeline.errors import ConfigError

CONFIG = Path("configs/wikiart-best-gpu.yaml")
FIGURES = ("accuracy", "balanced_accuracy", "macro_f1")


def probe(config: Path, overrides: list[str], warmup: int = 5, steps: int = 20) -> dict:
    """Images/s of a full training step per backbone of `config` (every layer trained, as its second stage)."""
    dev = common.device()
    exp = load_experiment(config, overrides=overrides)
    crop, batch = exp.data.crop, max(r.loop.batch_size for r in exp.runs if not r.ensemble)
    out: dict = {"machine": common.machine(), "device": str(dev), "crop": crop, "batch": batch, "images_per_s": {}}
    x = torch.randn(batch, 3, crop, crop, device=dev)
    y = torch.randint(0, 7, (batch,), device=dev)
    for backbone in dict.fromkeys(r.model.backbone for r in exp.runs if not r.ensemble):
        out["images_per_s"][backbone] = steps * batch / step_seconds(
            input_pipeline.Stepper(backbone, dev), x, y, warmup, steps)
    return out


def step_seconds(stepper: input_pipeline.Stepper, x: torch.Tensor, y: torch.Tensor, warmup: int, steps: int
                 ) -> float:
    """Seconds for `steps` training steps on one batch, after `warmup` untimed ones (cuDNN's choice, allocator)."""
    for _ in range(warmup):
        stepper.step(x, y)
    return common.timed(lambda: [stepper.step(x, y) for _ in range(steps)], x.device)[0]


def summary(path: Path) -> dict:
    """The store's runs as README rows: test and validation figures with intervals, epochs, seconds."""
    with store.connect(str(path), read_only=True) as con:
        runs = con.execute("SELECT run_id, status, backbone, strategy, device, train_seconds, eval_seconds, epochs, "
                           "best_epoch, started_at, finished_at FROM runs WHERE evaluation_of IS NULL "
                           "ORDER BY started_at").df()
        metrics = con.execute("SELECT run_id, split, metric, value, low, high FROM metrics WHERE task = 'period' "
                              "AND label IS NULL AND split IN ('val', 'test') AND metric IN "
                              f"({', '.join(repr(m) for m in FIGURES)})").df()
        epochs = con.execute("SELECT run_id, stage, epoch, val_acc FROM epochs ORDER BY run_id, epoch").df()
    out = {}
    for run in runs.to_dict("records"):
        rid = run.pop("run_id")
        mine = metrics[metrics.run_id == rid]
        out[rid] = {**{k: str(v) if k.endswith("_at") else v for k, v in run.items()},
                    **{f"{m.split}_{m.metric}": [round(m.value, 4), round(m.low, 4), round(m.high, 4)]
                       for m in mine.itertuples()},
                    "epochs_val_acc": [[e.stage, e.epoch, round(e.val_acc, 4)]
                                       for e in epochs[epochs.run_id == rid].itertuples()]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("probe", help="training images/s per backbone of the config")
    p.add_argument("out", type=Path)
    p.add_argument("--config", type=Path, default=CONFIG)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as `pipeline run --set`")
    s = sub.add_parser("summary", help="the store's runs with their intervals, as JSON")
    s.add_argument("store", type=Path)
    s.add_argument("out", type=Path)
    args, _ = parser.parse_known_args()  # probe takes the run's --set and ignores its other options
    try:
        result = probe(args.config, args.set) if args.command == "probe" else summary(args.store)
    except (ConfigError, store.StoreError) as exc:  # a bad config or a run that left no store: one line
        sys.exit(f"gpu_best {args.command}: {exc}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
