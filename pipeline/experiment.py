"""Run an experiment: prepare its data once, then train, evaluate and store each run.

Runs already complete in the store with the same resolved config are skipped, so a killed
`make artifacts` resumes with the runs still missing (a run is stored whole or not at all).

Distributed runs (DDP) execute this whole module once per process: Lightning's `ddp` launcher
re-executes the command when rank 0 reaches its first fit (torchrun/SLURM start every process
themselves). Every process prepares the data and trains; only global rank 0 writes the store
and the run's files. The process that launched the others passes on the list of runs it still
has to do (PERIODEYE_RUN_QUEUE), so the processes it starts train exactly the same runs in the
same order, whatever the store holds by then and whatever --force says.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from datetime import datetime
from pathlib import Path

import torch
import yaml

from pipeline import store
from pipeline.attribute import attribute_run
from pipeline.config import Experiment, RunConfig
from pipeline.data.prepare import PreparedData, prepare
from pipeline.evaluate import evaluate, forward_pass, heads_pass
from pipeline.train import end_distributed, is_global_zero, train

RUN_QUEUE_ENV = "PERIODEYE_RUN_QUEUE"


LAUNCH_FIELDS = ("num_nodes", "distributed")  # added later: stores made before them stay valid
DEFAULT_RUN = dataclasses.asdict(RunConfig(name=""))


def config_hash(run: RunConfig, data: PreparedData) -> str:
    """Identity of a run's result: its settings and the exact images and splits it saw."""
    images = data.images
    content = "\n".join(images["image_id"] + " " + images["content_hash"] + " " + images["split"]).encode()
    settings = dataclasses.asdict(run)
    for name in LAUNCH_FIELDS:  # how many processes trained it only counts when not the default
        if settings[name] == DEFAULT_RUN[name]:
            del settings[name]
    spec = {"run": settings, "dataset": data.dataset_id, "content": hashlib.sha1(content).hexdigest()}
    return hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]


def prepare_data(exp: Experiment, progress: bool = True) -> PreparedData:
    data = prepare(exp.data, Path(exp.artifacts_dir) / "cache", progress=progress)
    if is_global_zero():  # the other processes of a distributed run only read the cache
        store.write_dataset(exp.store, data)
    return data


def run_experiment(
    exp: Experiment, only: list[str] | None = None, force: bool = False, progress: bool = True
) -> list[dict]:
    """Train/evaluate/store every selected run still missing; returns one summary per run done."""
    runs = exp.select(only)
    lead = is_global_zero()
    data = prepare_data(exp, progress)
    queue = os.environ.get(RUN_QUEUE_ENV)
    if not lead and queue is not None:  # started by rank 0's launcher: do what it still had to do
        names = json.loads(queue)
        todo = [r for r in runs if r.name in names]
    else:
        if lead:
            print(
                f"[data] {data.name}: {len(data.images)} images, {len(data.periods)} periods, "
                f"{len(data.artists)} artists, {len(data.skipped)} skipped"
            )
        done = store.completed_runs(exp.store)
        todo = []
        for run in runs:
            run_id = exp.run_id(run)
            if not force and done.get(run_id) == config_hash(run, data):
                if lead:
                    print(f"[skip] {run_id}: already in {exp.store} (use --force to redo)")
                continue
            todo.append(run)
    summaries = []
    failed = True
    try:
        for i, run in enumerate(todo):
            if lead:
                os.environ[RUN_QUEUE_ENV] = json.dumps([r.name for r in todo[i:]])
            summary = run_one(exp, run, data, progress)
            if summary is not None:
                summaries.append(summary)
        failed = False
    finally:
        if lead:
            os.environ.pop(RUN_QUEUE_ENV, None)
        end_distributed(failed)
    return summaries


