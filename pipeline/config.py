"""Experiment and run specs: YAML in, validated dataclasses out.

An experiment file has a `data` block (one dataset), a `defaults` block (run settings shared
by every run) and a `runs` list (each run overrides some defaults). A run's settings are grouped
by concern (`model`, `freezing`, `optim`, `augment`, `loop`, `hardware`, as in lightning-hydra-template's
config groups) and may be written grouped (`optim: {lr: 0.01}`) or flat (`lr: 0.01`); `--set KEY=VALUE`
changes the YAML before it is checked. Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, overload

from pipeline.checks import (
    Problems,
    Rule,
    at_least,
    check_fields,
    check_value,
    field_hints,
    is_int,
    kind,
    one_of,
    show,
    suggest,
    within,
)
from pipeline.errors import ConfigError
from pipeline.overrides import Layout, apply_overrides
from pipeline.safe_yaml import read_yaml

# Lightning strategies a run may name in `distributed` (freezing.strategy is another thing). "ddp" runs the
# whole command once per process (Lightning's launcher re-executes it; torchrun or SLURM may start them instead);
# the spawn/fork variants are refused: their workers return only the final weights to the launching process, not
# the per-epoch history and best-epoch weights a run stores.
DISTRIBUTED = ("auto", "ddp")
SPAWNING = ("ddp_spawn", "ddp_fork", "ddp_notebook")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STORE = REPO_ROOT / "artifacts" / "periodeye.duckdb"
DEFAULT_SHARED = REPO_ROOT.parent / "shared" / "datasets"


@dataclass
class SplitConfig:
    """`counts`: fixed val/test images per class; `fractions`: stratified shares; `none`: every image is test
    (a collection only evaluated, never trained on)."""

    mode: typing.Literal["counts", "fractions", "none"] = "fractions"
    val: float = 0.2
    test: float = 0.2
    artist_disjoint: bool = False
    seed: int = 0


NearCopyDetector = typing.Literal["phash", "embedding", "local", "title"]


@dataclass
class NearCopyConfig:
    """Near-copies of one work (re-encodes, resizes, details) grouped into one split (pipeline/data/near_copies.py):
    `phash` (perceptual hash of the decoded image), `embedding` (cosine of a pretrained backbone's pooled features:
    details and colour shifts), `local` (each image's `local_candidates` nearest embedding neighbours confirmed by
    ORB + RANSAC with `local_inliers` inliers: details), `title` (same artist, titles equal once "(detail)" is
    removed). []: off. Thresholds measured in benchmarks/near_copies*.py (BENCHMARKS.md)."""

    detectors: list[NearCopyDetector] = field(default_factory=list)
    phash_distance: int = 10  # most differing bits of 64 for a phash link
    embedding_similarity: float = 0.8  # least cosine similarity for an embedding link (details: see BENCHMARKS.md)
    embedding_backbone: str = "efficientnet_lite0"
    local_candidates: int = 10  # embedding neighbours per image that `local` verifies (details' recall@k: BENCHMARKS)
    local_inliers: int = 8  # least RANSAC inliers for a `local` link (distinct paintings reached 6 at most)

    def effective(self) -> NearCopyConfig:
        """These settings with those of detectors that are off put back to their defaults: what shapes the groups, so
        tuning a threshold nobody uses does not make a new dataset (and retrain its runs)."""
        used = {"phash": {"phash_distance"}, "embedding": {"embedding_similarity", "embedding_backbone"},
                "local": {"embedding_backbone", "local_candidates", "local_inliers"}, "title": set()}
        keep = {name for detector in self.detectors for name in used[detector]}
        default = NearCopyConfig()
        return dataclasses.replace(default, detectors=list(self.detectors),
                                   **{name: getattr(self, name) for name in keep})


@dataclass
class CorrectionsConfig:
    """What experts' current "label wrong" annotations (matched by content hash, read from the experiment's store) do
    to the next preparation: `exclude` drops those paintings, `relabel` gives them the expert's corrected period
    (one without a corrected period is dropped), `off` ignores them (pipeline/data/corrections.py)."""

    label_wrong: typing.Literal["off", "exclude", "relabel"] = "off"


SplitName = typing.Literal["train", "val", "test"]


@dataclass
class SourceConfig:
    """One collection of an experiment that combines several (`data.sources`): its path, its kind (None: recognised
    from the path, as `--data PATH` does), its name (default: the folder's or file's; the `source` column of its
    images, and the prefix of an image id another source already has) and the splits its images may go to
    (None: all; `[train, val]`: a collection that adds training data and is never tested on)."""

    path: str
    source: str | None = None
    name: str | None = None
    splits: list[SplitName] | None = None


FIRST_DATA_FIELDS = frozenset({"source", "path", "name", "subset", "resize", "crop", "thumbnail_size", "period_order",
                               "split"})


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
    corrections: CorrectionsConfig = field(default_factory=CorrectionsConfig)
    near_copies: NearCopyConfig = field(default_factory=NearCopyConfig)
    sources: list[SourceConfig] = field(default_factory=list)  # several collections in one dataset; []: `path`

    @property
    def dataset_name(self) -> str:
        if self.name:
            return self.name
        if self.sources:
            return "+".join(s.name or Path(s.path).name for s in self.sources)
        if self.path:
            return Path(self.path).name or self.source
        return self.source

    def key(self) -> str:
        """Stable id of the prepared dataset: name + a hash of everything that shapes it. A field added after the
        first stores counts only when it differs from its default, so existing datasets keep their ids."""
        defaults = dataclasses.asdict(DataConfig())
        shaping = dataclasses.asdict(dataclasses.replace(self, near_copies=self.near_copies.effective()))
        spec = {k: v for k, v in shaping.items() if k in FIRST_DATA_FIELDS or v != defaults[k]}
        spec.pop("thumbnail_size")
        digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.dataset_name}-{digest}"


Strategy = typing.Literal["head", "finetune", "two_stage", "partial"]  # how much of the backbone trains
STRATEGIES: tuple[str, ...] = typing.get_args(Strategy)


@dataclass
class ModelConfig:
    """The network: backbone, its heads and how its features are pooled."""

    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    tasks: list[str] = field(default_factory=lambda: ["period"])
    dropout: float | None = None  # None: 0.5 with two heads, 0 with one
    pooling: str = "avg"  # "style": + mean/std of earlier blocks' activations (pipeline/models/pooling.py)

    @property
    def head_dropout(self) -> float:
        if self.dropout is not None:
            return self.dropout
        return 0.5 if len(self.tasks) > 1 else 0.0


@dataclass
class FreezingConfig:
    """Which layers train when: `head` (frozen backbone), `finetune`, `two_stage` (head, then all layers at a lower
    LR), `partial` (the first `freeze_until` blocks frozen)."""

    strategy: Strategy = "head"
    freeze_until: int | None = None
    stage2_epochs: int = 5  # two_stage: epochs with every layer trainable
    stage2_lr_factor: float = 0.1
    layer_decay: float = 1.0  # each block down from the top trains at this factor of the LR above it


@dataclass
class OptimConfig:
    """Optimizer, LR schedule and loss; the defaults are the reference study's recipe."""

    optimizer: typing.Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: typing.Literal["plateau", "cosine"] = "plateau"  # ReduceLROnPlateau on val acc, or cosine per step
    warmup_epochs: float = 0.0
    plateau_patience: int = 1
    plateau_factor: float = 0.1
    label_smoothing: float = 0.0
    class_balanced: bool = False  # cross-entropy weighted by inverse class frequency (skewed sets)
    lr_finder: bool = False


