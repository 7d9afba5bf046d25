"""Config files: typos and impossible settings are errors that say what to change."""

from __future__ import annotations

import pytest
import yaml

from pipeline.config import REPO_ROOT, ConfigError, load_experiment


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
    assert [(r.backbone, r.strategy, r.tasks) for r in subset.runs] == [
        ("resnet18", "head", ["period"]), ("resnet34", "head", ["period"]), ("resnet50", "head", ["period"]),
        ("resnet18", "two_stage", ["period"]), ("resnet18", "finetune", ["period"]),
        ("resnet18", "head", ["period", "artist"]), ("resnet34", "head", ["period", "artist"])]
    assert subset.runs[4].lr_finder and subset.data.subset == "twelve_artists"
    assert (subset.data.split.val, subset.data.split.test) == (30, 30)
    full = load_experiment(REPO_ROOT / "configs" / "reference-full.yaml")
    assert [r.freeze_until for r in full.runs] == [1, 2, 3, 4]


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
