"""Stage `decode_images`: a config image set decoded once into the uint8 cache of one split."""

from __future__ import annotations

from pathlib import Path

from unit_ablation.data.image_decode import decode_to_cache
from unit_ablation.data.image_files import read_image_set
from unit_ablation.data.python_dataset import decode_python_dataset


def decode_images_to_folder(
    image_set: dict[str, str],
    output_dir: str | Path,
    resize: int,
    crop: int,
    workers: int = 1,
    key: str = "data.images",
) -> Path:
    """Read a config image set (`data.images.test` or `.heldout`, named by `key`) and decode it into a
    cache folder (`data.image_decode.decode_to_cache`); a `python:` set (`{python: PATH.py:CALLABLE}`)
    is decoded in this process (`data.python_dataset.decode_python_dataset`)."""
    if "python" in image_set:
        return decode_python_dataset(image_set["python"], f"{key}.python", output_dir, resize, crop)
    return decode_to_cache(read_image_set(image_set), output_dir, resize=resize, crop=crop, workers=workers)
