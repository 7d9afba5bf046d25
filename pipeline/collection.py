"""Evaluate a stored run on another labelled collection: `python -m pipeline evaluate --run RUN --data PATH`.

The collection is prepared like any dataset (its own dataset_id; split mode "none": every image is test) and
goes through the run's own evaluation path (its saved model's predict, in the test-time views the checkpoint
keeps; evaluate, attribute_run). An ensemble predicts through its members (their mean probability); it has no one
network to explain, so its evaluation stores no saliency maps (each member's own evaluation has them) and says so.
The result is stored as a run of its own, `RUN@COLLECTION` with `evaluation_of` = RUN and the parent's
checkpoint, so every dashboard page shows it as it shows a run's test split. Labels are matched by name,
loosely (case, `_`, `-` and spaces alike), and stored in the run's spelling; images whose label the run does
not know are counted and left out, never guessed. The dataset itself keeps the collection's own spelling: it
is the same dataset whichever run is evaluated on it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import yaml

from pipeline import calibration, checkpoint, store
from pipeline.attribute import AttributionResult, attribute_run
from pipeline.config import REPO_ROOT, AttributionConfig, ConfigError, DataConfig, SplitConfig, _expand, detect_source
from pipeline.data.labels import label_targets
from pipeline.data.prepare import PreparedData, prepare
from pipeline.evaluate import Evaluation, score_outputs
from pipeline.explain import load_run
from pipeline.inference import pick_device

DEFAULT_MAX_ATTRIBUTIONS = 200  # runs made before their attribution settings were kept beside the checkpoint
NO_ENSEMBLE_MAPS = ("saliency maps skipped: an ensemble has no one network (evaluate each member for its maps, or "
                    "`explain` an image for the members' maps)")


@dataclass
class Parent:
    """The stored run being evaluated: its `runs` row, the resolved config it was made with, its model."""

    row: dict
    resolved: dict
    model: checkpoint.Model

    @property
    def settings(self) -> dict:
        return self.resolved.get("run") or {}


@dataclass
class Matched:
    """The collection's images the run has labels for (in the run's spelling), and what it does not know."""

    images: pd.DataFrame
    unknown: dict[str, int]  # collection label -> images


def normalise(label: str) -> str:
    """'Art_Nouveau', 'art-nouveau' and 'Art  Nouveau' name one period."""
    return re.sub(r"[\s_-]+", " ", label).strip().lower()


def to_run_labels(values: pd.Series, known: list[str]) -> pd.Series:
    """Each value in the run's spelling, or None where the run has no such label."""
    by_key = {normalise(k): k for k in known}
    return pd.Series([by_key.get(normalise(v)) if isinstance(v, str) else None for v in values], index=values.index,
                     dtype=object)


def match_labels(data: PreparedData, labels: dict[str, list[str]]) -> Matched:
    """Keep the images whose period the run knows; with no period in common there is nothing to evaluate."""
    periods = to_run_labels(data.images["period"], labels["period"])
    if periods.isna().all():
        raise ConfigError(
            f"none of the collection's labels matches a period of the run (compared ignoring case, '_', '-' and "
            f"spaces); run's labels: {labels['period']}; collection's labels: {sorted(data.images['period'].unique())}"
        )
    known = periods.notna()
    images = data.images[known].assign(period=periods[known]).reset_index(drop=True)
    if "artist" in labels:
        images["artist"] = to_run_labels(images["artist"], labels["artist"])
    unknown = data.images.loc[~known, "period"].value_counts().sort_index()
    return Matched(images, {str(k): int(v) for k, v in unknown.items()})


def load_parent(store_path: str | Path, run_id: str) -> Parent:
    """The run to evaluate, refused when it cannot take new images (an evaluation, a run without its model)."""
    row = store.get_run(store_path, run_id)
    if row is None:
        raise ConfigError(f"no run {run_id!r} in {store_path}; see `python -m pipeline list`")
    if row.get("evaluation_of"):
        raise ConfigError(f"{run_id} is itself an evaluation of {row['evaluation_of']}; evaluate that run instead")
    model = load_run(store_path, run_id)
    return Parent(row, parent_config(store_path, row), model)


