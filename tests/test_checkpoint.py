"""The checkpoint is the one owner of a run's model: what explain shows is what evaluation stored.

One real run (a frozen-backbone head with style pooling and test-time flips and corner crops, on 30 small
generated paintings) is explained image by image and compared with its stored predictions; the store names the
checkpoint relative to its own folder, so store and artifacts can move together; files written before the
checkpoint kept its evaluation settings still load, with the defaults they were made with.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch

from pipeline import checkpoint
from pipeline.config import ConfigError
from pipeline.experiment import run_experiment
from pipeline.explain import explain_image, load_run
from pipeline.models.backbones import build_backbone
from pipeline.models.classifier import PeriodClassifier
from tests.conftest import make_experiment, sql
from tests.test_dataset_versions import folder, spec

RUN_ID = "versions/tta"


@pytest.fixture(scope="module")
def tta_run(tmp_path_factory) -> Path:
    """The store of one finished TTA run; its folder also holds the artifacts."""
    home = tmp_path_factory.mktemp("tta-run")
    experiment = spec(folder(home / "paintings", per_class=10))
    experiment["data"].update(resize=40, crop=32)
    experiment["runs"] = [{"name": "tta", "strategy": "head", "pooling": "style", "tta": ["flip", "crops"]}]
    exp = make_experiment(home, experiment)
    run_experiment(exp, progress=False)
    return Path(exp.store)


def stored_test_predictions(store: Path, split: str = "test") -> list[tuple[str, list[float]]]:
    return sql(store, """SELECT i.path, p.probs FROM predictions p JOIN runs r USING (run_id)
                         JOIN images i ON i.image_id = p.image_id AND i.dataset_id = r.dataset_id
                         WHERE p.run_id = ? AND p.split = ? AND p.task = 'period' ORDER BY p.image_id""",
               [RUN_ID, split])


@pytest.mark.slow  # trains a run
def test_explain_gives_the_stored_probabilities_of_a_tta_run(tta_run: Path) -> None:
    run = load_run(tta_run, RUN_ID)
    assert run.tta == ["flip", "crops"] and run.run_id == RUN_ID
    rows = stored_test_predictions(tta_run)
    assert rows
    for path, stored in rows:
        got = list(explain_image(run, path).probabilities.values())
        np.testing.assert_allclose(got, stored, atol=1e-5, rtol=0)


@pytest.mark.slow  # trains a run
def test_training_images_are_stored_from_the_centre_view_alone(tta_run: Path) -> None:
    """Test-time views cost 7 passes per image: the training images, which the model has seen, get one."""
    run = load_run(tta_run, RUN_ID)
    assert isinstance(run, checkpoint.SavedModel)
    centre = dataclasses.replace(run, tta=[])
    rows = stored_test_predictions(tta_run, "train")[:8]
    assert rows

    def log_probs(model: checkpoint.SavedModel, path: str) -> np.ndarray:  # the tiny set's runs are near-certain
        return np.log(np.clip(list(explain_image(model, path).probabilities.values()), 1e-9, None))

    stored = [np.log(np.clip(p, 1e-9, None)) for _, p in rows]
    for (path, _), want in zip(rows, stored, strict=True):
        np.testing.assert_allclose(log_probs(centre, path), want, atol=1e-3, rtol=0)
    assert any(not np.allclose(log_probs(run, path), want, atol=1e-3, rtol=0)
               for (path, _), want in zip(rows, stored, strict=True))
    (notes,), = sql(tta_run, "SELECT summary.notes FROM runs WHERE run_id = ?", [RUN_ID])
    assert "training images predicted from the centre view" in str(notes)


@pytest.mark.slow  # trains a run
def test_the_store_names_the_checkpoint_relative_to_its_folder(tta_run: Path, tmp_path: Path) -> None:
    """Moving the store and its artifacts together keeps the run explainable, from the moved files."""
    (stored,), = sql(tta_run, "SELECT checkpoint FROM runs WHERE run_id = ?", [RUN_ID])
    assert not Path(stored).is_absolute() and (tta_run.parent / stored).is_file()
    moved = tmp_path / "elsewhere"
    shutil.copytree(tta_run.parent / "artifacts", moved / "artifacts")
    shutil.copy(tta_run, moved / tta_run.name)
    assert checkpoint.resolve(moved / tta_run.name, stored, str(tta_run.parent / stored)) == moved / stored
    assert load_run(moved / tta_run.name, RUN_ID).tta == ["flip", "crops"]


@pytest.mark.slow  # trains a run
def test_a_missing_checkpoint_says_where_it_was_looked_for(tta_run: Path, tmp_path: Path) -> None:
    """A store copied without its artifacts, and with no note of where the file was written."""
    copy = shutil.copy(tta_run, tmp_path / tta_run.name)
    with duckdb.connect(str(copy)) as con:
        con.execute("UPDATE runs SET summary = '{}'")
    with pytest.raises(ConfigError, match=f"checkpoint of {RUN_ID} not found at {tmp_path}/artifacts/.*model.pt"):
        load_run(copy, RUN_ID)


@pytest.mark.slow  # trains a run
def test_upload_shows_the_stored_probabilities_of_a_tta_run(tta_run: Path) -> None:
    from dashboard.uploads import explain_upload

    (path, stored), = stored_test_predictions(tta_run)[:1]
    got = explain_upload(tta_run, RUN_ID, Path(path).read_bytes(), Path(path).name).probabilities
    np.testing.assert_allclose(list(got.values()), stored, atol=1e-5, rtol=0)


def test_a_checkpoint_written_before_its_evaluation_settings_were_kept_still_loads(tmp_path: Path) -> None:
    """Older files have no pooling, test-time views or normalisation: they meant average pooling, the centre
    crop alone and the backbone's own mean and std, and predict as the centre crop did."""
    model = PeriodClassifier(build_backbone("efficientnet_lite0", pretrained=False), {"period": 3})
    path = tmp_path / "model.pt"
    torch.save({"backbone": "efficientnet_lite0", "labels": {"period": ["a", "b", "c"]}, "dropout": 0.0,
                "resize": 40, "crop": 32, "state_dict": model.state_dict()}, path)
    assert checkpoint.problem(path) is None
    saved = checkpoint.build(checkpoint.load(path))
    assert saved.tta == [] and saved.model.pooling == "avg" and saved.crop == 32
    assert torch.allclose(saved.transform.mean.flatten(), torch.tensor(model.backbone.mean))
    square = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    with torch.inference_mode():
        centre = model.eval()(saved.transform(torch.from_numpy(square)[None]))["period"].double().softmax(1)[0]
    np.testing.assert_allclose(saved.probabilities(square)["period"], centre.numpy(), atol=1e-6)


@pytest.mark.slow  # trains a run
def test_a_saved_model_round_trips_through_its_file(tta_run: Path) -> None:
    """contents() writes every setting build() reads: the rebuilt model predicts identically."""
    saved = load_run(tta_run, RUN_ID)
    again = checkpoint.build(checkpoint.contents(saved))
    assert (again.tta, again.model.pooling, again.resize, again.crop) == (["flip", "crops"], "style", 40, 32)
    square = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    np.testing.assert_array_equal(again.probabilities(square)["period"], saved.probabilities(square)["period"])
