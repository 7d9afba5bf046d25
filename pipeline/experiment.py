"""Run an experiment: prepare its data once, then train, evaluate and store each run.

Runs already complete in the store with the same resolved config are skipped, so a killed
`make artifacts` resumes with the runs still missing (a run is stored whole or not at all). A skipped run's
checkpoint must load: one a kill left behind is repaired (pipeline/checkpoint.py), a missing or damaged one is
trained again. The data is refused before any training when no classifier could be trained or scored on it.

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
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from pipeline import audit, calibration, checkpoint, store
from pipeline.attribute import attribute_run
from pipeline.config import GROUPS, Experiment, RunConfig, flat_settings
from pipeline.data.labels import label_targets
from pipeline.data.prepare import PreparedData, check_trainable, content_digest, prepare
from pipeline.data.transforms import tta_views
from pipeline.distributed import end_distributed, is_global_zero
from pipeline.evaluate import score_outputs
from pipeline.inference import heads_pass, mean_of_views, predict_views
from pipeline.similar_images import model_finder
from pipeline.train import TrainResult, frozen_features, train

RUN_QUEUE_ENV = "PERIODEYE_RUN_QUEUE"


# The settings of the first stores (by their flat names): always part of a run's identity, even at their default.
# NEVER EDIT this set, not even when a setting is renamed or moved between groups: stored runs would lose their
# identity and be trained again. A setting added later needs no list: it is hashed only when it differs from its
# default, so every run made before it keeps its identity (tests/test_identity.py).
FIRST_SETTINGS = frozenset({
    "name", "backbone", "pretrained", "strategy", "freeze_until", "tasks", "epochs", "stage2_epochs",
    "stage2_lr_factor", "batch_size", "lr", "momentum", "weight_decay", "dropout", "patience", "plateau_patience",
    "plateau_factor", "lr_finder", "feature_cache", "hflip", "seed", "num_workers", "accelerator", "devices",
    "max_minutes", "projection"})


def identity_settings(run: RunConfig) -> dict:
    """The settings a run's identity hashes: the first stores' settings always, any later one when not at its
    default (read from the run's own group classes, so a field added anywhere is covered)."""
    defaults: dict[str, object] = {"members": []}
    for group in GROUPS:
        for f in dataclasses.fields(getattr(run, group)):
            defaults[f.name] = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
    return {name: value for name, value in flat_settings(run).items()
            if name in FIRST_SETTINGS or value != defaults[name]}


def config_hash(run: RunConfig, data: PreparedData) -> str:
    """Identity of a run's result: its settings and the exact images and splits it saw."""
    images = data.images
    content = "\n".join(images["image_id"] + " " + images["content_hash"] + " " + images["split"]).encode()
    settings = identity_settings(run)
    spec = {"run": settings, "dataset": data.dataset_id, "content": hashlib.sha1(content).hexdigest()}
    return hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]


def prepare_data(exp: Experiment, progress: bool = True) -> PreparedData:
    """Prepare the data, refuse it if no run could learn from it, and store its version (rank 0)."""
    near = exp.data.near_copies  # the embedding detector needs a model, so data code takes it as a callable
    similar = model_finder(near, progress)
    data = prepare(exp.data, Path(exp.artifacts_dir) / "cache", progress=progress, store=exp.store, similar=similar)
    check_trainable(data, exp.data.path or f"the {exp.data.source} data")
    data.dataset_id = stored_version(exp.store, data)  # every process: the id is part of each run's identity
    if is_global_zero():  # the other processes of a distributed run only read the cache
        for old in store.write_dataset(exp.store, data):
            print(f"[data] dropped dataset version {old}: no run or annotation uses it any more")
    return data


def stored_version(path: str, data: PreparedData) -> str:
    """The id under which this content is stored: a store made before dataset versions keeps the config's key
    as the id of the same content, so its runs stay valid; otherwise the content-named version."""
    legacy = data.config.key()
    stored = store.dataset_content(path, legacy)
    if stored is not None and content_digest(stored) == content_digest(data.images):
        return legacy
    return data.dataset_id


def run_experiment(
    exp: Experiment, only: list[str] | None = None, force: bool = False, progress: bool = True
) -> list[dict]:
    """Train/evaluate/store every selected run still missing; returns one summary per run done."""
    runs = exp.select(only)
    lead = is_global_zero()
    data = prepare_data(exp, progress)
    if exp.audit and lead:
        audit.audit_missing(exp, data, progress, force)
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
        checkpoints = store.run_checkpoints(exp.store)
        todo = []
        for run in runs:
            run_id = exp.run_id(run)
            if not force and done.get(run_id) == config_hash(run, data) and stored_whole(
                    exp, run, data, checkpoints.get(run_id, (None, None)), lead):
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


