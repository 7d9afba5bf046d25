"""Training images/s by data path, the same model and steps for each, measured side by side.

- cache: the pipeline's path: batches from the decoded uint8 cache (pipeline.data.loaders.make_loader), cropped and
  normalised on the device by BatchTransform;
- ceiling: the same training step on one batch already in memory (on the device, normalised): the compute limit;
- jpeg wN: the old way: a DataLoader over the JPEG files, PIL decode + reference_transform (SquarePad, Resize,
  CenterCrop, ToTensor, Normalize) per image, every epoch, N worker processes.

Manual SGD loops (the pipeline's optimiser), no Lightning, so the figure is about the data path; on a GPU bf16
autocast and channels_last as the pipeline trains. Also: the loaders alone (no model), and one real
pipeline.train.train finetune epoch against the ceiling.

    .venv/bin/python -m benchmarks.input_pipeline [--full]
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from benchmarks import common
from pipeline.config import build_run
from pipeline.data.loaders import make_loader
from pipeline.data.prepare import PreparedData
from pipeline.data.transforms import BatchTransform, reference_transform
from pipeline.models.backbones import build_backbone
from pipeline.models.classifier import PeriodClassifier
from pipeline.train import train

NAME = "input pipeline"
BACKBONES = ("resnet18", "efficientnet_lite0")
A_OVER_B, A_OVER_C = 0.90, 3.0


@dataclasses.dataclass
class Settings:
    crop: int
    batch: int
    rounds: int  # interleaved rounds per variant
    steps: int  # timed training steps per variant and round
    block: int  # cache and ceiling alternate every `block` steps
    warmup: int  # untimed steps (allocator; JPEG loaders: worker start-up, every round)
    loader_rounds: int  # interleaved rounds for the loaders alone (cheap: more rounds, less noise)
    loader_batches: int  # timed batches per loader and round (after 2 untimed)
    loop_workers: tuple[int, ...]  # DataLoader workers of the old way in the training loop
    loader_workers: tuple[int, ...]  # ... and for the loaders alone
    train_per_class: int  # images per period for the pipeline.train.train epoch


QUICK = Settings(crop=112, batch=32, rounds=3, steps=4, block=1, warmup=1, loader_rounds=5, loader_batches=8,
                 loop_workers=(2,), loader_workers=(0, 2), train_per_class=48)
FULL = Settings(crop=224, batch=32, rounds=3, steps=20, block=10, warmup=3, loader_rounds=5, loader_batches=40,
                loop_workers=(2, 8), loader_workers=(0, 2, 8), train_per_class=300)


class JpegFiles(Dataset):
    """The old way: every access opens and decodes the JPEG and runs the per-image transform."""

    def __init__(self, paths: list[str], targets: np.ndarray, transform: Callable) -> None:
        self.paths, self.targets, self.transform = paths, targets, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.paths[i]) as img:
            return self.transform(img.convert("RGB")), int(self.targets[i])


class Stepper:
    """One model and its SGD optimiser; `step` is one training step on a normalised batch."""

    def __init__(self, backbone: str, dev: torch.device) -> None:
        bb = build_backbone(backbone, pretrained=backbone.startswith("efficientnet"))  # resnet: no weights offline
        self.model = PeriodClassifier(bb, {"period": 7}).to(dev).train()
        self.mean, self.std = bb.mean, bb.std
        self.dev, self.gpu = dev, dev.type == "cuda"
        if self.gpu:
            self.model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if self.gpu:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.dev.type, dtype=torch.bfloat16, enabled=self.gpu):
            loss = F.cross_entropy(self.model(x)["period"], y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


def batches(loader: DataLoader) -> Iterator:
    """Endless batches, epoch after epoch."""
    return itertools.chain.from_iterable(itertools.repeat(loader))


def run_steps(it: Iterator, consume: Callable, n: int, dev: torch.device) -> float:
    """Seconds for `n` batches of `it` through `consume` (GPU work included)."""
    return common.timed(lambda: [consume(*next(it)) for _ in range(n)], dev)[0]


def rate(batches_of: Callable[[], Iterator], consume: Callable, warmup: int, n: int, batch: int,
         dev: torch.device) -> float:
    """Images/s of `n` batches after `warmup` untimed ones, from a fresh iterator (workers restart as per epoch)."""
    it = batches_of()
    run_steps(it, consume, warmup, dev)
    return n * batch / run_steps(it, consume, n, dev)


def loaders(data: PreparedData, s: Settings, mean, std, workers: tuple[int, ...]
            ) -> tuple[DataLoader, dict[int, DataLoader]]:
    """The cache loader and the old way's JPEG loaders (one per worker count) over the same training images."""
    rows, targets = common.as_batches(data, "train")
    cache = make_loader(data.pixels, rows, targets, s.batch, shuffle=True, seed=0)
    paths = data.images.loc[data.images["split"] == "train", "path"].tolist()
    files = JpegFiles(paths, targets, reference_transform(data.config.resize, s.crop, mean, std))
    jpeg = {w: DataLoader(files, batch_size=s.batch, shuffle=True, num_workers=w,
                          generator=torch.Generator().manual_seed(0)) for w in workers}
    return cache, jpeg


