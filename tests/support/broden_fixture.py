"""A tiny Broden-layout concept data set, written by the tests (no download)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

# label number -> (name, label.csv category cell); 300 needs the G channel (300 = 44 + 256 * 1)
LABELS = {
    1: ("sky", "object(3)"),
    2: ("tree", "object(2);part(1)"),
    300: ("wall", "object(2)"),
    4: ("beach", "scene(2)"),
    5: ("kitchen", "scene(1)"),
    6: ("leg", "part(4);object(1)"),
}
IMAGE_SIZE, LABEL_SIZE = 16, 8


def encode_labels(labels: np.ndarray) -> np.ndarray:
    """Label numbers as a Broden RGB label image: R = n % 256, G = n // 256."""
    rgb = np.zeros((*labels.shape, 3), dtype=np.uint8)
    rgb[..., 0] = labels % 256
    rgb[..., 1] = labels // 256
    return rgb


def broden_label_maps() -> dict[str, np.ndarray]:
    """The object label maps the fixture writes, by file name."""
    maps = {}
    for i in range(6):
        labels = np.zeros((LABEL_SIZE, LABEL_SIZE), dtype=np.int64)
        labels[: 2 + i % 3] = 1  # sky at the top
        labels[-3:, : 3 + i % 2] = 300  # wall bottom left
        labels[4, 5 + i % 2 :] = 2  # a tree row
        maps[f"objects/{i}.png"] = labels
    extra = np.zeros((LABEL_SIZE, LABEL_SIZE), dtype=np.int64)
    extra[0, 0] = 2  # a second object map for image 4: overlaps sky
    maps["objects/4b.png"] = extra
    return maps


def write_broden(root: Path) -> Path:
    """A 6-image Broden-layout data set: object (pixel-level) and scene (image-level) categories.

    Image 2 has no object annotation, image 3 no scene annotation, image 4 two object maps.
    """
    (root / "images" / "objects").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        pixels = rng.integers(0, 256, size=(IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"img{i}.png")
    for name, labels in broden_label_maps().items():
        Image.fromarray(encode_labels(labels)).save(root / "images" / name)
    objects = {i: f"objects/{i}.png" for i in range(6)}
    objects[2] = ""
    objects[4] = "objects/4.png;objects/4b.png"
    scenes = {0: "4", 1: "5", 2: "4", 3: "", 4: "5;4", 5: "4"}
    with open(root / "index.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "split", "ih", "iw", "sh", "sw", "object", "scene"])
        for i in range(6):
            split = "train" if i < 4 else "val"
            writer.writerow(
                [f"img{i}.png", split, IMAGE_SIZE, IMAGE_SIZE, LABEL_SIZE, LABEL_SIZE, objects[i], scenes[i]]
            )
    with open(root / "label.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["number", "name", "category", "frequency", "coverage", "syns"])
        writer.writerow([0, "-", "", 0, 0, ""])
        for number, (name, category) in LABELS.items():
            writer.writerow([number, name, category, 1, 0.1, ""])
    return root
