"""Correlate unit attributes with ablation damage (Spearman and Pearson, with p-values)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from unit_ablation.io import write_tsv
from unit_ablation.layers import parse_layer_spec

log = logging.getLogger(__name__)

UNIT_ATTRIBUTES: tuple[str, ...] = (
    "class_selectivity",
    "class_correlation",
    "l1_in",
    "l1_out",
    "activation_mean",
    "activation_std",
    "activation_sparsity",
    "activation_max",
)
UNIT_DAMAGE: tuple[str, ...] = ("overall_drop", "max_class_drop", "top5_mean_drop")
PAIR_ATTRIBUTES: tuple[str, ...] = ("class_selectivity", "class_correlation")


def correlate(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Spearman rho and Pearson r with two-sided p-values; NaN when either side is constant."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        nan = float("nan")
        return {"spearman_rho": nan, "spearman_p": nan, "pearson_r": nan, "pearson_p": nan}
    spearman = stats.spearmanr(x, y)
    pearson = stats.pearsonr(x, y)
    return {
        "spearman_rho": float(spearman.statistic),
        "spearman_p": float(spearman.pvalue),
        "pearson_r": float(pearson.statistic),
        "pearson_p": float(pearson.pvalue),
    }


def layer_correlations(
    layer: str,
    attributes: pd.DataFrame,
    damage: pd.DataFrame,
    class_attributes: pd.DataFrame | None = None,
    class_damage: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Rows of (layer, basis, level, attribute, damage, n, spearman/pearson and p-values)."""
    spec = parse_layer_spec(layer)
    merged = attributes.merge(damage, on="unit", validate="one_to_one")
    rows = []
    for attribute in UNIT_ATTRIBUTES:
        for target in UNIT_DAMAGE:
            rows.append(
                {
                    "level": "unit",
                    "attribute": attribute,
                    "damage": target,
                    "n": len(merged),
                    **correlate(merged[attribute], merged[target]),
                }
            )
    if class_attributes is not None and class_damage is not None:
        pairs = class_attributes.merge(class_damage, on=["unit", "class"], validate="one_to_one")
        for attribute in PAIR_ATTRIBUTES:
            rows.append(
                {
                    "level": "unit-class",
                    "attribute": attribute,
                    "damage": "class_drop",
                    "n": len(pairs),
                    **correlate(pairs[attribute], pairs["drop"]),
                }
            )
    table = pd.DataFrame(rows)
    table.insert(0, "basis", spec.basis)
    table.insert(0, "layer", spec.layer)
    table.insert(0, "layer_spec", layer)
    return table


def correlate_to_file(
    layers: Sequence[str],
    attribute_paths: Sequence[str | Path],
    class_attribute_paths: Sequence[str | Path],
    damage_paths: Sequence[str | Path],
    class_damage_paths: Sequence[str | Path],
    output: str | Path,
) -> None:
    """One correlation table for a model, all its analysed layers side by side."""
    tables = []
    for layer, attr, class_attr, dmg, class_dmg in zip(
        layers, attribute_paths, class_attribute_paths, damage_paths, class_damage_paths, strict=True
    ):
        table = layer_correlations(
            layer,
            pd.read_csv(attr, sep="\t"),
            pd.read_csv(dmg, sep="\t"),
            pd.read_csv(class_attr, sep="\t"),
            pd.read_csv(class_dmg, sep="\t"),
        )
        row = table[
            (table.attribute == "class_selectivity") & (table.damage.isin(["overall_drop", "max_class_drop"]))
        ]
        for _, r in row.iterrows():
            log.info(
                "%s: selectivity vs %s: rho=%.3f (p=%.3g)", layer, r.damage, r.spearman_rho, r.spearman_p
            )
        tables.append(table)
    write_tsv(pd.concat(tables, ignore_index=True), output)
