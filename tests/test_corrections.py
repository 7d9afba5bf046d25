"""Experts' "label wrong" verdicts feed the next preparation only through `data.corrections`, as declared: `exclude`
drops the paintings (each skip naming its annotation), `relabel` gives them the expert's period (none given: dropped,
and said), and the run's resolved config records which annotations were applied. Real paintings, a real store."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipeline import annotations, store
from pipeline.config import ConfigError, load_experiment
from tests.conftest import make_experiment, painting_manifest, real_experiment, sql
from tests.test_annotations_import import EXPORT, import_bytes, verdicts_csv


@pytest.fixture(scope="module")
def annotated(shared_datasets, tmp_path_factory):
    """A store holding a prepared 42-painting dataset and experts' verdicts on five of its paintings."""
    from pipeline.experiment import prepare_data

    folder = tmp_path_factory.mktemp("corrections")
    manifest = painting_manifest(shared_datasets / "wikiart-styles", folder / "data", per_style=6)
    spec = {**real_experiment(manifest), "runs": [{"name": "head", "strategy": "head"}]}
    spec["data"] = {**spec["data"], "resize": 32, "crop": 28, "thumbnail_size": 32}
    exp = make_experiment(folder, spec)
    data = prepare_data(exp, progress=False)
    images = data.images.set_index("image_id")
    ids = sorted(images.index)
    a, b, c, d, e = ids[0], ids[7], ids[14], ids[21], ids[28]
    right = next(p for p in data.periods if p != images.loc[a, "period"])
    with store.connect(exp.store) as con:
        ann = {
            "relabel": annotations.save(con, data.dataset_id, a, None, "label wrong", "", "Ada", right),
            "no period": annotations.save(con, data.dataset_id, b, None, "label wrong", "not sure which", "Ada"),
            "withdrawn": annotations.save(con, data.dataset_id, c, None, "label wrong", "", "Ada", right),
            "ambiguous": annotations.save(con, data.dataset_id, d, None, "ambiguous", "", "Ada"),
        }
        annotations.withdraw(con, ann["withdrawn"], "Ada")
        first = annotations.save(con, data.dataset_id, e, None, "model right", "", "Ben")
        ann["revised"] = annotations.revise(con, first, "label wrong", "on second look", "Ben", right)
    hashes = {name: images.loc[i, "content_hash"] for name, i in zip(
        ("relabel", "no period", "withdrawn", "ambiguous", "revised"), (a, b, c, d, e), strict=True)}
    return exp, data, ann, hashes, right


def prepared(exp, mode: str):
    from pipeline.experiment import prepare_data

    data_cfg = dataclasses.replace(exp.data, corrections=dataclasses.replace(exp.data.corrections, label_wrong=mode))
    return prepare_data(dataclasses.replace(exp, data=data_cfg), progress=False)


def test_off_leaves_the_table_and_records_nothing(annotated):
    exp, data, *_ = annotated
    again = prepared(exp, "off")
    assert again.dataset_id == data.dataset_id and len(again.images) == len(data.images) == 42
    assert again.corrections is None
    from pipeline.experiment import resolved_config

    assert "corrections_applied" not in resolved_config(exp, exp.runs[0], again)["data"]


def test_exclude_drops_each_current_label_wrong_painting_naming_its_annotation(annotated):
    from pipeline.experiment import resolved_config

    exp, data, ann, hashes, _ = annotated
    out = prepared(exp, "exclude")
    kept = set(out.images["content_hash"])
    assert hashes["relabel"] not in kept and hashes["no period"] not in kept and hashes["revised"] not in kept
    assert hashes["withdrawn"] in kept and hashes["ambiguous"] in kept  # withdrawn or not "label wrong": no effect
    assert len(out.images) == 39 and out.dataset_id != data.dataset_id
    reasons = set(out.skipped.loc[out.skipped["stage"] == "corrections", "reason"])
    assert reasons == {f"expert: label wrong (annotation {ann[k]})" for k in ("relabel", "no period", "revised")}
    applied = resolved_config(exp, exp.runs[0], out)["data"]["corrections_applied"]
    assert applied == {"label_wrong": "exclude", "count": 3, "excluded": 3, "relabelled": 0,
                       "annotations": sorted(ann[k] for k in ("relabel", "no period", "revised"))}
    stored = sql(Path(exp.store), "SELECT count(*) FROM skipped_images WHERE dataset_id = ? AND stage = ?",
                 [out.dataset_id, "corrections"])
    assert stored == [(3,)]


def test_relabel_takes_the_experts_period_and_drops_one_without(annotated):
    from pipeline.experiment import resolved_config

    exp, data, ann, hashes, right = annotated
    out = prepared(exp, "relabel")
    by_hash = out.images.set_index("content_hash")
    before = data.images.set_index("content_hash")
    assert by_hash.loc[hashes["relabel"], "period"] == right != before.loc[hashes["relabel"], "period"]
    assert by_hash.loc[hashes["revised"], "period"] == right
    assert hashes["no period"] not in by_hash.index
    assert by_hash.loc[hashes["withdrawn"], "period"] == before.loc[hashes["withdrawn"], "period"]
    assert len(out.images) == 41
    [reason] = out.skipped.loc[out.skipped["stage"] == "corrections", "reason"]
    assert reason == f"expert: label wrong (annotation {ann['no period']}): no corrected period given, so excluded"
    applied = resolved_config(exp, exp.runs[0], out)["data"]["corrections_applied"]
    assert (applied["count"], applied["relabelled"], applied["excluded"]) == (3, 2, 1)
    assert out.dataset_id not in {data.dataset_id, prepared(exp, "exclude").dataset_id}


