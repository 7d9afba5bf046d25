"""Training paths: the frozen-backbone feature cache is exact; LR finder; early stopping."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import DataConfig, SplitConfig, build_run, replace_run
from pipeline.data.prepare import prepare
from pipeline.train import train

pytestmark = pytest.mark.slow  # every test trains


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    cfg = DataConfig(source="demo", resize=40, crop=32, thumbnail_size=32,
                     split=SplitConfig(mode="fractions", val=0.2, test=0.2))
    return prepare(cfg, tmp_path_factory.mktemp("cache"), progress=False)


def test_feature_cache_trains_the_same_head_as_the_image_path(tiny_data):
    run = build_run(name="head", strategy="head", epochs=3, lr=0.01, batch_size=64, patience=10)
    cached = train(run, tiny_data, progress=False)
    direct = train(replace_run(run, feature_cache=False), tiny_data, progress=False)
    assert cached.features is not None and direct.features is None
    for (name, a), (_, b) in zip(cached.model.heads.state_dict().items(), direct.model.heads.state_dict().items(),
                                 strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3, msg=f"head weight {name} differs")
    np.testing.assert_allclose(cached.epochs["val_acc"], direct.epochs["val_acc"], atol=1e-6)
    np.testing.assert_allclose(cached.epochs["train_loss"], direct.epochs["train_loss"], rtol=1e-3)


def test_head_dropout_is_active_while_training_on_cached_features(tiny_data):
    run = build_run(name="d", strategy="head", epochs=1, lr=0.01, batch_size=64, dropout=0.0)
    plain = train(run, tiny_data, progress=False)
    dropped = train(replace_run(run, dropout=0.5), tiny_data, progress=False)
    assert not torch.allclose(plain.model.heads["period"][1].weight, dropped.model.heads["period"][1].weight)


def test_two_stage_unfreezes_and_lowers_the_lr(tiny_data):
    run = build_run(name="ts", strategy="two_stage", epochs=1, stage2_epochs=1, lr=0.01, stage2_lr_factor=0.1,
                    batch_size=64)
    result = train(run, tiny_data, progress=False)
    assert list(result.epochs["stage"]) == ["head", "finetune"]
    assert result.epochs["lr"].iloc[1] == pytest.approx(0.001)
    assert result.features is None  # the backbone changed after stage 1: its features are stale
    assert all(p.requires_grad for p in result.model.parameters())


def test_lr_finder_sets_the_learning_rate(tiny_data):
    run = build_run(name="lrf", strategy="finetune", epochs=1, lr=0.123, lr_finder=True, batch_size=32)
    result = train(run, tiny_data, progress=False)
    assert result.lr != 0.123 and 1e-6 <= result.lr <= 1.0
    assert any("LR finder" in note for note in result.notes)
    assert result.epochs["lr"].iloc[0] == pytest.approx(result.lr)


def test_lightning_warnings_are_silenced_inside_our_fits_only(tiny_data):
    """Frozen blocks in eval mode are on purpose (Lightning warns of them); the caller keeps its own filters."""
    run = build_run(name="quiet", strategy="head", epochs=1, lr=0.01, batch_size=64)  # the features leave it in eval
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        before = list(warnings.filters)
        train(run, tiny_data, progress=False)
        assert warnings.filters == before
    assert not [w for w in caught if "eval mode" in str(w.message) or "many workers" in str(w.message)]


def test_early_stopping_stops_before_max_epochs(tiny_data):
    run = build_run(name="es", strategy="head", epochs=50, lr=0.0, patience=1, batch_size=64)  # lr 0: never improves
    result = train(run, tiny_data, progress=False)
    assert len(result.epochs) == 2


def test_frozen_features_are_kept_on_disk_for_the_next_run_of_that_backbone(tiny_data):
    folder = Path(tiny_data.pixels.filename).parent / "features"
    shutil.rmtree(folder, ignore_errors=True)
    run = build_run(name="a", strategy="head", epochs=2, lr=0.01, batch_size=64, patience=10)
    first = train(run, tiny_data, progress=False)
    assert not any("reused" in n for n in first.notes)
    assert [f.suffix for f in folder.iterdir()] == [".npy"]  # one whole file, no temporary left
    second = train(replace_run(run, name="b", lr=0.05, seed=1), tiny_data, progress=False)
    assert any("reused" in n for n in second.notes)
    np.testing.assert_array_equal(first.features, second.features)
    untrained = train(replace_run(run, name="c", pretrained=False), tiny_data, progress=False)
    assert not any("reused" in n for n in untrained.notes)  # random weights: features differ per run, never kept
    assert len(list(folder.iterdir())) == 1