@dataclass
class AugmentConfig:
    """Training-time and test-time views (the reference used none)."""

    hflip: bool = False
    crop_scale: list[float] | None = None  # [min, max] area share: random resized crops inside the painting
    mixup: float = 0.0  # Beta(a, a) blending of inputs (images, or features of a frozen backbone); 0: off
    tta: list[typing.Literal["flip", "crops"]] = field(default_factory=list)  # test-time views averaged


@dataclass
class LoopConfig:
    """The training loop: length, batches, early stopping, reproducibility, and the embedding map."""

    epochs: int = 10
    batch_size: int = 32
    patience: int = 3  # early stopping on validation accuracy
    seed: int = 0
    max_minutes: float | None = None
    feature_cache: bool = True
    projection: typing.Literal["tsne", "pca"] = "tsne"  # 2-D map of the embeddings
    calibrate: bool = True  # temperature scaling fitted on val: changes confidence, never the predicted class


@dataclass
class HardwareConfig:
    """Where it runs: accelerator, processes per node, nodes, Lightning's strategy (see DISTRIBUTED)."""

    accelerator: typing.Literal["auto", "cpu", "gpu", "cuda"] = "auto"  # "auto": a GPU when there is one
    devices: int | str = "auto"  # per node; on CPU an int > 1 means that many processes
    num_nodes: int = 1
    distributed: str = "auto"  # Lightning's `strategy`: "auto" (one process) or "ddp" (see DISTRIBUTED)
    num_workers: int = 0


