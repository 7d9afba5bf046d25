"""Annotations (the dashboard's one write, kept across re-runs) and the Upload page's explanation of a new image."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from dashboard.queries import verdicts
from dashboard.uploads import UploadError, explain_upload, load
from pipeline.config import AttributionConfig
from pipeline.experiment import run_experiment
from tests.conftest import REPO_ROOT, TINY_EXPERIMENT, copy_store, make_experiment, open_dashboard, sql

pytestmark = pytest.mark.slow  # every test reads a store built by a session fixture (a run trained)

RUN = "tiny/head"
# the data spec of the `store_without_attributions` fixture (so the same dataset), one quick run
RERUN_SPEC = {**TINY_EXPERIMENT, "attributions": {"enabled": False},
              "runs": [{"name": "head", "strategy": "head", "epochs": 1}]}
QUICK_MAPS = AttributionConfig(ig_steps=4, internal_batch_size=4)


@pytest.fixture
def writable(store_without_attributions, tmp_path) -> Path:
    return copy_store(store_without_attributions, tmp_path / "copy")




def an_image(store: Path) -> tuple[str, str, str]:
    """(dataset_id, image_id, content_hash) of a test image the run got wrong, else any test image."""
    return sql(store, """SELECT i.dataset_id, i.image_id, i.content_hash FROM predictions p
                         JOIN images i USING (image_id) WHERE p.run_id = ? AND p.split = 'test'
                         ORDER BY p.correct, i.image_id LIMIT 1""", [RUN])[0]


def app(monkeypatch, store: Path, page: str, **params) -> AppTest:
    return open_dashboard(store, monkeypatch, page, **params)


# ---------------------------------------------------------------- annotations


def test_save_stores_identity_hash_run_and_time(writable, monkeypatch):
    monkeypatch.setenv("PERIODEYE_STORE", str(writable))
    dataset_id, image_id, content_hash = an_image(writable)
    annotation_id = verdicts.save_annotation(dataset_id, image_id, RUN, "label wrong", " a Vermeer, surely ", " Ada ",
                                      path=writable)
    row = sql(writable, "SELECT * FROM annotations")
    assert len(row) == 1
    aid, ds, img, digest, run, verdict, note, author, created, revises, withdrawn, source, corrected = row[0]
    assert (aid, ds, img, digest, run) == (annotation_id, dataset_id, image_id, content_hash, RUN)
    assert corrected is None  # no corrected period given
    assert uuid.UUID(aid).version == 4
    assert (verdict, note, author) == ("label wrong", "a Vermeer, surely", "Ada")
    assert (revises, withdrawn, source) == (None, False, "dashboard")
    assert abs(created - datetime.now(UTC).replace(tzinfo=None)) < timedelta(minutes=1)
    listed = verdicts.list_annotations()
    assert listed["annotation_id"].tolist() == [annotation_id] and listed["image_id"].iloc[0] == image_id
    assert listed["period"].iloc[0] is not None  # joined to its image
    assert verdicts.list_annotations(verdicts=["ambiguous"]).empty
    assert len(verdicts.list_annotations(verdicts=["label wrong"], authors=["Ada"], runs=[RUN])) == 1
    assert verdicts.annotations_for(dataset_id, image_id)["note"].tolist() == ["a Vermeer, surely"]


def test_invalid_annotations_are_refused_and_write_nothing(writable):
    dataset_id, image_id, _ = an_image(writable)
    cases = [("great", "Ada", image_id, "Choose a verdict"), ("ambiguous", "  ", image_id, "Give your name"),
             ("ambiguous", "Ada", "no-such-image", "not in dataset")]
    for verdict, author, image, message in cases:
        with pytest.raises(verdicts.AnnotationError, match=message):
            verdicts.save_annotation(dataset_id, image, RUN, verdict, "", author, path=writable)
    assert sql(writable, "SELECT count(*) FROM annotations")[0][0] == 0


def test_saving_waits_for_a_reader_in_this_process(writable, monkeypatch):
    """Another session's read-only connection (same process, so DuckDB refuses a writer outright) is waited out."""
    dataset_id, image_id, _ = an_image(writable)
    reader = duckdb.connect(str(writable), read_only=True)
    is_lock_error, refused = verdicts.pipeline_store._is_lock_error, []

    def close_the_reader_once_refused(exc):  # the writer was turned away while the reader was open: it leaves now
        if not refused:
            refused.append(exc)
            reader.close()
        return is_lock_error(exc)

    monkeypatch.setattr(verdicts.pipeline_store, "_is_lock_error", close_the_reader_once_refused)
    verdicts.save_annotation(dataset_id, image_id, RUN, "model right", "", "Ada", path=writable)
    assert refused  # it really was refused while the reader was open, and waited it out
    assert sql(writable, "SELECT verdict FROM annotations") == [("model right",)]


