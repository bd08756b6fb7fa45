"""A fixed, class-stratified split of the evaluation images into two halves (torch-free).

The ablation counts are kept per half as well as in total, so that damage measures can be
checked for split-half reliability, and a selection made on one half can be evaluated on the
other, without rerunning the ablation.
"""

from __future__ import annotations

import numpy as np

HALVES = 2


def evaluation_halves(labels: np.ndarray) -> np.ndarray:
    """Half (0 or 1) of every image: within each class, the j-th image of the class (in the
    split's order) goes to half j % 2. Deterministic, stratified, and the halves of the first m
    images are the first m of the halves of all images (so a resumed job sees the same halves)."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, not of shape {labels.shape}")
    halves = np.zeros(len(labels), dtype=np.int64)
    if len(labels) == 0:
        return halves
    order = np.argsort(labels, kind="stable")  # each class's images together, in their order
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    sizes = np.diff(np.r_[starts, len(labels)])
    rank = np.arange(len(labels)) - np.repeat(starts, sizes)  # position within its class
    halves[order] = rank % HALVES
    return halves


class StreamHalves:
    """`evaluation_halves` for images that arrive in batches: the same half for every image.

    Example:
        >>> halves = StreamHalves(3)
        >>> halves.assign(np.array([0, 0, 1])).tolist(), halves.assign(np.array([0, 1])).tolist()
        ([0, 1, 0], [0, 1])
    """

    def __init__(self, num_classes: int, seen: np.ndarray | None = None) -> None:
        # images of each class seen so far (`seen`: the counts of the images before the first batch)
        self.seen = np.zeros(num_classes, np.int64) if seen is None else np.asarray(seen, np.int64).copy()

    def assign(self, labels: np.ndarray) -> np.ndarray:
        """Half of every image of the next batch (labels in 0 .. num_classes - 1)."""
        labels = np.asarray(labels)
        order = np.argsort(labels, kind="stable")
        sorted_labels = labels[order]
        starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]]) if len(labels) else []
        sizes = np.diff(np.r_[starts, len(labels)])
        rank = np.arange(len(labels)) - np.repeat(starts, sizes)  # position within its class in the batch
        halves = np.empty(len(labels), np.int64)
        halves[order] = (self.seen[sorted_labels] + rank) % HALVES
        self.seen += np.bincount(labels, minlength=len(self.seen))
        return halves
