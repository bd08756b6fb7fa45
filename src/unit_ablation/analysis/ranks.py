"""Average ranks of resampled values, without sorting every resample."""

from __future__ import annotations

import numpy as np
from scipy import stats


def resampled_ranks(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """`scipy.stats.rankdata(values[index], axis=1)` (average ranks of ties), bit for bit.

    `values`: N; `index`: R x M positions into it (a bootstrap draws them with replacement).
    Sorts `values` once: in a resample, a value's average rank is the count of drawn values
    below it plus (its own count + 1) / 2, all small integers and halves, so exact in float64.
    Values that are not finite take scipy's path (NaN propagates to its row).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or index.ndim != 2:
        raise ValueError(f"values must be 1-D and index 2-D, got {values.shape} and {index.shape}")
    if not np.isfinite(values).all():
        return stats.rankdata(values[index], axis=1)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    new_group = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    group = np.empty(len(values), dtype=np.int64)
    group[order] = np.cumsum(new_group) - 1  # tied values share a group, in ascending order
    groups = int(new_group.sum())
    picked = group[index]
    rows = np.arange(len(index))[:, None] * groups
    counts = np.bincount((rows + picked).ravel(), minlength=len(index) * groups).reshape(-1, groups)
    below = np.cumsum(counts, axis=1) - counts
    return np.take_along_axis(below + (counts + 1) / 2, picked, axis=1)
