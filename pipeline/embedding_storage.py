"""How the store keeps a run's embedding vectors: rounded to a few significant digits at the run's scale.

Embeddings are most of a store. Rounded values are short decimals, which DuckDB's ALP compression packs into
far fewer bits than float32 noise, so the column keeps its type (FLOAT[]) and every reader works unchanged:
the Inspector's and Embedding page's cosine neighbours in SQL, ensembles concatenating members' vectors, SQL
console users. PCA-reduced vectors would save more but lose neighbours (recall@10 under 0.92 even at 512 of
1280 dims on real features); float16 needs a BLOB that SQL cannot read. BENCHMARKS.md, "Store size and the
2-D map at 33,600 images", has the recall and size of each.
"""

from __future__ import annotations

import numpy as np

SIGNIFICANT = 4  # digits kept at the run's scale: a step of 0.01-0.1 % of its largest value (3 digits: recall < 0.99)


def decimals(vectors: np.ndarray, significant: int = SIGNIFICANT) -> int:
    """Decimal places that keep `significant` digits of the largest absolute value (0 for an all-zero array)."""
    finite = np.abs(vectors[np.isfinite(vectors)])
    scale = float(finite.max()) if finite.size else 0.0
    if scale == 0.0:
        return 0
    return significant - int(np.ceil(np.log10(scale)))


def stored(vectors: np.ndarray, significant: int = SIGNIFICANT) -> np.ndarray:
    """The float32 vectors the store keeps: `vectors` rounded to `decimals` places (NaN and inf as they are)."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.size == 0:
        return v
    return np.round(v, decimals(v, significant)).astype(np.float32)
