"""Config files: typos and impossible settings are errors that say what to change."""

from __future__ import annotations

import dataclasses
import os
import typing

import pytest
import yaml

from pipeline.config import (
    DEFAULT_SHARED,
    REPO_ROOT,
    AttributionConfig,
    ConfigError,
    DataConfig,
    RunConfig,
    SplitConfig,
    _expand,
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
    return {**BASE, "attributions": {name: value}}


KEY_OF = {SplitConfig: "data.split", DataConfig: "data", RunConfig: "runs[0]", AttributionConfig: "attributions"}
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
