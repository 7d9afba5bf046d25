"""Wall time of a `head` run (frozen backbone) with the feature cache against without, same epochs.

pipeline.train.train on real paintings, RunConfig(strategy="head", feature_cache=True/False), early stopping out of
the way (patience above the epoch count), three variants in turn, round after round: no cache; the cache with the
features computed in the run (kept features removed first); the cache with the features the previous run kept on
disk (what a second head, LR or seed on the same backbone gets). The head weights of the two must agree: the
cache is exact, not an approximation.

    .venv/bin/python -m benchmarks.feature_cache [--full]
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks import common
from pipeline import train as train_module
from pipeline.config import build_run
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


def one_run(data: PreparedData, s: Settings, cached: bool, from_disk: bool = False
            ) -> tuple[float, float, TrainResult]:
    """(wall seconds of train(), seconds of its feature pass, result); the kept features are removed first unless
    `from_disk` (then they must be there: the run reads them instead of passing the backbone)."""
    run = build_run(name="bench-head", backbone="efficientnet_lite0", pretrained=True, strategy="head",
                    epochs=s.epochs, patience=s.epochs + 1, feature_cache=cached)
    folder = Path(data.pixels.filename).parent / "features"
    if not from_disk:
        shutil.rmtree(folder, ignore_errors=True)
    feature_seconds: list[float] = []
    with common.quiet(), feature_pass_clock(feature_seconds):
        seconds, result = common.timed(lambda: train(run, data, progress=False))
    assert from_disk == any("reused" in n for n in result.notes), result.notes
    return seconds, sum(feature_seconds), result


def head_diff(a: TrainResult, b: TrainResult) -> float:
    sa, sb = a.model.heads.state_dict(), b.model.heads.state_dict()
    return max(float((sa[k] - sb[k]).abs().max()) for k in sa)


VARIANTS = {"no cache": (False, False), "cache, features computed in the run": (True, False),
            "cache, features kept from an earlier run": (True, True)}


def run(quick: bool = True) -> list[dict]:
    s = QUICK if quick else FULL
    data = common.subset(common.wikiart(s.crop), s.per_class)
    n = common.split_counts(data.images)
    print(f"efficientnet_lite0 (pretrained) head run, {len(data.images)} real paintings at {s.crop}px "
          f"(train {n['train']} / val {n['val']} / test {n['test']}), {s.epochs} epochs, batch 32, "
          f"device {common.device()}")
    one_run(data, dataclasses.replace(s, epochs=1), True)  # warm-up: the first run in a process is much slower
    runs: dict[str, list[tuple[float, float, TrainResult]]] = {name: [] for name in VARIANTS}
    for _ in range(s.pairs):  # in this order: the kept features are the ones the previous run wrote
        for name, (cached, from_disk) in VARIANTS.items():
            runs[name].append(one_run(data, s, cached, from_disk))
    none, cold, warm = (runs[name] for name in VARIANTS)
    vs_cold = [u[0] / c[0] for u, c in zip(none, cold, strict=True)]
    vs_warm = [u[0] / w[0] for u, w in zip(none, warm, strict=True)]
    diff = max(head_diff(c[2], u[2]) for c, u in zip(cold + warm, none + none, strict=True))
    passes = s.epochs * (n["train"] + n["val"]) / len(data.images)
    rows = [[f"{name} #{i + 1}", sec, feat, sec - feat, len(r.epochs), r.best_epoch]
            for name, results in runs.items() for i, (sec, feat, r) in enumerate(results)]
    common.table(f"`head` run with and without the feature cache ({s.epochs} epochs, {len(data.images)} images)",
                 ["run", "train() wall s", "feature pass s", "epochs s", "epochs run", "best epoch"], rows,
                 note=f"no cache ÷ cache computed in the run: {common.median(vs_cold):.2f}× (bound: the cached run "
                      f"passes every image once, the uncached one {s.epochs} x train + val = {passes:.1f}x as many); "
                      f"no cache ÷ features kept on disk: {common.median(vs_warm):.2f}×; head weights max |diff| "
                      f"{diff:.2e}.")
    note = f"head weights max |diff| {diff:.1e}"
    return [common.result(NAME, f"head run {s.epochs} epochs: no cache ÷ features kept from an earlier run",
                          common.median(vs_warm), TARGET, note=note),
            common.result(NAME, f"head run {s.epochs} epochs: no cache ÷ features computed in the run",
                          common.median(vs_cold), TARGET, applies=False,
                          note=f"bounded by {passes:.1f}× at {s.epochs} epochs (one pass over every image)")]


if __name__ == "__main__":
    common.standalone(run, __doc__, "more images, 224px (for a GPU machine)")
