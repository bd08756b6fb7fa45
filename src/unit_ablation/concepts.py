"""Network Dissection's unit-concept IoU (Bau et al. 2017) on a Broden-layout concept data set.

Each unit u is thresholded at T_u, its top `quantile` activation level over all images and
positions (P(a > T_u) = quantile, on the layer's own resolution). Its activation map is upsampled
bilinearly to the label resolution and thresholded, giving M_u; for every concept c with mask L_c,
IoU = sum_images |M_u & L_c| / sum_images |M_u | L_c|, summing only over the images where c's
category is annotated. A unit's concept is the one with the largest IoU; it is a detector when
that IoU exceeds `detector_iou` (0.04).

Broden layout (NetDissect's broden1_224): `root/index.csv` with columns image, split, ih, iw, sh,
sw followed by one column per category; pixel-level cells list label PNGs (label = R + 256 * G,
0 = unlabelled), image-level cells list label numbers; an empty cell means "not annotated".
`root/label.csv` has number, name, category (e.g. `object(12);part(3)`), ...

A concept is a label number with its primary category (the one listed with the largest count in
label.csv); only that category's annotations count for it.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from unit_ablation.basis import basis_matrix, to_basis
from unit_ablation.graph_split import run_trunk, split_model
from unit_ablation.io import write_tsv
from unit_ablation.layers import LayerSpec, parse_layer_spec
from unit_ablation.models import FashionAlexNet, load_model
from unit_ablation.progress import Progress

log = logging.getLogger(__name__)

INDEX_COLUMNS = ("image", "split", "ih", "iw", "sh", "sw")
FASHION_INPUT_SIZE = 28  # FashionAlexNet's fc6 expects 3x3 after three 2x2 pools
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601
UNIT_COLUMNS = ["unit", "concept", "category", "iou", "detector"]
PAIR_COLUMNS = ["unit", "concept", "category", "iou"]
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


# --- model input -----------------------------------------------------------------------------


def prepare_images(images: Sequence[np.ndarray], channels: int = 1, size: int = 28) -> torch.Tensor:
    """uint8 H x W x 3 images to a float N x channels x size x size batch in [0, 1].

    Resized bilinearly with antialiasing; channels == 1 takes the ITU-R 601 luma.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    batch = []
    for image in images:
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an H x W x 3 image, got shape {image.shape}")
        x = torch.tensor(image, dtype=torch.uint8).permute(2, 0, 1).float().div(255.0)
        if channels == 1:
            x = torch.tensordot(torch.tensor(LUMA), x, dims=1).unsqueeze(0)
        x = F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        batch.append(x[0])
    return torch.stack(batch).clamp_(0.0, 1.0)


def model_input_shape(model: nn.Module) -> tuple[int, int]:
    """(channels, size) of the images a model reads: FashionAlexNet reads 28 x 28, config's in_channels."""
    if isinstance(model, FashionAlexNet):
        return int(model.config.get("in_channels", 1)), FASHION_INPUT_SIZE
    raise ValueError(f"unknown input size for {type(model).__name__}; pass channels and size explicitly")


# --- IoU core --------------------------------------------------------------------------------


def _floor_float32(values: np.ndarray) -> np.ndarray:
    """The largest float32 <= each value, so `x > result` equals `x > value` for float32 x."""
    rounded = values.astype(np.float32)
    too_big = rounded.astype(np.float64) > values
    rounded[too_big] = np.nextafter(rounded[too_big], np.float32(-np.inf))
    return rounded


