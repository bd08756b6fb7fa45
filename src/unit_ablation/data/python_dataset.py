"""Image sets from the user's own code (`data.images.<split>: {python: PATH.py:CALLABLE}`), decoded
once into the same uint8 cache as image folders (`data.image_cache`).

`CALLABLE()` (no arguments) returns a torch-style data set, indexable with a length, of
(image, label) pairs, and its class names: either as a `classes` attribute (like torchvision's
data sets) or as a pair `(dataset, class_names)`. Images are PIL images or uint8 arrays or tensors
(C x H x W or H x W x C, 1 or 3 channels), all of one size and deterministic: they are decoded
like image files (RGB, `Resize(resize)`, `CenterCrop(crop)`). Importing the file runs its code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from unit_ablation.data.image_cache import (
    CACHE_FORMAT_VERSION,
    CHANNELS,
    IMAGES_FILE,
    LABELS_FILE,
    SOURCES_FILE,
)
from unit_ablation.data.image_decode import _allocate, preprocess, publish_cache
from unit_ablation.models.python_files import python_callable
from unit_ablation.runtime.progress import Progress
from unit_ablation.spec.arch_spec import parse_python_ref

log = logging.getLogger(__name__)


def load_python_dataset(reference: str, key: str) -> tuple[Any, tuple[str, ...]]:
    """Call the function `reference` (PATH.py:CALLABLE) names: the data set and its class names;
    TypeError or ValueError naming `key` (the config key) and the file."""
    path, name = parse_python_ref(reference, key)
    made = python_callable(path, name, key)()
    if isinstance(made, tuple) and len(made) == 2:
        dataset, names = made
    else:
        dataset, names = made, getattr(made, "classes", None)
    if names is None:
        raise TypeError(
            f"{key}: {path}:{name}() returned a {type(made).__name__} without class names"
            " (accepted: a data set with a `classes` attribute, or a pair (dataset, class_names))"
        )
    names = tuple(str(item) for item in names)
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(
            f"{key}: {path}:{name}: class names {list(names)[:8]} are not 2 or more distinct names"
        )
    if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise TypeError(
            f"{key}: {path}:{name}() returned a {type(dataset).__name__}, not an indexable data set"
        )
    if len(dataset) == 0:
        raise ValueError(f"{key}: {path}:{name}() returned an empty data set")
    return dataset, names


def as_pil(image: Any, where: str) -> Image.Image:
    """A data set item's image as a PIL image: PIL as it is, uint8 arrays or tensors of shape
    C x H x W or H x W x C (1 or 3 channels) or H x W; TypeError naming `where` otherwise."""
    if isinstance(image, Image.Image):
        return image
    if type(image).__module__.startswith("torch"):
        image = image.detach().cpu().numpy() if hasattr(image, "detach") else image
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"{where}: the image is a {type(image).__name__} (accepted: a PIL image or uint8 tensor)"
        )
    if image.dtype != np.uint8:
        raise TypeError(f"{where}: the image is {image.dtype} (accepted: uint8 pixels, 0-255)")
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
        image = image.transpose(1, 2, 0)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
        raise TypeError(
            f"{where}: image shape {image.shape} (accepted: C x H x W or H x W x C, 1 or 3 channels)"
        )
    return Image.fromarray(np.ascontiguousarray(image))


def _label(value: Any, classes: int, where: str) -> int:
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: the label is a {type(value).__name__} (accepted: a class index)")
    if not 0 <= int(value) < classes:
        raise ValueError(f"{where}: label {int(value)} is outside 0..{classes - 1} ({classes} class names)")
    return int(value)


def decoded_item(dataset: Any, index: int, classes: int, resize: int, crop: int, where: str) -> tuple:
    """(uint8 3 x crop x crop pixels, label, the source image's (width, height)) of item `index`."""
    item = dataset[index]
    if not isinstance(item, Sequence) or len(item) != 2:
        raise TypeError(f"{where}: the item is a {type(item).__name__} (accepted: a pair (image, label))")
    image = as_pil(item[0], where)
    return preprocess(image, resize, crop), _label(item[1], classes, where), image.size


def decode_python_dataset(reference: str, key: str, output_dir: str | Path, resize: int, crop: int) -> Path:
    """Decode every item of the `python:` image set into an image cache folder (the folder appears
    only when every item decoded). ValueError or TypeError naming the key, the file and the item
    for a wrong type, mixed sizes, a label out of range or items that change when read again."""
    output_dir = Path(output_dir)
    dataset, names = load_python_dataset(reference, key)
    count = len(dataset)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", suffix=".tmp", dir=output_dir.parent))
    try:
        target = tmp / IMAGES_FILE
        _allocate(target, count * CHANNELS * crop * crop)
        out = np.memmap(target, dtype=np.uint8, mode="r+", shape=(count, CHANNELS, crop, crop))
        labels = np.zeros(count, dtype=np.int64)
        progress = Progress(log, "decode", count, "images")
        log.info(
            "decoding %d images of %s (%s; resize %d, crop %d) into %s",
            count,
            key,
            reference,
            resize,
            crop,
            output_dir,
        )
        size = None
        for index in range(count):
            where = f"{key} ({reference}) item {index}"
            out[index], labels[index], found = decoded_item(dataset, index, len(names), resize, crop, where)
            if size is None:
                size = found
            elif found != size:
                raise ValueError(
                    f"{where}: {found[0]} x {found[1]} pixels, item 0 has {size[0]} x {size[1]}"
                    " (items must be of one size)"
                )
            progress.update(1)
        again = decoded_item(dataset, 0, len(names), resize, crop, f"{key} ({reference}) item 0")
        if not np.array_equal(again[0], out[0]) or again[1] != labels[0]:
            raise ValueError(
                f"{key} ({reference}): item 0 differs when read again"
                " (items must be deterministic: no random augmentation)"
            )
        out.flush()
        digest = hashlib.sha256()
        header = {"format_version": CACHE_FORMAT_VERSION, "resize": resize, "crop": crop, "source": reference}
        digest.update(json.dumps(header, sort_keys=True).encode())
        digest.update(json.dumps(list(names)).encode())
        digest.update(labels.tobytes())
        digest.update(np.asarray(out).tobytes())
        del out
        np.save(tmp / LABELS_FILE, labels)
        (tmp / SOURCES_FILE).write_text(
            "".join(f"{reference}[{i}]\n" for i in range(count)), encoding="utf-8"
        )
        publish_cache(tmp, output_dir, count, crop, resize, names, digest.hexdigest(), reference)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote image cache %s (%d images of %s)", output_dir, count, reference)
    return output_dir
