"""Correlate unit attributes with ablation damage (Spearman and Pearson, with p-values)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from unit_ablation.analysis.ranks import resampled_ranks
from unit_ablation.spec.layer_spec import parse_layer_spec

UNIT_ATTRIBUTES: tuple[str, ...] = (
    "class_selectivity",
    "class_gap",
    "class_correlation",
    "l1_in",
    "l1_out",
    "activation_mean",
    "activation_std",
    "activation_sparsity",
    "activation_max",
)
OPTIONAL_ATTRIBUTES: tuple[str, ...] = ("concept_iou",)  # when concept IoU is configured
UNIT_DAMAGE: tuple[str, ...] = ("overall_drop", "max_class_drop", "topk_mean_drop")
PAIR_ATTRIBUTES: tuple[str, ...] = ("class_selectivity", "class_gap", "class_correlation")


def active_units(attributes: pd.DataFrame, min_active_fraction: float) -> np.ndarray:
    """Units kept in the correlations: not dead, and active (nonzero pooled activation) on at
    least `min_active_fraction` of the attribute images."""
    keep = np.ones(len(attributes), dtype=bool)
    if "dead" in attributes:
        keep &= ~attributes["dead"].astype(bool).to_numpy()
    if "active_fraction" in attributes:
        keep &= attributes["active_fraction"].to_numpy() >= min_active_fraction
    return keep


def _rowwise_pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denominator = np.sqrt((a**2).sum(axis=1) * (b**2).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, (a * b).sum(axis=1) / denominator, np.nan)


def bootstrap_intervals(
    x: np.ndarray, y: np.ndarray, resamples: int, seed: int, level: float = 0.95, classes: int = 1
) -> dict[str, float]:
    """Percentile bootstrap CIs of Spearman rho and Pearson r.

    `classes` = 1: the rows are units, resampled with replacement. `classes` > 1: the rows are a
    complete (unit, class) grid in unit-major order, and the bootstrap is two-way: units and
    classes are resampled independently (class is a crossed factor, so resampling units alone
    would treat the classes as fixed and the intervals would be too narrow). Resamples where
    either side is constant have no correlation and are left out.
    """
    if len(x) % classes:
        raise ValueError(f"{len(x)} rows do not form a grid with {classes} classes")
    rng = np.random.default_rng(seed)
    units = len(x) // classes
    picked_units = rng.integers(0, units, size=(resamples, units))
    if classes > 1:
        picked_classes = rng.integers(0, classes, size=(resamples, classes))
        index = (picked_units[:, :, None] * classes + picked_classes[:, None, :]).reshape(resamples, -1)
    else:
        index = picked_units
    xs, ys = x[index], y[index]
    pearson = _rowwise_pearson(xs, ys)
    spearman = _rowwise_pearson(resampled_ranks(x, index), resampled_ranks(y, index))
    tail = 100 * (1 - level) / 2
    result = {}
    for name, values in (("spearman", spearman), ("pearson", pearson)):
        values = values[np.isfinite(values)]
        low, high = np.percentile(values, [tail, 100 - tail]) if values.size else (np.nan, np.nan)
        result[f"{name}_ci_low"], result[f"{name}_ci_high"] = float(low), float(high)
    return result


def correlate(
    x: np.ndarray, y: np.ndarray, resamples: int = 0, seed: int = 0, classes: int = 1
) -> dict[str, float]:
    """Spearman rho and Pearson r with two-sided p-values and (resamples > 0) bootstrap 95% CIs
    (two-way over a (unit, class) grid when `classes` > 1, see `bootstrap_intervals`). NaN when
    either side is constant. The p-values assume independent rows: for a (unit, class) grid they
    are not valid and are left NaN (its CIs are the inference)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    names = ("spearman_rho", "spearman_p", "pearson_r", "pearson_p")
    interval_names = ("spearman_ci_low", "spearman_ci_high", "pearson_ci_low", "pearson_ci_high")
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return dict.fromkeys(names + (interval_names if resamples else ()), float("nan"))
    spearman = stats.spearmanr(x, y)
    pearson = stats.pearsonr(x, y)
    result = {
        "spearman_rho": float(spearman.statistic),
        "spearman_p": float(spearman.pvalue),
        "pearson_r": float(pearson.statistic),
        "pearson_p": float(pearson.pvalue),
    }
    if classes > 1:
        result["spearman_p"] = result["pearson_p"] = float("nan")
    if resamples:
        result.update(bootstrap_intervals(x, y, resamples, seed, classes=classes))
    return result


def layer_correlations(
    layer_spec: str,
    attributes: pd.DataFrame,
    damage: pd.DataFrame,
    class_attributes: pd.DataFrame | None = None,
    class_damage: pd.DataFrame | None = None,
    resamples: int = 1000,
    seed: int = 0,
    min_active_fraction: float = 0.01,
) -> pd.DataFrame:
    """Rows of (layer, basis, level, attribute, damage, n, spearman/pearson, p-values, bootstrap CIs).

    Level `unit` leaves out dead and near-dead units (`active_units`: active on
    fewer than `min_active_fraction` of the attribute images); level `unit (all units)` is the
    sensitivity row that keeps them. Level `unit-class` pools (unit, class) pairs of all units.
    """
    spec = parse_layer_spec(layer_spec)
    merged = attributes.merge(damage, on="unit", validate="one_to_one")
    rows = []
    present = [a for a in UNIT_ATTRIBUTES + OPTIONAL_ATTRIBUTES if a in merged.columns]
    pair_present = [
        a for a in PAIR_ATTRIBUTES if class_attributes is not None and a in class_attributes.columns
    ]
    keep = active_units(merged, min_active_fraction)
    for level, subset in (("unit", merged[keep]), ("unit (all units)", merged)):
        for attribute in present:
            for target in UNIT_DAMAGE:
                rows.append(
                    {
                        "level": level,
                        "attribute": attribute,
                        "damage": target,
                        "n": len(subset),
                        **correlate(subset[attribute], subset[target], resamples, seed),
                    }
                )
    if class_attributes is not None and class_damage is not None:
        pairs = class_attributes.merge(class_damage, on=["unit", "class"], validate="one_to_one")
        pairs = pairs.sort_values(["unit", "class_index"], kind="stable")  # the (unit, class) grid
        classes = pairs["class"].nunique()
        for attribute in pair_present:
            rows.append(
                {
                    "level": "unit-class",
                    "attribute": attribute,
                    "damage": "class_drop",
                    "n": len(pairs),
                    **correlate(pairs[attribute], pairs["drop"], resamples, seed, classes=classes),
                }
            )
    table = pd.DataFrame(rows)
    table.insert(0, "basis", spec.basis)
    table.insert(0, "layer", spec.label)
    table.insert(0, "layer_spec", layer_spec)
    return table
