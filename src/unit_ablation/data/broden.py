"""Broden-layout concept data sets (Network Dissection's broden1_224): the index, labels and masks.

`root/index.csv` has columns image, split, ih, iw, sh, sw followed by one column per category;
pixel-level cells list label PNGs (label = R + 256 * G, 0 = unlabelled), image-level cells list
label numbers; an empty cell means "not annotated". `root/label.csv` has number, name, category
(e.g. `object(12);part(3)`), ...

A concept is a label number with its primary category (the one listed with the largest count in
label.csv); only that category's annotations count for it."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

INDEX_COLUMNS = ("image", "split", "ih", "iw", "sh", "sw")


_CATEGORY_COUNT = re.compile(r"^\s*(?P<name>[^()]*?)\s*(?:\((?P<count>\d+)\))?\s*$")


# --- Broden reader ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BrodenRow:
    """One image of index.csv and its annotations (only annotated categories are keys)."""

    image: str  # relative to root/images
    split: str
    image_size: tuple[int, int]  # ih, iw
    label_size: tuple[int, int]  # sh, sw
    pixel_labels: dict[str, tuple[str, ...]] = field(default_factory=dict)  # category -> label PNGs
    image_labels: dict[str, tuple[int, ...]] = field(default_factory=dict)  # category -> label numbers

    @property
    def annotated(self) -> set[str]:
        """The categories annotated for this image."""
        return set(self.pixel_labels) | set(self.image_labels)


@dataclass(frozen=True)
class BrodenIndex:
    """A Broden data set: its images, categories and labels (label 0, '-', is left out)."""

    root: Path
    rows: list[BrodenRow]
    categories: tuple[str, ...]
    label_names: dict[int, str]
    label_categories: dict[int, str]  # label number -> primary category

    def image_path(self, relative: str) -> Path:
        return self.root / "images" / relative


@dataclass
class ImageConcepts:
    """One image's annotations at label resolution: integer label maps and whole-image labels."""

    size: tuple[int, int]  # sh, sw
    pixel_labels: dict[str, list[np.ndarray]] = field(default_factory=dict)  # category -> label maps
    image_labels: dict[str, tuple[int, ...]] = field(default_factory=dict)  # category -> label numbers

    @property
    def annotated(self) -> set[str]:
        return set(self.pixel_labels) | set(self.image_labels)

    def mask(self, category: str, label: int) -> np.ndarray:
        """Boolean sh x sw mask of `label` in `category` (all False if not annotated or absent)."""
        if label in self.image_labels.get(category, ()):
            return np.ones(self.size, dtype=bool)
        result = np.zeros(self.size, dtype=bool)
        for label_map in self.pixel_labels.get(category, []):
            result |= label_map == label
        return result


def primary_category(field_text: str) -> str:
    """The category with the largest count in a label.csv cell like `object(12);part(3)` ('' if none)."""
    best, best_count = "", -1
    for part in field_text.split(";"):
        match = _CATEGORY_COUNT.match(part)
        if match and match.group("name"):
            count = int(match.group("count") or 0)
            if count > best_count:
                best, best_count = match.group("name"), count
    return best


def _read_csv(path: Path, required: Sequence[str]) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        raise FileNotFoundError(f"Broden file not found: {path}")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        missing = [name for name in required if name not in columns]
        if missing:
            raise ValueError(f"{path}: missing columns {missing} (has {columns})")
        return columns, list(reader)


def _split_cell(cell: str | None) -> tuple[list[str], list[int]]:
    """`;`-separated entries: numbers are image-level labels, anything else a label file name."""
    files, numbers = [], []
    for entry in (cell or "").split(";"):
        entry = entry.strip()
        if entry.isdigit():
            numbers.append(int(entry))
        elif entry:
            files.append(entry)
    return files, numbers


def _parse_row(record: dict[str, str], categories: Sequence[str], where: str) -> BrodenRow:
    try:
        image_size = (int(record["ih"]), int(record["iw"]))
        label_size = (int(record["sh"]), int(record["sw"]))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: bad image or label size: {error}") from error
    if not record["image"]:
        raise ValueError(f"{where}: empty image name")
    pixel_labels, image_labels = {}, {}
    for category in categories:
        files, numbers = _split_cell(record.get(category))
        if files:
            pixel_labels[category] = tuple(files)
        if numbers:
            image_labels[category] = tuple(numbers)
    return BrodenRow(record["image"], record["split"], image_size, label_size, pixel_labels, image_labels)


def read_labels(path: Path) -> tuple[dict[int, str], dict[int, str]]:
    """label.csv as (number -> name, number -> primary category), without label 0."""
    _, records = _read_csv(path, ["number", "name", "category"])
    names, categories = {}, {}
    for line, record in enumerate(records, start=2):
        try:
            number = int(record["number"])
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path} line {line}: bad label number {record['number']!r}") from error
        if number > 0:
            names[number] = record["name"]
            categories[number] = primary_category(record["category"] or "")
    return names, categories


def read_broden(root: str | Path) -> BrodenIndex:
    """Read a Broden data set's index.csv and label.csv (category columns: those after `sw`)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Broden root folder not found: {root}")
    index_path = root / "index.csv"
    columns, records = _read_csv(index_path, INDEX_COLUMNS)
    categories = tuple(columns[columns.index("sw") + 1 :])
    rows = [
        _parse_row(record, categories, f"{index_path} line {line}")
        for line, record in enumerate(records, start=2)
    ]
    names, label_categories = read_labels(root / "label.csv")
    return BrodenIndex(root, rows, categories, names, label_categories)


def load_image(index: BrodenIndex, row: BrodenRow) -> np.ndarray:
    """The row's image as uint8 H x W x 3 (RGB)."""
    path = index.image_path(row.image)
    if not path.is_file():
        raise FileNotFoundError(f"Broden image not found: {path}")
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read Broden image {path}: {error}") from error


def decode_labels(pixels: np.ndarray) -> np.ndarray:
    """Label numbers of a Broden label image: R + 256 * G for colour images, the value for gray ones."""
    if pixels.ndim == 2:
        return pixels.astype(np.int64)
    return pixels[..., 0].astype(np.int64) + 256 * pixels[..., 1].astype(np.int64)


def load_label_map(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """An integer label map (0 = unlabelled) from a label PNG, checked against `size` (sh, sw)."""
    if not path.is_file():
        raise FileNotFoundError(f"Broden label image not found: {path}")
    try:
        with Image.open(path) as image:
            if image.mode in ("RGBA", "P", "LA"):
                image = image.convert("RGB")
            pixels = np.asarray(image)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read Broden label image {path}: {error}") from error
    labels = decode_labels(pixels)
    if size is not None and labels.shape != tuple(size):
        raise ValueError(f"Broden label image {path} is {labels.shape}, index.csv says {tuple(size)}")
    return labels


def load_concepts(index: BrodenIndex, row: BrodenRow) -> ImageConcepts:
    """The row's annotations: per pixel-level category its label maps, per image-level its labels."""
    pixel_labels = {
        category: [load_label_map(index.image_path(name), row.label_size) for name in names]
        for category, names in row.pixel_labels.items()
    }
    return ImageConcepts(row.label_size, pixel_labels, dict(row.image_labels))
