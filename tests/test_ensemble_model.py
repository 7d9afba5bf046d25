"""An ensemble run is a model too: its checkpoint names its members (and their checkpoint tokens), and it predicts,
explains and evaluates new collections as its stored predictions were made (the members' mean probability).

One real store: two tiny runs on the demo source (style pooling; one with flip test-time views) and their
ensemble. (A tiny avg-pooling head run on the demo misses its own stored probabilities by up to 2e-3 on some test
images, pixels identical: a member-level matter outside the ensemble, so the members here pool by style.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch

from pipeline import checkpoint
from pipeline.config import AttributionConfig, ConfigError
from pipeline.experiment import run_experiment
from pipeline.explain import explain_image, explain_to_file, load_run
from tests.conftest import TINY_EXPERIMENT, make_experiment, open_dashboard, sql
from tests.test_dashboard_annotations_upload import FakeUpload, painting_bytes
from tests.test_evaluate_collection import cli

pytestmark = pytest.mark.slow  # trains two tiny runs

ENSEMBLE, MEMBERS = "tiny/ab", ["tiny/a", "tiny/b"]
SPEC = {**TINY_EXPERIMENT, "attributions": {"methods": ["grad_cam"], "max_images": 2, "sanity_images": 0}, "runs": [
    {"name": "a", "strategy": "head", "epochs": 1, "pooling": "style"},  # avg pooling: see the lead's report
    {"name": "b", "strategy": "head", "epochs": 1, "pooling": "style", "tta": ["flip"]},
    {"name": "ab", "strategy": "ensemble", "members": ["a", "b"]},
]}
QUICK_MAPS = AttributionConfig(methods=["grad_cam"], ig_steps=4, internal_batch_size=4)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """The folder of the store (store.duckdb) and its artifacts; tests that write work on a copy."""
    home = tmp_path_factory.mktemp("ensemble")
    run_experiment(make_experiment(home, SPEC), progress=False)
    return home


def copy_home(home: Path, to: Path) -> Path:
    """Store and artifacts copied together (the store names checkpoints relative to its folder)."""
    shutil.copytree(home, to)
    return to / "store.duckdb"


def stored_test_predictions(store: Path, run_id: str) -> list[tuple[str, list[float]]]:
    return sql(store, """SELECT i.path, p.probs FROM predictions p JOIN runs r USING (run_id)
                         JOIN images i ON i.image_id = p.image_id AND i.dataset_id = r.dataset_id
                         WHERE p.run_id = ? AND p.split = 'test' AND p.task = 'period' ORDER BY p.image_id""",
               [run_id])


def test_the_ensemble_keeps_a_checkpoint_naming_its_members(home: Path) -> None:
    store = home / "store.duckdb"
    (stored, token), = sql(store, "SELECT checkpoint, json_extract_string(summary, '$.checkpoint_token') FROM runs "
                                  "WHERE run_id = ?", [ENSEMBLE])
    path = checkpoint.resolve(store, stored)
    assert checkpoint.problem(path, token) is None
    members = {m["run_id"]: m["token"] for m in checkpoint.load(path)["members"]}
    tokens = dict(sql(store, "SELECT run_id, json_extract_string(summary, '$.checkpoint_token') FROM runs "
                             "WHERE run_id IN ('tiny/a', 'tiny/b')"))
    assert members == tokens and all(tokens.values())
    model = load_run(store, ENSEMBLE)
    assert isinstance(model, checkpoint.Ensemble) and list(model.members) == MEMBERS
    assert model.members["tiny/b"].tta == ["flip"] and "tiny/b over flip" in model.described()


def test_explain_gives_the_stored_probabilities_of_the_ensemble(home: Path, tmp_path: Path, capsys) -> None:
    """(a) The stored test images, through explain: the members' mean, maps per member for the target period."""
    store = home / "store.duckdb"
    model = load_run(store, ENSEMBLE)
    rows = stored_test_predictions(store, ENSEMBLE)
    assert len(rows) >= 3
    for path, stored in rows[:3]:
        got = explain_image(model, path, QUICK_MAPS)
        np.testing.assert_allclose(list(got.probabilities.values()), stored, atol=1e-5, rtol=0)
        assert got.maps == {} and list(got.member_maps) == MEMBERS
        assert all(set(maps) == {"grad_cam"} for maps in got.member_maps.values())
    members = [np.array([p for _, p in stored_test_predictions(store, m)]) for m in MEMBERS]
    np.testing.assert_allclose([p for _, p in rows], np.mean(members, axis=0), atol=1e-5)
    # predict(): the members' embeddings side by side, logits the log of their mean probability
    square = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    emb, logits = model.predict(square[None], np.zeros(1, np.int64), 1, torch.device("cpu"), progress=False)
    parts = [m.predict(square[None], np.zeros(1, np.int64), 1, torch.device("cpu"), False) for m in
             model.members.values()]
    np.testing.assert_array_equal(emb, np.concatenate([e for e, _ in parts], axis=1))
    np.testing.assert_allclose(np.exp(logits["period"][0]), np.mean([m.probabilities(square)["period"] for m in
                                                                  model.members.values()], axis=0), atol=1e-7)
    out = tmp_path / "explained.png"
    explain_to_file(store, ENSEMBLE, rows[0][0], out)
    assert out.is_file() and "per member (tiny/a, tiny/b)" in capsys.readouterr().out


