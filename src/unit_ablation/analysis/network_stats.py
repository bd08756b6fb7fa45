"""Stage one of every verdict: one statistic per trained network and layer spec.

`network_statistics` reduces the tables of one (model, layer spec) to a long table, one row per
statistic (and attribute), with its estimate, standard error, interval and n. The claims
(`unit_ablation.analysis.claims`) then compare these rows across networks: the trained network, not the
unit, is the replicate for claims about training conditions (BN, dropout).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from unit_ablation.analysis.correlation import (
    OPTIONAL_ATTRIBUTES,
    PAIR_ATTRIBUTES,
    UNIT_ATTRIBUTES,
    active_units,
)
from unit_ablation.analysis.inference import (
    binomial_drop_interval,
    fisher_z,
    hodges_lehmann,
    spearman_brown,
    spearman_z_se,
)
from unit_ablation.analysis.ranks import resampled_ranks

CLAIM3_ATTRIBUTES: tuple[str, ...] = ("class_selectivity", "l1_in", "l1_out")
# claim 4's predictors: every unit attribute the correlations use, and the per-class ones
UNIT_FEATURES: tuple[str, ...] = UNIT_ATTRIBUTES + OPTIONAL_ATTRIBUTES
PAIR_FEATURES: tuple[str, ...] = PAIR_ATTRIBUTES
COLUMNS = ["statistic", "attribute", "units_included", "value", "se", "ci_low", "ci_high", "n", "p_value"]


@dataclass(frozen=True)
class NetworkOptions:
    """What stage one needs (config `claims`, `correlation`): every value reaches it through params."""

    sharp_class_drop: float = 5.0
    alpha: float = 0.05
    min_active_fraction: float = 0.01
    resamples: int = 1000
    permutations: int = 200
    folds: int = 5
    seed: int = 0


def _row(statistic: str, value: float, n: int, attribute: str = "", included: str = "", **extra) -> dict:
    row = dict.fromkeys(COLUMNS, float("nan"))
    row.update(statistic=statistic, attribute=attribute, units_included=included, value=value, n=n, **extra)
    return row


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rho; NaN with fewer than 3 values or a constant side."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def _rowwise_spearman(x: np.ndarray, y: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Spearman rho of x[index] and y[index] per row of `index` (R x M positions)."""
    rx, ry = resampled_ranks(x, index), resampled_ranks(y, index)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    denominator = np.sqrt((rx**2).sum(axis=1) * (ry**2).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, (rx * ry).sum(axis=1) / denominator, np.nan)


def damage_bounds(class_damage: pd.DataFrame, alpha: float) -> dict[str, float]:
    """Simultaneous (Bonferroni) exact bounds of the overall drop of every unit and of every
    (unit, class) drop: the largest |overall drop| any unit could have, the smallest |overall
    drop| some unit must have, and the largest class drop any pair could have."""
    per_unit = class_damage.groupby("unit", sort=True)[["broken", "fixed", "n"]].sum()
    units = len(per_unit)
    low, high = binomial_drop_interval(per_unit.broken, per_unit.fixed, per_unit.n, 1 - alpha / max(units, 1))
    must = np.where(low > 0, low, np.where(high < 0, -high, 0.0))
    pairs = len(class_damage)
    _, pair_high = binomial_drop_interval(
        class_damage.broken, class_damage.fixed, class_damage.n, 1 - 2 * alpha / max(pairs, 1)
    )
    return {
        "overall_drop_abs_upper": float(np.maximum(np.abs(low), np.abs(high)).max()),
        "overall_drop_abs_lower": float(must.max()),
        "class_drop_upper": float(pair_high.max()),
    }


def sharp_damage(class_damage: pd.DataFrame, sharp_class_drop: float) -> dict[str, float]:
    """Pairs that are both significantly hurt (the gather's FDR) and lowered by at least
    `sharp_class_drop` points, the units that have one, and how many classes such a unit hurts."""
    sharp = class_damage["hurt"].astype(bool) & (class_damage["drop"] >= sharp_class_drop)
    per_unit = sharp.groupby(class_damage["unit"]).sum()
    hurting = per_unit[per_unit > 0]
    return {
        "sharp_pairs": float(sharp.sum()),
        "units_with_sharp_pair": float(len(hurting)),
        "sharp_classes_per_unit": float(hurting.median()) if len(hurting) else float("nan"),
        "num_classes": float(class_damage["class"].nunique()),
    }


