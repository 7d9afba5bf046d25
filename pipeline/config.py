"""Experiment and run specs: YAML in, validated dataclasses out.

An experiment file has a `data` block (one dataset), a `defaults` block (run settings shared
by every run) and a `runs` list (each run overrides some defaults). Unknown keys are errors,
so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

SOURCES = ("demo", "imagefolder", "manifest", "historic_art")
STRATEGIES = ("head", "finetune", "two_stage", "partial", "ensemble")
TTA_VIEWS = ("flip", "crops")
SPLIT_MODES = ("counts", "fractions", "none")  # "none": all test (an outside collection to evaluate on)
# Lightning strategies a run may name in `distributed` (RunConfig.strategy is the freezing strategy). "ddp" runs the
# whole command once per process (Lightning's launcher re-executes it; torchrun or SLURM may start them instead);
# the spawn/fork variants are refused: their workers return only the final weights to the launching process, not
# the per-epoch history and best-epoch weights a run stores.
DISTRIBUTED = ("auto", "ddp")
SPAWNING = ("ddp_spawn", "ddp_fork", "ddp_notebook")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STORE = REPO_ROOT / "artifacts" / "periodeye.duckdb"
DEFAULT_SHARED = REPO_ROOT.parent / "shared" / "datasets"


class ConfigError(ValueError):
    """A config file or value that cannot be used; the message says what to change."""


@dataclass
class SplitConfig:
    """`counts`: fixed val/test images per class; `fractions`: stratified shares; `none`: every image is test
    (a collection only evaluated, never trained on)."""

    mode: str = "fractions"
    val: float = 0.2
    test: float = 0.2
    artist_disjoint: bool = False
    seed: int = 0


@dataclass
class DataConfig:
    source: str = "demo"
    path: str | None = None
    name: str | None = None
    subset: str | None = None  # historic_art: "twelve_artists" or None for all painters
    resize: int = 256
    crop: int = 224
    thumbnail_size: int = 192
    period_order: list[str] | None = None
    split: SplitConfig = field(default_factory=SplitConfig)

    @property
    def dataset_name(self) -> str:
        if self.name:
            return self.name
        if self.path:
            return Path(self.path).name or self.source
        return self.source

    def key(self) -> str:
        """Stable id of the prepared dataset: name + a hash of everything that shapes it."""
        spec = dataclasses.asdict(self)
        spec.pop("thumbnail_size")
        digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.dataset_name}-{digest}"


@dataclass
class RunConfig:
    name: str
    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    strategy: str = "head"
    freeze_until: int | None = None
    tasks: list[str] = field(default_factory=lambda: ["period"])
    epochs: int = 10
    stage2_epochs: int = 5  # two_stage: epochs with every layer trainable
    stage2_lr_factor: float = 0.1
    batch_size: int = 32
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0
    dropout: float | None = None  # None: 0.5 with two heads, 0 with one
    patience: int = 3  # early stopping on validation accuracy
    plateau_patience: int = 1
    plateau_factor: float = 0.1
    lr_finder: bool = False
    feature_cache: bool = True
    hflip: bool = False  # the reference used no augmentation
    seed: int = 0
    num_workers: int = 0
    accelerator: str = "auto"
    devices: int | str = "auto"  # per node; on CPU an int > 1 means that many processes
    num_nodes: int = 1
    distributed: str = "auto"  # Lightning's `strategy`: "auto" (one process) or "ddp" (see DISTRIBUTED)
    max_minutes: float | None = None
    projection: str = "tsne"  # 2-D map of the embeddings: "tsne" or "pca"
    # Recipe (configs/wikiart-best.yaml); the defaults are the reference study's recipe.
    pooling: str = "avg"  # "style": + mean/std of earlier blocks' activations (pipeline/models/pooling.py)
    optimizer: str = "sgd"  # or "adamw"
    schedule: str = "plateau"  # ReduceLROnPlateau on val acc, or "cosine" (per step, after warmup_epochs)
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    mixup: float = 0.0  # Beta(a, a) blending of inputs (images, or features of a frozen backbone); 0: off
    layer_decay: float = 1.0  # each block down from the top trains at this factor of the LR above it
    class_balanced: bool = False  # cross-entropy weighted by inverse class frequency (skewed sets)
    crop_scale: list[float] | None = None  # [min, max] area share: random resized crops inside the painting
    tta: list[str] = field(default_factory=list)  # test-time views averaged: "flip", "crops" (4 corners + centre)
    members: list[str] = field(default_factory=list)  # strategy "ensemble": runs whose probabilities are averaged

    @property
    def head_dropout(self) -> float:
        if self.dropout is not None:
            return self.dropout
        return 0.5 if len(self.tasks) > 1 else 0.0


ATTRIBUTION_METHODS = ("guided_backprop", "integrated_gradients", "grad_cam")


@dataclass
class AttributionConfig:
    """Which saliency maps `make artifacts` stores for each run (see pipeline/attribute.py)."""

    enabled: bool = True
    methods: list[str] = field(default_factory=lambda: list(ATTRIBUTION_METHODS))
    splits: list[str] = field(default_factory=lambda: ["test"])
    errors_only: bool = False
    true_class_for_errors: bool = True  # also explain the true class where the prediction is wrong
    max_images: int | None = None  # errors first, then correct ones, up to this many per run
    ig_steps: int = 32
    ig_baseline: str = "black"  # "black" or "blur"
    internal_batch_size: int = 64
    batch_size: int = 16
    heatmap_size: int = 64  # stored maps are heatmap_size² 8-bit PNGs
    sanity_images: int = 8  # model-randomisation check (Adebayo et al. 2018) on this many images


@dataclass
class Experiment:
    name: str
    data: DataConfig
    runs: list[RunConfig]
    attributions: AttributionConfig = field(default_factory=AttributionConfig)
    store: str = str(DEFAULT_STORE)
    artifacts_dir: str = str(REPO_ROOT / "artifacts")
    source_file: str | None = None

    def run_id(self, run: RunConfig) -> str:
        return f"{self.name}/{run.name}"

    def select(self, names: list[str] | None) -> list[RunConfig]:
        if not names:
            return self.runs
        known = {r.name for r in self.runs}
        missing = [n for n in names if n not in known]
        if missing:
            raise ConfigError(f"no run named {missing} in experiment {self.name!r}; runs: {sorted(known)}")
        return [r for r in self.runs if r.name in names]


def _build(cls: type, raw: dict[str, Any], where: str) -> Any:
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    return cls(**raw)


def _validate_run(run: RunConfig, where: str) -> None:
    from pipeline.models.backbones import BACKBONES  # local: keeps config importable cheaply

    if run.backbone not in BACKBONES:
        raise ConfigError(f"{where}: backbone {run.backbone!r} unknown; choose from {sorted(BACKBONES)}")
    if run.strategy not in STRATEGIES:
        raise ConfigError(f"{where}: strategy {run.strategy!r} unknown; choose from {STRATEGIES}")
    if run.strategy == "partial" and not run.freeze_until:
        raise ConfigError(f"{where}: strategy 'partial' needs freeze_until: k (blocks frozen, >= 1)")
    if run.strategy != "partial" and run.freeze_until is not None:
        raise ConfigError(f"{where}: freeze_until only applies to strategy 'partial'")
    if run.tasks not in (["period"], ["period", "artist"]):
        raise ConfigError(f"{where}: tasks must be [period] or [period, artist], got {run.tasks}")
    if run.projection not in ("tsne", "pca"):
        raise ConfigError(f"{where}: projection must be 'tsne' or 'pca'")
    _validate_recipe(run, where)
    if run.epochs < 1 or run.batch_size < 1:
        raise ConfigError(f"{where}: epochs and batch_size must be >= 1")
    _validate_distributed(run, where)


def _validate_recipe(run: RunConfig, where: str) -> None:
    from pipeline.models.classifier import POOLINGS

    choices = {"pooling": POOLINGS, "optimizer": ("sgd", "adamw"), "schedule": ("plateau", "cosine")}
    for name, allowed in choices.items():
        if getattr(run, name) not in allowed:
            raise ConfigError(f"{where}: {name} must be one of {allowed}, got {getattr(run, name)!r}")
    if not 0 <= run.label_smoothing < 1 or run.mixup < 0 or run.warmup_epochs < 0 or not 0 < run.layer_decay <= 1:
        raise ConfigError(f"{where}: label_smoothing must be in [0, 1), mixup and warmup_epochs >= 0, "
                          "layer_decay in (0, 1]")
    scale = run.crop_scale
    if scale is not None and not (len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
        raise ConfigError(f"{where}: crop_scale must be [min, max] with 0 < min <= max <= 1, got {scale}")
    bad = [v for v in run.tta if v not in TTA_VIEWS]
    if bad:
        raise ConfigError(f"{where}: tta views {bad} unknown; choose from {TTA_VIEWS}")
    if (run.strategy == "ensemble") != bool(run.members):
        raise ConfigError(f"{where}: strategy 'ensemble' needs members: [run names], and only it takes members")


def _validate_distributed(run: RunConfig, where: str) -> None:
    def count(value: object) -> int | None:
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    if run.devices != "auto" and (count(run.devices) is None or run.devices < 1):
        raise ConfigError(f"{where}: devices must be 'auto' or a whole number >= 1, got {run.devices!r}")
    if count(run.num_nodes) is None or run.num_nodes < 1:
        raise ConfigError(f"{where}: num_nodes must be a whole number >= 1, got {run.num_nodes!r}")
    if run.distributed in SPAWNING:
        raise ConfigError(
            f"{where}: distributed {run.distributed!r} is not supported: spawned workers hand back only the final "
            "weights, not the epoch history and best-epoch weights a run stores; use 'ddp' (the command runs once "
            "per process)"
        )
    if run.distributed not in DISTRIBUTED:
        raise ConfigError(f"{where}: distributed {run.distributed!r} unknown; choose from {DISTRIBUTED}")
    processes = (count(run.devices) or 1) * run.num_nodes
    if run.lr_finder and (processes > 1 or run.distributed == "ddp"):
        raise ConfigError(
            f"{where}: lr_finder does not run with several processes (Lightning's tuner is single-process); "
            "find the LR in a single-process run, then set lr: and drop lr_finder"
        )


def load_experiment(path: str | os.PathLike, data_path: str | None = None, store: str | None = None) -> Experiment:
    """Read an experiment YAML; `data_path` points the data block at another collection."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"experiment file {path} not found; see configs/ for examples")
    raw = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(raw) - {"name", "data", "defaults", "runs", "store", "attributions"})
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {unknown}")
    data_raw = dict(raw.get("data") or {})
    split = _build(SplitConfig, dict(data_raw.pop("split", None) or {}), f"{path}: data.split")
    data = _build(DataConfig, {**data_raw, "split": split}, f"{path}: data")
    if data_path:
        data = dataclasses.replace(data, path=data_path, source=detect_source(data_path), name=None)
    data.path = _expand(data.path)
    if data.path and "$" in data.path:
        raise ConfigError(
            f"{path}: data.path {data.path!r} names an environment variable that is not set; "
            "set it to the dataset folder or pass --data PATH"
        )
    if data.source not in SOURCES:
        raise ConfigError(f"{path}: data.source {data.source!r} unknown; choose from {SOURCES}")
    if data.source != "demo" and not data.path:
        raise ConfigError(f"{path}: data.path is required for source {data.source!r}")
    if data.split.mode not in SPLIT_MODES:
        raise ConfigError(f"{path}: data.split.mode must be one of {SPLIT_MODES}")
    if data.crop > data.resize:
        raise ConfigError(f"{path}: data.crop ({data.crop}) must not exceed data.resize ({data.resize})")

    defaults = dict(raw.get("defaults") or {})
    runs = []
    for i, run_raw in enumerate(raw.get("runs") or []):
        where = f"{path}: runs[{i}]"
        run = _build(RunConfig, {**defaults, **run_raw}, where)
        _validate_run(run, where)
        if "artist" in run.tasks and data.source in ("imagefolder",):
            raise ConfigError(f"{where}: task 'artist' needs artist labels; an ImageFolder has none")
        runs.append(run)
    if not runs:
        raise ConfigError(f"{path}: no runs defined")
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: run names must be unique, got {names}")
    for i, run in enumerate(runs):
        missing = [m for m in run.members if m not in names[:i] or runs[names.index(m)].strategy == "ensemble"]
        if missing:
            raise ConfigError(f"{path}: runs[{i}] ({run.name}): members {missing} must be trained runs listed "
                              f"before the ensemble; runs: {names}")
    attributions = _build(AttributionConfig, dict(raw.get("attributions") or {}), f"{path}: attributions")
    bad = [m for m in attributions.methods if m not in ATTRIBUTION_METHODS]
    if bad or attributions.ig_baseline not in ("black", "blur"):
        raise ConfigError(
            f"{path}: attributions: methods must be among {ATTRIBUTION_METHODS} (got {bad}) and ig_baseline "
            f"'black' or 'blur' (got {attributions.ig_baseline!r})"
        )
    return Experiment(
        name=raw.get("name") or path.stem,
        data=data,
        runs=runs,
        attributions=attributions,
        store=store or _expand(raw.get("store")) or os.environ.get("PERIODEYE_STORE") or str(DEFAULT_STORE),
        source_file=str(path),
    )


def detect_source(path: str) -> str:
    """Guess the source kind of a path given on the command line."""
    p = Path(_expand(path))
    if p.is_file() and p.suffix.lower() == ".csv":
        return "manifest"
    if (p / "artwork_dataset.csv").exists():
        return "historic_art"
    if p.is_dir():
        return "imagefolder"
    raise ConfigError(f"data path {p} is neither a directory nor a manifest .csv")


def _expand(value: str | None) -> str | None:
    """`${VAR:-default}` and `~` expansion, so configs can name $PAINTINGS_SHARED."""
    if not value:
        return value
    if "${PAINTINGS_SHARED}" in value or "$PAINTINGS_SHARED" in value:
        os.environ.setdefault("PAINTINGS_SHARED", str(DEFAULT_SHARED))
    return os.path.expanduser(os.path.expandvars(value))


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)