@dataclass
class RunConfig:
    """One run: its settings by concern (the YAML may write them grouped, `optim: {lr: 0.01}`, or flat, `lr: 0.01`).
    A run with `ensemble` members trains nothing: it averages their stored probabilities."""

    name: str
    model: ModelConfig = field(default_factory=ModelConfig)
    freezing: FreezingConfig = field(default_factory=FreezingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    ensemble: list[str] = field(default_factory=list)

    @property
    def strategy_label(self) -> str:
        """The strategy as stored and shown: "ensemble" for an ensemble run."""
        return "ensemble" if self.ensemble else self.freezing.strategy


GROUPS: dict[str, type] = {n: h for n, h in typing.get_type_hints(RunConfig).items()
                           if isinstance(h, type) and dataclasses.is_dataclass(h)}
GROUP_OF: dict[str, str] = {f.name: group for group, cls in GROUPS.items() for f in fields(cls)}  # flat name -> group
assert len(GROUP_OF) == sum(len(fields(c)) for c in GROUPS.values()), "a setting's name must be unique across groups"


def flat_settings(run: RunConfig) -> dict[str, Any]:
    """The run as one flat mapping of the names experiment files have always used (`lr`, `strategy`, `members`)."""
    flat: dict[str, Any] = {"name": run.name}
    for group in GROUPS:
        flat.update(dataclasses.asdict(getattr(run, group)))
    flat["strategy"] = run.strategy_label
    flat["members"] = list(run.ensemble)
    return flat


def build_run(name: str, **settings: Any) -> RunConfig:
    """A RunConfig from flat (`lr=0.01`) and grouped (`optim=OptimConfig(...)`) settings, unchecked: for code and
    tests; experiment files go through load_experiment."""
    groups: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}
    whole: dict[str, Any] = {}
    for key, value in settings.items():
        if key in GROUPS or key == "ensemble":
            whole[key] = value
        else:
            groups[GROUP_OF[key]][key] = value
    made = {g: (dataclasses.replace(whole[g], **groups[g]) if g in whole else GROUPS[g](**groups[g]))
            for g in GROUPS}
    return RunConfig(name=name, ensemble=list(whole.get("ensemble", [])), **made)


def replace_run(run: RunConfig, **changes: Any) -> RunConfig:
    """`run` with some settings changed, by their flat names (`replace_run(run, lr=0.1, name="b")`)."""
    by_group: dict[str, dict[str, Any]] = {}
    top = {k: v for k, v in changes.items() if k in ("name", "ensemble")}
    for key, value in changes.items():
        if key not in top:
            by_group.setdefault(GROUP_OF[key], {})[key] = value
    return dataclasses.replace(run, **top, **{g: dataclasses.replace(getattr(run, g), **c)
                                             for g, c in by_group.items()})


AttributionMethod = typing.Literal["guided_backprop", "integrated_gradients", "grad_cam"]
ATTRIBUTION_METHODS: tuple[str, ...] = typing.get_args(AttributionMethod)


@dataclass
class AttributionConfig:
    """Which saliency maps `make artifacts` stores for each run (see pipeline/attribute.py)."""

    enabled: bool = True
    methods: list[AttributionMethod] = field(default_factory=lambda: list(typing.get_args(AttributionMethod)))
    splits: list[typing.Literal["train", "val", "test"]] = field(default_factory=lambda: ["test"])
    errors_only: bool = False
    true_class_for_errors: bool = True  # also explain the true class where the prediction is wrong
    max_images: int | None = None  # errors first, then correct ones, up to this many per run
    ig_steps: int = 32
    ig_baseline: typing.Literal["black", "blur"] = "black"
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
    audit: bool = False  # after preparing, score every label's likelihood of being wrong (pipeline/audit.py)

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


# ------------------------------------------------------------------------------------------ Period Eye's rules

def _is_name(value: str) -> bool:
    return len(value) <= MAX_NAME and NAME_PATTERN.fullmatch(value) is not None


MAX_NAME = 80
NAME_PATTERN = re.compile(r"\w(?:[\w.+ -]*[\w.+-])?")  # a file name on every system; no '/', '@', control chars
NAME = Rule(_is_name, expected=f"a name of letters, digits, '_', '.', '+', '-' or inner spaces (at most {MAX_NAME}), "
                               "starting with a letter or digit")