def test_notes_follow_the_painting_to_an_identical_copy(writable, monkeypatch):
    """An exact duplicate (same content hash, another id) shows the note too, saying where it was made."""
    monkeypatch.setenv("PERIODEYE_STORE", str(writable))
    dataset_id, image_id, _ = an_image(writable)
    verdicts.save_annotation(dataset_id, image_id, RUN, "ambiguous", "", "Ada", path=writable)
    with duckdb.connect(str(writable)) as con:
        con.execute("INSERT INTO images SELECT * REPLACE ('copy-of-' || image_id AS image_id) FROM images "
                    "WHERE dataset_id = ? AND image_id = ?", [dataset_id, image_id])
    notes = verdicts.annotations_for(dataset_id, f"copy-of-{image_id}")
    assert notes["same_painting_as"].tolist() == [f"{dataset_id}/{image_id}"]


def test_annotations_survive_regenerating_the_runs(store_without_attributions, tmp_path):
    """`--force` replaces the run and re-prepares the dataset; the verdict stays and still joins its image."""
    store = copy_store(store_without_attributions, tmp_path)
    exp = make_experiment(tmp_path, RERUN_SPEC)
    assert Path(exp.store) == store
    dataset_id, image_id, content_hash = an_image(store)
    annotation_id = verdicts.save_annotation(dataset_id, image_id, RUN, "outside its period", "too late", "Ada",
                                             path=store)
    finished_before = sql(store, "SELECT finished_at FROM runs WHERE run_id = ?", [RUN])[0][0]

    run_experiment(exp, force=True, progress=False)

    assert sql(store, "SELECT finished_at FROM runs WHERE run_id = ?", [RUN])[0][0] > finished_before
    rows = sql(store, """SELECT a.annotation_id, a.verdict, i.content_hash, p.pred_label IS NOT NULL
                         FROM annotations a JOIN images i USING (dataset_id, image_id)
                         LEFT JOIN predictions p ON p.run_id = a.run_id AND p.image_id = a.image_id
                         AND p.task = 'period'""")
    assert rows == [(annotation_id, "outside its period", content_hash, True)]


def test_annotations_page_saves_lists_and_filters(writable, monkeypatch):
    dataset_id, image_id, _ = an_image(writable)
    at = app(monkeypatch, writable, "annotations.py", run=RUN, image=image_id)
    assert at.selectbox(key="w_image").value == image_id
    assert "No annotations yet." in [c.value for c in at.caption]
    at.radio[0].set_value("label wrong")
    at.text_area[0].input("the costume is 1650s")
    at.text_input[0].input("Ada")
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert "Saved: label wrong" in at.success[0].value
    assert sql(writable, "SELECT verdict, note, author, image_id FROM annotations") == [
        ("label wrong", "the costume is 1650s", "Ada", image_id)]
    table = at.dataframe[-1].value
    assert table["image_id"].tolist() == [image_id] and table["verdict"].tolist() == ["label wrong"]
    at = app(monkeypatch, writable, "annotations.py", verdict=["ambiguous"])
    assert "No annotations match." in [c.value for c in at.caption]
    at = app(monkeypatch, writable, "annotations.py", author=["Ada"])
    assert at.dataframe[-1].value["author"].tolist() == ["Ada"]


