"""95 % intervals for the metrics the store keeps, and the paired difference between two runs in words.

Why: at a few hundred test images an accuracy near 0.72 is uncertain by about ±6.5 points, so a single value
invites conclusions the data cannot support. Proportions get Wilson's interval (closed form, good at small n and
near 0 or 1); everything else (balanced accuracy, F1, adjacent-error share) gets a seeded percentile bootstrap over
images. numpy only: no torch, no sklearn per resample.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np

LEVEL = 0.95
Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile
_CELLS_PER_CHUNK = 4_000_000  # resample indices held at once (chunks × images): ~32 MB of int64


def wilson(k: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (NaNs when n is 0)."""
    if not n or n <= 0 or k is None or (isinstance(k, float) and math.isnan(k)):
        return float("nan"), float("nan")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def resample_chunks(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Seeded bootstrap index matrices (rows = resamples), in chunks so memory stays bounded at any n."""
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CELLS_PER_CHUNK // max(n, 1))
    done = 0
    while done < n_boot:
        rows = min(per_chunk, n_boot - done)
        yield rng.integers(0, n, size=(rows, n))
        done += rows


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval along axis 0, ignoring resamples where the statistic is undefined (NaN)."""
    tail = (1 - level) / 2 * 100
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, which is what we want
            return np.nanpercentile(samples, tail, axis=0), np.nanpercentile(samples, 100 - tail, axis=0)


def bootstrap_interval(
    statistic: Callable[..., np.ndarray], *arrays: np.ndarray, n_boot: int = 1000, seed: int = 0,
    level: float = LEVEL,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap over images: `statistic` takes each array resampled to shape (resamples, n, ...)
    and returns one value per resample (shape (resamples,) or (resamples, k)). Returns (low, high)."""
    n = len(arrays[0])
    if n == 0:
        return np.asarray(np.nan), np.asarray(np.nan)
    parts = [np.asarray(statistic(*(a[idx] for a in arrays))) for idx in resample_chunks(n, n_boot, seed)]
    return percentile_interval(np.concatenate(parts, axis=0), level)


def resampled_confusions(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, n_boot: int = 1000,
                         seed: int = 0) -> np.ndarray:
    """(n_boot, C, C) confusion matrices of bootstrap resamples, one np.bincount per chunk (no Python loop per
    resample: 1000 resamples of 7,000 images take a fraction of a second)."""
    codes = (np.asarray(y_true, np.int64) * n_classes + np.asarray(y_pred, np.int64))
    cells = n_classes * n_classes
    out = []
    for idx in resample_chunks(len(codes), n_boot, seed):
        rows = len(idx)
        flat = (codes[idx] + (np.arange(rows, dtype=np.int64) * cells)[:, None]).ravel()
        out.append(np.bincount(flat, minlength=rows * cells).reshape(rows, n_classes, n_classes))
    return np.concatenate(out, axis=0)


def confusion_statistics(cms: np.ndarray, chronological: bool) -> dict[str, np.ndarray]:
    """Metrics of each confusion matrix in a (B, C, C) stack, as sklearn defines them (zero_division=0 for F1;
    balanced accuracy averages recall over classes present in the truth)."""
    tp = np.diagonal(cms, axis1=1, axis2=2).astype(np.float64)
    truth = cms.sum(2).astype(np.float64)
    predicted = cms.sum(1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(truth + predicted > 0, 2 * tp / (truth + predicted), 0.0)
        recall = np.where(truth > 0, tp / truth, np.nan)
        present = (truth > 0).sum(1)
        balanced = np.where(present > 0, np.nansum(recall, 1) / np.maximum(present, 1), np.nan)
        stats = {"balanced_accuracy": balanced, "macro_f1": f1.mean(1), "f1": f1}
        if chronological:
            c = cms.shape[1]
            gap = np.abs(np.arange(c)[:, None] - np.arange(c)[None, :])
            wrong = (cms * (gap > 0)).sum((1, 2))
            adjacent = (cms * (gap == 1)).sum((1, 2))
            stats["adjacent_error_share"] = np.where(wrong > 0, adjacent / np.maximum(wrong, 1), np.nan)
    return stats


def paired_bootstrap_difference(a_correct: np.ndarray, b_correct: np.ndarray, n_boot: int = 2000, seed: int = 0,
                                level: float = LEVEL) -> tuple[float, float, float]:
    """Accuracy of B minus accuracy of A on the same images (aligned arrays of 0/1), with a paired percentile
    bootstrap interval: each resample draws images, so both runs see the same draw. Returns (diff, low, high)."""
    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    if len(a) != len(b):
        raise ValueError(f"paired runs need the same images: {len(a)} vs {len(b)}")
    return paired_difference_from_counts(int((a & ~b).sum()), int((b & ~a).sum()), len(a), n_boot, seed, level)


def paired_difference_from_counts(a_only: int, b_only: int, n: int, n_boot: int = 2000, seed: int = 0,
                                  level: float = LEVEL) -> tuple[float, float, float]:
    """The paired bootstrap from McNemar's table alone: an image's B − A is +1 (only B right), −1 (only A right)
    or 0, so resampling n images is one multinomial draw of those three counts. The same distribution as
    resampling indices, at any n in microseconds (the Compare page runs it on each view)."""
    if n <= 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, [a_only / n, b_only / n, (n - a_only - b_only) / n], size=n_boot)
    low, high = percentile_interval((draws[:, 1] - draws[:, 0]) / n, level)
    return (b_only - a_only) / n, float(low), float(high)


def difference_words(diff: float, low: float, high: float, a: str = "A", b: str = "B", unit: str = "points") -> str:
    """'B is 2.1 points better, 95 % interval of the difference −0.4 to 4.6 points: not distinguishable'
    (diff/low/high as fractions; 'distinguishable' only when the interval excludes 0)."""
    if any(math.isnan(v) for v in (diff, low, high)):
        return f"{b} and {a} share no labelled images: no difference can be measured"

    def pts(v: float) -> str:
        return f"{v * 100:.1f}".replace("-", "−")

    if round(diff * 100, 1) == 0:
        head = f"{b} and {a} score the same"
    else:
        head = f"{b} is {abs(diff) * 100:.1f} {unit} {'better' if diff > 0 else 'worse'}"
    verdict = "distinguishable" if low > 0 or high < 0 else "not distinguishable"
    return f"{head}, 95 % interval of the difference {pts(low)} to {pts(high)} {unit}: {verdict}"
