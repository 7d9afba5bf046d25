"""Likely label errors: every image's out-of-sample probabilities, scored by Cleanlab's confident learning.

A model trained on an image has seen its label, so its own probabilities say little about whether that label is
wrong. K-fold cross-validation gives every image probabilities from a linear head that never saw it; the head
learns on the frozen pretrained backbone's features, which training caches already (pipeline/train.py,
`frozen_features`), so the audit costs one feature pass at most and a few logistic regressions. Cleanlab then
scores each label (`get_label_quality_scores`) and flags likely issues (`find_label_issues`). Nothing here
changes a label: only an expert's verdict does (issue 14).
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from pipeline import store
from pipeline.config import ConfigError, Experiment, RunConfig
from pipeline.data.labels import IGNORE, label_targets
from pipeline.data.prepare import PreparedData

FOLDS = 5
MAX_ITER = 1000
C = 0.01  # strong regularisation: on 420 WikiArt paintings it found as many planted flips as any (tests/test_audit.py)


@dataclass
class AuditResult:
    """One dataset's audit: a label_quality row per image with a known period, and how long it took."""

    dataset_id: str
    table: pd.DataFrame  # image_id, given_label, quality, suggested_label, issue, folds
    seconds: float
    backbone: str
    notes: list[str]

    @property
    def flagged(self) -> int:
        return int(self.table["issue"].sum())

    def line(self) -> str:
        return (f"[audit] {self.dataset_id}: {len(self.table)} images, {self.flagged} flagged label issues, "
                f"{self.seconds:.0f} s ({self.backbone} features, {FOLDS}-fold linear head, cleanlab)")


def feature_run(exp: Experiment) -> RunConfig:
    """The run whose frozen features the audit reuses: the experiment's first trained run, with pretrained weights
    (random weights give no meaningful features), so its cached features serve both."""
    trained = [r for r in exp.runs if not r.ensemble]
    if not trained:
        raise ConfigError(f"experiment {exp.name!r} has no trained run: the audit needs a backbone to take "
                          "features from")
    run = trained[0]
    return dataclasses.replace(run, model=dataclasses.replace(run.model, pretrained=True))


def image_features(run: RunConfig, data: PreparedData, progress: bool = True, notes: list[str] | None = None
                   ) -> np.ndarray:
    """The frozen pretrained backbone's features of every image, from training's feature cache when it has them."""
    import torch  # torch only once there is work: `import pipeline.audit` stays light for the CLI

    from pipeline.data.transforms import BatchTransform
    from pipeline.inference import pick_device
    from pipeline.models.backbones import build_backbone
    from pipeline.models.classifier import PeriodClassifier
    from pipeline.train import frozen_features

    backbone = build_backbone(run.model.backbone, pretrained=True)
    model = PeriodClassifier(backbone, {"period": max(1, len(data.periods))}, pooling=run.model.pooling)
    transform = BatchTransform(data.config.crop, mean=backbone.mean, std=backbone.std)
    rows = data.images["cache_index"].to_numpy()
    device = pick_device(run.hardware.accelerator)
    with torch.inference_mode():
        return frozen_features(run, model, transform, data, rows, device, progress, notes if notes is not None else [])


def out_of_sample_probs(features: np.ndarray, labels: np.ndarray, n_classes: int, folds: int = FOLDS, seed: int = 0,
                        progress: bool = True) -> tuple[np.ndarray, int]:
    """(n, n_classes) probabilities of each image from a standardised logistic regression fitted on the other
    folds (stratified), and the number of folds used (fewer when a class has fewer images than `folds`)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    counts = np.bincount(labels, minlength=n_classes)
    k = int(max(2, min(folds, counts[counts > 0].min())))
    probs = np.zeros((len(labels), n_classes))
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    for train, held in tqdm(splitter.split(features, labels), total=k, desc="audit (cross-validated head)",
                            disable=not progress, leave=False):
        head = make_pipeline(StandardScaler(), LogisticRegression(max_iter=MAX_ITER, C=C))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*lbfgs failed to converge.*")
            head.fit(features[train], labels[train])
        probs[np.ix_(held, head.classes_)] = head.predict_proba(features[held])  # a class absent from a fold: 0
    return probs, k


def score_labels(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cleanlab's label quality (self-confidence: the out-of-sample probability of the given label) and its
    confident-learning issue flags."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    quality = get_label_quality_scores(labels, probs)
    issues = find_label_issues(labels, probs, n_jobs=1)
    return quality, issues


def label_quality(features: np.ndarray, images: pd.DataFrame, periods: list[str], folds: int = FOLDS, seed: int = 0,
                  progress: bool = True) -> pd.DataFrame:
    """One row per image with a known period: given label, quality, suggested label (the out-of-sample favourite),
    issue flag and folds. Images without a known period are not scored."""
    targets = label_targets(images, {"period": list(periods)})[:, 0]
    known = np.flatnonzero(targets != IGNORE)
    labels = targets[known]
    present = np.unique(labels)  # classes with images; cleanlab wants every column to be a class that occurs
    dense = np.searchsorted(present, labels)
    probs, k = out_of_sample_probs(features[known], dense, len(present), folds, seed, progress)
    quality, issues = score_labels(dense, probs)
    names = np.asarray(periods, dtype=object)[present]
    return pd.DataFrame({
        "image_id": images["image_id"].to_numpy()[known], "given_label": names[dense],
        "quality": quality.astype(np.float32), "suggested_label": names[probs.argmax(1)],
        "issue": issues.astype(bool), "folds": k,
    })


def audit_dataset(exp: Experiment, data: PreparedData, progress: bool = True) -> AuditResult:
    """Audit the prepared dataset's labels and store the scores (replacing this dataset's earlier ones)."""
    started = time.perf_counter()
    run = feature_run(exp)
    notes: list[str] = []
    features = image_features(run, data, progress, notes)
    table = label_quality(features, data.images, data.periods, seed=run.loop.seed, progress=progress)
    store.write_label_quality(exp.store, data.dataset_id, table)
    return AuditResult(data.dataset_id, table, time.perf_counter() - started, run.model.backbone, notes)


def audit_missing(exp: Experiment, data: PreparedData, progress: bool = True, force: bool = False) -> None:
    """`make artifacts` / `run` with `audit: true`: audit the prepared dataset unless the store already holds its
    scores (the dataset id names its content, so they still hold); --force audits again."""
    if not force and store.audited(exp.store, data.dataset_id):
        print(f"[audit] {data.dataset_id}: label audit already in {exp.store} (use --force to redo)")
        return
    print(audit_dataset(exp, data, progress).line())
