"""The data set every stage reads: uint8 image splits, labels and class names."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """Images (uint8, N x C x H x W) and labels per split, plus class names."""

    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    class_names: tuple[str, ...]
    checksum: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 images to float32 in [0, 1]."""
    return images.astype(np.float32) / 255.0
