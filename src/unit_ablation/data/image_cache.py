"""Decoded image caches, which every job memory-maps (no Pillow, no decoding):

output_dir/images.u8    raw uint8, N x 3 x crop x crop, C order (np.memmap)
output_dir/labels.npy   int64, N
output_dir/sources.txt  the source files, one per line, relative to their common folder
output_dir/meta.json    count, shape, resize, crop, class names, checksum, format version
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from unit_ablation.data.dataset import Dataset
from unit_ablation.files.safe_load import CorruptFileError, load_npy
from unit_ablation.files.writing import atomic_path

CACHE_FORMAT_VERSION = 1


IMAGES_FILE, LABELS_FILE, META_FILE, SOURCES_FILE = "images.u8", "labels.npy", "meta.json", "sources.txt"


CHANNELS = 3


def read_cache_meta(output_dir: str | Path) -> dict:
    """The cache's meta.json, checked for the fields and format version this module writes."""
    path = Path(output_dir) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CorruptFileError(f"cannot read image cache metadata {path}: {error}") from error
    needed = ("format_version", "count", "shape", "resize", "crop", "class_names", "checksum")
    missing = [key for key in needed if not isinstance(meta, dict) or key not in meta]
    if missing:
        raise CorruptFileError(f"image cache metadata {path} lacks {', '.join(missing)}")
    if meta["format_version"] != CACHE_FORMAT_VERSION:
        raise CorruptFileError(
            f"image cache {path} has format version {meta['format_version']}, "
            f"this code reads {CACHE_FORMAT_VERSION}: decode the images again"
        )
    expected_shape = [meta["count"], CHANNELS, meta["crop"], meta["crop"]]
    if list(meta["shape"]) != expected_shape:
        raise CorruptFileError(f"image cache metadata {path}: shape {meta['shape']} != {expected_shape}")
    return meta


def load_image_cache(output_dir: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Memory-map a cache written by `decode_to_cache`: images (read-only), labels, class names."""
    output_dir = Path(output_dir)
    meta = read_cache_meta(output_dir)
    count, crop = int(meta["count"]), int(meta["crop"])
    names = tuple(str(name) for name in meta["class_names"])
    images_path, labels_path = output_dir / IMAGES_FILE, output_dir / LABELS_FILE
    expected = count * CHANNELS * crop * crop
    try:
        size = images_path.stat().st_size
    except OSError as error:
        raise CorruptFileError(f"image cache file {images_path} is missing: {error}") from error
    if size != expected:
        raise CorruptFileError(
            f"image cache file {images_path} holds {size} bytes, meta.json says {count} x {CHANNELS} x "
            f"{crop} x {crop} = {expected} (truncated or from another decode?)"
        )
    labels = load_npy(labels_path, "image cache labels")  # CorruptFileError naming the file
    if labels.shape != (count,) or labels.dtype != np.int64:
        raise CorruptFileError(
            f"image cache labels {labels_path}: {labels.dtype} {labels.shape}, not int64 ({count},): "
            "the labels do not match the images"
        )
    sources_path = output_dir / SOURCES_FILE
    if sources_path.is_file():
        with open(sources_path, encoding="utf-8") as handle:
            listed = sum(1 for line in handle if line.strip())
        if listed != count:
            raise CorruptFileError(
                f"image cache file {sources_path} lists {listed} images, meta.json says {count}"
                " (truncated or from another decode?)"
            )
    if count and (labels.min() < 0 or labels.max() >= len(names)):
        raise CorruptFileError(f"image cache labels {labels_path} lie outside 0..{len(names) - 1}")
    images = np.memmap(images_path, dtype=np.uint8, mode="r", shape=(count, CHANNELS, crop, crop))
    return images, labels, names


def image_dataset(splits: dict[str, str | Path]) -> Dataset:
    """A `Dataset` whose splits are memory-mapped image caches, e.g. {"test": a, "heldout": b}.

    All caches must share the class names. The checksum combines the caches' checksums.
    """
    if not splits:
        raise ValueError("image_dataset needs at least one split")
    images: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    names: tuple[str, ...] | None = None
    first = ""
    digest = hashlib.sha256()
    for split in sorted(splits):
        folder = Path(splits[split])
        images[split], labels[split], split_names = load_image_cache(folder)
        if names is None:
            names, first = split_names, f"{split} ({folder})"
        elif split_names != names:
            raise ValueError(
                f"split {split} ({folder}) has {len(split_names)} classes that differ from "
                f"split {first}'s {len(names)}: all splits must share the class names"
            )
        digest.update(f"{split}\t{read_cache_meta(folder)['checksum']}\n".encode())
    assert names is not None
    return Dataset(
        images={split: images[split] for split in splits},
        labels={split: labels[split] for split in splits},
        class_names=names,
        checksum=digest.hexdigest(),
    )


def write_dataset_index(splits: dict[str, str | Path], output: str | Path) -> None:
    """A JSON file naming each split's cache folder, relative to the file: what `load_dataset` reads."""
    output = Path(output)
    for folder in splits.values():
        load_image_cache(folder)  # a split that does not load fails here, not in every later job
    relative = {split: os.path.relpath(folder, output.parent) for split, folder in splits.items()}
    with atomic_path(output) as tmp:
        Path(tmp).write_text(json.dumps({"splits": relative}, indent=2, sort_keys=True) + "\n")


def load_dataset_index(path: str | Path) -> Dataset:
    """The data set a `write_dataset_index` file describes."""
    path = Path(path)
    try:
        splits = json.loads(path.read_text())["splits"]
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"cannot read the image data set index {path}: {error}") from error
    return image_dataset({split: path.parent / folder for split, folder in splits.items()})
