"""95 % intervals: Wilson against a published table, bootstrap coverage, the paired difference in words, and the
metric rows evaluation writes."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from pipeline import store
from pipeline.__main__ import main
from pipeline.evaluate import Evaluation, score_outputs
from pipeline.intervals import (
    bootstrap_interval,
    confusion_statistics,
    difference_words,
    paired_bootstrap_difference,
    resampled_confusions,
    wilson,
)


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [  # Newcombe (1998), Statistics in Medicine 17:857-872, Table I, method 3 (Wilson score, no correction)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        (81, 100, 0.7222, 0.8749),
    ],
)
def test_wilson_reproduces_the_published_table(k, n, low, high):
    got = wilson(k, n)
    assert got == pytest.approx((low, high), abs=5e-5)


def test_wilson_of_nothing_is_undefined():
    assert all(np.isnan(v) for v in wilson(0, 0))


def test_bootstrap_covers_a_binomial_about_95_percent_of_the_time():
    p, n, hits, sims = 0.7, 150, 0, 300
    rng = np.random.default_rng(123)
    for s in range(sims):
        x = (rng.random(n) < p).astype(float)
        low, high = bootstrap_interval(lambda a: a.mean(1), x, n_boot=400, seed=s)
        hits += low <= p <= high
    assert 0.90 <= hits / sims <= 0.99


def test_bootstrap_is_seeded_and_chunked_results_match_one_pass():
    x = np.random.default_rng(0).random(50)
    assert bootstrap_interval(lambda a: a.mean(1), x, seed=7) == bootstrap_interval(lambda a: a.mean(1), x, seed=7)
    assert bootstrap_interval(lambda a: a.mean(1), x, seed=7) != bootstrap_interval(lambda a: a.mean(1), x, seed=8)


def test_confusion_statistics_equal_sklearn_on_each_resample():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 200)
    pred = np.where(rng.random(200) < 0.6, y, rng.integers(0, 4, 200))
    cms = resampled_confusions(y, pred, 4, n_boot=5, seed=3)
    stats = confusion_statistics(cms, chronological=True)
    for b in range(5):  # rebuild the same resamples from the same seed, then ask sklearn
        idx = np.random.default_rng(3).integers(0, 200, size=(5, 200))[b]
        assert stats["macro_f1"][b] == pytest.approx(
            f1_score(y[idx], pred[idx], labels=range(4), average="macro", zero_division=0))
        assert stats["balanced_accuracy"][b] == pytest.approx(balanced_accuracy_score(y[idx], pred[idx]))
        assert stats["f1"][b] == pytest.approx(f1_score(y[idx], pred[idx], labels=range(4), average=None,
                                                        zero_division=0))


def test_paired_difference_in_words():
    rng = np.random.default_rng(5)
    a = rng.random(400) < 0.70
    b = a | (rng.random(400) < 0.02)  # B fixes a few of A's errors and breaks none: a small, real gain
    diff, low, high = paired_bootstrap_difference(a, b, seed=0)
    assert diff == pytest.approx(b.mean() - a.mean())
    assert 0 <= low <= diff <= high
    assert difference_words(0.021, -0.004, 0.046) == (
        "B is 2.1 points better, 95 % interval of the difference −0.4 to 4.6 points: not distinguishable")
    assert difference_words(-0.05, -0.08, -0.02, a="run 1", b="run 2") == (
        "run 2 is 5.0 points worse, 95 % interval of the difference −8.0 to −2.0 points: distinguishable")
    assert difference_words(diff, low, high).endswith(": distinguishable") == (low > 0)
    # the multinomial shortcut draws what resampling the images draws: the same interval within noise
    by_index = bootstrap_interval(lambda d: d.mean(1), b.astype(float) - a.astype(float), n_boot=2000, seed=1)
    assert (low, high) == pytest.approx(tuple(float(v) for v in by_index), abs=0.004)


NAMES = ["a", "b", "c"]


def evaluation(run_id: str = "r", n: int = 300) -> tuple[pd.DataFrame, Evaluation]:
    rng = np.random.default_rng(0)
    images = pd.DataFrame({"image_id": [f"i{i}" for i in range(n)], "split": rng.choice(["train", "val", "test"], n)})
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + 2.5 * np.eye(3)[y]
    return images, score_outputs(run_id, images, y[:, None], {"period": NAMES},
                                 rng.normal(size=(n, 4)).astype(np.float32), {"period": logits}, projection="pca")


def test_evaluation_rows_carry_intervals_around_their_values():
    images, ev = evaluation()
    m = ev.metrics
    withbounds = m[m.metric.isin(["accuracy", "balanced_accuracy", "macro_f1", "adjacent_error_share", "f1"])]
    assert len(withbounds) == 3 * (4 + 3)
    assert (withbounds.low <= withbounds.value + 1e-12).all() and (withbounds.value <= withbounds.high + 1e-12).all()
    assert (withbounds.high - withbounds.low > 0).all()
    assert m[m.metric.isin(["n", "loss", "support"])][["low", "high"]].isna().all().all()
    test = m[(m.split == "test") & (m.metric == "accuracy")].iloc[0]
    k = round(test.value * (ev.predictions.to_pandas().split == "test").sum())
    assert (test.low, test.high) == pytest.approx(wilson(k, (images.split == "test").sum()))


def test_upgrade_fills_the_intervals_of_a_run_stored_without_them(tmp_path):
    path = tmp_path / "old.duckdb"
    _, ev = evaluation("e/old")
    store.write_run(path, store.RunRecord(
        run={"run_id": "e/old", "name": "old", "status": "complete"}, labels={"period": NAMES},
        epochs=pd.DataFrame({"run_id": ["e/old"], "stage": ["head"], "epoch": [1]}),
        predictions=ev.predictions, metrics=ev.metrics, confusion=ev.confusion, embeddings=ev.embeddings))
    query = "SELECT split, metric, label, low, high FROM metrics ORDER BY ALL"
    with duckdb.connect(str(path)) as con:
        written = con.execute(query).fetchall()
        con.execute("UPDATE metrics SET low = NULL, high = NULL")  # as a run stored before schema 6 has them
    assert main(["upgrade", "--store", str(path)]) == 0
    with duckdb.connect(str(path), read_only=True) as con:
        filled = con.execute(query).fetchall()
    assert [r[:3] for r in filled] == [r[:3] for r in written]
    assert sum(r[3] is not None for r in filled) == 42  # 3 splits x (accuracy, top-2, balanced, macro-F1,
    # adjacent share, and per class F1, precision, recall): only n, loss and support stay without one
    for got, want in zip(filled, written, strict=True):
        assert (got[3] is None) == (want[3] is None)
        if want[3] is not None:
            assert got[3:] == pytest.approx(want[3:], abs=1e-6)
    assert main(["upgrade", "--store", str(path)]) == 0  # nothing left to fill: the same rows again


def test_the_gallery_header_gives_each_score_and_the_experts_accuracy_its_interval():
    from dashboard.gallery_file import render
    from tests.test_gallery_file import a_gallery, tile

    low, high = wilson(341, 420)  # 0.812 of 420 test paintings: 0.771–0.847
    metrics = {"accuracy": 341 / 420, "accuracy_low": low, "accuracy_high": high, "balanced_accuracy": 0.774,
               "balanced_accuracy_low": 0.731, "balanced_accuracy_high": 0.809, "macro_f1": 0.7651,
               "macro_f1_low": 0.721, "macro_f1_high": 0.802, "n": 420.0}
    experts = {"errors": 79, "reviewed_errors": 12, "label_wrong": 7, "model_right": 2, "ambiguous": 2, "outside": 1,
               "accuracy": 341 / 420, "accuracy_low": low, "accuracy_high": high,
               "accuracy_if_experts_right": 350 / 420, "accuracy_if_experts_right_low": wilson(350, 420)[0],
               "accuracy_if_experts_right_high": wilson(350, 420)[1]}
    page = render(a_gallery([tile("a.jpg", "Baroque", "Rococo")], metrics=metrics, experts=experts))
    assert "<b>81%</b> of the time (accuracy) (95 % interval 77–85%)" in page
    assert "<b>77%</b> (balanced accuracy) (95 % interval 73–81%)" in page
    assert "<b>0.77</b> (95 % interval 0.72–0.80)" in page
    assert "accuracy is 83% instead of 81% (95 % intervals 79–87% and 77–85%)" in page
    plain = render(a_gallery([tile("a.jpg", "Baroque", "Rococo")]))  # an export without intervals says none
    assert "95 % interval" not in plain and "<b>81%</b> of the time (accuracy);" in plain


def test_a_run_stored_before_intervals_still_shows_its_accuracy_with_wilsons():
    from dashboard.queries.runs import with_wilson_fallback
    from dashboard.text import with_interval

    nan = float("nan")
    table = pd.DataFrame({"test_accuracy": [0.81, 0.5], "test_accuracy_low": [nan, 0.4],
                          "test_accuracy_high": [nan, 0.6], "test_top2_accuracy": [nan, nan],
                          "test_top2_accuracy_low": [nan, nan],
                          "test_top2_accuracy_high": [nan, nan], "test_n": [100.0, 100.0]})
    filled = with_wilson_fallback(table)
    assert (filled.loc[0, "test_accuracy_low"], filled.loc[0, "test_accuracy_high"]) == pytest.approx(wilson(81, 100))
    assert (filled.loc[1, "test_accuracy_low"], filled.loc[1, "test_accuracy_high"]) == (0.4, 0.6)  # stored: kept
    assert with_interval(0.81, *wilson(81, 100)) == "0.810\u00a0±\u00a00.088"  # the wider (lower) side of 0.722–0.875
    assert with_interval(0.81, None, None) == "0.810" and with_interval(None, 0.1, 0.2) == ""