def stored_whole(exp: Experiment, run: RunConfig, data: PreparedData, saved: tuple[str | None, str | None],
                 lead: bool) -> bool:
    """Whether a complete stored run can be skipped: its checkpoint (if it keeps one) loads and is the stored one.

    A checkpoint committed but not yet moved into place (a kill right after the store commit) is moved in by
    rank 0; every process of a distributed run comes to the same answer from the same files."""
    run_id = exp.run_id(run)
    path, token = checkpoint.resolve(exp.store, saved[0]) if saved[0] else None, saved[1]
    why = checkpoint.problem(path, token) if path else None
    if path is None or why is None:  # a run that keeps no checkpoint, or a sound one
        if lead:
            print(f"[skip] {run_id}: already in {exp.store} (use --force to redo)")
        return True
    if checkpoint.locate(path, token) != path:
        if lead and checkpoint.repair(path, token):
            write_config(exp, run, data)
            print(f"[repair] {run_id}: its stored checkpoint was moved into place at {path} (the write was stopped)")
        return True
    if lead:
        print(f"[redo] {run_id}: complete in {exp.store}, but its checkpoint is {why}; training it again")
    return False


def run_one(exp: Experiment, run: RunConfig, data: PreparedData, progress: bool = True) -> dict | None:
    """Train, evaluate on every image, save the checkpoint and resolved config, store atomically.

    The checkpoint is written beside the previous one and moved into place after the store commit, so a kill
    at any point leaves the stored run with its own loadable checkpoint (see pipeline/checkpoint.py).
    In a distributed run every process trains; only global rank 0 goes on (the others return None)."""
    if run.ensemble:
        return run_ensemble(exp, run, data) if is_global_zero() else None
    run_id = exp.run_id(run)
    started_at = datetime.now()
    result = train(run, data, progress=progress)
    if result.global_rank != 0:
        return None

    t0 = time.perf_counter()
    saved = checkpoint.trained(run, result.labels, data.config.resize, data.config.crop, result.model,
                               result.transform)
    embeddings, logits = predict(run, result, data, progress, saved)
    fits = temperatures(run, run_id, logits, result.targets, list(result.labels), data, result.notes)
    ev = score_outputs(run_id, data.images, result.targets, result.labels, embeddings, logits, run.loop.projection,
                       run.loop.seed, fits)
    eval_seconds = time.perf_counter() - t0
    attributions = None
    if exp.attributions.enabled:
        attributions = attribute_run(
            run_id, result.model, result.transform, data.pixels, data.images, logits["period"].argmax(1),
            result.targets[:, 0], result.labels["period"], exp.attributions, torch.device(result.device),
            run.model.backbone, progress,
        )
    final = run_dir(exp, run) / "model.pt"
    token = uuid.uuid4().hex[:16]
    written = checkpoint.save(checkpoint.contents(saved), final, token)
    summary = run_summary(exp, run, data, ev, started_at, {
        "device": result.device, "train_seconds": result.seconds, "eval_seconds": eval_seconds,
        "epochs": len(result.epochs), "best_epoch": result.best_epoch, "lr": result.lr,
        "checkpoint": checkpoint.stored_path(exp.store, final),
    }, result.notes, attributions)
    summary["summary"].update(checkpoint_token=token, checkpoint_origin=str(final.absolute()))
    store.write_run(
        exp.store,
        store.RunRecord(run=summary, labels=result.labels, epochs=result.epochs.assign(run_id=run_id),
                        predictions=ev.predictions, metrics=ev.metrics, confusion=ev.confusion,
                        embeddings=ev.embeddings, calibration=ev.calibration,
                        attributions=attributions and attributions.maps,
                        attribution_agreement=attributions and attributions.agreement,
                        attribution_sanity=attributions and attributions.sanity),
    )
    checkpoint.install(written, final)
    write_config(exp, run, data)
    print(one_line(summary, len(data.skipped)))
    return summary


