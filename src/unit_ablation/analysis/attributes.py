"""Unit attributes (docs/outputs.md): selectivity, class gap, class correlation, weight norms, activity.

Rotated coordinates are oriented (q_j^T mu >= 0) before any attribute is computed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from unit_ablation.files.safe_load import CorruptFileError, check_shapes, load_npz

SELECTIVITY_EPS = 1e-7


def class_means(activations: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """mu[u, k]: mean pooled activation of unit u over images of class k (units x classes)."""
    means = np.zeros((activations.shape[1], num_classes))
    for k in range(num_classes):
        members = labels == k
        if members.any():
            means[:, k] = activations[members].mean(axis=0)
    return means


def dead_units(activations: np.ndarray) -> np.ndarray:
    """Units whose pooled activation is identically zero on every image."""
    return np.all(activations == 0, axis=0)


def active_fraction(activations: np.ndarray) -> np.ndarray:
    """Per unit: the fraction of images whose pooled activation is nonzero (0 for a dead unit).

    Post-ReLU (canonical basis) a spatial mean is nonzero iff the unit fires somewhere in the image;
    a rotated coordinate is nonzero on almost every image (about 1).
    """
    if len(activations) == 0:
        return np.zeros(activations.shape[1])
    return (activations != 0).mean(axis=0)


def orientation_signs(mean: np.ndarray, rotated: bool) -> np.ndarray:
    """+1/-1 per unit: -1 where a rotated coordinate's mean over images is negative, else +1.

    `mean` is images x units of spatial means of z = Q^T a; every image has the same positions,
    so the mean over images of the spatial means is q_j^T mu, mu the layer's mean activation over
    images and positions. Orienting (z_j -> s_j z_j, q_j -> s_j q_j) makes q_j^T mu >= 0. The
    canonical basis (`rotated` False) is never flipped; a mean of exactly 0 is not flipped.
    """
    if not rotated or len(mean) == 0:
        return np.ones(mean.shape[1], dtype=np.int64)
    return np.where(mean.mean(axis=0) < 0, -1, 1).astype(np.int64)


def orient_statistics(
    mean: np.ndarray, maximum: np.ndarray, minimum: np.ndarray, signs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-image (spatial mean, max, min) of the oriented coordinates s_j z_j.

    A flipped coordinate's mean is negated and its max is minus its min (and vice versa).
    Negation is exact in floating point, so statistics of -z oriented equal those of z.
    """
    flip = signs < 0
    oriented_mean = np.where(flip, -mean, mean)
    oriented_max = np.where(flip, -minimum, maximum)
    oriented_min = np.where(flip, -maximum, minimum)
    return oriented_mean, oriented_max, oriented_min


def class_selectivity(mu: np.ndarray, eps: float = SELECTIVITY_EPS) -> tuple[np.ndarray, np.ndarray]:
    """Morcos et al. selectivity (mu_max - mu_-max) / (mu_max + mu_-max + eps) and the argmax class.

    mu_-max is the mean of the other classes' means. Units with all-zero means get 0.
    """
    num_classes = mu.shape[1]
    top = mu.argmax(axis=1)
    mu_max = mu.max(axis=1)
    mu_rest = (mu.sum(axis=1) - mu_max) / max(1, num_classes - 1)
    denominator = mu_max + mu_rest + eps
    with np.errstate(divide="ignore", invalid="ignore"):
        selectivity = np.where(np.all(mu == 0, axis=1), 0.0, (mu_max - mu_rest) / denominator)
    return selectivity, top