def test_annotations_page_refuses_a_nameless_verdict(writable, monkeypatch):
    at = app(monkeypatch, writable, "annotations.py", run=RUN)
    at.radio[0].set_value("ambiguous")
    at.button[0].click().run()
    assert not at.exception and "Give your name" in at.error[0].value
    assert sql(writable, "SELECT count(*) FROM annotations")[0][0] == 0


def test_edit_and_withdraw_on_the_page_keep_the_history(writable, monkeypatch):
    dataset_id, image_id, _ = an_image(writable)
    first = verdicts.save_annotation(dataset_id, image_id, RUN, "ambiguous", "not sure", "Ada", path=writable)
    at = app(monkeypatch, writable, "annotations.py", run=RUN, image=image_id)
    edit = next(r for r in at.selectbox if r.label == "New verdict")
    assert edit.value == "ambiguous"
    edit.set_value("label wrong")
    next(b for b in at.button if b.label == "Save new version").click().run()
    assert "Give your name" in at.error[0].value  # an edit is signed too
    next(t for t in at.text_input if t.label == "Changed by").input("Ada")
    next(b for b in at.button if b.label == "Save new version").click().run()
    assert not at.exception and "Saved a new version." in at.success[0].value
    assert at.dataframe[-1].value["verdict"].tolist() == ["label wrong"]  # the list: current annotations only
    history = next(d for d in at.dataframe if "current" in d.value.columns).value
    assert history["verdict"].tolist() == ["label wrong", "ambiguous"] and history["current"].tolist() == [True, False]
    next(b for b in at.button if b.label == "Withdraw it").click().run()
    assert "Withdrawn" in at.success[0].value and "No annotations yet." in [c.value for c in at.caption]
    at.toggle[0].set_value(True).run()
    assert at.query_params["versions"] == "all"
    assert at.dataframe[-1].value["withdrawn"].tolist() == [True, False, False]
    assert sql(writable, "SELECT count(*) FROM annotations WHERE annotation_id = ?", [first])[0][0] == 1


def test_the_upload_box_imports_a_verdicts_file_and_says_what_it_did(writable, monkeypatch):
    from tests.test_annotations_import import EXPORT, verdicts_csv
    from tests.test_annotations_import import row as verdict_row

    dataset_id, image_id, content_hash = an_image(writable)
    data = verdicts_csv([verdict_row(image_id, "label wrong", "'=1+1 is a formula", run=RUN, content_hash=content_hash),
                         verdict_row(image_id, "no such verdict", run=RUN, content_hash=content_hash, reviewer="Bea")])
    at = app(monkeypatch, writable, "annotations.py", run=RUN)
    assert list(at.get("file_uploader"))  # a reviewer (nothing configured) sees the box
    report = verdicts.import_verdicts(data, path=writable)  # the box's call (AppTest cannot drop a file; the browser
    # test does)
    assert report.lines()[:2] == ["1 added, 0 already there, 1 skipped",
                                  "row 3: unknown verdict 'no such verdict' (one of: model right, label wrong, "
                                  "ambiguous, outside its period)"]
    assert sql(writable, "SELECT note, source FROM annotations") == [("=1+1 is a formula", "import:" + EXPORT)]


def test_a_viewer_reads_but_cannot_annotate_or_import(writable, monkeypatch):
    for name in ("PERIODEYE_REVIEWER_PASSWORD", "PERIODEYE_NO_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PERIODEYE_VIEWER_PASSWORD", "look")
    dataset_id, image_id, _ = an_image(writable)
    verdicts.save_annotation(dataset_id, image_id, RUN, "ambiguous", "", "Ada", path=writable)
    monkeypatch.setenv("PERIODEYE_STORE", str(writable))
    at = AppTest.from_file(str(REPO_ROOT / "dashboard" / "Home.py"), default_timeout=120)
    at.secrets = {"unrelated": "x"}
    at.run()
    at.text_input(key="_access_password_field").input("look")
    at.button[0].click().run()
    at.switch_page("views/annotations.py")
    at.query_params["run"], at.query_params["image"] = RUN, image_id
    at.run()
    assert not at.exception
    assert any("read-only" in i.value for i in at.info)
    labels = [w.label for w in [*at.radio, *at.button, *at.text_input]]
    assert not {"Verdict", "Save annotation", "Save new version", "Your name"} & set(labels)
    assert not list(at.get("file_uploader")) and at.dataframe[-1].value["verdict"].tolist() == ["ambiguous"]
    at.query_params["review"] = "1"
    at.run()
    assert not at.exception and not [b for b in at.button if b.label in verdicts.VERDICTS]