def split_half_reliability(damage: pd.DataFrame, keep: np.ndarray) -> tuple[float, int]:
    """Spearman-Brown reliability of the overall drop from its two fixed halves of the images."""
    if not {"overall_drop_h0", "overall_drop_h1"} <= set(damage.columns):
        return float("nan"), 0
    h0, h1 = damage.overall_drop_h0.to_numpy()[keep], damage.overall_drop_h1.to_numpy()[keep]
    return spearman_brown(spearman(h0, h1)), int(keep.sum())


def rho_contrast(
    attribute: np.ndarray, class_damage: np.ndarray, overall: np.ndarray, resamples: int, seed: int
) -> dict[str, float]:
    """rho(attribute, class damage) - rho(attribute, overall drop), with a paired bootstrap over
    units (the same resampled units for both) for its SE and 95% percentile interval."""
    estimate = spearman(attribute, class_damage) - spearman(attribute, overall)
    result = {"value": estimate, "se": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
    if not resamples or not np.isfinite(estimate):
        return result
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(attribute), (resamples, len(attribute)))
    boot = _rowwise_spearman(attribute, class_damage, index) - _rowwise_spearman(attribute, overall, index)
    boot = boot[np.isfinite(boot)]
    if len(boot) > 1:
        result["se"] = float(boot.std(ddof=1))
        result["ci_low"], result["ci_high"] = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
    return result


def _feature_grid(attributes: pd.DataFrame, class_attributes: pd.DataFrame) -> np.ndarray:
    """Units x classes x features: unit attributes broadcast over classes, then per-class ones."""
    units = attributes.sort_values("unit")
    unit_columns = [c for c in UNIT_FEATURES if c in units.columns]
    pairs = class_attributes.sort_values(["unit", "class_index"], kind="stable")
    num_units, num_classes = len(units), pairs["class_index"].nunique()
    pair_columns = [c for c in PAIR_FEATURES if c in pairs.columns]
    unit_block = np.repeat(units[unit_columns].to_numpy(float)[:, None, :], num_classes, axis=1)
    pair_block = pairs[pair_columns].to_numpy(float).reshape(num_units, num_classes, -1)
    return np.nan_to_num(np.concatenate([unit_block, pair_block], axis=2))


def _fit_predict(x: np.ndarray, y: np.ndarray, train: np.ndarray, ridge: float = 1.0) -> np.ndarray:
    """Out-of-fold predictions of y (units x classes) for the units not in `train`: the class's
    mean training drop plus a ridge fit on class-centred, standardised features."""
    class_mean_y = y[train].mean(axis=0)
    class_mean_x = x[train].mean(axis=0)
    xc = (x - class_mean_x).reshape(-1, x.shape[2])
    yc = (y - class_mean_y).ravel()
    rows = np.repeat(train, y.shape[1])
    scale = xc[rows].std(axis=0)
    scale[scale == 0] = 1.0
    xs = xc / scale
    gram = xs[rows].T @ xs[rows] + ridge * np.eye(xs.shape[1])
    beta = np.linalg.solve(gram, xs[rows].T @ yc[rows])
    return (class_mean_y + (xs @ beta).reshape(y.shape))[~train]


