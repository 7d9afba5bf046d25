"""`python -m pipeline evaluate`: a stored run scored on another collection, stored beside it, shown by the dashboard.

The collection is a real ImageFolder made of demo paintings the run never trained on, with one period folder
spelled differently, one period the run does not know and one broken file.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from pipeline.__main__ import main
from tests.conftest import copy_store, open_dashboard, sql

pytestmark = pytest.mark.slow  # the demo store (a session fixture that trains 5 runs), then an evaluation

RUN = "tiny/head"
EVALUATION = f"{RUN}@paintings"
# folder name in the collection -> (demo period the images come from, images)
FOLDERS = {"Synthetic Gothic": ("Synthetic Gothic", 4), "synthetic_baroque": ("Synthetic Baroque", 4),
           "SYNTHETIC-modern": ("Synthetic Modern", 4), "Rococo": ("Synthetic Renaissance", 3)}


def make_collection(store: Path, root: Path) -> Path:
    """Demo test-split images in period folders, one train image (seen by the run), one broken file."""
    dataset = sql(store, "SELECT dataset_id FROM runs WHERE run_id = ?", [RUN])[0][0]
    for folder, (period, n) in FOLDERS.items():
        rows = sql(store, "SELECT path FROM images WHERE dataset_id = ? AND period = ? AND split = 'test' "
                          "ORDER BY image_id LIMIT ?", [dataset, period, n])
        (root / folder).mkdir(parents=True)
        for (path,) in rows:
            shutil.copy(path, root / folder / Path(path).name)
    (seen,) = sql(store, "SELECT path FROM images WHERE dataset_id = ? AND period = 'Synthetic Gothic' AND "
                         "split = 'train' ORDER BY image_id LIMIT 1", [dataset])[0]
    shutil.copy(seen, root / "Synthetic Gothic" / f"seen-{Path(seen).name}")
    (root / "Synthetic Gothic" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def evaluated(demo_store, tmp_path_factory) -> tuple[Path, str]:
    """The demo store's head run evaluated once on the collection (with a few saliency maps)."""
    tmp = tmp_path_factory.mktemp("evaluate")
    store = copy_store(demo_store, tmp)
    collection = make_collection(store, tmp / "paintings")
    code, out, err = cli("evaluate", "--run", RUN, "--data", str(collection), "--store", str(store),
                         "--max-attributions", "3", "--quiet")
    assert code == 0, err
    return store, out


def test_evaluation_is_stored_as_a_run_of_the_collection(evaluated):
    store, _ = evaluated
    parent = sql(store, "SELECT backbone, strategy, checkpoint, dataset_id FROM runs WHERE run_id = ?", [RUN])[0]
    row = sql(store, """SELECT evaluation_of, backbone, strategy, checkpoint, dataset_id, epochs, train_seconds,
                               test_accuracy, summary FROM runs WHERE run_id = ?""", [EVALUATION])[0]
    assert row[:4] == (RUN, *parent[:3])
    assert row[4] != parent[3] and row[5:7] == (0, None) and row[7] is not None
    assert sql(store, "SELECT count(*) FROM epochs WHERE run_id = ?", [EVALUATION]) == [(0,)]
    assert sql(store, "SELECT evaluation_of FROM runs WHERE run_id = ?", [RUN]) == [(None,)]
    # every known image predicted once, as test, its true label in the run's spelling
    counts = sql(store, """SELECT true_label, split, count(*) FROM predictions WHERE run_id = ? AND task = 'period'
                           GROUP BY ALL ORDER BY ALL""", [EVALUATION])
    assert counts == [("Synthetic Baroque", "test", 4), ("Synthetic Gothic", "test", 5),
                      ("Synthetic Modern", "test", 4)]
    accuracy = sql(store, "SELECT value FROM metrics WHERE run_id = ? AND split = 'test' AND task = 'period' AND "
                          "metric = 'accuracy' AND label IS NULL", [EVALUATION])[0][0]
    assert accuracy == pytest.approx(row[7])
    assert sql(store, "SELECT sum(count) FROM confusion WHERE run_id = ?", [EVALUATION]) == [(13,)]
    assert sql(store, "SELECT count(*), count(x) FROM embeddings WHERE run_id = ?", [EVALUATION]) == [(13, 13)]
    assert sql(store, "SELECT count(DISTINCT image_id) FROM attributions WHERE run_id = ? AND target_kind = "
                      "'predicted'", [EVALUATION]) == [(3,)]
    # the collection is a dataset of its own: every image in its own spelling, the broken file skipped
    assert sql(store, "SELECT count(*), count(*) FILTER (split = 'test') FROM images WHERE dataset_id = ?",
               [row[4]]) == [(16, 16)]
    assert sql(store, "SELECT stage FROM skipped_images WHERE dataset_id = ? AND path LIKE '%broken.jpg'",
               [row[4]]) == [("decode",)]
    summary = json.loads(row[8])
    assert summary["evaluation_of"] == RUN and summary["n_images"] == 13 and summary["n_skipped"] == 1
    assert summary["seen_in_training"] == 1  # the one train image copied in


def test_unknown_labels_are_reported_not_guessed(evaluated):
    store, out = evaluated
    summary = json.loads(sql(store, "SELECT summary FROM runs WHERE run_id = ?", [EVALUATION])[0][0])
    assert summary["unknown_labels"] == {"Rococo": 3}
    assert "Rococo -> 3" in out and "not evaluated" in out
    assert sql(store, "SELECT count(*) FROM predictions WHERE run_id = ? AND image_id LIKE 'Rococo/%'",
               [EVALUATION]) == [(0,)]


