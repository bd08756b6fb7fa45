"""Network Dissection's unit-concept IoU (Bau et al. 2017) on a Broden concept data set.

Each unit u is thresholded at T_u, its top `quantile` activation level over all images and
positions (P(a > T_u) = quantile, on the layer's own resolution). Its activation map is upsampled
bilinearly to the label resolution and thresholded, giving M_u; for every concept c with mask L_c,
IoU = sum_images |M_u & L_c| / sum_images |M_u | L_c|, summing only over the images where c's
category is annotated. A unit's concept is the one with the largest IoU; it is a detector when
that IoU exceeds `detector_iou` (0.04)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from unit_ablation.data.broden import BrodenIndex, ImageConcepts, load_concepts, load_image, read_broden
from unit_ablation.engine.basis import basis_matrix, to_basis
from unit_ablation.engine.graph_split import run_trunk, split_model
from unit_ablation.models.fashion_alexnet import FashionAlexNet
from unit_ablation.runtime.progress import Progress
from unit_ablation.spec.layer_spec import LayerSpec, parse_layer_spec

log = logging.getLogger(__name__)


FASHION_INPUT_SIZE = 28  # FashionAlexNet's fc6 expects 3x3 after three 2x2 pools


LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


UNIT_COLUMNS = ["unit", "concept", "category", "iou", "detector"]


PAIR_COLUMNS = ["unit", "concept", "category", "iou"]


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
    root: str | Path,
    batch_size: int = 64,
    quantile: float = 0.005,
    detector_iou: float = 0.04,
    channels: int = 1,
    size: int = 28,
    orientation: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Network Dissection of one layer spec (`conv5`, `conv5@rot0`) on the Broden data set at `root`.

    Returns (unit table: unit, concept, category, iou, detector; pairs table: unit, concept,
    category, iou for every pair with a nonzero union). Images are fed as `channels` x `size`^2.
    `orientation` (+1/-1 per unit, the attribute table's column) flips rotated coordinates to the
    orientation the attributes use: a top-quantile threshold depends on the direction's sign.
    """
    spec = parse_layer_spec(layer_spec)
    index = read_broden(root)
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