def temperatures(run: RunConfig, run_id: str, logits: dict[str, np.ndarray], targets: np.ndarray, tasks: list[str],
                 data: PreparedData, notes: list[str]) -> dict[str, calibration.Fit]:
    """Each task's temperature, fitted on the validation split when the run calibrates (`calibrate`, on by
    default); a task left unscaled (no or too small a validation split) is said in the log and the run's notes."""
    if not run.loop.calibrate:
        return {}
    fits, note = calibration.fit_on_validation(logits, targets, tasks, data.images["split"].to_numpy())
    if note:
        notes.append(note)
        print(f"[calibrate] {run_id}: {note}")
    return fits


def run_dir(exp: Experiment, run: RunConfig) -> Path:
    """The run's folder under the artifacts: its checkpoint and resolved config."""
    out_dir = Path(exp.artifacts_dir) / "runs" / exp.run_id(run).replace("/", "__")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def write_config(exp: Experiment, run: RunConfig, data: PreparedData) -> None:
    """The resolved config beside the checkpoint (what made it, for the README's results log); written after the
    store commit and renamed into place, so it never describes a run the store does not hold."""
    path = run_dir(exp, run) / "config.yaml"
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(yaml.safe_dump(resolved_config(exp, run, data), sort_keys=False))
    os.replace(tmp, path)


def resolved_config(exp: Experiment, run: RunConfig, data: PreparedData) -> dict:
    """What made the run; `attributions` and `artifacts_dir` also let `evaluate` treat another collection alike.
    `data.corrections_applied`: the experts' annotations that changed its data (ids and count), when any were on."""
    data_config = dataclasses.asdict(data.config)
    if data.corrections is not None:
        data_config["corrections_applied"] = data.corrections
    return {"experiment": exp.name, "run_id": exp.run_id(run), "data": data_config,
            "dataset_id": data.dataset_id, "run": dataclasses.asdict(run),
            "attributions": dataclasses.asdict(exp.attributions), "artifacts_dir": str(exp.artifacts_dir)}


def run_summary(exp: Experiment, run: RunConfig, data: PreparedData, ev, started_at: datetime, fields: dict,
                notes: list[str], attributions=None) -> dict:
    """The store's `runs` row: identity, config, timings (`fields`) and the test split's headline metrics."""
    h = ev.headline
    return {
        "run_id": exp.run_id(run), "experiment": exp.name, "name": run.name, "dataset_id": data.dataset_id,
        "backbone": run.model.backbone, "strategy": run.strategy_label, "freeze_until": run.freezing.freeze_until,
        "tasks": run.model.tasks,
        "pretrained": run.model.pretrained, "config": resolved_config(exp, run, data),
        "config_hash": config_hash(run, data), "status": "complete", "started_at": started_at,
        "finished_at": datetime.now(), **fields,
        "test_accuracy": h.get("accuracy"), "test_balanced_accuracy": h.get("balanced_accuracy"),
        "test_macro_f1": h.get("macro_f1"), "test_top2_accuracy": h.get("top2_accuracy"),
        "test_adjacent_error_share": h.get("adjacent_error_share"),
        "summary": {
            "notes": notes, "n_images": len(data.images), "n_skipped": len(data.skipped),
            "attribution_seconds": attributions.seconds if attributions else {},
            "attribution_maps": attributions.n_maps if attributions else 0,
            "temperatures": calibration.by_task(ev.calibration),
        },
    }


def run_ensemble(exp: Experiment, run: RunConfig, data: PreparedData) -> dict:
    """An ensemble as a run of its own: every image's probabilities are the mean of its members' stored ones
    (each member with its own test-time views), its embedding the members' embeddings side by side. Nothing is
    retrained. A member's stored probabilities are its calibrated ones (when it was temperature-scaled), so the
    ensemble averages calibrated members and fits no temperature of its own: its probabilities stay exactly the
    members' mean. Its checkpoint names the members and their checkpoint tokens (pipeline/checkpoint.py's Ensemble
    predicts as this stores), written like a trained run's: beside the old one, moved in after the commit."""
    started_at = datetime.now()
    run_id = exp.run_id(run)
    members = [f"{exp.name}/{m}" for m in run.ensemble]
    member_runs = store.load_members(exp.store, members, data.dataset_id)
    labels = member_runs.labels
    targets = label_targets(data.images, labels)
    order = data.images["image_id"]
    logits = {task: checkpoint.mean_logits([p[task].loc[order].to_numpy().tolist() for p in member_runs.probs])
              for task in labels}
    embeddings = np.concatenate([e.loc[order].to_numpy().tolist() for e in member_runs.embeddings], axis=1)
    t0 = time.perf_counter()
    ev = score_outputs(run_id, data.images, targets, labels, embeddings.astype(np.float32), logits,
                       run.loop.projection, run.loop.seed)
    note = f"ensemble: mean probability of {', '.join(members)}"
    tokens = store.run_checkpoints(exp.store)
    final = run_dir(exp, run) / "model.pt"
    token = uuid.uuid4().hex[:16]
    written = checkpoint.save(checkpoint.ensemble_contents(labels, data.config.resize, data.config.crop,
                                                           {m: tokens.get(m, (None, None))[1] for m in members}),
                              final, token)
    summary = run_summary(exp, run, data, ev, started_at, {
        "device": "cpu", "train_seconds": member_runs.train_seconds, "eval_seconds": time.perf_counter() - t0,
        "epochs": 0, "best_epoch": None, "lr": None, "checkpoint": checkpoint.stored_path(exp.store, final),
    }, [note])
    summary["summary"].update(checkpoint_token=token, checkpoint_origin=str(final.absolute()))
    store.write_run(exp.store, store.RunRecord(
        run=summary, labels=labels, epochs=pd.DataFrame(), predictions=ev.predictions, metrics=ev.metrics,
        confusion=ev.confusion, embeddings=ev.embeddings))
    checkpoint.install(written, final)
    write_config(exp, run, data)
    print(one_line(summary, len(data.skipped)))
    return summary