def test_a_corrected_period_must_be_the_datasets_and_go_with_label_wrong(annotated):
    exp, data, *_ = annotated
    image = data.images["image_id"].iloc[3]
    with store.connect(exp.store) as con:
        with pytest.raises(annotations.AnnotationError, match="not one of this dataset's periods"):
            annotations.save(con, data.dataset_id, image, None, "label wrong", "", "Cy", "Cubism (late)")
        with pytest.raises(annotations.AnnotationError, match="goes only with the verdict 'label wrong'"):
            annotations.save(con, data.dataset_id, image, None, "ambiguous", "", "Cy", data.periods[0])
        left = con.execute("SELECT count(*) FROM annotations WHERE author = 'Cy'").fetchone()
    assert left == (0,)


def test_the_option_is_checked_with_the_others(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {source: demo, corrections: {label_wrong: fix}}\nruns: [{name: a}]\n")
    with pytest.raises(ConfigError, match=r"data.corrections.label_wrong 'fix' unknown; choose from 'off', "
                                          r"'exclude', 'relabel'"):
        load_experiment(bad)
    good = tmp_path / "good.yaml"
    good.write_text("data: {source: demo}\nruns: [{name: a}]\n")
    exp = load_experiment(good, overrides=["data.corrections.label_wrong=relabel"])
    assert exp.data.corrections.label_wrong == "relabel"
    assert exp.data.key() != load_experiment(good).data.key()


def small_store(folder: Path) -> Path:
    """One run on dataset d (periods Baroque, Rococo), images h0..h3."""
    path = folder / "small.duckdb"
    with store.connect(path) as con:
        con.execute("INSERT INTO runs (run_id, dataset_id, status) VALUES ('e/r1', 'd', 'complete')")
        con.execute("INSERT INTO datasets (dataset_id, periods) VALUES ('d', ['Baroque', 'Rococo'])")
        con.execute("INSERT INTO images (dataset_id, image_id, content_hash, split, period) "
                    "SELECT 'd', 'i' || k, 'h' || k, 'test', 'Baroque' FROM range(4) t(k)")
    return path


def line(image: str, verdict: str, period: str | None = None, minute: int = 0) -> list[str]:
    cells = [annotations.FORMAT, EXPORT, "e/r1", image, "h" + image[1:], verdict, "", "Ada",
             f"2026-03-01T10:{minute:02d}:00.000Z"]
    return cells if period is None else [*cells, period]


def test_a_verdicts_file_imports_with_and_without_the_corrected_period_column(tmp_path):
    path = small_store(tmp_path)
    old = import_bytes(path, verdicts_csv([line("i0", "label wrong"), line("i1", "ambiguous")]))
    assert (old.added, old.skipped) == (2, [])
    header = [*annotations.HEADER, "corrected_period"]
    new = import_bytes(path, verdicts_csv([line("i2", "label wrong", "Rococo"), line("i3", "label wrong", ""),
                                           line("i1", "label wrong", "Gothic", minute=5),
                                           line("i0", "model right", "Rococo", minute=5)], header))
    assert new.added == 2
    assert new.skipped == [(4, "corrected period 'Gothic' is not one of the dataset's periods (Baroque, Rococo)"),
                           (5, "a corrected period goes only with the verdict 'label wrong', not 'model right'")]
    rows = sql(path, "SELECT image_id, verdict, corrected_period FROM annotations ORDER BY image_id, created_at")
    assert rows == [("i0", "label wrong", None), ("i1", "ambiguous", None), ("i2", "label wrong", "Rococo"),
                    ("i3", "label wrong", None)]


@pytest.mark.slow  # a store with a trained run (session fixture)
def test_the_form_saves_the_right_period_only_with_label_wrong(store_without_attributions, tmp_path, monkeypatch):
    from tests.conftest import copy_store, open_dashboard
    from tests.test_dashboard_annotations_upload import RUN, an_image

    writable = copy_store(store_without_attributions, tmp_path / "copy")
    _, image_id, _ = an_image(writable)
    [(periods,)] = sql(writable, "SELECT d.periods FROM runs r JOIN datasets d USING (dataset_id) WHERE run_id = ?",
                       [RUN])
    at = open_dashboard(writable, monkeypatch, "annotations.py", run=RUN, image=image_id)
    for verdict in ("ambiguous", "label wrong"):
        at.radio[0].set_value(verdict)
        choice = next(s for s in at.selectbox if s.label == "Right period (optional)")
        assert choice.options == list(periods)
        choice.set_value(periods[-1])
        at.text_input[0].input("Ada")
        next(b for b in at.button if b.label == "Save annotation").click().run()
        assert not at.exception and not at.error, at.error
    assert sql(writable, "SELECT verdict, corrected_period FROM annotations ORDER BY created_at") == [
        ("ambiguous", None), ("label wrong", periods[-1])]
    history = next(d for d in at.dataframe if "current" in d.value.columns).value
    assert history["corrected_period"].tolist()[0] == periods[-1]


def test_compare_says_when_two_runs_differ_by_corrections():
    import json

    from dashboard.text import corrections_words

    after = json.dumps({"data": {"corrections_applied": {"label_wrong": "relabel", "count": 3, "relabelled": 2,
                                                          "excluded": 1, "annotation_ids": ["a", "b", "c"]}}})
    before = json.dumps({"data": {}})
    line = corrections_words("e/before", "e/after", {"e/before": before, "e/after": after})
    assert line == ("The runs' data differ by experts' corrections: A has no experts' corrections, B has 3 experts' "
                    "correction(s) applied (relabel: 2 relabelled, 1 excluded); the test below compares them on the "
                    "images both were scored on.")
    assert corrections_words("e/before", "e/x", {"e/before": before, "e/x": None}) is None  # neither: nothing said