def parent_config(store_path: str | Path, row: dict) -> dict:
    """The resolved config stored with the run (committed with it), else the config.yaml beside the checkpoint."""
    if row.get("config") or not row.get("checkpoint"):
        return row.get("config") or {}
    path = checkpoint.resolve(store_path, row["checkpoint"], (row.get("summary") or {}).get("checkpoint_origin"))
    path = path.parent / "config.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def collection_config(path: str, name: str, parent: Parent) -> DataConfig:
    """The collection as a dataset cached at the run's resize, all test."""
    data = parent.resolved.get("data") or {}
    return DataConfig(
        source=detect_source(path), path=str(Path(_expand(path) or path).absolute()), name=name,
        resize=parent.model.resize, crop=parent.model.crop,
        thumbnail_size=data.get("thumbnail_size", DataConfig.thumbnail_size), split=SplitConfig(mode="none"),
    )


def cache_dir(parent: Parent) -> Path:
    return Path(parent.resolved.get("artifacts_dir") or REPO_ROOT / "artifacts") / "cache"


def attribution_config(resolved: dict, enabled: bool, max_images: int | None) -> AttributionConfig | None:
    """The parent experiment's attribution settings (every image is test here); None when there are none to do."""
    raw = resolved.get("attributions")
    if raw:
        names = {f.name for f in dataclasses.fields(AttributionConfig)}
        cfg = AttributionConfig(**{k: v for k, v in raw.items() if k in names})
    else:
        cfg = AttributionConfig(max_images=DEFAULT_MAX_ATTRIBUTIONS)
    if max_images is not None:
        cfg.max_images = max_images
    if not (enabled and cfg.enabled) or cfg.max_images == 0:
        return None
    return dataclasses.replace(cfg, splits=["test"])


def evaluate_collection(store_path: str | Path, run_id: str, data_path: str, name: str | None = None,
                        attributions: bool = True, max_attributions: int | None = None, progress: bool = True
                        ) -> dict:
    """Prepare the collection, predict with the run, store it as `RUN@NAME`; returns the stored runs row."""
    started_at = datetime.now()
    parent = load_parent(store_path, run_id)
    name = name or Path(_expand(data_path) or data_path).absolute().stem  # _expand gives a str back for a str
    eval_id = f"{run_id}@{name}"
    data = prepare(collection_config(data_path, name, parent), cache_dir(parent), progress)
    labels = parent.model.labels
    matched = match_labels(data, labels)
    store.write_dataset(store_path, data)

    t0 = time.perf_counter()
    images = matched.images
    device = pick_device(parent.settings.get("accelerator", "auto"))
    embeddings, logits = parent.model.predict(data.pixels, images["cache_index"].to_numpy(),
                                              int(parent.settings.get("batch_size", 32)), device, progress)
    targets = label_targets(images, labels)
    fits = calibration.inherited((parent.row.get("summary") or {}).get("temperatures"), run_id)  # the run's T
    ev = score_outputs(eval_id, images, targets, labels, embeddings, logits, parent.settings.get("projection", "tsne"),
                       parent.settings.get("seed", 0), fits)
    eval_seconds = time.perf_counter() - t0
    cfg = attribution_config(parent.resolved, attributions, max_attributions)
    notes: list[str] = []
    maps = None
    if cfg and isinstance(parent.model, checkpoint.SavedModel):
        maps = attribute_run(eval_id, parent.model.model, parent.model.transform, data.pixels, images,
                             logits["period"].argmax(1), targets[:, 0], labels["period"], cfg, device,
                             parent.row["backbone"], progress)
    elif cfg:  # an ensemble: no one network to take maps of
        cfg, notes = None, [NO_ENSEMBLE_MAPS]
    seen = int(images["content_hash"].isin(store.seen_hashes(store_path, parent.row["dataset_id"])).sum())
    row = evaluation_row(parent, eval_id, data, matched, ev, cfg, maps, {
        "device": str(device), "started_at": started_at, "eval_seconds": eval_seconds, "seen_in_training": seen,
        "notes": notes,
    })
    store.write_run(store_path, store.RunRecord(
        run=row, labels=labels, epochs=pd.DataFrame(), predictions=ev.predictions, metrics=ev.metrics,
        confusion=ev.confusion, embeddings=ev.embeddings, calibration=ev.calibration, attributions=maps and maps.maps,
        attribution_agreement=maps and maps.agreement, attribution_sanity=maps and maps.sanity))
    print(report(row, parent.row))
    return row