def test_list_and_overview_show_the_evaluation_beside_its_run(evaluated, monkeypatch):
    store, _ = evaluated
    code, out, _ = cli("list", "--store", str(store))
    assert code == 0 and EVALUATION in out
    at = open_dashboard(store, monkeypatch)
    shown = at.dataframe[0].value
    ids = shown["run_id"].tolist()
    assert ids[ids.index(RUN) + 1] == EVALUATION
    assert shown.set_index("run_id").loc[EVALUATION, "evaluation_of"] == RUN
    assert at.metric[0].value == "5"  # trained runs; the evaluation is counted apart
    # its errors page works as for any run's test split
    at = open_dashboard(store, monkeypatch, "errors.py", run=EVALUATION, outcome="all")
    assert int(at.subheader[0].value.split()[0]) == 13


def test_rerunning_replaces_the_evaluation(evaluated):
    store, _ = evaluated
    collection = Path(json.loads(sql(store, "SELECT summary FROM runs WHERE run_id = ?", [EVALUATION])[0][0])
                      ["collection"])
    code, _, err = cli("evaluate", "--run", RUN, "--data", str(collection), "--store", str(store),
                       "--no-attributions", "--quiet")
    assert code == 0, err
    assert sql(store, "SELECT count(*) FROM runs WHERE run_id = ?", [EVALUATION]) == [(1,)]
    assert sql(store, "SELECT count(*) FROM predictions WHERE run_id = ?", [EVALUATION]) == [(13,)]
    assert sql(store, "SELECT count(*) FROM attributions WHERE run_id = ?", [EVALUATION]) == [(0,)]


def test_a_store_from_before_evaluations_is_upgraded(evaluated, demo_store, tmp_path):
    import duckdb

    collection = Path(json.loads(sql(evaluated[0], "SELECT summary FROM runs WHERE run_id = ?", [EVALUATION])[0][0])
                      ["collection"])
    store = copy_store(demo_store, tmp_path)
    with duckdb.connect(str(store)) as con:  # as schema 2 left it
        con.execute("ALTER TABLE runs DROP COLUMN evaluation_of")
        con.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    code, _, err = cli("evaluate", "--run", RUN, "--data", str(collection), "--store", str(store),
                       "--no-attributions", "--quiet")
    assert code == 0, err
    assert sql(store, "SELECT run_id, evaluation_of FROM runs WHERE evaluation_of IS NOT NULL") == [(EVALUATION, RUN)]


def test_no_label_in_common_is_an_error_naming_both_sides(demo_store, tmp_path):
    store = copy_store(demo_store, tmp_path)
    paths = sql(store, "SELECT path FROM images WHERE split = 'test' ORDER BY image_id LIMIT 2")
    for folder, (path,) in zip(("Cubism", "Fauvism"), paths, strict=True):
        (tmp_path / "other" / folder).mkdir(parents=True)
        shutil.copy(path, tmp_path / "other" / folder / Path(path).name)
    code, _, err = cli("evaluate", "--run", RUN, "--data", str(tmp_path / "other"), "--store", str(store),
                       "--no-attributions", "--quiet")
    assert code == 2
    assert "Synthetic Gothic" in err and "Cubism" in err and "Fauvism" in err
    assert sql(store, "SELECT count(*) FROM runs WHERE evaluation_of IS NOT NULL") == [(0,)]


def test_an_evaluation_or_an_unknown_run_cannot_be_evaluated(evaluated, tmp_path):
    store, _ = evaluated
    for run in (EVALUATION, "tiny/nope"):
        code, _, err = cli("evaluate", "--run", run, "--data", str(tmp_path), "--store", str(store), "--quiet")
        assert code == 2 and run in err


def test_split_mode_none_puts_every_image_in_test(tmp_path):
    import pandas as pd
    import yaml

    from pipeline.config import ConfigError, SplitConfig, load_experiment
    from pipeline.data.splits import assign_splits

    rows = pd.DataFrame({"image_id": ["a", "b", "c"], "path": ["a", "b", "c"], "period": ["X", "X", "Y"],
                         "content_hash": ["1", "2", "3"]})
    df, skipped = assign_splits(rows, SplitConfig(mode="none"))
    assert df["split"].tolist() == ["test"] * 3 and skipped == []  # a class of one image is fine: nothing held out
    spec = {"data": {"source": "demo", "split": {"mode": "none"}}, "runs": [{"name": "a"}]}
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(spec))
    assert load_experiment(tmp_path / "e.yaml").data.split.mode == "none"
    (tmp_path / "e.yaml").write_text(yaml.safe_dump({**spec, "data": {"split": {"mode": "all"}}}))
    with pytest.raises(ConfigError, match="'none'"):
        load_experiment(tmp_path / "e.yaml")


def test_labels_match_ignoring_case_and_separators():
    import pandas as pd

    from pipeline.collection import to_run_labels

    known = ["Art Nouveau", "Post-Impressionism", "Baroque"]
    found = pd.Series(["art_nouveau", "ART-NOUVEAU", "post impressionism", "Post_Impressionism", "baroque ", "Rococo"])
    assert to_run_labels(found, known).tolist() == ["Art Nouveau", "Art Nouveau", "Post-Impressionism",
                                                    "Post-Impressionism", "Baroque", None]
