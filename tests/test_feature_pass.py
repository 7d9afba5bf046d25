"""The frozen-backbone feature pass (pipeline.train.frozen_features) at the run's own batch size."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import DataConfig, SplitConfig, build_run
from pipeline.data.prepare import prepare
from pipeline.inference import forward_pass
from pipeline.train import train


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    cfg = DataConfig(source="demo", resize=40, crop=32, thumbnail_size=32,
                     split=SplitConfig(mode="fractions", val=0.2, test=0.2))
    return prepare(cfg, tmp_path_factory.mktemp("cache"), progress=False)


@pytest.mark.slow
def test_frozen_features_equal_a_forward_pass_at_another_batch_size(tiny_data):
    """The feature pass runs at the run's batch (not twice it, which was half as fast on a CPU): the features a
    head trains on are the backbone's, whatever the batch, within float tolerance."""
    shutil.rmtree(Path(tiny_data.pixels.filename).parent / "features", ignore_errors=True)
    run = build_run(name="fb", strategy="head", epochs=1, lr=0.01, batch_size=8, patience=10)
    result = train(run, tiny_data, progress=False)
    assert not any("reused" in n for n in result.notes)  # computed in this run, at batch 8
    rows = tiny_data.images["cache_index"].to_numpy()
    again, _ = forward_pass(result.model, result.transform, tiny_data.pixels, rows, 64, torch.device("cpu"),
                            heads=False, progress=False)
    assert result.features is not None and result.features.shape == again.shape
    np.testing.assert_allclose(result.features, again, rtol=1e-4, atol=1e-5)
