"""Array helpers shared by the store and the evaluation, kept low so neither needs the other (no torch)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def float_lists(matrix: np.ndarray) -> pa.Array:
    """A (n, d) float matrix as an Arrow list column (one list per row) without Python loops."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    n, d = matrix.shape
    return pa.ListArray.from_arrays(pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32)), pa.array(matrix.ravel()))