def cross_validated_prediction(
    features: np.ndarray, drops: np.ndarray, folds: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold predictions of the class drop d[u, k] (units x classes), grouped by unit:
    from all attributes, and from the class alone (the class's mean drop in the training folds)."""
    num_units = drops.shape[0]
    fold_of = np.random.default_rng(seed).permutation(num_units) % max(2, min(folds, num_units))
    full = np.empty_like(drops, dtype=float)
    class_only = np.empty_like(drops, dtype=float)
    for fold in np.unique(fold_of):
        train = fold_of != fold
        full[~train] = _fit_predict(features, drops, train)
        class_only[~train] = drops[train].mean(axis=0)
    return full, class_only


def class_drop_prediction(
    features: np.ndarray, drops: np.ndarray, options: NetworkOptions
) -> dict[str, float]:
    """Claim 4 as held-out prediction: out-of-fold Spearman of predicted vs true d[u, k] from all
    attributes, the class-only baseline's, and a permutation p-value of the gain: each unit's
    block of attributes moved to another unit (classes kept aligned), `permutations` times."""
    full, class_only = cross_validated_prediction(features, drops, options.folds, options.seed)
    rho_full = spearman(full.ravel(), drops.ravel())
    rho_class = spearman(class_only.ravel(), drops.ravel())
    rng = np.random.default_rng(options.seed + 1)
    null = np.array(
        [
            spearman(
                cross_validated_prediction(
                    features[rng.permutation(len(features))], drops, options.folds, options.seed
                )[0].ravel(),
                drops.ravel(),
            )
            for _ in range(options.permutations)
        ]
    )
    null = np.nan_to_num(null, nan=-1.0)
    p_value = float((1 + np.sum(null >= rho_full)) / (1 + len(null))) if len(null) else float("nan")
    se = float("nan")
    if options.resamples and np.isfinite(rho_full):
        index = np.random.default_rng(options.seed + 2).integers(
            0, drops.shape[0], (options.resamples, drops.shape[0])
        )
        cells = (index[:, :, None] * drops.shape[1] + np.arange(drops.shape[1])).reshape(len(index), -1)
        boot = _rowwise_spearman(full.ravel(), drops.ravel(), cells)
        boot = boot[np.isfinite(boot)]
        se = float(np.std(fisher_z(boot), ddof=1)) if len(boot) > 1 else float("nan")
    return {
        "cv_rho": rho_full,
        "cv_rho_se": se,
        "cv_rho_class_only": rho_class,
        "cv_gain": rho_full - rho_class,
        "cv_gain_p": p_value,
    }


def network_statistics(
    attributes: pd.DataFrame,
    class_attributes: pd.DataFrame,
    damage: pd.DataFrame,
    class_damage: pd.DataFrame,
    options: NetworkOptions,
) -> pd.DataFrame:
    """The long table of one (network, layer spec): damage bounds, sharp class damage,
    correlations of the claim-3 attributes with their SEs, the split-half reliability of the
    overall drop, the claim 3-vs-4 contrasts, claim 4's held-out prediction, and the specificity
    (max class drop minus mean class drop) and amount (max class drop) of class damage: their
    Hodges-Lehmann locations over units, with intervals."""
    merged = attributes.merge(damage, on="unit", validate="one_to_one").sort_values("unit")
    keep_active = active_units(merged, options.min_active_fraction)
    units = len(merged)
    rows = [_row(name, value, units) for name, value in damage_bounds(class_damage, options.alpha).items()]
    rows += [
        _row(name, value, units)
        for name, value in sharp_damage(class_damage, options.sharp_class_drop).items()
    ]
    rows.append(_row("max_abs_overall_drop", float(merged.overall_drop.abs().max()), units))
    reliability, used = split_half_reliability(merged, keep_active)
    rows.append(_row("overall_drop_reliability", reliability, used, included="active"))
    for included, keep in (("active", keep_active), ("all", np.ones(units, dtype=bool))):
        chosen = merged[keep]
        for attribute in CLAIM3_ATTRIBUTES:
            if attribute not in chosen:
                continue
            x = chosen[attribute].to_numpy(float)
            for statistic, target in (("rho_overall", "overall_drop"), ("rho_max_class", "max_class_drop")):
                rho = spearman(x, chosen[target].to_numpy(float))
                rows.append(
                    _row(statistic, rho, len(chosen), attribute, included, se=spearman_z_se(rho, len(chosen)))
                )
            if included == "active":
                contrast = rho_contrast(
                    x,
                    chosen.max_class_drop.to_numpy(float),
                    chosen.overall_drop.to_numpy(float),
                    options.resamples,
                    options.seed,
                )
                rows.append(
                    _row("rho_contrast", n=len(chosen), attribute=attribute, included=included, **contrast)
                )
    features = _feature_grid(attributes, class_attributes)
    drops = (
        class_damage.merge(class_attributes[["unit", "class", "class_index"]], on=["unit", "class"])
        .sort_values(["unit", "class_index"], kind="stable")["drop"]
        .to_numpy(float)
        .reshape(features.shape[:2])
    )
    prediction = class_drop_prediction(features, drops, options)
    rows.append(_row("cv_rho", prediction["cv_rho"], units, se=prediction["cv_rho_se"]))
    rows.append(_row("cv_rho_class_only", prediction["cv_rho_class_only"], units))
    rows.append(_row("cv_gain", prediction["cv_gain"], units, p_value=prediction["cv_gain_p"]))
    # quantised drops: a Hodges-Lehmann location and interval, not a percentile bootstrap of the
    # median (which collapses to a point when most units share a value)
    specificity = (merged.max_class_drop - merged.balanced_drop).to_numpy(float)
    for name, values in (("specificity", specificity), ("amount", merged.max_class_drop.to_numpy(float))):
        location, low, high = hodges_lehmann(values)
        rows.append(_row(name, location, units, ci_low=low, ci_high=high))
    return pd.DataFrame(rows, columns=COLUMNS)


def concatenate_statistics(paths: Sequence[str | Path]) -> pd.DataFrame:
    """The stage-one tables of every network and layer spec, stacked."""
    return pd.concat([pd.read_csv(p, sep="\t") for p in paths], ignore_index=True)
