"""A whole experiment into a real DuckDB file: schema, consistent numbers, resume, replace."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import duckdb
import pytest
import yaml

from pipeline.config import load_experiment
from pipeline.experiment import run_experiment
from tests.conftest import TINY_EXPERIMENT, copy_store, make_experiment

pytestmark = pytest.mark.slow  # a whole experiment (5 runs) for the module

TINY = TINY_EXPERIMENT


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    exp = make_experiment(tmp)
    summaries = run_experiment(exp, progress=False)
    return exp, summaries


def q(exp, sql, params=None):
    with duckdb.connect(exp.store, read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def test_every_run_is_stored_with_its_schema(done):
    exp, summaries = done
    assert [s["name"] for s in summaries] == [r["name"] for r in TINY["runs"]]
    tables = {r[0] for r in q(exp, "SELECT table_name FROM information_schema.tables")}
    assert {"datasets", "images", "skipped_images", "runs", "epochs", "predictions", "metrics", "confusion",
            "embeddings", "attributions", "attribution_agreement", "attribution_sanity", "annotations",
            "run_labels"} <= tables
    assert q(exp, "SELECT count(*) FROM runs WHERE status = 'complete'")[0][0] == 5
    n_images, synthetic = q(exp, "SELECT n_images, synthetic FROM datasets")[0]
    assert synthetic is True
    assert q(exp, "SELECT count(*) FROM images")[0][0] == n_images
    assert q(exp, "SELECT count(*) FROM images WHERE thumbnail IS NULL")[0][0] == 0
    # the demo ships two broken files: they are recorded, not fatal
    assert q(exp, "SELECT count(*) FROM skipped_images")[0][0] >= 2
    for run_id, tasks in q(exp, "SELECT run_id, tasks FROM runs"):
        assert q(exp, "SELECT count(*) FROM predictions WHERE run_id = ?", [run_id])[0][0] == n_images * len(tasks)
        assert q(exp, "SELECT count(*) FROM embeddings WHERE run_id = ?", [run_id])[0][0] == n_images
        assert q(exp, "SELECT count(*) FROM epochs WHERE run_id = ?", [run_id])[0][0] >= 1
    for summary in summaries:
        run_dir = Path(exp.artifacts_dir) / "runs" / summary["run_id"].replace("/", "__")
        assert (run_dir / "config.yaml").exists() and (run_dir / "model.pt").exists()


def test_stored_numbers_are_consistent(done):
    exp, _ = done
    # confusion cells sum to the labelled images of each split, per run and task
    cells = q(exp, "SELECT run_id, split, task, sum(count) FROM confusion GROUP BY ALL ORDER BY ALL")
    labelled = q(exp, """SELECT run_id, split, task, count(*) FROM predictions WHERE true_label IS NOT NULL
                         GROUP BY ALL ORDER BY ALL""")
    assert cells == labelled and len(cells) == 6 * 3  # 5 runs, one with two tasks; 3 splits
    # accuracy equals the mean of the predictions' correctness, and the run's headline equals the metric
    rows = q(exp, """
        SELECT r.run_id, r.test_accuracy, m.value, avg(p.correct::INT)
        FROM runs r JOIN metrics m ON m.run_id = r.run_id AND m.split = 'test' AND m.task = 'period'
             AND m.metric = 'accuracy'
        JOIN predictions p ON p.run_id = r.run_id AND p.split = 'test' AND p.task = 'period'
        GROUP BY ALL""")
    assert len(rows) == 5
    for _, headline, metric, mean_correct in rows:
        assert headline == pytest.approx(metric) == pytest.approx(mean_correct)
    # probabilities sum to one and the prediction is their argmax
    rows = q(exp, """
        SELECT abs(list_sum(probs) - 1) < 1e-4, list_position(probs, list_max(probs)) - 1 = l.class_index
        FROM predictions p JOIN run_labels l ON l.run_id = p.run_id AND l.task = p.task AND l.label = p.pred_label""")
    assert rows and all(a and b for a, b in rows)
    # the demo is learnable: a frozen pretrained backbone beats chance clearly (5 periods → 0.2)
    acc = q(exp, "SELECT test_accuracy FROM runs WHERE name = 'head'")[0][0]
    assert acc > 0.5


def test_two_head_run_logs_both_accuracies(done):
    exp, _ = done
    (run_id,) = q(exp, "SELECT run_id FROM runs WHERE name = 'period-artist'")[0]
    tasks = {r[0] for r in q(exp, "SELECT DISTINCT task FROM predictions WHERE run_id = ?", [run_id])}
    assert tasks == {"period", "artist"}
    assert q(exp, "SELECT count(*) FROM epochs WHERE run_id = ? AND val_artist_acc IS NOT NULL", [run_id])[0][0] >= 1
    stages = q(exp, "SELECT DISTINCT stage FROM epochs WHERE run_id = 'tiny/two-stage' ORDER BY stage")
    assert [s[0] for s in stages] == ["finetune", "head"]


def test_rerun_resumes_and_force_replaces_without_touching_annotations(done, tmp_path):
    """On a copy of the experiment's store and artifacts: the module's other tests read the originals."""
    original, _ = done
    store = copy_store(Path(original.store), tmp_path)
    shutil.copytree(original.artifacts_dir, tmp_path / "artifacts")
    exp = dataclasses.replace(original, store=str(store), artifacts_dir=str(tmp_path / "artifacts"))
    with duckdb.connect(exp.store) as con:
        con.execute("INSERT INTO annotations (annotation_id, dataset_id, image_id, content_hash, run_id, verdict, "
                    "note, author, created_at) VALUES ('a1', NULL, 'x.jpg', 'h', 'tiny/head', 'label wrong', 'n', "
                    "'me', now())")
    before = q(exp, "SELECT count(*) FROM predictions")[0][0]
    assert run_experiment(exp, progress=False) == []  # everything complete: nothing redone
    redone = run_experiment(exp, only=["head"], force=True, progress=False)
    assert [s["name"] for s in redone] == ["head"]
    assert q(exp, "SELECT count(*) FROM predictions")[0][0] == before
    assert q(exp, "SELECT count(*) FROM runs")[0][0] == 5
    assert q(exp, "SELECT note FROM annotations") == [("n",)]
    assert q(original, "SELECT count(*) FROM annotations") == [(0,)]  # the shared store is as the fixture made it


def test_cli_lists_runs(done, capsys):
    from pipeline.__main__ import main

    exp, _ = done
    assert main(["list", "--store", exp.store]) == 0
    out = capsys.readouterr().out
    assert "tiny/period-artist" in out and "tiny/freeze3" in out


def plain(value):
    """Dataclasses, tuples and paths as YAML and JSON give them back: dicts, lists and strings."""
    return json.loads(json.dumps(dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value, default=str))


def test_resolved_config_is_complete(done, tmp_path):
    """Every setting of the run, its data and its attributions is written beside the checkpoint and in the store."""
    exp, _ = done
    (run,) = exp.select(["freeze3"])
    run_dir = Path(exp.artifacts_dir) / "runs" / "tiny__freeze3"
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["run"] == plain(run)  # every field, defaults included, not only those the YAML set
    assert resolved["run"]["freezing"]["freeze_until"] == 3 and resolved["run"]["loop"]["epochs"] == 1
    again = tmp_path / "again.yaml"  # and it is an experiment's run again, as written
    again.write_text(yaml.safe_dump({"data": {"source": "demo"}, "runs": [resolved["run"]]}))
    assert load_experiment(again).runs == [run]
    assert resolved["data"] == plain(exp.data) and resolved["data"]["crop"] == 32
    assert resolved["attributions"] == plain(exp.attributions)
    assert resolved["attributions"]["ig_steps"] == 4
    assert (resolved["experiment"], resolved["run_id"]) == ("tiny", "tiny/freeze3")
    assert [resolved["dataset_id"]] == [r[0] for r in q(exp, "SELECT dataset_id FROM datasets")]
    (stored,) = q(exp, "SELECT config FROM runs WHERE run_id = 'tiny/freeze3'")[0]
    assert json.loads(stored) == resolved  # the store holds the same resolved config


def test_attributions_are_stored_for_every_run(done):
    from pipeline.heatmaps import decode_map

    exp, _ = done
    for (run_id,) in q(exp, "SELECT run_id FROM runs"):
        # 12 test images explained for the predicted class, plus the true class of the wrong ones
        wrong = q(exp, """SELECT count(*) FROM (SELECT DISTINCT image_id FROM attributions
                          WHERE run_id = ? AND target_kind = 'true')""", [run_id])[0][0]
        per_method = q(exp, "SELECT method, count(*) FROM attributions WHERE run_id = ? GROUP BY ALL ORDER BY 1",
                       [run_id])
        assert per_method == [(m, 12 + wrong) for m in ("grad_cam", "guided_backprop", "integrated_gradients")]
        # the 'true' targets are exactly the wrong predictions among the explained images
        mismatched = q(exp, """SELECT count(*) FROM attributions a JOIN predictions p USING (run_id, image_id)
                               WHERE a.run_id = ? AND p.task = 'period' AND a.target_kind = 'true'
                               AND (p.correct OR a.target_label <> p.true_label)""", [run_id])[0][0]
        assert mismatched == 0
        assert q(exp, "SELECT count(*) FROM attribution_agreement WHERE run_id = ?", [run_id])[0][0] == 3 * (
            12 + wrong)
        sanity = q(exp, "SELECT method, n_images, spearman_mean FROM attribution_sanity WHERE run_id = ?", [run_id])
        assert len(sanity) == 3 and all(n == 3 and -1 <= rho <= 1 for _, n, rho in sanity)
    png = q(exp, "SELECT heatmap FROM attributions LIMIT 1")[0][0]
    heat = decode_map(png)
    assert heat.shape == (32, 32) and heat.min() >= 0 and heat.max() <= 1


def test_explain_writes_an_overlay(done, tmp_path, capsys):
    from PIL import Image

    from pipeline.__main__ import main

    exp, _ = done
    (path,) = q(exp, "SELECT path FROM images WHERE split = 'test' LIMIT 1")[0]
    out = tmp_path / "overlay.png"
    assert main(["explain", path, "--run", "tiny/head", "--store", exp.store, "--out", str(out)]) == 0
    assert Image.open(out).size[0] > Image.open(path).size[0]  # image + one panel per method
    assert '"probabilities"' in capsys.readouterr().out
    assert main(["explain", path, "--run", "tiny/nope", "--store", exp.store]) == 2
