"""Synthetic Fashion-MNIST-shaped data: class-coded bars, and IDX files of them."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def synthetic_images(count: int, seed: int, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """uint8 28x28 images whose class shows as a bright bar at a class-specific row, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=count)
    images = rng.integers(0, 60, size=(count, 1, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        row = 2 + 2 * int(label)
        images[i, 0, row : row + 2, 4:24] = 230
    return images, labels.astype(np.int64)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzipped IDX file."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())
