"""Experiment and run specs: YAML in, validated dataclasses out.

An experiment file has a `data` block (one dataset), a `defaults` block (run settings shared
by every run) and a `runs` list (each run overrides some defaults). A run's settings are grouped
by concern (`model`, `freezing`, `optim`, `augment`, `loop`, `hardware`, as in lightning-hydra-template's
config groups) and may be written grouped (`optim: {lr: 0.01}`) or flat (`lr: 0.01`); `--set KEY=VALUE`
changes the YAML before it is checked. Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import hashlib
import json
import math
import os
import re
import reprlib
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError

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


# ------------------------------------------------------------------------------------------ reading YAML

MAX_CONFIG_BYTES = 1_000_000  # an experiment is a few KB; anything bigger is the wrong file
MAX_YAML_VALUES = 100_000  # values after alias expansion: a "billion laughs" file stops here, not at MemoryError
_YAML_BASE: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _ConfigLoader(_YAML_BASE):  # type: ignore[misc, valid-type]
    """Safe YAML (no Python tags), where `1e-3` is a number and a key given twice is an error, not a silent pick."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"key {key_node.value!r} is given twice",
                                                            key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


_ConfigLoader.add_implicit_resolver(  # YAML 1.1 wants a dot in a float; people write lr: 1e-3
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def read_yaml(path: Path) -> Any:
    """The file's YAML, bounded in size and alias expansion; every failure is one ConfigError line."""
    if not path.exists():
        raise ConfigError(f"experiment file {path} not found; see configs/ for examples")
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; give an experiment YAML file (for example configs/demo.yaml)")
    if not path.is_file():
        raise ConfigError(f"{path} is not a regular file; give an experiment YAML file")
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES // 1_000_000} MB; "
                          "an experiment is a few KB of YAML")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}); "
                          "give an experiment YAML file") from None
    return _parse_yaml(text, path)


def _parse_yaml(text: str, path: Path) -> Any:
    loader = _ConfigLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, path)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {_yaml_problem(exc, text)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be an experiment file") from None
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """One line: where and what, in the user's terms."""
    if isinstance(exc, yaml.reader.ReaderError):  # libyaml gives a character offset and code, not a mark
        line = text[: exc.position].count("\n") + 1
        char = chr(exc.character) if isinstance(exc.character, int) else exc.character
        return f"not valid YAML at line {line}: {exc.reason} (found {char!r})"
    if not isinstance(exc, yaml.MarkedYAMLError):
        return "not valid YAML: " + " ".join(str(exc).split())
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = exc.problem or ""
    tag = re.search(r"constructor for the tag '([^']*)'", problem)
    if tag:
        shown = tag.group(1).replace("tag:yaml.org,2002:", "!!")
        return f"{where}tag {shown!r} is not allowed; an experiment is plain YAML (mappings, lists, text, numbers)"
    context = f" ({exc.context})" if exc.context else ""
    return f"not valid YAML at {where}{problem}{context}"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node, path: Path) -> None:
    """Refuse recursive aliases and documents whose aliases expand past MAX_YAML_VALUES (counted on the node graph,
    each shared node once, so a bomb is refused in microseconds)."""
    sizes: dict[int, int] = {}
    entered: set[int] = set()  # the ancestors of the node being visited
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        key = id(node)
        if leaving:
            entered.discard(key)
            sizes[key] = min(MAX_YAML_VALUES + 1, 1 + sum(sizes[id(c)] for c in _children(node)))
            continue
        if key in sizes:
            continue
        if key in entered:
            raise ConfigError(f"{path}: line {node.start_mark.line + 1}: an alias refers to a value that contains "
                              "it (recursive alias)")
        entered.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)
    if sizes[id(root)] > MAX_YAML_VALUES:
        raise ConfigError(f"{path}: the YAML expands to more than {MAX_YAML_VALUES:,} values through its aliases "
                          "(*name repeats &name); an experiment needs a few hundred")


# ------------------------------------------------------------------------------------------ value rules


