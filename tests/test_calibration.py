"""Temperature scaling: it lowers the calibration error of an overconfident model without changing a prediction,
and a real run stores calibrated probabilities beside the raw ones, with its temperature.

The synthetic model is calibrated by construction (labels drawn from its own softmax); multiplying its logits by 5
makes it overconfident, so the fitted temperature must come back near 5.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline import calibration
from pipeline.inference import softmax
from tests.conftest import TINY_EXPERIMENT, make_experiment, open_dashboard, sql


def calibrated_model(n: int = 4000, classes: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from the logits' own softmax: a model calibrated by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, classes))
    probs = softmax(logits)
    y = np.array([rng.choice(classes, p=p) for p in probs])
    return logits, y


def test_temperature_scaling_lowers_the_ece_of_an_overconfident_model_and_keeps_its_predictions() -> None:
    logits, y = calibrated_model()
    overconfident = logits * 5
    fit_half, test_half = slice(0, 2000), slice(2000, None)
    t = calibration.fit_temperature(overconfident[fit_half], y[fit_half])
    assert 4.0 < t < 6.0
    before = softmax(overconfident[test_half])
    after = calibration.scaled(overconfident[test_half], t)
    ece_before = calibration.expected_calibration_error(before, y[test_half])
    ece_after = calibration.expected_calibration_error(after, y[test_half])
    assert ece_before > 0.15 and ece_after < ece_before / 3
    np.testing.assert_array_equal(after.argmax(1), before.argmax(1))
    assert calibration.nll(overconfident[test_half], y[test_half], t) < calibration.nll(
        overconfident[test_half], y[test_half], 1.0)


def test_the_same_temperature_comes_from_stored_probabilities() -> None:
    """log(softmax(z)) = z + a constant per row: stored probabilities calibrate like the logits that made them."""
    logits, y = calibrated_model(n=1000)
    direct = calibration.fit_temperature(logits * 3, y)
    from_probs = calibration.fit_temperature(calibration.logits_of(softmax(logits * 3)), y)
    assert direct == pytest.approx(from_probs, rel=1e-4)


def test_the_ece_is_torchmetrics_and_its_bins_are_the_diagram() -> None:
    """The bins reproduce the ECE: the size-weighted gap between confidence and accuracy."""
    logits, y = calibrated_model(n=1500, seed=1)
    probs = softmax(logits * 2)
    bins = calibration.reliability_bins(probs, y)
    assert bins["n"].sum() == len(y) and bins["bin"].between(0, calibration.N_BINS - 1).all()
    by_hand = float((bins["n"] * (bins["confidence"] - bins["accuracy"]).abs()).sum() / len(y))
    assert calibration.expected_calibration_error(probs, y) == pytest.approx(by_hand, abs=1e-5)


def test_too_few_validation_images_leave_a_task_unscaled_and_say_why() -> None:
    logits, y = calibrated_model(n=40)
    splits = np.array(["train"] * 35 + ["val"] * 5)
    fits, note = calibration.fit_on_validation({"period": logits}, y[:, None], ["period"], splits)
    assert fits == {} and note is not None and "5 labelled validation images" in note
    fits, note = calibration.fit_on_validation({"period": logits}, y[:, None], ["period"], np.array(["val"] * 40))
    assert note is None and fits["period"].n == 40 and fits["period"].fitted_on == "val"


@pytest.fixture(scope="module")
def calibrated_store(tmp_path_factory) -> Path:
    """A real store: one tiny demo run at the default (calibrated), one with `calibrate: false`."""
    from pipeline.experiment import run_experiment

    spec = {**TINY_EXPERIMENT, "attributions": {"enabled": False},
            "runs": [{"name": "head", "strategy": "head"}, {"name": "plain", "strategy": "head", "calibrate": False}]}
    exp = make_experiment(tmp_path_factory.mktemp("calibrated"), spec)
    run_experiment(exp, progress=False)
    return Path(exp.store)


@pytest.mark.slow  # trains two tiny runs
def test_a_calibrated_run_stores_scaled_and_raw_probabilities_with_its_temperature(calibrated_store: Path) -> None:
    rows = sql(calibrated_store, """SELECT pred_label, confidence, raw_confidence, probs, raw_probs, true_prob, loss,
                                           true_label FROM predictions WHERE run_id = 'tiny/head' AND task = 'period'
                                    ORDER BY image_id""")
    assert rows and all(r[2] is not None and r[4] is not None for r in rows)
    assert any(abs(r[1] - r[2]) > 1e-4 for r in rows)  # confidence changed
    labels = [r[0] for r in sql(calibrated_store, "SELECT label FROM run_labels WHERE run_id = 'tiny/head' AND "
                                                  "task = 'period' ORDER BY class_index")]
    for pred, conf, raw_conf, probs, raw_probs, true_prob, loss, true in rows:
        assert labels[int(np.argmax(probs))] == labels[int(np.argmax(raw_probs))] == pred  # argmax unchanged
        assert conf == pytest.approx(max(probs), abs=1e-6) and raw_conf == pytest.approx(max(raw_probs), abs=1e-6)
        assert true_prob == pytest.approx(probs[labels.index(true)], abs=1e-6)
        assert loss == pytest.approx(-np.log(true_prob), abs=1e-4)
    (task, t, fitted_on, n), = sql(calibrated_store, "SELECT task, temperature, fitted_on, n FROM calibration "
                                                     "WHERE run_id = 'tiny/head'")
    (n_val,), = sql(calibrated_store, "SELECT count(*) FROM predictions WHERE run_id = 'tiny/head' AND "
                                      "task = 'period' AND split = 'val' AND correct IS NOT NULL")
    assert (task, fitted_on, n) == ("period", "val", n_val) and t != 1.0
    (summary,), = sql(calibrated_store, "SELECT summary FROM runs WHERE run_id = 'tiny/head'")
    assert json.loads(summary)["temperatures"] == {"period": pytest.approx(t)}
    # the stored probabilities are the raw ones at that temperature
    _, _, _, probs, raw_probs, *_ = rows[0]
    np.testing.assert_allclose(calibration.scaled(calibration.logits_of([raw_probs]), t)[0], probs, atol=1e-5)
    metrics = dict(sql(calibrated_store, "SELECT metric, value FROM metrics WHERE run_id = 'tiny/head' AND "
                                         "split = 'val' AND metric LIKE 'ece%'"))
    assert set(metrics) == {"ece", "ece_uncalibrated"} and all(0 <= v <= 1 for v in metrics.values())


@pytest.mark.slow  # trains two tiny runs
def test_a_run_with_calibrate_off_keeps_its_softmax_and_no_temperature(calibrated_store: Path) -> None:
    (raw_rows, total), = sql(calibrated_store, "SELECT count(raw_probs), count(*) FROM predictions "
                                               "WHERE run_id = 'tiny/plain'")
    assert raw_rows == 0 and total > 0
    assert sql(calibrated_store, "SELECT * FROM calibration WHERE run_id = 'tiny/plain'") == []
    metrics = [m for m, in sql(calibrated_store, "SELECT DISTINCT metric FROM metrics WHERE run_id = 'tiny/plain' "
                                                 "AND metric LIKE 'ece%'")]
    assert metrics == ["ece"]


@pytest.mark.slow  # trains two tiny runs
def test_the_page_says_the_temperature_and_both_errors_or_that_a_run_was_not_scaled(calibrated_store: Path,
                                                                                     monkeypatch) -> None:
    [(t,)] = sql(calibrated_store, "SELECT temperature FROM calibration WHERE run_id = 'tiny/head'")
    ece = dict(sql(calibrated_store, "SELECT metric, value FROM metrics WHERE run_id = 'tiny/head' AND "
                                     "split = 'test' AND metric LIKE 'ece%'"))
    at = open_dashboard(calibrated_store, monkeypatch, "calibration.py", run="tiny/head")
    text = " ".join(m.value for m in at.markdown)
    assert f"Temperature T = {t:.3f}" in text
    assert f"{ece['ece_uncalibrated']:.3f} before scaling, {ece['ece']:.3f} after" in text
    assert len(at.get("plotly_chart")) == 1 and not at.info

    at = open_dashboard(calibrated_store, monkeypatch, "calibration.py", run="tiny/plain", split="val")
    assert any("was not calibrated" in i.value for i in at.info)
    [(plain,)] = sql(calibrated_store, "SELECT value FROM metrics WHERE run_id = 'tiny/plain' AND split = 'val' "
                                       "AND metric = 'ece'")
    assert f"val** split: **{plain:.3f}**" in " ".join(m.value for m in at.markdown)