def per_class_selectivity(mu: np.ndarray, eps: float = SELECTIVITY_EPS) -> np.ndarray:
    """SI[u, k] = (mu[u,k] - mu[u,not k]) / (mu[u,k] + mu[u,not k] + eps); 0 for all-zero units."""
    num_classes = mu.shape[1]
    rest = (mu.sum(axis=1, keepdims=True) - mu) / max(1, num_classes - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        si = (mu - rest) / (mu + rest + eps)
    si[np.all(mu == 0, axis=1)] = 0.0
    return si


def class_gap(mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Standardised class-mean gap (mu_max - mu_-max) / sigma per unit.

    mu_max is the largest class mean, mu_-max the mean of the other classes' means (as in Morcos's
    index) and sigma the unit's standard deviation of the pooled activation over the images.
    Unlike Morcos's index it has no mu_max + mu_-max denominator, so it is well defined on signed
    (rotated) coordinates. A constant unit (sigma = 0, e.g. dead) gets 0.
    """
    num_classes = mu.shape[1]
    mu_max = mu.max(axis=1)
    mu_rest = (mu.sum(axis=1) - mu_max) / max(1, num_classes - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sigma > 0, (mu_max - mu_rest) / sigma, 0.0)


def per_class_gap(mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """gap[u, k] = (mu[u,k] - mu[u,not k]) / sigma[u]; 0 for a constant unit (sigma = 0).

    mu[u,not k] is the mean of the other classes' means (as for SI), sigma[u] the unit's standard
    deviation of the pooled activation over the images.
    """
    num_classes = mu.shape[1]
    rest = (mu.sum(axis=1, keepdims=True) - mu) / max(1, num_classes - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sigma[:, None] > 0, (mu - rest) / sigma[:, None], 0.0)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits (images x classes), shifted for stability."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def class_correlation(activations: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """corr[u, k]: Pearson correlation over images of unit u's pooled activation and p(class k).

    A constant unit (or class probability) has no defined correlation and gets 0.
    """
    a = activations - activations.mean(axis=0)
    p = probabilities - probabilities.mean(axis=0)
    covariance = a.T @ p
    norms = np.outer(np.sqrt((a**2).sum(axis=0)), np.sqrt((p**2).sum(axis=0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.where(norms > 0, covariance / norms, 0.0)
    return corr


def incoming_l1(weight: np.ndarray, rotation: np.ndarray | None = None) -> np.ndarray:
    """L1 norm of the filter producing each unit; weight is (units, ...). Rotated: filters of Q^T W."""
    w = weight.reshape(weight.shape[0], -1)
    if rotation is not None:
        w = rotation.T @ w
    return np.abs(w).sum(axis=1)


def outgoing_l1(weight: np.ndarray, rotation: np.ndarray | None = None) -> np.ndarray:
    """L1 norm of the next mixing layer's weights reading each unit; weight is (out, units, positions)."""
    w = np.moveaxis(weight, 1, 0).reshape(weight.shape[1], -1)
    if rotation is not None:
        w = rotation.T @ w
    return np.abs(w).sum(axis=1)


def unit_attributes(
    mean: np.ndarray,
    maximum: np.ndarray,
    zero_fraction: np.ndarray,
    logits: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    weight_in: np.ndarray | None,
    weight_out: np.ndarray | None,
    rotation: np.ndarray | None = None,
    minimum: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-unit table and per-(unit, class) table of attributes from pooled activations.

    `mean`, `maximum`, `minimum`, `zero_fraction`: images x units spatial statistics of z = Q^T a
    (the canonical basis when `rotation` is None). In a rotated basis every coordinate is first
    oriented (`orientation_signs`: q_j^T mu >= 0), so no attribute depends on the arbitrary sign
    of q_j; the applied sign is the `orientation` column (+1 throughout the canonical basis).
    `minimum` is needed in a rotated basis (a flipped coordinate's max is minus its min).
    Without `weight_in` or `weight_out` (a model that does not define them), `l1_in` or `l1_out` is NaN.
    """
    rotated = rotation is not None
    signs = orientation_signs(mean, rotated)
    if rotated:
        if minimum is None:
            raise ValueError("a rotated basis needs the per-image spatial minimum to orient its coordinates")
        mean, maximum, _ = orient_statistics(mean, maximum, minimum, signs)
    num_classes = len(class_names)
    mu = class_means(mean, labels, num_classes)
    sigma = mean.std(axis=0)
    selectivity, top_class = class_selectivity(mu)
    si = per_class_selectivity(mu)
    corr = class_correlation(mean, softmax(logits))
    units = np.arange(mean.shape[1])
    per_unit = pd.DataFrame(
        {
            "unit": units,
            "orientation": signs,
            "dead": dead_units(mean),
            "active_fraction": active_fraction(mean),
            "class_selectivity": selectivity,
            "class_gap": class_gap(mu, sigma),
            "most_selective_class": [class_names[k] for k in top_class],
            "class_correlation": corr.max(axis=1),
            "class_correlation_class": [class_names[k] for k in corr.argmax(axis=1)],
            "l1_in": np.full(len(units), np.nan) if weight_in is None else incoming_l1(weight_in, rotation),
            "l1_out": np.full(len(units), np.nan)
            if weight_out is None
            else outgoing_l1(weight_out, rotation),
            "activation_mean": mean.mean(axis=0),
            "activation_std": sigma,
            "activation_sparsity": zero_fraction.mean(axis=0),
            "activation_max": maximum.max(axis=0),
        }
    )
    for k in range(num_classes):
        per_unit[f"mean_class_{k}"] = mu[:, k]
    per_class = pd.DataFrame(
        {
            "unit": np.repeat(units, num_classes),
            "class": np.tile(np.array(class_names, dtype=object), len(units)),
            "class_index": np.tile(np.arange(num_classes), len(units)),
            "class_mean": mu.ravel(),
            "class_selectivity": si.ravel(),
            "class_gap": per_class_gap(mu, sigma).ravel(),
            "class_correlation": corr.ravel(),
        }
    )
    return per_unit, per_class


ACTIVATION_SHAPES: dict[str, tuple[str, ...]] = {
    "class_names": ("classes",),
    **{f"attr_{key}": ("attr_images", "units") for key in ("mean", "max", "min", "zero_fraction")},
    "attr_logits": ("attr_images", "classes"),
    "attr_labels": ("attr_images",),
    "rotation": ("units", "units"),
}


def load_activations(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays `stages.extract.extract_to_file` writes, with their keys, shapes and labels checked.

    Raises CorruptFileError naming the file when it is missing, truncated, corrupt, lacks an
    array or holds arrays of inconsistent shapes.
    """
    required = [key for key in ACTIVATION_SHAPES if key != "rotation"]
    data = load_npz(path, required, optional=["rotation"], what="activations file")
    sizes = check_shapes(path, data, ACTIVATION_SHAPES, "activations file")
    labels = data["attr_labels"]
    if labels.dtype.kind not in "iu" or (
        len(labels) and not 0 <= labels.min() <= labels.max() < sizes["classes"]
    ):
        raise CorruptFileError(
            f"{path}: activations file array 'attr_labels' ({labels.dtype}) does not hold "
            f"class indices 0..{sizes['classes'] - 1}"
        )
    return data