def test_review_mode_steps_through_the_errors_filter(writable, monkeypatch):
    errors = sql(writable, """SELECT image_id FROM predictions WHERE run_id = ? AND split = 'test' AND NOT correct
                             AND task = 'period' ORDER BY confidence DESC, image_id""", [RUN])
    at = app(monkeypatch, writable, "annotations.py", run=RUN, review="1")
    assert any(f"**1 of {len(errors)}**" in m.value for m in at.markdown)
    assert at.query_params["image"] == errors[0][0]
    at.text_input(key="review_author").input("Ada")
    next(b for b in at.button if b.label == "label wrong").click().run()
    assert not at.exception and any(f"**2 of {len(errors)}**" in m.value for m in at.markdown)
    assert at.query_params["image"] == errors[1][0]
    assert sql(writable, "SELECT image_id, verdict, author FROM annotations") == [(errors[0][0], "label wrong", "Ada")]
    next(b for b in at.button if b.label == "skip →").click().run()
    assert at.query_params["image"] == errors[2][0] and sql(writable, "SELECT count(*) FROM annotations")[0][0] == 1
    assert at.dataframe[-1].value["image_id"].tolist() == [errors[0][0]]
    at = app(monkeypatch, writable, "annotations.py", run=RUN, review="1", cmin="0.999")
    assert any("nothing to review" in i.value for i in at.info)


def test_the_overview_shows_the_experts_verdicts_per_run(writable, monkeypatch):
    at = app(monkeypatch, writable, "overview.py")
    assert any("No expert has judged a test error yet" in c.value for c in at.caption)
    errors = sql(writable, """SELECT i.dataset_id, i.image_id FROM predictions p JOIN runs r USING (run_id)
                             JOIN images i ON i.dataset_id = r.dataset_id AND i.image_id = p.image_id
                             WHERE p.run_id = ? AND p.split = 'test' AND NOT p.correct ORDER BY 2 LIMIT 2""", [RUN])
    (total, right), = sql(writable, """SELECT count(*), count(*) FILTER (correct) FROM predictions
                                       WHERE run_id = ? AND split = 'test' AND task = 'period'""", [RUN])
    verdicts.save_annotation(*errors[0], RUN, "label wrong", "", "Ada", path=writable)
    verdicts.save_annotation(*errors[1], RUN, "ambiguous", "", "Ada", path=writable)
    at = app(monkeypatch, writable, "overview.py")
    shown = next(d.value for d in at.dataframe if "accuracy_if_experts_right" in d.value.columns).set_index("run_id")
    row = shown.loc[RUN]
    assert (row.errors, row.reviewed_errors, row.label_wrong, row.ambiguous) == (total - right, 2, 1, 1)
    assert row.accuracy_if_experts_right == pytest.approx((right + 1) / total)
    assert row.review == "./annotations?run=tiny%2Fhead&review=1"


# ---------------------------------------------------------------- upload


def painting_bytes(fmt: str = "JPEG", size: tuple[int, int] = (90, 60)) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, fmt)
    return buf.getvalue()


