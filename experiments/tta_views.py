"""Which test-time views pay? A stored run's validation accuracy per set of views, from its own checkpoint.

Every validation painting passes through the run's model once per view (the centre, its mirror, five crops inside
the painting: pipeline/data/transforms.py); the views' probabilities are then averaged in every combination the
`tta` option offers (none, flip, crops, flip + crops). Only the validation split is scored, so the choice stays
honest; the test split is not read.

    .venv/bin/python -m experiments.tta_views CONFIG RUN_ID --store STORE
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from pipeline import store
from pipeline.checkpoint import SavedModel
from pipeline.config import load_experiment
from pipeline.cpu_memory import keep_freed_memory
from pipeline.data.labels import label_targets
from pipeline.data.prepare import prepare
from pipeline.data.transforms import tta_views
from pipeline.explain import load_run
from pipeline.inference import forward_pass, mean_of_views
from pipeline.intervals import wilson


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("experiment")
    parser.add_argument("run_id")
    parser.add_argument("--store", required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    keep_freed_memory()
    model = load_run(args.store, args.run_id)
    if not isinstance(model, SavedModel):
        raise SystemExit(f"{args.run_id} is an ensemble: give one of its members")
    exp = load_experiment(args.experiment)
    data = prepare(exp.data, Path(exp.artifacts_dir) / "cache")  # the decoded cache, reused
    with store.connect(args.store, read_only=True) as con:  # the run's own validation split, as stored
        ids = {r[0] for r in con.execute("SELECT image_id FROM predictions WHERE run_id = ? AND split = 'val' "
                                         "AND task = 'period'", [args.run_id]).fetchall()}
    val = data.images[data.images["image_id"].isin(ids)]
    assert len(val) == len(ids), "the prepared data is not the run's: prepare it with the run's config"
    targets = label_targets(val, model.labels)[:, 0]
    rows = val["cache_index"].to_numpy()
    per_view = {}
    for view in tta_views(["flip", "crops"]):
        _, logits = forward_pass(model.model, model.transform, data.pixels, rows, args.batch_size,
                                 torch.device("cpu"), desc=f"val ({view})", view=view)
        per_view[view] = logits
    print(f"{args.run_id}: validation accuracy by test-time views ({len(rows)} paintings)")
    for tta in ([], ["flip"], ["crops"], ["flip", "crops"]):
        views = tta_views(tta)
        predicted = mean_of_views([per_view[v] for v in views])["period"].argmax(1)
        right = int((predicted == targets).sum())
        low, high = wilson(right, len(targets))
        print(f"  tta {tta or 'none'} ({len(views)} views): {right / len(targets):.3f} [{low:.3f}, {high:.3f}]")


if __name__ == "__main__":
    main()
