"""Temperature scaling and the expected calibration error: how far a run's confidence can be trusted.

A network's softmax is usually overconfident. Temperature scaling (Guo et al., 2017) divides each task's logits by
one number T > 0, fitted on the validation split by minimising the negative log-likelihood: the ranking of the
classes, and so the predicted period, never changes; only the confidence does. T is fitted on log T with scipy's
bounded scalar minimiser (one variable, convex in practice, deterministic: no seed, no learning rate).

A run's stored probabilities are softmax(logits), so log(probs) = logits + a constant per row: `logits_of` gives
logits back from stored probabilities, so a run written before calibration existed, an ensemble (whose logits are
the log of its members' mean probability) and a test-time-view mean can all be scaled the same way.

The expected calibration error is torchmetrics' `MulticlassCalibrationError` (15 equal-width confidence bins, l1):
a maintained implementation, the one Lightning users already have (it comes with lightning, already required);
netcal is not installed and would add a dependency for the same number. Imported inside the function, so
importing this module stays free of torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.inference import softmax

N_BINS = 15  # the reliability diagram's bins and the ECE's (torchmetrics' default)
BOUNDS = (0.05, 20.0)  # the temperatures a fit may reach: beyond them the validation split is not telling
MIN_IMAGES = 10  # fewer labelled validation images than this fit noise, not a temperature


@dataclass(frozen=True)
class Fit:
    """One task's temperature and what it was fitted on (the `calibration` table's row)."""

    temperature: float
    n: int | None  # labelled images it was fitted on (None: taken from another run, which keeps the count)
    fitted_on: str  # "val", or "val of RUN" for an evaluation of a run on another collection


def logits_of(probs: np.ndarray) -> np.ndarray:
    """Logits up to a per-row constant from probabilities (softmax of the result gives `probs` back)."""
    return np.log(np.clip(np.asarray(probs, np.float64), 1e-12, None))


def scaled(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated probabilities: softmax(logits / T). The argmax is the argmax of `logits`."""
    return softmax(np.asarray(logits, np.float64) / temperature)


def nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of the true classes `y` at temperature T."""
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    return float(-log_p[np.arange(len(y)), y].mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising the NLL of `logits` (n, C) on the labels `y` (class indices, all known)."""
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(lambda log_t: nll(logits, y, float(np.exp(log_t))), method="bounded",
                             bounds=(np.log(BOUNDS[0]), np.log(BOUNDS[1])), options={"xatol": 1e-6})
    return float(np.exp(result.x))


def fit_on_validation(logits: dict[str, np.ndarray], targets: np.ndarray, tasks: list[str],
                      splits: np.ndarray) -> tuple[dict[str, Fit], str | None]:
    """Each task's temperature from the labelled validation images; with too few of them the task is left
    uncalibrated and the returned note (for the run's notes and the log) says why."""
    fits: dict[str, Fit] = {}
    missing = []
    for t, task in enumerate(tasks):
        y = targets[:, t]
        mask = (splits == "val") & (y >= 0)
        if mask.sum() < MIN_IMAGES:
            missing.append(f"{task} ({int(mask.sum())} labelled validation images, {MIN_IMAGES} needed)")
            continue
        fits[task] = Fit(fit_temperature(logits[task][mask], y[mask]), int(mask.sum()), "val")
    note = f"not calibrated: {', '.join(missing)}" if missing else None
    return fits, note


def expected_calibration_error(probs: np.ndarray, y: np.ndarray) -> float:
    """ECE (l1, N_BINS equal-width bins over the top confidence) of labelled rows (`y` >= 0), by torchmetrics."""
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    known = y >= 0
    if not known.any():
        return float("nan")
    value = multiclass_calibration_error(torch.from_numpy(np.asarray(probs[known], np.float32)),
                                         torch.from_numpy(y[known].astype(np.int64)), num_classes=probs.shape[1],
                                         n_bins=N_BINS, norm="l1")
    return float(value)


def ece_rows(run_id: str, task: str, y: np.ndarray, splits: np.ndarray, probs: np.ndarray,
             raw: np.ndarray | None) -> list[tuple]:
    """`metrics` rows per split (no interval: low/high NULL): `ece` of the stored probabilities (calibrated when
    scaled) and, for a scaled task, `ece_uncalibrated` of the probabilities before scaling."""
    rows: list[tuple] = []
    for split in dict.fromkeys(splits.tolist()):
        mask = (splits == split) & (y >= 0)
        if not mask.any():
            continue
        rows.append((run_id, split, task, "ece", None, expected_calibration_error(probs[mask], y[mask]), None, None))
        if raw is not None:
            rows.append((run_id, split, task, "ece_uncalibrated", None,
                         expected_calibration_error(raw[mask], y[mask]), None, None))
    return rows


def reliability_bins(probs: np.ndarray, y: np.ndarray, n_bins: int = N_BINS) -> pd.DataFrame:
    """The reliability diagram's bins (the ECE's): images, mean confidence and accuracy per confidence bin."""
    confidence = probs.max(1)
    correct = probs.argmax(1) == y
    index = np.clip(np.floor(confidence * n_bins).astype(int), 0, n_bins - 1)  # [low, high), 1.0 in the last
    frame = pd.DataFrame({"bin": index, "confidence": confidence, "correct": correct})
    return frame.groupby("bin").agg(n=("correct", "size"), confidence=("confidence", "mean"),
                                    accuracy=("correct", "mean")).reset_index()


def calibration_table(run_id: str, fits: dict[str, Fit]) -> pd.DataFrame:
    """The `calibration` rows of a run: one per scaled task."""
    return pd.DataFrame([(run_id, task, f.temperature, f.fitted_on, f.n) for task, f in fits.items()],
                        columns=["run_id", "task", "temperature", "fitted_on", "n"])


def by_task(table: pd.DataFrame | None) -> dict[str, float]:
    """Task -> temperature of a run's `calibration` rows (what its summary keeps; {} when not scaled)."""
    if table is None:
        return {}
    return {str(task): float(t) for task, t in zip(table["task"], table["temperature"], strict=True)}


def inherited(temperatures: dict[str, float] | None, run_id: str) -> dict[str, Fit]:
    """The fits an evaluation of `run_id` on another collection uses: the run's own (its summary's
    `temperatures`), so its probabilities mean what the run's do."""
    return {task: Fit(float(t), None, f"val of {run_id}") for task, t in (temperatures or {}).items()}