def in_memory(loader: DataLoader, transform: BatchTransform, n: int, dev: torch.device) -> list[tuple]:
    """`n` distinct batches of real paintings, normalised, on the device: the ceiling trains on these, so its model
    sees data like the other variants' (one batch over and over would be overfitted within a few steps)."""
    it = batches(loader)
    return [(transform(x.to(dev), train=True), y[:, 0].to(dev)) for x, y in itertools.islice(it, n)]


def measure_model(backbone: str, data: PreparedData, s: Settings, dev: torch.device) -> dict[str, list[float]]:
    """Training images/s per data path and round; every variant trains its own copy of the model (same start).

    cache and ceiling alternate block by block (`s.block` steps each: one step on a noisy CPU), so a busy spell of
    a shared machine hits both alike; the JPEG loaders run as one block per round (a fresh iterator, as per epoch,
    so their workers stop between blocks instead of decoding while the other variants are timed).
    """
    steppers = {}
    for name in ["cache", "ceiling", *[f"jpeg w{w}" for w in s.loop_workers]]:
        torch.manual_seed(0)
        steppers[name] = Stepper(backbone, dev)
    mean, std = steppers["cache"].mean, steppers["cache"].std
    transform = BatchTransform(s.crop, mean=mean, std=std).to(dev)
    cache, jpeg = loaders(data, s, mean, std, s.loop_workers)
    ring = itertools.cycle(in_memory(cache, transform, min(32, s.rounds * s.steps + s.warmup), dev))

    def cache_step(x: torch.Tensor, y: torch.Tensor) -> None:
        steppers["cache"].step(transform(x.to(dev, non_blocking=True), train=True), y[:, 0].to(dev, non_blocking=True))

    def jpeg_step(name: str) -> Callable:
        return lambda x, y: steppers[name].step(x.to(dev, non_blocking=True), y.to(dev, non_blocking=True))

    paired = {"cache": (batches(cache), cache_step), "ceiling": (ring, steppers["ceiling"].step)}
    for it, step in paired.values():  # warm-up
        run_steps(it, step, s.warmup, dev)
    out: dict[str, list[float]] = {name: [] for name in steppers}
    for r in range(s.rounds):
        seconds = dict.fromkeys(paired, 0.0)
        for k in range(s.steps // s.block):
            for name in (list(paired) if (k + r) % 2 == 0 else list(paired)[::-1]):
                seconds[name] += run_steps(*paired[name], s.block, dev)
        for name in paired:
            out[name].append(s.steps // s.block * s.block * s.batch / seconds[name])
        for w, loader in jpeg.items():
            name = f"jpeg w{w}"
            out[name].append(rate(lambda loader=loader: batches(loader), jpeg_step(name), s.warmup, s.steps, s.batch,
                                  dev))
    return out


def one_thread(fn: Callable[[], float]) -> Callable[[], float]:
    """`fn` with torch on one thread, as in a DataLoader worker (on a busy CPU two OpenMP threads can be far slower)."""
    def call() -> float:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn()
        finally:
            torch.set_num_threads(threads)

    return call


def measure_loaders(data: PreparedData, s: Settings, dev: torch.device) -> dict[str, list[float]]:
    """Images/s of the data paths alone (batches delivered normalised on the device, no model); on a CPU the cache
    path also with torch on one thread, like each JPEG worker."""
    transform = BatchTransform(s.crop).to(dev)
    cache, jpeg = loaders(data, s, transform.mean.flatten().tolist(), transform.std.flatten().tolist(),
                          s.loader_workers)

    def to_device(x: torch.Tensor, y: torch.Tensor) -> None:
        x.to(dev, non_blocking=True)

    variants = {"cache": lambda: rate(lambda: batches(cache), lambda x, y: transform(x.to(dev), train=True), 2,
                                      s.loader_batches, s.batch, dev)}
    if dev.type == "cpu" and torch.get_num_threads() > 1:
        variants["cache 1 thread"] = one_thread(variants["cache"])
    for w, loader in jpeg.items():
        variants[f"jpeg w{w}"] = lambda loader=loader: rate(lambda: batches(loader), to_device, 2, s.loader_batches,
                                                            s.batch, dev)
    return common.interleave(variants, s.loader_rounds)


def measure_train(data: PreparedData, s: Settings, dev: torch.device) -> tuple[float, float, int]:
    """One finetune epoch through pipeline.train.train (Lightning, validation included), then the ceiling on the same
    training images: (train() images/s, ceiling images/s, training images)."""
    small = common.subset(data, s.train_per_class)
    n_train = common.split_counts(small.images)["train"]
    run = build_run(name="bench-finetune", backbone="efficientnet_lite0", pretrained=True, strategy="finetune",
                    epochs=1, batch_size=s.batch, patience=10)
    with common.quiet():
        result = train(run, small, progress=False)
    torch.manual_seed(0)
    st = Stepper("efficientnet_lite0", dev)
    rows, targets = common.as_batches(small, "train")
    loader = make_loader(small.pixels, rows, targets, s.batch, shuffle=True, seed=0)
    mem = in_memory(loader, BatchTransform(s.crop, mean=st.mean, std=st.std).to(dev), len(loader), dev)
    ceiling = rate(lambda: iter(mem), st.step, 1, max(1, n_train // s.batch - 1), s.batch, dev)  # full batches
    return n_train / result.seconds, ceiling, n_train


def run(quick: bool = True) -> list[dict]:
    s = QUICK if quick else FULL
    dev = common.device()
    data = common.wikiart(s.crop)
    n_train = common.split_counts(data.images)["train"]
    print(f"{n_train} real training paintings at {s.crop}px (cache {data.config.resize}px), batch {s.batch}, "
          f"{s.rounds} rounds x {s.steps} timed steps per variant (cache and ceiling alternating every {s.block}), "
          f"device {dev}")
    measured = {backbone: measure_model(backbone, data, s, dev) for backbone in BACKBONES}
    med = {b: {k: common.median(v) for k, v in r.items()} for b, r in measured.items()}
    common.table(f"Training images/s by data path ({s.crop}px, batch {s.batch}, device {dev})",
                 ["model", "data path", "images/s (median)", "÷ ceiling (median of rounds)"],
                 [[b, k, med[b][k], common.ratio(v, r["ceiling"])] for b, r in measured.items() for k, v in r.items()])

    lo = measure_loaders(data, s, dev)
    lo_med = {k: common.median(v) for k, v in lo.items()}
    best_jpeg = max((k for k in lo if k.startswith("jpeg")), key=lambda k: lo_med[k])
    best_cache = max((k for k in lo if k.startswith("cache")), key=lambda k: lo_med[k])
    common.table("Data path alone (no model): images/s delivered normalised on the device",
                 ["data path", "images/s", f"{best_cache} ÷ this", *[f"÷ {b} training ceiling" for b in med]],
                 [[k, lo_med[k], common.ratio(lo[best_cache], v), *[lo_med[k] / m["ceiling"] for m in med.values()]]
                  for k, v in lo.items()])

    results = []
    for b, r in measured.items():
        jpeg = max((k for k in r if k.startswith("jpeg")), key=lambda k: med[b][k])  # the old way at its best
        decode_bound = lo_med[best_jpeg] < med[b]["ceiling"]
        note = "" if decode_bound else (f"model-bound here: JPEG decoding alone gives {lo_med[best_jpeg]:.0f} img/s, "
                                        f"the model trains {med[b]['ceiling']:.0f} img/s")
        results.append(common.result(NAME, f"{b} {s.crop}px: cache / ceiling", common.ratio(r["cache"], r["ceiling"]),
                                     A_OVER_B))
        results.append(common.result(NAME, f"{b} {s.crop}px: cache / {jpeg}", common.ratio(r["cache"], r[jpeg]),
                                     A_OVER_C, applies=decode_bound, note=note))
    results.append(common.result(NAME, f"loaders alone: {best_cache} / {best_jpeg}",
                                 common.ratio(lo[best_cache], lo[best_jpeg]), A_OVER_C,
                                 note="what a/c tends to once the model is not the bottleneck"))

    pipe, ceiling, n = measure_train(data, s, dev)
    common.table("One epoch through pipeline.train.train (efficientnet_lite0 finetune, Lightning)",
                 ["training images", "train() images/s", "ceiling images/s", "train() ÷ ceiling"],
                 [[n, pipe, ceiling, pipe / ceiling]],
                 note="train() time includes building the Trainer and the validation pass; one sample each.")
    results.append(common.result(NAME, "pipeline.train.train epoch / ceiling", pipe / ceiling,
                                 note="one sample; includes Lightning start-up and validation"))
    return results


if __name__ == "__main__":
    common.standalone(run, __doc__, "224px, more steps (for a GPU machine)")
