"""Config files: typos and impossible settings are errors that say what to change."""

from __future__ import annotations

import dataclasses
import os
import typing

import pytest
import yaml

from pipeline.config import (
    DEFAULT_SHARED,
    GROUPS,
    REPO_ROOT,
    STRATEGIES,
    AttributionConfig,
    ConfigError,
    DataConfig,
    RunConfig,
    SplitConfig,
    _expand,
    build_run,
    flat_settings,
    load_experiment,
    rules,
)


def write(tmp_path, spec):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


BASE = {"name": "x", "data": {"source": "demo"}, "runs": [{"name": "a"}]}


@pytest.mark.parametrize("config", sorted((REPO_ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(config, monkeypatch):
    monkeypatch.setenv("HISTORIC_ART", "/data/historic-art")
    exp = load_experiment(config)
    assert exp.runs


def test_reference_configs_hold_the_reference_runs(monkeypatch):
    monkeypatch.setenv("HISTORIC_ART", "/data/historic-art")
    subset = load_experiment(REPO_ROOT / "configs" / "reference-subset.yaml")
    assert [(r.model.backbone, r.freezing.strategy, r.model.tasks) for r in subset.runs] == [
        ("resnet18", "head", ["period"]), ("resnet34", "head", ["period"]), ("resnet50", "head", ["period"]),
        ("resnet18", "two_stage", ["period"]), ("resnet18", "finetune", ["period"]),
        ("resnet18", "head", ["period", "artist"]), ("resnet34", "head", ["period", "artist"])]
    assert subset.runs[4].optim.lr_finder and subset.data.subset == "twelve_artists"
    assert (subset.data.split.val, subset.data.split.test) == (30, 30)
    full = load_experiment(REPO_ROOT / "configs" / "reference-full.yaml")
    assert [r.freezing.freeze_until for r in full.runs] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"runs": [{"name": "a", "stratgy": "head"}]}, "unknown key"),
        ({"runs": [{"name": "a", "strategy": "frozen"}]}, "strategy 'frozen' unknown"),
        ({"runs": [{"name": "a", "strategy": "partial"}]}, "needs freeze_until"),
        ({"runs": [{"name": "a", "backbone": "vgg16"}]}, "backbone 'vgg16' unknown"),
        ({"runs": [{"name": "a", "tasks": ["artist"]}]}, "tasks must be"),
        ({"runs": [{"name": "a"}, {"name": "a"}]}, "unique"),
        ({"runs": []}, "no runs"),
        ({"data": {"source": "imagefolder"}}, "data.path is required"),
        ({"data": {"source": "demo", "crop": 300}}, "must not exceed"),
        ({"data": {"source": "historic_art", "path": "${SURELY_UNSET_VAR}"}}, "SURELY_UNSET_VAR"),
    ],
)
def test_bad_configs_are_explained(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment(write(tmp_path, {**BASE, **change}))


def test_data_override_detects_the_source(tmp_path):
    (tmp_path / "imgs" / "Baroque").mkdir(parents=True)
    exp = load_experiment(write(tmp_path, BASE), data_path=str(tmp_path / "imgs"))
    assert exp.data.source == "imagefolder" and exp.data.dataset_name == "imgs"
    (tmp_path / "m.csv").write_text("path,period\n")
    assert load_experiment(write(tmp_path, BASE), data_path=str(tmp_path / "m.csv")).data.source == "manifest"
    (tmp_path / "kaggle").mkdir()
    (tmp_path / "kaggle" / "artwork_dataset.csv").write_text("")
    assert load_experiment(write(tmp_path, BASE), data_path=str(tmp_path / "kaggle")).data.source == "historic_art"


def _placed(cls: type, name: str, value: object) -> dict:
    """BASE with `value` at the place `cls.name` is written in an experiment file."""
    if cls is SplitConfig:
        return {**BASE, "data": {"source": "demo", "split": {name: value}}}
    if cls is DataConfig:
        return {**BASE, "data": {"source": "demo", name: value}}
    if cls is RunConfig:
        return {**BASE, "runs": [{"name": "a", name: value}]}
    if cls in GROUP_NAME:
        return {**BASE, "runs": [{"name": "a", GROUP_NAME[cls]: {name: value}}]}
    return {**BASE, "attributions": {name: value}}


GROUP_NAME = {cls: group for group, cls in GROUPS.items()}
KEY_OF = {SplitConfig: "data.split", DataConfig: "data", RunConfig: "runs[0]", AttributionConfig: "attributions",
          **{cls: f"runs[0].{group}" for cls, group in GROUP_NAME.items()}}
ALL_FIELDS = [(cls, f.name) for cls in KEY_OF for f in dataclasses.fields(cls)]


@pytest.mark.parametrize(("cls", "name"), ALL_FIELDS, ids=[f"{c.__name__}.{n}" for c, n in ALL_FIELDS])
def test_every_field_refuses_a_value_of_the_wrong_type(tmp_path, cls, name):
    """Checked from the type hints: no field is left to fail at training time."""
    wrong = [["a list"]] if dataclasses.is_dataclass(typing.get_type_hints(cls)[name]) else {"a": "mapping"}
    with pytest.raises(ConfigError) as err:
        load_experiment(write(tmp_path, _placed(cls, name, wrong)))
    (line,) = err.value.problems
    assert line.startswith(f"{tmp_path / 'exp.yaml'}: {KEY_OF[cls]}.{name} must be ")
    assert line.endswith("got a list" if isinstance(wrong, list) else "got {'a': 'mapping'}")


NUMBERS = [(c, n) for c, n in ALL_FIELDS if {int, float} & set(typing.get_args(typing.get_type_hints(c)[n]))
           or typing.get_type_hints(c)[n] in (int, float)]


@pytest.mark.parametrize(("cls", "name"), NUMBERS, ids=[f"{c.__name__}.{n}" for c, n in NUMBERS])
def test_every_number_has_a_range(cls, name):
    """A new numeric setting cannot be added without saying which values make sense."""
    assert (cls, name) in rules()


def test_all_problems_come_at_once(tmp_path):
    spec = {**BASE, "data": {"source": "demo", "resize": 0}, "runs": [{"name": "a", "lr": 0}, {"name": "b/c"}]}
    with pytest.raises(ConfigError) as err:
        load_experiment(write(tmp_path, spec))
    keys = [p.split(": ", 1)[1].split(" ")[0] for p in err.value.problems]
    assert keys == ["data.resize", "runs[0].lr", "runs[1].name"]
    assert str(err.value) == "\n".join(err.value.problems)


def test_a_default_is_blamed_where_it_is_written(tmp_path):
    spec = {**BASE, "defaults": {"strategy": "head", "freeze_until": 2}, "runs": [{"name": "a"}, {"name": "b"}]}
    with pytest.raises(ConfigError) as err:
        load_experiment(write(tmp_path, spec))
    assert err.value.problems == [f"{tmp_path / 'exp.yaml'}: defaults.freeze_until: freeze_until only applies to "
                                  "strategy 'partial', not 'head'"]


def test_expand_reads_the_environment_and_never_writes_it(monkeypatch):
    for name in ("PAINTINGS_SHARED", "PE_UNSET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PE_SET", "/x")
    before = dict(os.environ)
    assert _expand("${PAINTINGS_SHARED}/w") == f"{DEFAULT_SHARED}/w" == _expand("$PAINTINGS_SHARED/w")
    assert _expand("$PE_SET/a") == "/x/a" and _expand("${PE_SET:-/y}") == "/x"
    assert _expand("${PE_UNSET:-/y}/b") == "/y/b"
    assert _expand("${PE_UNSET}/c") == "${PE_UNSET}/c"  # left for the caller to name
    assert _expand("~/d") == os.path.expanduser("~/d")
    assert dict(os.environ) == before


# ------------------------------------------------------------------------------ groups, ensembles, --set

FLAT = """
name: styles
data: {source: demo}
defaults: {backbone: resnet18, lr: 0.01, epochs: 4, hflip: true, devices: 1}
runs:
  - {name: a, strategy: partial, freeze_until: 2, tta: [flip], seed: 3}
  - {name: b, strategy: two_stage, stage2_epochs: 2, lr: 0.02, pooling: style}
  - {name: both, strategy: ensemble, members: [a, b]}
"""
GROUPED = """
name: styles
data: {source: demo}
defaults:
  model: {backbone: resnet18}
  optim: {lr: 0.01}
  loop: {epochs: 4}
  augment: {hflip: true}
  hardware: {devices: 1}
runs:
  - {name: a, freezing: {strategy: partial, freeze_until: 2}, augment: {tta: [flip]}, loop: {seed: 3}}
  - {name: b, freezing: {strategy: two_stage, stage2_epochs: 2}, optim: {lr: 0.02}, model: {pooling: style}}
  - {name: both, ensemble: [a, b]}
"""


def test_flat_and_grouped_files_resolve_to_equal_runs(tmp_path):
    (tmp_path / "flat.yaml").write_text(FLAT)
    (tmp_path / "grouped.yaml").write_text(GROUPED)
    flat, grouped = (load_experiment(tmp_path / f"{s}.yaml").runs for s in ("flat", "grouped"))
    assert flat == grouped
    a, b, both = grouped
    assert (a.model.backbone, a.freezing.freeze_until, a.optim.lr, a.augment.tta, a.loop.seed) == (
        "resnet18", 2, 0.01, ["flip"], 3)
    assert (b.optim.lr, b.model.pooling, b.freezing.stage2_epochs) == (0.02, "style", 2)
    assert both.ensemble == ["a", "b"] and both.strategy_label == "ensemble" and not a.ensemble


@pytest.mark.parametrize("config", sorted((REPO_ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_means_the_same_written_grouped(config, tmp_path, monkeypatch):
    """Each file in configs/ rewritten in the grouped style (every setting under its group) gives equal runs."""
    monkeypatch.setenv("HISTORIC_ART", "/data/historic-art")
    raw = yaml.safe_load(config.read_text())

    def grouped(settings: dict) -> dict:
        out: dict = {}
        for key, value in settings.items():
            group = next((g for g, cls in GROUPS.items() if key in {f.name for f in dataclasses.fields(cls)}), None)
            if group:
                out.setdefault(group, {})[key] = value
            else:
                out[key] = value
        return out

    raw["defaults"] = grouped(raw.get("defaults") or {})
    raw["runs"] = [grouped(r) for r in raw["runs"]]
    assert load_experiment(write(tmp_path, raw)).runs == load_experiment(config).runs


def test_the_best_recipe_ensemble_uses_its_own_key(monkeypatch):
    text = (REPO_ROOT / "configs" / "wikiart-best.yaml").read_text()
    assert "strategy: ensemble" not in text and "ensemble: [" in text
    runs = load_experiment(REPO_ROOT / "configs" / "wikiart-best.yaml").runs
    assert runs[-1].ensemble == ["lite0-style-head", "lite0-style-freeze4"]


def test_flat_settings_are_the_old_names():
    run = build_run("r", lr=0.5, strategy="partial", freeze_until=1, tta=["crops"])
    flat = flat_settings(run)
    assert (flat["lr"], flat["strategy"], flat["freeze_until"], flat["tta"], flat["members"]) == (
        0.5, "partial", 1, ["crops"], [])
    assert flat_settings(build_run("e", ensemble=["r"]))["strategy"] == "ensemble"
    assert set(flat) == {"name", "members", *(f.name for c in GROUPS.values() for f in dataclasses.fields(c))}


@pytest.mark.parametrize(
    ("runs", "message"),
    [
        ([{"name": "a"}, {"name": "e", "ensemble": ["a"], "lr": 0.1}],
         "runs[1].lr: an ensemble run takes no training settings"),
        ([{"name": "a"}, {"name": "e", "ensemble": ["a"], "optim": {"lr": 0.1}}],
         "runs[1].optim.lr: an ensemble run takes no training settings"),
        ([{"name": "a"}, {"name": "e", "members": ["a"]}], "runs[1].members: members go with strategy 'ensemble'"),
        ([{"name": "a"}, {"name": "e", "strategy": "ensemble"}], "runs[1]: strategy 'ensemble' needs members"),
        ([{"name": "e", "ensemble": ["a"]}, {"name": "a"}], "runs[0].ensemble: ['a'] must be trained runs listed"),
        ([{"name": "a"}, {"name": "e", "ensemble": ["a/b"]}], "runs[1].ensemble must be a list of run names ("),
        ([{"name": "a", "lr": 0.1, "optim": {"lr": 0.2}}], "runs[0].optim.lr: lr is given twice (runs[0].lr and"),
        ([{"name": "a", "optim": {"lrr": 0.1}}], "runs[0].optim: unknown key 'lrr' (did you mean 'lr'?)"),
        ([{"name": "a", "model": {"lr": 0.1}}], "runs[0].model: unknown key 'lr'"),
        ([{"name": "a", "freezing": {"strategy": "ensemble"}}], "runs[0].freezing.strategy 'ensemble' unknown"),
    ],
)
def test_ensembles_and_groups_are_checked(tmp_path, runs, message):
    with pytest.raises(ConfigError) as err:
        load_experiment(write(tmp_path, {**BASE, "runs": runs}))
    assert err.value.problems == [f"{tmp_path / 'exp.yaml'}: {message}"] or any(
        p.startswith(f"{tmp_path / 'exp.yaml'}: {message}") for p in err.value.problems), err.value.problems


def test_old_ensembles_load_as_the_new_key(tmp_path, recwarn):
    old = {**BASE, "runs": [{"name": "a"}, {"name": "e", "strategy": "ensemble", "members": ["a"]}]}
    new = {**BASE, "runs": [{"name": "a"}, {"name": "e", "ensemble": ["a"]}]}
    assert load_experiment(write(tmp_path, old)).runs == load_experiment(write(tmp_path, new)).runs
    assert not recwarn.list  # translated quietly


def test_choices_come_from_the_literal_on_the_field(tmp_path):
    """STRATEGIES is the Literal's members; a value outside a Literal is refused with its choices, no rule needed."""
    assert STRATEGIES == ("head", "finetune", "two_stage", "partial")
    literal = [(c, n) for c in KEY_OF for n, h in typing.get_type_hints(c).items() if "Literal" in str(h)]
    assert len(literal) >= 9 and not [key for key in literal if key in rules()]
    for cls, name in literal:
        hint = str(typing.get_type_hints(cls)[name])
        value = ["nonsense"] if hint.startswith("list") else "nonsense"
        with pytest.raises(ConfigError) as err:
            load_experiment(write(tmp_path, _placed(cls, name, value)))
        assert err.value.problems[0].split(": ", 1)[1].startswith(f"{KEY_OF[cls]}.{name} 'nonsense' unknown; choose")


def test_set_overrides_the_file_before_it_is_checked(tmp_path):
    path = write(tmp_path, {**BASE, "defaults": {"lr": 0.1}, "runs": [{"name": "a", "epochs": 5}, {"name": "b.1"}]})
    exp = load_experiment(path, overrides=[
        "runs.a.epochs=1", "data.resize=96", "data.crop=64", "defaults.optim.lr=1e-3",
        "runs.b.1.model.backbone=resnet18", "runs.a.tta=[flip]", "data.split.val=0.25", "attributions.ig_steps=4"])
    a, b = exp.runs
    assert (a.loop.epochs, a.optim.lr, a.augment.tta, b.model.backbone, b.loop.epochs) == (1, 0.001, ["flip"],
                                                                                          "resnet18", 10)
    assert (exp.data.resize, exp.data.split.val, exp.attributions.ig_steps) == (96, 0.25, 4)
    assert yaml.safe_load(path.read_text())["runs"][0]["epochs"] == 5  # the file is not touched


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("runs.a.epochs=0", "runs[0].epochs (--set runs.a.epochs=0) must be an integer >= 1, got 0"),
        ("defaults.model.backbone=vgg", "defaults.model.backbone (--set defaults.model.backbone=vgg) 'vgg' unknown"),
        ("data.resize=tiny", "data.resize (--set data.resize=tiny) must be an integer in [8, 4096], got 'tiny'"),
        ("runs.aa.epochs=1", "--set runs.aa.epochs=1: no run named 'aa' (did you mean 'a'?)"),
        ("runs.a.epoch=1", "--set runs.a.epoch=1: unknown key 'epoch' in runs[0] (did you mean 'epochs'?)"),
        ("runs.a.optim.epochs=1", "--set runs.a.optim.epochs=1: unknown key 'optim.epochs' in runs[0]"),
        ("data.rsize=1", "--set data.rsize=1: unknown key 'data.rsize' (did you mean 'resize'?)"),
        ("lr=1", "--set lr=1: unknown key 'lr'; start it with runs.<run name>., defaults., data. or attributions."),
        ("runs.a.epochs", "--set runs.a.epochs: write KEY=VALUE"),
        ("runs.a.tta=[flip", "--set runs.a.tta=[flip: not valid YAML"),
    ],
)
def test_a_bad_set_is_one_line_naming_it(tmp_path, flag, message):
    with pytest.raises(ConfigError) as err:
        load_experiment(write(tmp_path, BASE), overrides=[flag])
    assert len(err.value.problems) == 1 and message in err.value.problems[0], err.value.problems


def test_set_replaces_a_value_however_the_file_wrote_it(tmp_path):
    path = write(tmp_path, {**BASE, "runs": [{"name": "a", "lr": 0.1}, {"name": "b", "optim": {"lr": 0.2}}]})
    a, b = load_experiment(path, overrides=["runs.a.optim.lr=0.3", "runs.b.lr=0.4"]).runs
    assert (a.optim.lr, b.optim.lr) == (0.3, 0.4)
