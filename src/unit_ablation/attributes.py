"""Unit attributes (SCIENCE.md): selectivity, class correlation, weight norms, activation statistics."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from unit_ablation.io import write_tsv
from unit_ablation.layers import parse_layer_spec
from unit_ablation.models import check_num_classes, load_model
from unit_ablation.safe_load import CorruptFileError, check_shapes, load_npz

log = logging.getLogger(__name__)

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


def softmax(logits: np.ndarray) -> np.ndarray:
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
    weight_in: np.ndarray,
    weight_out: np.ndarray,
    rotation: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-unit table and per-(unit, class) table of attributes from pooled activations."""
    num_classes = len(class_names)
    mu = class_means(mean, labels, num_classes)
    selectivity, top_class = class_selectivity(mu)
    si = per_class_selectivity(mu)
    corr = class_correlation(mean, softmax(logits))
    units = np.arange(mean.shape[1])
    per_unit = pd.DataFrame(
        {
            "unit": units,
            "dead": dead_units(mean),
            "class_selectivity": selectivity,
            "most_selective_class": [class_names[k] for k in top_class],
            "class_correlation": corr.max(axis=1),
            "class_correlation_class": [class_names[k] for k in corr.argmax(axis=1)],
            "l1_in": incoming_l1(weight_in, rotation),
            "l1_out": outgoing_l1(weight_out, rotation),
            "activation_mean": mean.mean(axis=0),
            "activation_std": mean.std(axis=0),
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
            "class_correlation": corr.ravel(),
        }
    )
    return per_unit, per_class


ACTIVATION_SHAPES: dict[str, tuple[str, ...]] = {
    **{
        f"{prefix}_{key}": (f"{prefix}_images", "units")
        for prefix in ("eval", "attr")
        for key in ("mean", "max", "zero_fraction")
    },
    "eval_logits": ("eval_images", "classes"),
    "attr_logits": ("attr_images", "classes"),
    "eval_labels": ("eval_images",),
    "attr_labels": ("attr_images",),
    "class_names": ("classes",),
    "rotation": ("units", "units"),
}


def load_activations(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays `activations.extract_to_file` writes, with their keys, shapes and labels checked.

    Raises CorruptFileError naming the file when it is missing, truncated, corrupt, lacks an
    array or holds arrays of inconsistent shapes.
    """
    required = [key for key in ACTIVATION_SHAPES if key != "rotation"]
    data = load_npz(path, required, optional=["rotation"], what="activations file")
    sizes = check_shapes(path, data, ACTIVATION_SHAPES, "activations file")
    for prefix in ("eval", "attr"):
        labels = data[f"{prefix}_labels"]
        if labels.dtype.kind not in "iu" or (
            len(labels) and not 0 <= labels.min() <= labels.max() < sizes["classes"]
        ):
            raise CorruptFileError(
                f"{path}: activations file array '{prefix}_labels' ({labels.dtype}) does not hold "
                f"class indices 0..{sizes['classes'] - 1}"
            )
    return data


def attributes_to_files(
    activations_path: str | Path,
    model_path: str | Path,
    units_output: str | Path,
    classes_output: str | Path,
    layer: str,
) -> None:
    """Compute the attribute tables of one (model, layer spec) from its extracted activations."""
    spec = parse_layer_spec(layer)
    model = load_model(model_path)
    data = load_activations(activations_path)
    units = model.unit_count(spec.layer)
    if data["attr_mean"].shape[1] != units:
        raise CorruptFileError(
            f"{activations_path}: activations have {data['attr_mean'].shape[1]} units, but layer {layer} of "
            f"checkpoint {model_path} has {units} (extracted from another model or layer?)"
        )
    check_num_classes(model, model_path, len(data["class_names"]), activations_path, "activations file")
    rotation = data.get("rotation")
    per_unit, per_class = unit_attributes(
        mean=data["attr_mean"].astype(np.float64),
        maximum=data["attr_max"],
        zero_fraction=data["attr_zero_fraction"],
        logits=data["attr_logits"].astype(np.float64),
        labels=data["attr_labels"],
        class_names=[str(name) for name in data["class_names"]],
        weight_in=model.incoming_weight(spec.layer).detach().numpy().astype(np.float64),
        weight_out=model.outgoing_weight(spec.layer).detach().numpy().astype(np.float64),
        rotation=rotation,
    )
    log.info(
        "%s: %d units, %d dead, median selectivity %.3f",
        layer,
        len(per_unit),
        int(per_unit.dead.sum()),
        float(per_unit.class_selectivity.median()),
    )
    write_tsv(per_unit, units_output)
    write_tsv(per_class, classes_output)