MEMBERS = Rule(_is_name, expected=f"a list of run names ({NAME.expected})", each=True)  # []: a trained run
SEED = within(0, 2**32 - 1)  # Lightning and numpy take unsigned 32-bit seeds (Lightning replaces others at random)
TASK_SETS = (["period"], ["period", "artist"])


def _devices_ok(v: Any) -> bool:
    return v == "auto" or (is_int(v) and v >= 1)


def _unique_nonempty(v: list[str]) -> bool:
    return bool(v) and len(set(v)) == len(v) and all(s.strip() for s in v)


def _splits_ok(v: list[str]) -> bool:
    return bool(v) and len(set(v)) == len(v) and set(v) <= set(typing.get_args(SplitName))


def _crop_scale_ok(v: list[float]) -> bool:
    return len(v) == 2 and 0 < v[0] <= v[1] <= 1


@functools.cache
def rules() -> dict[tuple[type, str], Rule]:
    """Every range and choice, by (dataclass, field); registries are read on first use."""
    from pipeline.data.sources import SOURCES  # local, like the backbones: `import pipeline.config` stays light
    from pipeline.models.backbones import BACKBONES  # local: keeps `import pipeline.config` free of torch
    from pipeline.models.classifier import POOLINGS

    size = within(8, 4096)
    return {
        (SplitConfig, "val"): at_least(0),
        (SplitConfig, "test"): at_least(0), (SplitConfig, "seed"): SEED,
        (DataConfig, "source"): one_of(list(SOURCES)), (DataConfig, "name"): NAME,
        (DataConfig, "resize"): size, (DataConfig, "crop"): size, (DataConfig, "thumbnail_size"): within(16, 1024),
        (DataConfig, "period_order"): Rule(_unique_nonempty, "(period names, at least one, no repeats)"),
        (SourceConfig, "source"): one_of(list(SOURCES)), (SourceConfig, "name"): NAME,
        (SourceConfig, "splits"): Rule(_splits_ok, expected="a list of splits (train, val, test), at least one, "
                                       "no repeats; leave it out for all"),
        (NearCopyConfig, "phash_distance"): within(0, 64), (NearCopyConfig, "embedding_similarity"): within(0, 1),
        (NearCopyConfig, "embedding_backbone"): one_of(sorted(BACKBONES)),
        (NearCopyConfig, "local_candidates"): within(1, 1000), (NearCopyConfig, "local_inliers"): within(3, 10000),
        (RunConfig, "name"): NAME, (RunConfig, "ensemble"): MEMBERS,
        (ModelConfig, "backbone"): one_of(sorted(BACKBONES)), (ModelConfig, "pooling"): one_of(POOLINGS),
        (ModelConfig, "tasks"): Rule(lambda v: v in TASK_SETS, expected="[period] or [period, artist]"),
        (ModelConfig, "dropout"): within(0, 1, hi_open=True),
        (FreezingConfig, "freeze_until"): at_least(1), (FreezingConfig, "stage2_epochs"): at_least(1),
        (FreezingConfig, "stage2_lr_factor"): within(0, 1, lo_open=True),
        (FreezingConfig, "layer_decay"): within(0, 1, lo_open=True),
        (OptimConfig, "lr"): within(0, 10, lo_open=True), (OptimConfig, "momentum"): within(0, 1, hi_open=True),
        (OptimConfig, "weight_decay"): within(0, 1), (OptimConfig, "warmup_epochs"): at_least(0),
        (OptimConfig, "plateau_patience"): at_least(0),
        (OptimConfig, "plateau_factor"): within(0, 1, lo_open=True, hi_open=True),
        (OptimConfig, "label_smoothing"): within(0, 1, hi_open=True),
        (AugmentConfig, "mixup"): at_least(0),
        (AugmentConfig, "crop_scale"): Rule(_crop_scale_ok, expected="[min, max] with 0 < min <= max <= 1"),
        (LoopConfig, "epochs"): at_least(1), (LoopConfig, "batch_size"): at_least(1),
        (LoopConfig, "patience"): at_least(0), (LoopConfig, "seed"): SEED,
        (LoopConfig, "max_minutes"): Rule(lambda v: v > 0, "> 0"),
        (HardwareConfig, "devices"): Rule(_devices_ok, expected="'auto' or a whole number >= 1"),
        (HardwareConfig, "num_nodes"): at_least(1), (HardwareConfig, "num_workers"): within(0, 256),
        (HardwareConfig, "distributed"): one_of(DISTRIBUTED, also=SPAWNING),
        (AttributionConfig, "max_images"): at_least(0), (AttributionConfig, "ig_steps"): at_least(1),
        (AttributionConfig, "internal_batch_size"): at_least(1), (AttributionConfig, "batch_size"): at_least(1),
        (AttributionConfig, "heatmap_size"): within(8, 1024), (AttributionConfig, "sanity_images"): at_least(0),
    }