def test_evaluating_the_ensemble_on_a_collection_stores_its_members_mean(home: Path, tmp_path: Path) -> None:
    """(b) `evaluate --run ENSEMBLE --data PATH`: predictions through the ensemble model, equal to the mean of the
    members' own evaluations of the same collection; its saliency maps are skipped, with a note."""
    store = copy_home(home, tmp_path / "home")
    collection = tmp_path / "paintings"
    for path, period in sql(store, "SELECT path, period FROM images WHERE split = 'test' ORDER BY image_id "
                                   "LIMIT 8"):
        (collection / period).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, collection / period / Path(path).name)
    for run in [*MEMBERS, ENSEMBLE]:
        code, out, err = cli("evaluate", "--run", run, "--data", str(collection), "--store", str(store), "--quiet",
                             "--max-attributions", "2")
        assert code == 0, err
    assert "saliency maps skipped: an ensemble has no one network" in out

    def probs(run_id: str) -> np.ndarray:
        rows = sql(store, "SELECT probs FROM predictions WHERE run_id = ? AND task = 'period' ORDER BY image_id",
                   [f"{run_id}@paintings"])
        return np.array([p for (p,) in rows])

    assert len(probs(ENSEMBLE)) == 8
    np.testing.assert_allclose(probs(ENSEMBLE), (probs("tiny/a") + probs("tiny/b")) / 2, atol=1e-5)
    assert sql(store, "SELECT count(*) FROM attributions WHERE run_id = ?", [f"{ENSEMBLE}@paintings"]) == [(0,)]
    assert sql(store, "SELECT count(*) > 0 FROM attributions WHERE run_id = 'tiny/a@paintings'") == [(True,)]


def test_a_member_retrained_after_the_ensemble_is_refused(home: Path, tmp_path: Path) -> None:
    """(c) A re-trained member has another token: the ensemble's stored predictions are no longer its model's."""
    store = copy_home(home, tmp_path / "home")
    exp = make_experiment(store.parent, SPEC)
    run_experiment(exp, only=["a"], force=True, progress=False)
    with pytest.raises(ConfigError, match="^member tiny/a was re-trained after the ensemble; re-run the ensemble"):
        load_run(store, ENSEMBLE)
    code, _, err = cli("explain", painting_path(tmp_path), "--run", ENSEMBLE, "--store", str(store))
    assert code == 2 and "member tiny/a was re-trained after the ensemble" in err
    run_experiment(exp, only=["ab"], force=True, progress=False)  # re-running the ensemble mends it
    assert isinstance(load_run(store, ENSEMBLE), checkpoint.Ensemble)


def test_an_ensemble_stored_before_it_kept_a_checkpoint_still_explains(home: Path, tmp_path: Path) -> None:
    """(d) An old row (checkpoint NULL): its members come from the run's stored resolved config."""
    store = copy_home(home, tmp_path / "home")
    with duckdb.connect(str(store)) as con:
        con.execute("UPDATE runs SET checkpoint = NULL, summary = '{}' WHERE run_id = ?", [ENSEMBLE])
    model = load_run(store, ENSEMBLE)
    assert list(model.members) == MEMBERS
    (path, stored), = stored_test_predictions(store, ENSEMBLE)[:1]
    np.testing.assert_allclose(list(explain_image(model, path, QUICK_MAPS).probabilities.values()), stored,
                               atol=1e-5, rtol=0)


def test_a_killed_ensemble_write_is_located_and_repaired(home: Path, tmp_path: Path) -> None:
    """Killed between the store commit and the rename: the pending file is the ensemble's, found and moved in."""
    store = copy_home(home, tmp_path / "home")
    (stored, token), = sql(store, "SELECT checkpoint, json_extract_string(summary, '$.checkpoint_token') FROM runs "
                                  "WHERE run_id = ?", [ENSEMBLE])
    final = checkpoint.resolve(store, stored)
    final.rename(checkpoint.pending(final, token))
    assert checkpoint.locate(final, token) == checkpoint.pending(final, token)
    assert isinstance(load_run(store, ENSEMBLE), checkpoint.Ensemble)
    assert checkpoint.repair(final, token) and checkpoint.problem(final, token) is None


def test_the_upload_page_shows_each_members_maps(home: Path, monkeypatch) -> None:
    """(e) Probabilities of the ensemble, then one row of overlays per member, each captioned with its member."""
    import streamlit

    monkeypatch.setattr(streamlit, "file_uploader", lambda *a, **k: FakeUpload("new.jpg", painting_bytes()))
    monkeypatch.setattr("pipeline.explain.AttributionConfig", lambda: QUICK_MAPS)
    at = open_dashboard(home / "store.duckdb", monkeypatch, "upload.py", run=ENSEMBLE)
    assert not at.error and len(at.get("plotly_chart")) == 1
    captions = [c for image in at.get("image") for c in image.captions]
    assert captions == ["your upload", "tiny/a · Grad-CAM", "tiny/b · Grad-CAM"]
    assert any("each member's own saliency maps" in c.value for c in at.caption)
    assert "What each member looked at" in at.subheader[0].value


def painting_path(folder: Path) -> str:
    path = folder / "new.jpg"
    path.write_bytes(painting_bytes())
    return str(path)
