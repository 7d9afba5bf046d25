"""Wall time of a `head` run (frozen backbone) with the feature cache against without, same epochs.

pipeline.train.train on real paintings, RunConfig(strategy="head", feature_cache=True/False), early stopping out of
the way (patience above the epoch count), runs in the order cache, no cache, cache[, no cache, cache]: each uncached
run is compared with the mean of the cached runs either side of it. The head weights of the two must agree: the
cache is exact, not an approximation.

    .venv/bin/python -m benchmarks.feature_cache [--full]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time
from collections.abc import Iterator

from benchmarks import common
from pipeline import train as train_module
from pipeline.config import RunConfig
from pipeline.data.prepare import PreparedData
from pipeline.train import TrainResult, train

NAME = "feature cache"
TARGET = 20.0


@dataclasses.dataclass
class Settings:
    crop: int
    per_class: int  # paintings per period (7 periods), their stored 60/20/20 splits kept
    epochs: int
    pairs: int  # uncached runs; cached runs = pairs + 1


QUICK = Settings(crop=112, per_class=100, epochs=10, pairs=2)
FULL = Settings(crop=224, per_class=300, epochs=10, pairs=3)


@contextlib.contextmanager
def feature_pass_clock(seconds: list[float]) -> Iterator[None]:
    """Time pipeline.train's backbone pass over every image (the feature cache), from outside."""
    original = train_module.forward_pass

    def clocked(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - t0)

    train_module.forward_pass = clocked
    try:
        yield
    finally:
        train_module.forward_pass = original


def one_run(data: PreparedData, s: Settings, cached: bool) -> tuple[float, float, TrainResult]:
    """(wall seconds of train(), seconds of its feature pass, result)."""
    run = RunConfig(name="bench-head", backbone="efficientnet_lite0", pretrained=True, strategy="head",
                    epochs=s.epochs, patience=s.epochs + 1, feature_cache=cached)
    feature_seconds: list[float] = []
    with common.quiet(), feature_pass_clock(feature_seconds):
        seconds, result = common.timed(lambda: train(run, data, progress=False))
    return seconds, sum(feature_seconds), result


def head_diff(a: TrainResult, b: TrainResult) -> float:
    sa, sb = a.model.heads.state_dict(), b.model.heads.state_dict()
    return max(float((sa[k] - sb[k]).abs().max()) for k in sa)


def run(quick: bool = True) -> list[dict]:
    s = QUICK if quick else FULL
    data = common.subset(common.wikiart(s.crop), s.per_class)
    n = common.split_counts(data.images)
    print(f"efficientnet_lite0 (pretrained) head run, {len(data.images)} real paintings at {s.crop}px "
          f"(train {n['train']} / val {n['val']} / test {n['test']}), {s.epochs} epochs, batch 32, "
          f"device {common.device()}")
    one_run(data, dataclasses.replace(s, epochs=1), True)  # warm-up: the first run in a process is much slower
    cached = [one_run(data, s, True)]
    uncached = []
    for _ in range(s.pairs):
        uncached.append(one_run(data, s, False))
        cached.append(one_run(data, s, True))
    ratios = [u[0] / ((cached[i][0] + cached[i + 1][0]) / 2) for i, u in enumerate(uncached)]
    diff = max(head_diff(cached[0][2], u[2]) for u in uncached)
    same_epochs = all(len(u[2].epochs) == len(cached[0][2].epochs) == s.epochs for u in uncached)
    passes = s.epochs * (n["train"] + n["val"]) / len(data.images)
    rows = [[f"cache #{i + 1}", sec, feat, sec - feat, len(r.epochs), r.best_epoch] for i, (sec, feat, r)
            in enumerate(cached)]
    rows += [[f"no cache #{i + 1}", sec, feat, sec - feat, len(r.epochs), r.best_epoch] for i, (sec, feat, r)
             in enumerate(uncached)]
    common.table(f"`head` run with and without the feature cache ({s.epochs} epochs, {len(data.images)} images)",
                 ["run", "train() wall s", "feature pass s", "epochs s", "epochs run", "best epoch"], rows,
                 note=f"no cache ÷ cache: {', '.join(f'{r:.2f}×' for r in ratios)} (median "
                      f"{common.median(ratios):.2f}×); head weights max |diff| {diff:.2e}; same epochs: "
                      f"{same_epochs}. Backbone passes: cached 1 x every image ({len(data.images)}), uncached "
                      f"{s.epochs} x (train + val) = {passes:.1f}x as many images.")
    note = f"head weights max |diff| {diff:.1e}; backbone-pass bound {passes:.1f}× at {s.epochs} epochs"
    return [common.result(NAME, f"head run {s.epochs} epochs: no cache ÷ cache", common.median(ratios), TARGET,
                          note=note)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="more images, 224px (for a GPU machine)")
    args = parser.parse_args()
    print(common.machine_line(common.machine()))
    common.summary_table(run(quick=not args.full))


if __name__ == "__main__":
    main()