def _section(raw: dict, name: str) -> Any:
    """A top-level block; left out or left empty (`defaults:`) means all defaults."""
    value = raw.get(name)
    return {} if value is None else value


# ------------------------------------------------------------------------------------------ the experiment

TOP_LEVEL = ("name", "data", "defaults", "runs", "store", "attributions", "audit")


def load_experiment(path: str | os.PathLike, data_path: str | None = None, store: str | None = None,
                    overrides: Sequence[str] = ()) -> Experiment:
    """Read and check a whole experiment YAML before any work: every problem at once, one line each, as ConfigError.
    `data_path` points the data block at another collection; `overrides` are `KEY=VALUE`s (`--set`) applied to the
    YAML before it is checked (see apply_overrides)."""
    path = Path(path)
    raw = read_yaml(path)
    problems = Problems(path)
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        problems.add(f"an experiment must be a mapping with keys {', '.join(TOP_LEVEL)}, got {kind(raw)}")
        problems.raise_if_any()
    if overrides:
        raw = apply_overrides(raw, overrides, LAYOUT, problems)
    for name in raw:
        if name not in TOP_LEVEL:
            problems.add(f"unknown top-level key {show(name)}; allowed: {', '.join(TOP_LEVEL)}")
    for name, hint in (("name", str | None), ("store", str | None), ("audit", bool | None)):
        line = check_value(name, raw.get(name), hint, NAME if name == "name" else None)
        if line:
            problems.add(line)
    data = _data(_section(raw, "data"), data_path, problems)
    runs = _runs(raw, data, problems)
    attributions = check_fields(AttributionConfig, _section(raw, "attributions"), "attributions", problems,
                                rules())
    problems.raise_if_any()
    assert data is not None and runs is not None and attributions is not None  # no problems: every part was built
    return Experiment(
        name=raw.get("name") or path.stem,
        data=data,
        runs=runs,
        attributions=AttributionConfig(**attributions),
        store=store or _expand(raw.get("store")) or os.environ.get("PERIODEYE_STORE") or str(DEFAULT_STORE),
        audit=bool(raw.get("audit")),
    )


def _data(raw: Any, data_path: str | None, problems: Problems) -> DataConfig | None:
    """The data block, checked, then pointed at `data_path` if given."""
    has_sources = isinstance(raw, dict) and "sources" in raw
    several = raw["sources"] if has_sources else None  # a list of mappings: checked entry by entry below
    raw = {k: v for k, v in raw.items() if k != "sources"} if has_sources else raw
    checked = check_fields(DataConfig, raw, "data", problems, rules())
    sources = _sources(several, raw, problems) if has_sources else []
    if checked is None or sources is None:
        return None
    data = DataConfig(**{**raw, "split": SplitConfig(**raw.get("split") or {}),
                         "corrections": CorrectionsConfig(**raw.get("corrections") or {}),
                         "near_copies": NearCopyConfig(**raw.get("near_copies") or {})})
    if data_path:
        try:
            data = dataclasses.replace(data, path=data_path, source=detect_source(data_path), name=None, sources=[])
        except ConfigError as exc:
            problems.add(f"--data: {exc}")
            return None
    elif sources:
        data.sources = sources
        data.source = "+".join(dict.fromkeys(s.source or "" for s in sources))  # the datasets row's kind
        if data.split.mode == "none" and any(s.splits and "test" not in s.splits for s in sources):
            problems.add("data.sources: a source limited to splits without test cannot be used with "
                         "data.split.mode 'none' (every image is test)")
    data.path = _expand(data.path)
    if data.path and "$" in data.path:
        problems.add(f"data.path {data.path!r} names an environment variable that is not set; "
                     "set it to the dataset folder or pass --data PATH")
    if data.source != "demo" and not data.path and not data.sources:
        problems.add(f"data.path is required for source {data.source!r}")
    if data.crop > data.resize:
        problems.add(f"data.crop ({data.crop}) must not exceed data.resize ({data.resize})")
    _check_subset(data, problems)
    _check_split(data.split, problems)
    return data