def activation_thresholds(activations: torch.Tensor | np.ndarray, quantile: float = 0.005) -> np.ndarray:
    """Per unit the level T with P(a > T) = quantile over all images and positions (N x U x h x w).

    Linear-interpolated quantile (numpy's default), rounded down to float32 so comparisons with
    float32 activations are exact.
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must lie in (0, 1), got {quantile}")
    array = activations.numpy() if isinstance(activations, torch.Tensor) else np.asarray(activations)
    if array.ndim != 4 or array.shape[0] == 0:
        raise ValueError(f"expected non-empty N x U x h x w activations, got shape {array.shape}")
    levels = [
        np.quantile(array[:, unit].astype(np.float64).ravel(), 1.0 - quantile)
        for unit in range(array.shape[1])
    ]
    return _floor_float32(np.array(levels, dtype=np.float64))


class IoUAccumulator:
    """Sums, per unit and concept, |M_u & L_c| and the parts of |M_u | L_c| over images.

    `labels[j]` and `categories[j]` name concept j: a label number and the category whose
    annotations count for it. union = (unit area in images annotated for the category)
    + (concept area) - intersection.
    """

    def __init__(
        self, thresholds: np.ndarray | torch.Tensor, labels: Sequence[int], categories: Sequence[str]
    ) -> None:
        if len(labels) != len(categories):
            raise ValueError("labels and categories must have the same length")
        self.thresholds = torch.from_numpy(_floor_float32(np.asarray(thresholds, dtype=np.float64)))
        units, concepts = len(self.thresholds), len(labels)
        self.category_names = sorted(set(categories))
        self.concept_category = torch.tensor(
            [self.category_names.index(c) for c in categories], dtype=torch.long
        )
        largest = max(labels, default=0)
        self.columns = {name: np.full(largest + 1, -1, dtype=np.int64) for name in self.category_names}
        for column, (label, category) in enumerate(zip(labels, categories, strict=True)):
            self.columns[category][label] = column
        self.intersection = torch.zeros(units, concepts, dtype=torch.long)
        self.unit_area = torch.zeros(units, len(self.category_names), dtype=torch.long)
        self.label_area = torch.zeros(concepts, dtype=torch.long)

    def update(self, activations: torch.Tensor, concepts: Sequence[ImageConcepts]) -> None:
        """Add a batch: activations B x U x h x w (upsampled to each image's label size) and labels."""
        if activations.shape[0] != len(concepts) or activations.shape[1] != len(self.thresholds):
            raise ValueError(
                f"activations {tuple(activations.shape)} do not match {len(concepts)} images "
                f"and {len(self.thresholds)} units"
            )
        for activation, image in zip(activations, concepts, strict=True):
            if image.annotated & set(self.category_names):
                self._add_image(self.unit_masks(activation, image.size), image)

    def unit_masks(self, activation: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """U x (sh*sw) booleans: the activation (U x h x w) upsampled bilinearly, above threshold."""
        activation = activation.float()
        if tuple(activation.shape[-2:]) != tuple(size):
            activation = F.interpolate(activation[None], size=size, mode="bilinear", align_corners=False)[0]
        return (activation > self.thresholds.view(-1, 1, 1)).flatten(1)

    def _add_image(self, fired: torch.Tensor, image: ImageConcepts) -> None:
        area = fired.sum(1)
        for category in image.annotated:
            if category in self.columns:
                self.unit_area[:, self.category_names.index(category)] += area
        columns, pixels = self._concept_pixels(image, fired.shape[1])
        if len(columns):
            self.label_area += torch.bincount(columns, minlength=len(self.label_area))
            self.intersection.index_add_(1, columns, fired[:, pixels].long())

    def _concept_pixels(self, image: ImageConcepts, positions: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Distinct (concept column, pixel) pairs of the image's known concepts."""
        keys = []
        for category, label_maps in image.pixel_labels.items():
            table = self.columns.get(category)
            if table is None:
                continue
            for label_map in label_maps:
                if label_map.shape != tuple(image.size):
                    raise ValueError(f"label map {label_map.shape} does not match label size {image.size}")
                flat = np.asarray(label_map, dtype=np.int64).ravel()
                pixels = np.flatnonzero((flat > 0) & (flat < len(table)))
                columns = table[flat[pixels]]
                known = columns >= 0
                keys.append(columns[known] * positions + pixels[known])
        for category, labels in image.image_labels.items():
            table = self.columns.get(category)
            if table is None:
                continue
            for label in labels:
                if 0 < label < len(table) and table[label] >= 0:
                    keys.append(table[label] * positions + np.arange(positions))
        if not keys:
            empty = torch.zeros(0, dtype=torch.long)
            return empty, empty
        unique = torch.unique(torch.from_numpy(np.concatenate(keys)))
        return unique // positions, unique % positions

    @property
    def union(self) -> torch.Tensor:
        """U x C: sum over annotated images of |M_u | L_c|."""
        return self.unit_area[:, self.concept_category] + self.label_area[None, :] - self.intersection

    def result(self) -> np.ndarray:
        """U x C IoU (0 where the union is empty)."""
        union = self.union.double()
        iou = torch.where(union > 0, self.intersection.double() / union.clamp(min=1), 0.0)
        return iou.numpy()


def concept_tables(
    iou: np.ndarray,
    union: np.ndarray,
    names: Sequence[str],
    categories: Sequence[str],
    detector_iou: float = 0.04,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per unit its best concept (unit, concept, category, iou, detector), and every pair with a union.

    Only concepts with a nonzero union compete (ties: the first); a unit without any gets concept ''
    and iou 0. A detector has iou > detector_iou.
    """
    rows = []
    for unit in range(iou.shape[0]):
        candidates = np.flatnonzero(union[unit] > 0)
        if len(candidates):
            best = candidates[np.argmax(iou[unit, candidates])]
            rows.append((unit, names[best], categories[best], float(iou[unit, best])))
        else:
            rows.append((unit, "", "", 0.0))
    unit_table = pd.DataFrame(rows, columns=UNIT_COLUMNS[:-1])
    unit_table["detector"] = unit_table["iou"] > detector_iou
    pair_units, pair_concepts = np.nonzero(union > 0)
    pairs_table = pd.DataFrame(
        {
            "unit": pair_units,
            "concept": [names[c] for c in pair_concepts],
            "category": [categories[c] for c in pair_concepts],
            "iou": iou[pair_units, pair_concepts],
        },
        columns=PAIR_COLUMNS,
    )
    return unit_table, pairs_table


# --- whole pipeline --------------------------------------------------------------------------


@torch.no_grad()
def layer_activations(
    model: nn.Module, spec: LayerSpec, index: BrodenIndex, batch_size: int, channels: int, size: int
) -> np.ndarray:
    """N x U x h x w float32 activations (in the spec's basis) of every Broden image, kept in memory."""
    split = split_model(model.eval(), spec.layer)
    rotation: torch.Tensor | None = None
    stored: np.ndarray | None = None
    progress = Progress(log, f"activations {spec.name}", len(index.rows), "images")
    for start in range(0, len(index.rows), batch_size):
        rows = index.rows[start : start + batch_size]
        x = prepare_images([load_image(index, row) for row in rows], channels, size)
        activation, _ = run_trunk(split, x)
        if activation.ndim != 4:
            raise ValueError(
                f"layer {spec.layer!r} gives {activation.ndim}-d activations; need N x U x h x w"
            )
        if stored is None:
            matrix = basis_matrix(activation.shape[1], spec.rotation_seed)
            rotation = None if matrix is None else torch.from_numpy(matrix).float()
            stored = np.empty((len(index.rows), *activation.shape[1:]), dtype=np.float32)
            log.info("keeping activations %s (%.1f MB)", stored.shape, stored.nbytes / 1e6)
        stored[start : start + len(rows)] = to_basis(activation, rotation).numpy()
        progress.update(len(rows))
    assert stored is not None
    return stored


def concept_iou(
    model: nn.Module,
    layer_spec: str,
    broden_root: str | Path,
    batch_size: int = 64,
    quantile: float = 0.005,
    detector_iou: float = 0.04,
    channels: int = 1,
    size: int = 28,
    orientation: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Network Dissection of one layer spec (`conv5`, `conv5@rot0`) on a Broden data set.

    Returns (unit table: unit, concept, category, iou, detector; pairs table: unit, concept,
    category, iou for every pair with a nonzero union). Images are fed as `channels` x `size`^2.
    `orientation` (+1/-1 per unit, the attribute table's column) flips rotated coordinates to the
    orientation the attributes use: a top-quantile threshold depends on the direction's sign.
    """
    spec = parse_layer_spec(layer_spec)
    index = read_broden(broden_root)
    if not index.rows:
        raise ValueError(f"{index.root / 'index.csv'} lists no images")
    activations = layer_activations(model, spec, index, batch_size, channels, size)
    if orientation is not None:
        if len(orientation) != activations.shape[1]:
            raise ValueError(f"orientation has {len(orientation)} units, the layer {activations.shape[1]}")
        activations *= np.asarray(orientation, dtype=np.float32).reshape(1, -1, 1, 1)
    thresholds = activation_thresholds(activations, quantile)
    labels = sorted(index.label_names)
    categories = [index.label_categories[label] for label in labels]
    accumulator = IoUAccumulator(thresholds, labels, categories)
    progress = Progress(log, f"concept IoU {spec.name}", len(index.rows), "images")
    for start in range(0, len(index.rows), batch_size):
        rows = index.rows[start : start + batch_size]
        concepts = [load_concepts(index, row) for row in rows]
        accumulator.update(torch.from_numpy(activations[start : start + len(rows)]), concepts)
        progress.update(len(rows))
    names = [index.label_names[label] for label in labels]
    return concept_tables(accumulator.result(), accumulator.union.numpy(), names, categories, detector_iou)


def concept_iou_to_file(
    model_path: str | Path,
    layer_spec: str,
    broden_root: str | Path,
    output: str | Path,
    pairs_output: str | Path | None = None,
    batch_size: int = 64,
    quantile: float = 0.005,
    detector_iou: float = 0.04,
    threads: int = 1,
    attributes_path: str | Path | None = None,
) -> None:
    """Dissect a checkpoint's layer spec; write the unit table (and optionally all pairs) as TSV.

    The input format comes from the model (FashionAlexNet: gray 28 x 28, see `model_input_shape`).
    With `attributes_path`, rotated coordinates take the attribute table's `orientation`.
    """
    torch.set_num_threads(max(1, threads))
    model = load_model(model_path)
    channels, size = model_input_shape(model)
    orientation = None
    if attributes_path is not None:
        orientation = pd.read_csv(attributes_path, sep="\t").sort_values("unit")["orientation"].to_numpy()
    units, pairs = concept_iou(
        model,
        layer_spec,
        broden_root,
        batch_size,
        quantile,
        detector_iou,
        channels=channels,
        size=size,
        orientation=orientation,
    )
    write_tsv(units, output)
    if pairs_output is not None:
        write_tsv(pairs, pairs_output)
    log.info(
        "wrote %s: %d units, %d detectors (IoU > %g)",
        output,
        len(units),
        units["detector"].sum(),
        detector_iou,
    )