def predict(run: RunConfig, result: TrainResult, data: PreparedData, progress: bool = True,
            saved: checkpoint.SavedModel | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Embeddings (of the centre view) and logits of every image, as the saved model predicts: its test-time views
    averaged for validation and test images; training images, which the model has seen, get the centre view alone
    (7 views of every training painting would cost more than an epoch; run notes say so). A frozen backbone's
    features are reused (or computed once per view and kept)."""
    saved = saved or checkpoint.trained(run, result.labels, data.config.resize, data.config.crop, result.model,
                                        result.transform)
    rows = data.images["cache_index"].to_numpy()
    views = tta_views(saved.tta)
    viewed = (data.images["split"] != "train").to_numpy()
    if len(views) == 1 or not viewed.any():  # no views to average, or only training images: one path for all
        viewed = np.ones(len(rows), bool)
    if not viewed.all():
        result.notes.append(f"test-time views ({', '.join(views)}) averaged for validation and test images; "
                            "training images predicted from the centre view")
    device = torch.device(result.device)
    if result.features is None:
        # the run's batch, not more: where glibc still maps large blocks afresh (a process without
        # cpu_memory.keep_freed_memory, e.g. the dashboard) larger batches page-fault more per image (BENCHMARKS.md)
        embeddings, logits = saved.predict(data.pixels, rows[viewed], run.loop.batch_size, device, progress)
        if viewed.all():
            return embeddings, logits
        centre, centre_logits = predict_views(result.model, result.transform, data.pixels, rows[~viewed],
                                              run.loop.batch_size, device, [], progress)
        return (merged(viewed, embeddings, centre),
                {task: merged(viewed, value, centre_logits[task]) for task, value in logits.items()})
    logits = heads_pass(result.model, result.features)
    per_view = [{task: value[viewed] for task, value in logits.items()}]
    for view in views[1:]:
        features = result.view_features.get(view)
        features = features[viewed] if features is not None else frozen_features(
            run, result.model, result.transform, data, rows[viewed], device, progress, result.notes, view)
        per_view.append(heads_pass(result.model, features))
    for task, value in mean_of_views(per_view).items():
        logits[task] = logits[task].astype(value.dtype)
        logits[task][viewed] = value
    return result.features, logits


def merged(mask: np.ndarray, inside: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """One array in image order from the rows of `mask` (`inside`) and the rest (`outside`)."""
    out = np.empty((len(mask), *inside.shape[1:]), dtype=np.result_type(inside, outside))
    out[mask], out[~mask] = inside, outside
    return out


def one_line(s: dict, skipped: int) -> str:
    def fmt(v):
        return "n/a" if v is None else f"{v:.3f}"

    return (
        f"[run] {s['run_id']}: {s['backbone']} {s['strategy']}{'' if not s['freeze_until'] else s['freeze_until']} "
        f"tasks={'+'.join(s['tasks'])} epochs={s['epochs']} train={s['train_seconds']:.0f}s "
        f"test acc={fmt(s['test_accuracy'])} bal_acc={fmt(s['test_balanced_accuracy'])} "
        f"macro_f1={fmt(s['test_macro_f1'])} skipped_images={skipped} device={s['device']}"
    )