def _sources(raw: Any, data: dict, problems: Problems) -> list[SourceConfig] | None:
    """`data.sources`, each entry checked and resolved (path expanded and present, kind recognised, name given,
    `splits` None when it names all three), before any image is read; None when any is unusable."""
    if not isinstance(raw, list) or not raw:
        problems.add(f"data.sources must be a non-empty list of mappings (path, and optionally source, name, splits), "
                     f"got {show(raw)}")
        return None
    for key in ("path", "source", "subset"):
        if key in data:
            problems.add(f"data.{key} and data.sources both given: with several sources, give each its path and kind "
                         f"in its entry (data.sources[i].path, .source)" if key != "subset" else
                         "data.subset only applies to a single historic_art source, not to data.sources")
    from pipeline.data.sources import SOURCES, recognise  # local: reading a config never loads the readers

    ok = not any(key in data for key in ("path", "source", "subset"))
    out: list[SourceConfig] = []
    names: dict[str, str] = {}
    for i, entry in enumerate(raw):
        where = f"data.sources[{i}]"
        if check_fields(SourceConfig, entry, where, problems, rules()) is None:
            ok = False
            continue
        src = SourceConfig(**entry)
        src.path = _expand(src.path) or ""
        path = Path(src.path)
        generated = src.source is not None and SOURCES[src.source].generated
        if "$" in src.path:
            problems.add(f"{where}.path {src.path!r} names an environment variable that is not set")
            ok = False
        elif not generated and not path.exists():
            problems.add(f"{where}.path {src.path} does not exist")
            ok = False
        else:
            try:
                src.source = src.source or recognise(path)
            except ConfigError as exc:
                problems.add(f"{where}.path: {exc}; give its kind as {where}.source")
                ok = False
        src.name = src.name or path.name or f"source{i}"
        if src.name in names:
            problems.add(f"{where}.name {src.name!r} is also the name of {names[src.name]}; give one of them a `name`")
            ok = False
        names[src.name] = where
        if src.splits is not None and set(src.splits) == {"train", "val", "test"}:
            src.splits = None  # every split: the same as leaving it out (and the same dataset id)
        out.append(src)
    return out if ok else None


def _check_subset(data: DataConfig, problems: Problems) -> None:
    if data.subset is None:
        return
    if data.source != "historic_art":
        problems.add(f"data.subset only applies to source 'historic_art', not {data.source!r}")
        return
    from pipeline.data.historic_art import SUBSETS

    line = check_value("data.subset", data.subset, str, one_of(SUBSETS))
    if line:
        problems.add(line)


def _check_split(split: SplitConfig, problems: Problems) -> None:
    """The same rule as pipeline.data.splits, said before any image is read."""
    if split.mode == "counts":
        for name in ("val", "test"):
            value = getattr(split, name)
            if not float(value).is_integer():
                problems.add(f"data.split.{name} must be a whole number of images per class in mode 'counts', "
                             f"got {value!r}")
    elif split.mode == "fractions" and split.val + split.test >= 1:
        problems.add(f"data.split: val + test must be < 1 in mode 'fractions' (shares of each class), "
                     f"got {split.val} + {split.test}")


@dataclass
class Written:
    """Settings as an experiment file wrote them: flat name -> value, and where each was written
    (`runs[2].lr`, `defaults.optim.lr`), so a problem names the line to change."""

    values: dict[str, Any] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)


RUN_KEYS = ("name", "ensemble")  # a run's own keys besides its settings
ENSEMBLE_KEYS = ("name", "ensemble", "projection", "seed")  # all an ensemble run may set: it trains nothing


def _drop_legacy_ensemble(run: dict, name: str) -> None:
    """`--set runs.<run>.ensemble=[...]` replaces an old file's `strategy: ensemble, members: [...]`."""
    if name == "ensemble" and run.get("strategy") == "ensemble":
        run.pop("strategy")
        run.pop("members", None)


LAYOUT = Layout(groups=GROUPS, run_keys=RUN_KEYS, blocks={"data": DataConfig, "attributions": AttributionConfig},
                scalars=("name", "store", "audit"), replaced=_drop_legacy_ensemble)  # what --set may name


