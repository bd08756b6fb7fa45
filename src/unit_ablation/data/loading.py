"""Load a prepared data set: the Fashion-MNIST cache (.npz) or an image-cache index (.json)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unit_ablation.data.dataset import Dataset
from unit_ablation.data.fashion_mnist import SPLITS
from unit_ablation.files.safe_load import CorruptFileError, check_shapes, load_npz


def load_dataset(path: str | Path) -> Dataset:
    """Load the cached splits written by `prepare_fashion_mnist`, or (a .json index) the image
    caches written by `unit_ablation.data.image_decode`."""
    if str(path).endswith(".json"):
        from unit_ablation.data.image_cache import load_dataset_index

        return load_dataset_index(path)
    keys = [f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels")]
    arrays = load_npz(path, [*keys, "class_names", "checksum"], what="prepared dataset")
    shapes: dict[str, tuple[str, ...]] = {"class_names": ("classes",), "checksum": ()}
    for split in SPLITS:
        shapes[f"{split}_images"] = (split, "channels", "height", "width")
        shapes[f"{split}_labels"] = (split,)
    sizes = check_shapes(path, arrays, shapes, "prepared dataset")
    for split in SPLITS:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.dtype != np.uint8 or labels.dtype.kind not in "iu":
            raise CorruptFileError(
                f"{path}: prepared dataset split {split} has {images.dtype} images and {labels.dtype} labels,"
                " not uint8 and integers"
            )
        if len(labels) and not 0 <= labels.min() <= labels.max() < sizes["classes"]:
            raise CorruptFileError(
                f"{path}: prepared dataset split {split} has labels outside 0..{sizes['classes'] - 1}"
            )
    images = {split: arrays[f"{split}_images"] for split in SPLITS}
    labels = {split: arrays[f"{split}_labels"] for split in SPLITS}
    names = tuple(str(name) for name in arrays["class_names"])
    return Dataset(images=images, labels=labels, class_names=names, checksum=str(arrays["checksum"]))


def load_class_names(path: str | Path) -> tuple[str, ...]:
    """The class names of a prepared data set, without loading its images."""
    if str(path).endswith(".json"):
        return load_dataset(path).class_names  # image caches are memory-mapped: nothing is read
    names = load_npz(path, ["class_names"], what="prepared dataset")["class_names"]
    check_shapes(path, {"class_names": names}, {"class_names": ("classes",)}, "prepared dataset")
    return tuple(str(name) for name in names)