def run_one(exp: Experiment, run: RunConfig, data: PreparedData, progress: bool = True) -> dict | None:
    """Train, evaluate on every image, save the checkpoint and resolved config, store atomically.

    In a distributed run every process trains; only global rank 0 goes on (the others return None)."""
    run_id = exp.run_id(run)
    started_at = datetime.now()
    result = train(run, data, progress=progress)
    if result.global_rank != 0:
        return None

    t0 = time.perf_counter()
    if result.features is not None:
        embeddings, logits = result.features, heads_pass(result.model, result.features)
    else:
        rows = data.images["cache_index"].to_numpy()
        embeddings, logits = forward_pass(
            result.model, result.transform, data.pixels, rows, run.batch_size * 2, torch.device(result.device),
            desc="evaluate", progress=progress,
        )
    ev = evaluate(run_id, data.images, result.targets, result.labels, embeddings, logits, run.projection, run.seed)
    eval_seconds = time.perf_counter() - t0
    attributions = None
    if exp.attributions.enabled:
        attributions = attribute_run(
            run_id, result.model, result.transform, data.pixels, data.images, logits["period"].argmax(1),
            result.targets[:, 0], result.labels["period"], exp.attributions, torch.device(result.device),
            run.backbone, progress,
        )

    out_dir = Path(exp.artifacts_dir) / "runs" / run_id.replace("/", "__")
    out_dir.mkdir(parents=True, exist_ok=True)
    resolved = {"experiment": exp.name, "run_id": run_id, "data": dataclasses.asdict(data.config),
                "dataset_id": data.dataset_id, "run": dataclasses.asdict(run)}
    (out_dir / "config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False))
    checkpoint = out_dir / "model.pt"
    torch.save(
        {"backbone": run.backbone, "labels": result.labels, "dropout": run.head_dropout,
         "resize": data.config.resize, "crop": data.config.crop, "state_dict": result.model.state_dict()},
        checkpoint,
    )
    h = ev.headline
    summary = {
        "run_id": run_id, "experiment": exp.name, "name": run.name, "dataset_id": data.dataset_id,
        "backbone": run.backbone, "strategy": run.strategy, "freeze_until": run.freeze_until, "tasks": run.tasks,
        "pretrained": run.pretrained, "config": resolved, "config_hash": config_hash(run, data),
        "device": result.device, "status": "complete", "started_at": started_at, "finished_at": datetime.now(),
        "train_seconds": result.seconds, "eval_seconds": eval_seconds, "epochs": len(result.epochs),
        "best_epoch": result.best_epoch, "lr": result.lr,
        "test_accuracy": h.get("accuracy"), "test_balanced_accuracy": h.get("balanced_accuracy"),
        "test_macro_f1": h.get("macro_f1"), "test_top2_accuracy": h.get("top2_accuracy"),
        "test_adjacent_error_share": h.get("adjacent_error_share"), "checkpoint": str(checkpoint),
        "summary": {
            "notes": result.notes, "n_images": len(data.images), "n_skipped": len(data.skipped),
            "attribution_seconds": attributions.seconds if attributions else {},
            "attribution_maps": attributions.n_maps if attributions else 0,
        },
    }
    epochs = result.epochs.assign(run_id=run_id)
    store.write_run(
        exp.store,
        store.RunRecord(run=summary, labels=result.labels, epochs=epochs, predictions=ev.predictions,
                        metrics=ev.metrics, confusion=ev.confusion, embeddings=ev.embeddings,
                        attributions=attributions and attributions.maps,
                        attribution_agreement=attributions and attributions.agreement,
                        attribution_sanity=attributions and attributions.sanity),
    )
    print(one_line(summary, len(data.skipped)))
    return summary


def one_line(s: dict, skipped: int) -> str:
    def fmt(v):
        return "n/a" if v is None else f"{v:.3f}"

    return (
        f"[run] {s['run_id']}: {s['backbone']} {s['strategy']}{'' if not s['freeze_until'] else s['freeze_until']} "
        f"tasks={'+'.join(s['tasks'])} epochs={s['epochs']} train={s['train_seconds']:.0f}s "
        f"test acc={fmt(s['test_accuracy'])} bal_acc={fmt(s['test_balanced_accuracy'])} "
        f"macro_f1={fmt(s['test_macro_f1'])} skipped_images={skipped} device={s['device']}"
    )