def test_upload_explains_a_new_painting(store_without_attributions):
    store = store_without_attributions
    result = explain_upload(store, RUN, painting_bytes(), "new.jpg", cfg=QUICK_MAPS)
    periods = [r[0] for r in sql(store, "SELECT label FROM run_labels WHERE run_id = ? AND task = 'period' "
                                        "ORDER BY class_index", [RUN])]
    assert list(result.probabilities) == periods  # chronological, as trained
    assert sum(result.probabilities.values()) == pytest.approx(1, abs=1e-5)
    assert result.target == max(result.probabilities, key=result.probabilities.get)
    assert set(result.maps) == {"guided_backprop", "integrated_gradients", "grad_cam"}
    for heat in result.maps.values():
        assert heat.shape == (result.crop, result.crop) and heat.min() >= 0 and heat.max() <= 1
    tiles = result.overlays(0.7)
    assert all(t.size == result.image.size == (90, 60) for t in tiles.values())
    other = periods[0] if periods[0] != result.target else periods[1]
    assert explain_upload(store, RUN, painting_bytes("PNG"), "new.png", target=other, cfg=QUICK_MAPS).target == other


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty"),
    (b"<html>not a painting</html>", "not an image"),
    (painting_bytes()[:400], "truncated or corrupt"),
])
def test_bad_uploads_are_explained_not_raised(store_without_attributions, data, message):
    with pytest.raises(UploadError, match=message):
        explain_upload(store_without_attributions, RUN, data, "upload.jpg")


def test_a_run_without_its_checkpoint_is_a_clear_error(writable, monkeypatch):
    with duckdb.connect(str(writable)) as con:
        con.execute("UPDATE runs SET checkpoint = '/nonexistent/model.pt'")
    with pytest.raises(UploadError, match="checkpoint of tiny/head not found"):
        load(writable, RUN)
    at = app(monkeypatch, writable, "upload.py", run=RUN)
    assert "checkpoint of tiny/head not found" in at.error[0].value


def test_upload_page_renders_without_a_file(store_without_attributions, monkeypatch, tmp_path):
    at = app(monkeypatch, store_without_attributions, "upload.py", run=RUN)
    assert "Drop an image" in at.info[0].value and not at.error
    for page in ("upload.py", "annotations.py"):
        assert "make artifacts" in app(monkeypatch, tmp_path / "nothing.duckdb", page).info[0].value


class FakeUpload:
    """What st.file_uploader returns, for AppTest (which cannot drive the uploader itself)."""

    def __init__(self, name: str, data: bytes):
        self.name, self._data = name, data

    def getvalue(self) -> bytes:
        return self._data


@pytest.mark.parametrize(("name", "data"), [("new.jpg", painting_bytes()), ("fake.jpg", b"GIF89a garbage")])
def test_upload_page_shows_probabilities_and_overlays_or_an_error(store_without_attributions, monkeypatch, name,
                                                                   data):
    import streamlit

    monkeypatch.setattr(streamlit, "file_uploader", lambda *a, **k: FakeUpload(name, data))
    monkeypatch.setattr("pipeline.explain.AttributionConfig", lambda: QUICK_MAPS)
    at = app(monkeypatch, store_without_attributions, "upload.py", run=RUN, alpha="0.8")
    if name == "fake.jpg":
        assert "fake.jpg cannot be used as a painting" in at.error[0].value
        return
    assert not at.error
    assert len(at.get("plotly_chart")) == 1
    captions = [c for image in at.get("image") for c in image.captions]
    assert captions == ["your upload", "Guided Backprop", "Integrated Gradients", "Grad-CAM"]
    assert at.slider(key="w_alpha").value == 0.8


TORCH_PROBE = """
import sys
from pathlib import Path
from streamlit.testing.v1 import AppTest
views = Path(sys.argv[1]) / "dashboard" / "views"
at = AppTest.from_file(str(views.parent / "Home.py"), default_timeout=120)
for page in sorted(p.name for p in views.glob("*.py") if p.name != "upload.py") + ["upload.py"]:
    at.switch_page(f"views/{page}")
    at.run()
    assert not at.exception, (page, at.exception)
    print(page, "torch" in sys.modules)
"""


def test_only_the_upload_page_imports_torch(store_without_attributions):
    """Every other page is SQL over the store: opened in a fresh process, none of them loads torch; Upload does."""
    env = {**os.environ, "PERIODEYE_STORE": str(store_without_attributions)}
    done = subprocess.run([sys.executable, "-c", TORCH_PROBE, str(REPO_ROOT)], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = dict(line.split() for line in done.stdout.splitlines())
    assert len(seen) >= 9 and seen.pop("upload.py") == "True"
    assert set(seen.values()) == {"False"}, seen
