"""`python:` image sets: decoded into the same uint8 cache as image folders, faults named."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from unit_ablation.data.image_cache import META_FILE, load_image_cache
from unit_ablation.data.image_decode import decode_to_cache
from unit_ablation.data.image_files import read_image_folder
from unit_ablation.data.python_dataset import decode_python_dataset

SETS = """\
import numpy as np
import torch
from PIL import Image

rng = np.random.default_rng(0)
PIXELS = rng.integers(0, 256, size=(6, 40, 48, 3), dtype=np.uint8)
LABELS = [0, 1, 2, 0, 1, 2]
NAMES = ["cat", "dog", "fox"]


class Tensors:
    classes = NAMES

    def __init__(self, layout):
        self.layout = layout

    def __len__(self):
        return len(PIXELS)

    def __getitem__(self, index):
        pixels = torch.from_numpy(PIXELS[index])
        image = pixels.permute(2, 0, 1) if self.layout == "chw" else pixels
        return image, torch.tensor(LABELS[index])


class Pil:
    def __len__(self):
        return len(PIXELS)

    def __getitem__(self, index):
        return Image.fromarray(PIXELS[index]), LABELS[index]


def chw():
    return Tensors("chw")


def hwc():
    return Tensors("hwc")


def pil_pair():
    return Pil(), NAMES


def gray():
    return [(PIXELS[i, :, :, 0], LABELS[i]) for i in range(6)], NAMES


def no_names():
    return Pil()


def floats():
    return [(PIXELS[0].astype("float32"), 0)] * 2, NAMES


def mixed_sizes():
    return [(PIXELS[0], 0), (PIXELS[1, :30], 1)], NAMES


def label_out_of_range():
    return [(PIXELS[0], 0), (PIXELS[1], 3)], NAMES


def random_augmentation():
    class Noisy:
        def __len__(self):
            return 2

        def __getitem__(self, index):
            return np.random.default_rng().integers(0, 256, (8, 8, 3), dtype=np.uint8), 0

    return Noisy(), NAMES


def bare_images():
    return [PIXELS[0], PIXELS[1]], NAMES
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "sets.py").write_text(SETS)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def folder_cache(workdir):
    """The same six images as PNG files in an ImageFolder, decoded by the image-file path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("sets_for_folder", workdir / "sets.py")
    sets = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sets)
    for index, (pixels, label) in enumerate(zip(sets.PIXELS, sets.LABELS, strict=True)):
        folder = workdir / "folder" / sets.NAMES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    return decode_to_cache(
        read_image_folder(workdir / "folder"), workdir / "folder-cache", resize=36, crop=32
    )


@pytest.mark.parametrize("callable_name", ["chw", "hwc", "pil_pair"])
def test_items_decode_into_the_image_folder_cache_format_with_the_same_pixels(
    workdir, folder_cache, callable_name
):
    out = decode_python_dataset(f"sets.py:{callable_name}", "data.images.test.python", workdir / "c", 36, 32)
    images, labels, names = load_image_cache(out)
    assert images.shape == (6, 3, 32, 32) and names == ("cat", "dog", "fox")
    assert labels.tolist() == [0, 1, 2, 0, 1, 2]
    folder_images, folder_labels, _ = load_image_cache(folder_cache)
    order = np.argsort([0, 3, 1, 4, 2, 5])  # the folder lists cat/0, cat/3, dog/1, ...
    assert np.array_equal(images, np.asarray(folder_images)[order])  # Resize and CenterCrop alike
    meta = json.loads((out / META_FILE).read_text())
    folder_meta = json.loads((folder_cache / META_FILE).read_text())
    assert set(meta) == set(folder_meta) and meta["source_root"] == f"sets.py:{callable_name}"
    again = decode_python_dataset(f"sets.py:{callable_name}", "key", workdir / "c", 36, 32)
    assert json.loads((again / META_FILE).read_text())["checksum"] == meta["checksum"]


def test_gray_images_become_rgb(workdir):
    images, _, _ = load_image_cache(decode_python_dataset("sets.py:gray", "k", workdir / "c", 40, 40))
    assert np.array_equal(images[:, 0], images[:, 1]) and np.array_equal(images[:, 1], images[:, 2])


@pytest.mark.parametrize(
    ("callable_name", "error", "message"),
    [
        ("no_names", TypeError, "without class names .*a `classes` attribute, or a pair"),
        ("floats", TypeError, r"item 0: the image is float32 \(accepted: uint8 pixels"),
        ("mixed_sizes", ValueError, "item 1: 48 x 30 pixels, item 0 has 48 x 40 .*one size"),
        ("label_out_of_range", ValueError, r"item 1: label 3 is outside 0..2"),
        ("random_augmentation", ValueError, "item 0 differs when read again .*deterministic"),
        ("bare_images", TypeError, r"item 0: the item is a ndarray \(accepted: a pair \(image, label\)\)"),
        ("missing", AttributeError, "'missing' is not defined in sets.py"),
    ],
)
def test_faults_name_the_key_the_file_and_the_item(workdir, callable_name, error, message):
    with pytest.raises(error, match=message) as raised:
        decode_python_dataset(f"sets.py:{callable_name}", "data.images.heldout.python", workdir / "c", 40, 40)
    assert "data.images.heldout.python" in str(raised.value)
    assert not (workdir / "c").exists()  # nothing is left behind
