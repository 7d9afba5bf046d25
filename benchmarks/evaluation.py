"""Images/s of the pipeline's one-pass evaluation against a bare forward over the same batches.

- pipeline: pipeline.evaluate.forward_pass (heads, embeddings kept; batches read from the decoded cache and
  normalised on the device) followed by pipeline.evaluate.score_outputs (every store row: predictions, metrics per
  split, confusion, the 2-D map with projection="pca");
- bare: `model(x)` over the same images, already normalised, in memory on the device (same precision: bf16 autocast
  and channels_last on a GPU, as forward_pass does).

    .venv/bin/python -m benchmarks.evaluation [--full]
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from benchmarks import common
from pipeline.data.labels import label_targets
from pipeline.data.transforms import BatchTransform
from pipeline.evaluate import score_outputs
from pipeline.inference import forward_pass
from pipeline.models.backbones import build_backbone
from pipeline.models.classifier import PeriodClassifier

NAME = "evaluation"
TARGET = 0.85
BACKBONES = ("efficientnet_lite0", "resnet18")


@dataclasses.dataclass
class Settings:
    crop: int
    per_class: int
    batch: int  # the pipeline evaluates with 2 x the training batch
    rounds: int


QUICK = Settings(crop=112, per_class=100, batch=64, rounds=3)
FULL = Settings(crop=224, per_class=1000, batch=64, rounds=3)


def measure(backbone: str, s: Settings, data, dev: torch.device) -> tuple[dict[str, list[float]], list[float]]:
    """Images/s of both variants per round, and the score_outputs() share of each pipeline round.

    Within a round the variants alternate chunk by chunk (two batches each, order swapped every chunk), so a busy
    spell of a shared machine hits both alike: forward_pass runs once per chunk (the same code and batches as one
    call over every row; its per-call set-up is negligible), score_outputs() once over the concatenated outputs.
    """
    bb = build_backbone(backbone, pretrained=backbone.startswith("efficientnet"))
    model = PeriodClassifier(bb, {"period": len(data.periods)}).eval().to(dev)
    transform = BatchTransform(s.crop, mean=bb.mean, std=bb.std).to(dev)
    rows, _ = common.as_batches(data)
    labels = {"period": list(data.periods)}
    targets = label_targets(data.images, labels)
    gpu = dev.type == "cuda"
    if gpu:
        model.to(memory_format=torch.channels_last)
    chunks = [rows[i : i + 2 * s.batch] for i in range(0, len(rows), 2 * s.batch)]
    in_memory = []  # per chunk: its batches, normalised, on the device
    for chunk in chunks:
        xs = [transform(torch.from_numpy(data.pixels[chunk[i : i + s.batch]]).to(dev))
              for i in range(0, len(chunk), s.batch)]
        in_memory.append([x.contiguous(memory_format=torch.channels_last) if gpu else x for x in xs])

    @torch.inference_mode()
    def bare(xs: list[torch.Tensor]) -> None:
        for x in xs:
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=gpu):
                model(x)

    def pipeline(chunk) -> tuple:
        return forward_pass(model, transform, data.pixels, chunk, s.batch, dev, heads=True, progress=False)

    bare(in_memory[0])  # warm-up
    rates: dict[str, list[float]] = {"pipeline": [], "bare": []}
    shares = []
    for r in range(s.rounds):
        t_pipe = t_bare = 0.0
        embs, logits = [], []
        for k, chunk in enumerate(chunks):
            for variant in (("pipeline", "bare") if (k + r) % 2 == 0 else ("bare", "pipeline")):
                if variant == "bare":
                    t_bare += common.timed(lambda k=k: bare(in_memory[k]), dev)[0]
                else:
                    seconds, (emb, out) = common.timed(lambda chunk=chunk: pipeline(chunk), dev)
                    t_pipe += seconds
                    embs.append(emb)
                    logits.append(out["period"])
        emb, out = np.concatenate(embs), {"period": np.concatenate(logits)}
        t_rows, _ = common.timed(
            lambda e=emb, o=out: score_outputs("bench/eval", data.images, targets, labels, e, o, "pca"))
        rates["pipeline"].append(len(rows) / (t_pipe + t_rows))
        rates["bare"].append(len(rows) / t_bare)
        shares.append(t_rows / (t_pipe + t_rows))
    return rates, shares


def run(quick: bool = True) -> list[dict]:
    s = QUICK if quick else FULL
    dev = common.device()
    data = common.subset(common.wikiart(s.crop), s.per_class)
    print(f"{len(data.images)} real paintings at {s.crop}px, batch {s.batch}, {s.rounds} interleaved rounds, "
          f"device {dev}")
    rows, results = [], []
    for backbone in BACKBONES:
        r, shares = measure(backbone, s, data, dev)
        ratio = common.ratio(r["pipeline"], r["bare"])
        rows.append([backbone, common.median(r["pipeline"]), common.median(r["bare"]), ratio,
                     f"{100 * common.median(shares):.1f} %"])
        share = f"{100 * common.median(shares):.1f}"
        results.append(common.result(NAME, f"{backbone} {s.crop}px: forward_pass+evaluate ÷ bare forward", ratio,
                                     TARGET, note=f"score_outputs() (rows, metrics, PCA) {share} % of the time"))
    common.table(f"Evaluation images/s ({len(data.images)} images, {s.crop}px, device {dev})",
                 ["model", "pipeline images/s", "bare model(x) images/s", "pipeline ÷ bare",
                  "score_outputs() share"], rows)
    return results


if __name__ == "__main__":
    common.standalone(run, __doc__, "7,000 images, 224px (for a GPU machine)")