@dataclass(frozen=True)
class Rule:
    """What a value of the right type must also satisfy; the wording completes "<key> must be <type> ..."."""

    ok: Callable[[Any], bool]
    text: str = ""  # appended to the type: ">= 1"
    expected: str = ""  # replaces the whole description: "'auto' or a whole number >= 1"
    choices: tuple = ()  # shown as "<value> unknown; choose from ..."
    each: bool = False  # a list: every element must pass


def at_least(lo: float) -> Rule:
    return Rule(lambda v: v >= lo, f">= {lo}")


def within(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> Rule:
    def ok(v: float) -> bool:
        return (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)

    return Rule(ok, f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}")


def one_of(choices: Sequence[str], each: bool = False, also: Sequence[str] = ()) -> Rule:
    """`also`: accepted here but refused later with its own reason (not offered as a choice)."""
    allowed = set(choices) | set(also)
    return Rule(lambda v: v in allowed, choices=tuple(choices), each=each)


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
    return v == "auto" or (_is_int(v) and v >= 1)


def _unique_nonempty(v: list[str]) -> bool:
    return bool(v) and len(set(v)) == len(v) and all(s.strip() for s in v)


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


# ------------------------------------------------------------------------------------------ checking values


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _matches(value: Any, hint: Any) -> bool:
    """Whether `value` (as YAML gives it) has the type hint's type; a bool is not a number, NaN not a number."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:  # the type of its choices here; which choice, in check_value
        return any(_matches(value, type(a)) for a in args)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if origin is list:
        return isinstance(value, list) and all(_matches(v, args[0]) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return _is_int(value)
    if hint is float:
        return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)
    return isinstance(value, hint)


TYPE_WORDS = {bool: ("true or false", "true/false values"), int: ("an integer", "integers"),
              float: ("a number", "numbers"), str: ("a string", "strings")}


def _describe(hint: Any, rule: Rule | None) -> str:
    """"an integer >= 1", "a list of strings, or null": the type hint in words, with the rule's range."""
    if rule is not None and rule.expected:
        return rule.expected
    args = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_origin(hint) in (
        typing.Union, types.UnionType) else [hint]
    words = []
    for a in args:
        if typing.get_origin(a) is list:
            words.append("a list of " + TYPE_WORDS[_plain(typing.get_args(a)[0])][1])
        else:
            words.append(TYPE_WORDS[_plain(a)][0] if _plain(a) in TYPE_WORDS else "a mapping")
    text = " or ".join(words) + (f" {rule.text}" if rule is not None and rule.text else "")
    return text + (", or null" if len(args) < len(typing.get_args(hint)) else "")


def _show(value: Any) -> str:
    """A value for a message: short even for a huge or recursive one."""
    return _REPR.repr(value)


_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict, _REPR.maxlevel = 60, 60, 6, 6, 3


def _kind(value: Any) -> str:
    """"a mapping", "a list", or the value itself."""
    words = {dict: "a mapping", list: "a list", type(None): "nothing"}
    return next((w for t, w in words.items() if isinstance(value, t)), _show(value))


def _section(raw: dict, name: str) -> Any:
    """A top-level block; left out or left empty (`defaults:`) means all defaults."""
    value = raw.get(name)
    return {} if value is None else value


def _plain(hint: Any) -> Any:
    """A Literal's value type (`Literal["a", "b"]` -> str); any other hint as it is."""
    return type(typing.get_args(hint)[0]) if typing.get_origin(hint) is typing.Literal else hint


def choices_of(hint: Any) -> Rule | None:
    """The rule a `Literal[...]` hint makes (also inside `list[...]` or `... | None`): the static choices live on
    the field; registries (backbones, poolings, sources) are rules()."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return one_of(args)
    if origin is list and typing.get_origin(args[0]) is typing.Literal:
        return one_of(typing.get_args(args[0]), each=True)
    if origin in (typing.Union, types.UnionType):
        return next((r for r in map(choices_of, args) if r is not None), None)
    return None


def check_value(key: str, value: Any, hint: Any, rule: Rule | None) -> str | None:
    """The problem with one value, as a line naming `key`, or None; a Literal hint gives the choices."""
    rule = rule or choices_of(hint)
    if not _matches(value, hint):
        return f"{key} must be {_describe(hint, rule)}, got {_show(value)}"
    if rule is None or value is None:
        return None
    for item in value if rule.each else [value]:
        if not rule.ok(item):
            if rule.choices:
                return f"{key} {_show(item)} unknown; choose from {', '.join(map(repr, rule.choices))}"
            return f"{key} must be {_describe(hint, rule)}, got {_show(value)}"
    return None


class Problems:
    """Every problem found in one file, each one line starting with the file and naming the key."""

    def __init__(self, path: Path):
        self.path = path
        self.lines: dict[str, None] = {}  # ordered, without repeats (a bad default is reported once)
        self.flags: dict[str, str] = {}  # key -> the `--set KEY=VALUE` that wrote it

    def add(self, line: str) -> None:
        for key, flag in self.flags.items():  # a value from the command line: say so after its key
            if line.startswith(key) and line[len(key):len(key) + 1] in (" ", ":"):
                line = f"{key} (--set {flag}){line[len(key):]}"
                break
        self.lines[f"{self.path}: {line}"] = None

    def raise_if_any(self) -> None:
        if self.lines:
            raise ConfigError("\n".join(self.lines), problems=list(self.lines))


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _required(cls: type) -> set[str]:
    missing = (dataclasses.MISSING,)
    return {f.name for f in fields(cls) if f.default in missing and f.default_factory in missing}


def check_fields(cls: type, raw: Any, key: str, problems: Problems, skip: tuple[str, ...] = (),
                 required: bool = True) -> dict[str, Any] | None:
    """Type and range of every key meant for dataclass `cls`; returns the mapping when all of it is usable."""
    if not isinstance(raw, dict):
        problems.add(f"{key} must be a mapping (key: value lines), got {_kind(raw)}")
        return None
    hints, table, ok = _hints(cls), rules(), True
    allowed = [n for n in hints if n not in skip]
    for name, value in raw.items():
        where = f"{key}.{name}"
        if name not in allowed:
            close = difflib.get_close_matches(str(name), allowed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"
            problems.add(f"{key}: unknown key {_show(name)} ({hint})")
            ok = False
        elif dataclasses.is_dataclass(hints[name]):
            ok = check_fields(hints[name], {} if value is None else value, where, problems) is not None and ok
        else:
            line = check_value(where, value, hints[name], table.get((cls, name)))
            if line:
                problems.add(line)
                ok = False
    for name in sorted(_required(cls) - set(raw) - set(skip)) if required else []:
        problems.add(f"{key}.{name} is required")
        ok = False
    return raw if ok else None


# ------------------------------------------------------------------------------------------ the experiment

TOP_LEVEL = ("name", "data", "defaults", "runs", "store", "attributions")


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
        problems.add(f"an experiment must be a mapping with keys {', '.join(TOP_LEVEL)}, got {_kind(raw)}")
        problems.raise_if_any()
    if overrides:
        raw = apply_overrides(raw, overrides, problems)
    for name in raw:
        if name not in TOP_LEVEL:
            problems.add(f"unknown top-level key {_show(name)}; allowed: {', '.join(TOP_LEVEL)}")
    for name, hint in (("name", str | None), ("store", str | None)):
        line = check_value(name, raw.get(name), hint, NAME if name == "name" else None)
        if line:
            problems.add(line)
    data = _data(_section(raw, "data"), data_path, problems)
    runs = _runs(raw, data, problems)
    attributions = check_fields(AttributionConfig, _section(raw, "attributions"), "attributions", problems)
    problems.raise_if_any()
    assert data is not None and runs is not None and attributions is not None  # no problems: every part was built
    return Experiment(
        name=raw.get("name") or path.stem,
        data=data,
        runs=runs,
        attributions=AttributionConfig(**attributions),
        store=store or _expand(raw.get("store")) or os.environ.get("PERIODEYE_STORE") or str(DEFAULT_STORE),
    )


def _data(raw: Any, data_path: str | None, problems: Problems) -> DataConfig | None:
    """The data block, checked, then pointed at `data_path` if given."""
    if check_fields(DataConfig, raw, "data", problems) is None:
        return None
    data = DataConfig(**{**raw, "split": SplitConfig(**raw.get("split") or {})})
    if data_path:
        try:
            data = dataclasses.replace(data, path=data_path, source=detect_source(data_path), name=None)
        except ConfigError as exc:
            problems.add(f"--data: {exc}")
            return None
    data.path = _expand(data.path)
    if data.path and "$" in data.path:
        problems.add(f"data.path {data.path!r} names an environment variable that is not set; "
                     "set it to the dataset folder or pass --data PATH")
    if data.source != "demo" and not data.path:
        problems.add(f"data.path is required for source {data.source!r}")
    if data.crop > data.resize:
        problems.add(f"data.crop ({data.crop}) must not exceed data.resize ({data.resize})")
    _check_subset(data, problems)
    _check_split(data.split, problems)
    return data


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


def read_settings(raw: Any, key: str, problems: Problems, run: bool) -> Written | None:
    """A run (or the defaults) in either style, grouped (`optim: {lr: 0.01}`) or flat (`lr: 0.01`); old files'
    `strategy: ensemble, members: [...]` is read as `ensemble: [...]`."""
    if not isinstance(raw, dict):
        problems.add(f"{key} must be a mapping (key: value lines), got {_kind(raw)}")
        return None
    out, ok = Written(), True
    legacy = run and raw.get("strategy") == "ensemble"
    for name, value in raw.items():
        where = f"{key}.{name}"
        if name in GROUPS:
            value = {} if value is None else value
            if not isinstance(value, dict):
                problems.add(f"{where} must be a mapping (key: value lines), got {_kind(value)}")
                ok = False
                continue
            for sub, v in value.items():
                if GROUP_OF.get(sub) != name:
                    problems.add(f"{where}: unknown key {_show(sub)} ({_close(sub, list(_hints(GROUPS[name])))})")
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
            problems.add(f"{key}: unknown key {_show(name)} ({_close(name, allowed)})")
            ok = False
    if legacy and "members" not in raw:
        problems.add(f"{key}: strategy 'ensemble' needs members: [run names] (today written ensemble: [run names])")
        ok = False
    if run and "name" not in raw:
        problems.add(f"{key}.name is required")
        ok = False
    return out if ok else None


def _close(name: Any, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(name), list(allowed), n=1)
    return f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"


def _take(out: Written, name: str, value: Any, where: str, cls: type, problems: Problems) -> bool:
    """Check one value against its field's type and rule, and keep it."""
    if name in out.where:
        problems.add(f"{where}: {name} is given twice ({out.where[name]} and {where})")
        return False
    line = check_value(where, value, _hints(cls)[name], rules().get((cls, name)))
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
        problems.add(f"runs must be a list of runs (lines starting with '- name: ...'), got {_kind(given)}")
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
    processes = (hw.devices if _is_int(hw.devices) else 1) * hw.num_nodes
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
    elif _is_int(hw.devices) and hw.devices > count:
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


# ------------------------------------------------------------------------------------------ --set KEY=VALUE


def apply_overrides(raw: dict, overrides: Sequence[str], problems: Problems) -> dict:
    """Hydra-style `KEY=VALUE`s into a copy of the YAML tree, after the file and before any check: `data.resize=96`,
    `defaults.lr=0.01`, `runs.<run name>.epochs=1`, grouped keys too (`runs.a.model.backbone=resnet18`); VALUE is
    read as YAML (`[flip]`, `1e-3`, `null`). A bad value is then refused as if written in the file, naming the flag."""
    raw = copy.deepcopy(raw)
    for text in overrides:
        key, eq, value_text = text.partition("=")
        if not eq or not key:
            problems.add(f"--set {text}: write KEY=VALUE, e.g. runs.<run name>.epochs=1 or data.resize=96")
            continue
        try:
            value = _parse_yaml(value_text, Path(f"--set {text}"))
        except ConfigError as exc:
            problems.add(str(exc))
            continue
        placed = _place(raw, key, value, text, problems)
        if placed:
            problems.flags[placed] = text
    return raw


def _place(raw: dict, key: str, value: Any, text: str, problems: Problems) -> str | None:
    """Put one override into `raw`; returns the key as problems name it (`runs[0].model.backbone`), or None."""
    section, _, rest = key.partition(".")
    if section == "runs":
        runs = raw.get("runs")
        names = [r.get("name") for r in runs if isinstance(r, dict)] if isinstance(runs, list) else []
        name = max((n for n in names if isinstance(n, str) and rest.startswith(f"{n}.")), key=len, default=None)
        if name is None or not isinstance(runs, list):
            wanted = rest.split(".")[0]
            close = difflib.get_close_matches(wanted, [str(n) for n in names], n=3)
            hint = f"did you mean {', '.join(map(repr, close))}?" if close else f"runs: {names}"
            problems.add(f"--set {text}: no run named {wanted!r} ({hint}); write runs.<run name>.<key>=VALUE")
            return None
        i = names.index(name)
        return _place_setting(runs[i], rest[len(name) + 1:], value, f"runs[{i}]", text, problems, run=True)
    if section == "defaults":
        if not isinstance(raw.get("defaults"), dict):
            raw["defaults"] = {}
        return _place_setting(raw["defaults"], rest, value, "defaults", text, problems, run=False)
    if section in ("data", "attributions") and rest:
        cls, parts = DataConfig if section == "data" else AttributionConfig, rest.split(".")
        if not isinstance(raw.get(section), dict):
            raw[section] = {}
        node = raw[section]
        for depth, part in enumerate(parts):
            hints, last = _hints(cls), depth == len(parts) - 1
            if part not in hints or not (last or dataclasses.is_dataclass(hints[part])):
                problems.add(f"--set {text}: unknown key {'.'.join([section, *parts[:depth + 1]])!r} "
                             f"({_close(part, list(hints))})")
                return None
            if not last:
                cls = hints[part]
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                node = node[part]
        node[parts[-1]] = value
        return key
    if section in ("name", "store") and not rest:
        raw[section] = value
        return key
    problems.add(f"--set {text}: unknown key {key!r}; start it with runs.<run name>., defaults., data. or "
                 "attributions.")
    return None


def _place_setting(mapping: Any, key: str, value: Any, where: str, text: str, problems: Problems,
                   run: bool) -> str | None:
    """A run's or the defaults' setting, by its flat or grouped name; it replaces the value however the file wrote
    it (flat or grouped), so the two never clash."""
    parts = key.split(".")
    valid = [*(RUN_KEYS if run else ()), *GROUP_OF, *GROUPS, *(f"{g}.{n}" for n, g in GROUP_OF.items())]
    if not isinstance(mapping, dict) or key not in valid:
        problems.add(f"--set {text}: unknown key {key!r} in {where} ({_close(key, valid)})")
        return None
    name = parts[-1]
    group = GROUP_OF.get(name)
    mapping.pop(name, None)
    if group and isinstance(mapping.get(group), dict):
        mapping[group].pop(name, None)
    if len(parts) == 2:
        if not isinstance(mapping.get(group), dict):
            mapping[group] = {}
        mapping[group][name] = value
    else:
        mapping[name] = value
    if run and name == "ensemble" and mapping.get("strategy") == "ensemble":
        mapping.pop("strategy")
        mapping.pop("members", None)
    return f"{where}.{key}"


def detect_source(path: str) -> str:
    """The source kind of a path given on the command line (`$VAR` and `~` expanded), as the registry recognises it."""
    from pipeline.data.sources import recognise  # local: reading a config never loads the readers

    return recognise(Path(_expand(path)))


_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::-([^}]*))?\}|(\w+))")


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