def read_settings(raw: Any, key: str, problems: Problems, run: bool) -> Written | None:
    """A run (or the defaults) in either style, grouped (`optim: {lr: 0.01}`) or flat (`lr: 0.01`); old files'
    `strategy: ensemble, members: [...]` is read as `ensemble: [...]`."""
    if not isinstance(raw, dict):
        problems.add(f"{key} must be a mapping (key: value lines), got {kind(raw)}")
        return None
    out, ok = Written(), True
    legacy = run and raw.get("strategy") == "ensemble"
    for name, value in raw.items():
        where = f"{key}.{name}"
        if name in GROUPS:
            value = {} if value is None else value
            if not isinstance(value, dict):
                problems.add(f"{where} must be a mapping (key: value lines), got {kind(value)}")
                ok = False
                continue
            for sub, v in value.items():
                if GROUP_OF.get(sub) != name:
                    problems.add(f"{where}: unknown key {show(sub)} ({suggest(sub, list(field_hints(GROUPS[name])))})")
                    ok = False
                else:
                    ok = _take(out, sub, v, f"{where}.{sub}", GROUPS[name], problems) and ok
        elif name == "strategy" and legacy:
            continue
        elif name in GROUP_OF:
            ok = _take(out, name, value, where, GROUPS[GROUP_OF[name]], problems) and ok
        elif run and name in RUN_KEYS:
            ok = _take(out, name, value, where, RunConfig, problems) and ok
        elif run and name == "members" and legacy:
            ok = _take(out, "ensemble", value, where, RunConfig, problems) and ok
        elif run and name == "members":
            problems.add(f"{where}: members go with strategy 'ensemble'; write ensemble: [run names] instead")
            ok = False
        else:
            allowed = [*(RUN_KEYS if run else ()), *GROUPS, *GROUP_OF]
            problems.add(f"{key}: unknown key {show(name)} ({suggest(name, allowed)})")
            ok = False
    if legacy and "members" not in raw:
        problems.add(f"{key}: strategy 'ensemble' needs members: [run names] (today written ensemble: [run names])")
        ok = False
    if run and "name" not in raw:
        problems.add(f"{key}.name is required")
        ok = False
    return out if ok else None


def _take(out: Written, name: str, value: Any, where: str, cls: type, problems: Problems) -> bool:
    """Check one value against its field's type and rule, and keep it."""
    if name in out.where:
        problems.add(f"{where}: {name} is given twice ({out.where[name]} and {where})")
        return False
    line = check_value(where, value, field_hints(cls)[name], rules().get((cls, name)))
    if line:
        problems.add(line)
        return False
    out.values[name], out.where[name] = value, where
    return True


def _runs(raw: dict, data: DataConfig | None, problems: Problems) -> list[RunConfig] | None:
    """Each run is the defaults overridden by its own keys; a problem is reported where its value was written."""
    defaults = read_settings(_section(raw, "defaults"), "defaults", problems, run=False)
    given = raw.get("runs")
    if not given:
        problems.add("no runs defined: add `runs:` with a list of runs, each with a name (see configs/demo.yaml)")
        return None
    if not isinstance(given, list):
        problems.add(f"runs must be a list of runs (lines starting with '- name: ...'), got {kind(given)}")
        return None
    runs: list[RunConfig] | None = []
    for i, run_raw in enumerate(given):
        own = read_settings(run_raw, f"runs[{i}]", problems, run=True)
        if own is None or defaults is None or runs is None:
            runs = None
            continue
        run = build_run(**{**defaults.values, **own.values})
        at = RunChecks(i, {**defaults.where, **own.where}, problems)
        if run.ensemble:
            for name in own.values.keys() - set(ENSEMBLE_KEYS):
                problems.add(f"{own.where[name]}: an ensemble run takes no training settings (it averages its "
                             "members' stored probabilities); set it on the members")
        else:
            _check_run(run, at)
            if data is not None and "artist" in run.model.tasks and data.source == "imagefolder":
                problems.add(f"{at.key('tasks')}: task 'artist' needs artist labels; an ImageFolder has none")
        runs.append(run)
    if runs:
        _check_names(runs, problems)
    return runs


@dataclass
class RunChecks:
    """Where a run's problems go: `key(name)` names the line that gave the value (the run's own or the defaults')."""

    index: int
    where: dict[str, str]
    problems: Problems

    def key(self, name: str) -> str:
        return self.where.get(name, f"runs[{self.index}].{name}")

    def add(self, line: str) -> None:
        self.problems.add(line)


