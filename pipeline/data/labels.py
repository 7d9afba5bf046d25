"""Labels as class indices: what a run trains and is scored against, per image and task."""

from __future__ import annotations

import numpy as np
import pandas as pd

IGNORE = -100  # target of an image without a label for that task (e.g. unknown artist); cross-entropy skips it


def label_targets(images: pd.DataFrame, labels: dict[str, list[str]]) -> np.ndarray:
    """Class index per image and task; IGNORE where an image has no (known) label for the task."""
    columns = []
    for task, names in labels.items():
        codes = pd.Categorical(images[task], categories=names).codes.astype(np.int64)
        columns.append(np.where(codes < 0, IGNORE, codes))
    return np.stack(columns, axis=1)