def evaluation_row(parent: Parent, eval_id: str, data: PreparedData, matched: Matched, ev: Evaluation,
                   cfg: AttributionConfig | None, maps: AttributionResult | None, facts: dict) -> dict:
    """The `runs` row: the parent's identity and model, the collection's dataset and the scores on it."""
    p, h = parent.row, ev.headline
    config = {**parent.resolved, "run_id": eval_id, "evaluation_of": p["run_id"], "dataset_id": data.dataset_id,
              "data": dataclasses.asdict(data.config),
              "attributions": dataclasses.asdict(cfg) if cfg else {"enabled": False}}
    return {
        "run_id": eval_id, "experiment": p["experiment"], "name": eval_id.split("/", 1)[-1],
        "dataset_id": data.dataset_id, "backbone": p["backbone"], "strategy": p["strategy"],
        "freeze_until": p["freeze_until"], "tasks": list(p["tasks"]), "pretrained": p["pretrained"],
        "config": config, "config_hash": evaluation_hash(p["config_hash"], matched.images), "device": facts["device"],
        "status": "complete", "started_at": facts["started_at"], "finished_at": datetime.now(),
        "train_seconds": None, "eval_seconds": facts["eval_seconds"], "epochs": 0, "best_epoch": None, "lr": None,
        "test_accuracy": h.get("accuracy"), "test_balanced_accuracy": h.get("balanced_accuracy"),
        "test_macro_f1": h.get("macro_f1"), "test_top2_accuracy": h.get("top2_accuracy"),
        "test_adjacent_error_share": h.get("adjacent_error_share"), "checkpoint": p["checkpoint"],
        "evaluation_of": p["run_id"],
        "summary": {
            "evaluation_of": p["run_id"], "checkpoint_origin": (p.get("summary") or {}).get("checkpoint_origin"),
            "collection": data.config.path, "source": data.config.source,
            "n_images": len(matched.images), "n_skipped": len(data.skipped), "unknown_labels": matched.unknown,
            "seen_in_training": facts["seen_in_training"],
            "attribution_seconds": maps.seconds if maps else {}, "attribution_maps": maps.n_maps if maps else 0,
            "notes": facts["notes"], "temperatures": calibration.by_task(ev.calibration),
        },
    }


def evaluation_hash(parent_hash: str | None, images: pd.DataFrame) -> str:
    """Identity of the result: the parent's config and the exact images scored."""
    content = "\n".join(images["image_id"] + " " + images["content_hash"])
    return hashlib.sha1(f"{parent_hash}\n{content}".encode()).hexdigest()[:12]


def report(row: dict, parent: dict) -> str:
    """What the user must see: scores beside the run's own test split, what was not evaluated and why."""
    s = row["summary"]

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    lines = [
        f"[evaluate] {row['run_id']}: {s['n_images']} images, {s['n_skipped']} skipped, "
        f"{sum(s['unknown_labels'].values())} with labels the run does not know",
        f"  test acc={fmt(row['test_accuracy'])} bal_acc={fmt(row['test_balanced_accuracy'])} "
        f"macro_f1={fmt(row['test_macro_f1'])} (run's own test split: acc={fmt(parent['test_accuracy'])} "
        f"bal_acc={fmt(parent['test_balanced_accuracy'])} macro_f1={fmt(parent['test_macro_f1'])})",
    ]
    if s["unknown_labels"]:
        lines.append("  unknown labels (not evaluated): "
                     + ", ".join(f"{label} -> {n}" for label, n in s["unknown_labels"].items()))
    lines += [f"  note: {note}" for note in s.get("notes", [])]
    if s["seen_in_training"]:
        lines.append(f"  warning: {s['seen_in_training']} images are byte-identical to ones the run trained or "
                     "picked its epoch on; these scores are optimistic")
    return "\n".join(lines)