def _check_run(run: RunConfig, at: RunChecks) -> None:
    """Settings that depend on each other or on this machine (types and ranges are already right)."""
    where, freezing, backbone = f"runs[{at.index}]", run.freezing, run.model.backbone
    if freezing.strategy == "partial" and freezing.freeze_until is None:
        at.add(f"{where}: strategy 'partial' needs freeze_until: k (the first k blocks frozen, k >= 1)")
    elif freezing.strategy != "partial" and freezing.freeze_until is not None:
        at.add(f"{at.key('freeze_until')}: freeze_until only applies to strategy 'partial', "
               f"not {freezing.strategy!r}")
    elif freezing.freeze_until is not None and freezing.freeze_until > block_count(backbone):
        at.add(f"{at.key('freeze_until')} must be from 1 to {block_count(backbone)} (the blocks of "
               f"{backbone}), got {freezing.freeze_until}")
    _check_distributed(run, at)
    _check_accelerator(run, at)


def _check_distributed(run: RunConfig, at: RunChecks) -> None:
    hw = run.hardware
    if hw.distributed in SPAWNING:
        at.add(f"{at.key('distributed')}: distributed {hw.distributed!r} is not supported: spawned workers hand back "
               "only the final weights, not the epoch history and best-epoch weights a run stores; use 'ddp' "
               "(the command runs once per process)")
    processes = (hw.devices if is_int(hw.devices) else 1) * hw.num_nodes
    if run.optim.lr_finder and (processes > 1 or hw.distributed == "ddp"):
        at.add(f"{at.key('lr_finder')}: lr_finder does not run with several processes (Lightning's tuner is "
               "single-process); find the LR in a single-process run, then set lr: and drop lr_finder")


def _check_accelerator(run: RunConfig, at: RunChecks) -> None:
    """A GPU asked for by name must be here: training on the CPU instead would be silent and many times slower."""
    hw = run.hardware
    if hw.accelerator not in ("gpu", "cuda"):
        return
    count = gpu_count()
    if count == 0:
        at.add(f"{at.key('accelerator')}: accelerator {hw.accelerator!r} but this machine has no usable CUDA GPU "
               "(torch.cuda.is_available() is false); use 'auto' (a GPU when there is one) or 'cpu'")
    elif is_int(hw.devices) and hw.devices > count:
        at.add(f"{at.key('devices')}: {hw.devices} GPUs asked for but this machine has {count}")


def gpu_count() -> int:
    """CUDA GPUs this process can use (0 without torch's CUDA); torch is imported only when a run names a GPU."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@functools.cache
def block_count(backbone: str) -> int:
    """How many blocks `freeze_until` can count for this backbone; built on the meta device (no weights, no memory)."""
    import torch

    from pipeline.models.backbones import build_backbone

    with torch.device("meta"):
        return len(build_backbone(backbone, pretrained=False).blocks)


def _check_names(runs: list[RunConfig], problems: Problems) -> None:
    names = [r.name for r in runs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        problems.add(f"runs: run names must be unique; repeated: {', '.join(map(repr, repeated))}")
    for i, run in enumerate(runs):
        missing = [m for m in run.ensemble if m not in names[:i] or runs[names.index(m)].ensemble]
        if missing:
            problems.add(f"runs[{i}].ensemble: {missing} must be trained runs listed before the ensemble "
                         f"{run.name!r}; runs: {names}")


def detect_source(path: str) -> str:
    """The source kind of a path given on the command line (`$VAR` and `~` expanded), as the registry recognises it."""
    from pipeline.data.sources import recognise  # local: reading a config never loads the readers

    return recognise(Path(_expand(path)))


_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::-([^}]*))?\}|(\w+))")


@overload
def _expand(value: str) -> str: ...
@overload
def _expand(value: str | None) -> str | None: ...
def _expand(value: str | None) -> str | None:
    """`$VAR`, `${VAR}`, `${VAR:-default}` and `~`, so configs can name $PAINTINGS_SHARED (default ../shared/datasets).

    Reads the environment and never writes it. An unset variable without a default stays as written, so the
    caller can name it in its error.
    """
    if not value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1) or match.group(3), match.group(2)
        if default is not None:
            return os.environ.get(name) or default
        fallback = str(DEFAULT_SHARED) if name == "PAINTINGS_SHARED" else match.group(0)
        return os.environ.get(name, fallback)

    return os.path.expanduser(_VARIABLE.sub(substitute, value))
