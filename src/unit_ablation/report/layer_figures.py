"""Figures of one model's layer spec (the `plot_layer` stage writes both), drawn from its tables:

3. `attribute_figure`: every unit attribute against every damage measure, Spearman rho with bootstrap CI.
4. `heatmap_figure`: class accuracy drop of the most damaging units, every class, significant cells
   starred."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from unit_ablation.analysis.correlation import UNIT_ATTRIBUTES, UNIT_DAMAGE, correlate
from unit_ablation.report.style import (
    ATTRIBUTE_LABELS,
    DAMAGE_LABELS,
    REFERENCE_LINE,
    STYLE,
    _numeric,
    correlation_rows,
    format_rho,
    sort_units,
)

log = logging.getLogger(__name__)


def attribute_panel_titles(
    correlation: pd.DataFrame,
    layer_spec: str,
    data: pd.DataFrame | None = None,
    attributes: Sequence[str] = UNIT_ATTRIBUTES,
    targets: Sequence[str] = UNIT_DAMAGE,
) -> dict[tuple[str, str], str]:
    """Panel title per (attribute, damage): rho and its CI from the correlation table; where the
    table has no row, rho recomputed from `data` (no CI) when given, else 'rho undefined'."""
    rows = correlation_rows(correlation, layer_spec)
    titles = {}
    for attribute in attributes:
        for target in targets:
            if (attribute, target) in rows.index:
                row = rows.loc[(attribute, target)]
                titles[attribute, target] = format_rho(
                    row.get("spearman_rho", math.nan),
                    row.get("spearman_ci_low", math.nan),
                    row.get("spearman_ci_high", math.nan),
                )
            elif data is not None and attribute in data and target in data:
                log.warning("%s: no correlation row for %s vs %s; recomputed", layer_spec, attribute, target)
                values = data[[attribute, target]].apply(pd.to_numeric, errors="coerce").dropna()
                titles[attribute, target] = format_rho(
                    correlate(values[attribute], values[target])["spearman_rho"]
                )
            else:
                titles[attribute, target] = "rho undefined"
    return titles


# --------------------------------------------------------------------------------------------- figure 3
def attribute_figure(
    attributes: pd.DataFrame,
    damage: pd.DataFrame,
    correlation: pd.DataFrame,
    layer_spec: str,
    title: str,
) -> plt.Figure:
    """Scatter grid: every unit attribute (columns) against each damage measure (rows); panel titles give
    Spearman rho and its bootstrap 95% CI from the correlation table."""
    table = attributes.merge(damage, on="unit", how="inner", suffixes=("", "_damage"))
    columns = [a for a in UNIT_ATTRIBUTES if a in table]
    targets = [t for t in UNIT_DAMAGE if t in table]
    titles = attribute_panel_titles(correlation, str(layer_spec), table, columns, targets)
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(
            max(1, len(targets)),
            max(1, len(columns)),
            figsize=(2.3 * max(1, len(columns)) + 0.6, 2.2 * max(1, len(targets)) + 0.7),
            squeeze=False,
            sharex="col",
            sharey="row",
            layout="constrained",
        )
        for row, target in enumerate(targets):
            for col, attribute in enumerate(columns):
                ax = axes[row][col]
                ax.scatter(
                    _numeric(table[attribute]),
                    _numeric(table[target]),
                    s=8,
                    alpha=0.6,
                    color=f"C{row}",
                    edgecolors="none",
                )
                ax.axhline(0, **REFERENCE_LINE)
                ax.set_title(titles[attribute, target], fontsize=8)
                if row == len(targets) - 1:  # the columns share their x axis
                    ax.set_xlabel(ATTRIBUTE_LABELS.get(attribute, attribute.replace("_", " ")))
                if col == 0:
                    ax.set_ylabel(DAMAGE_LABELS.get(target, target.replace("_", " ")))
        figure.suptitle(f"{title} (Spearman rho over {len(table)} units, bootstrap 95% CI)")
    return figure


# --------------------------------------------------------------------------------------------- figure 4
def heatmap_figure(
    class_damage: pd.DataFrame, damage: pd.DataFrame, title: str, top_units: int = 20
) -> plt.Figure:
    """Class accuracy drop for the units with the largest max class drop (rows) and every class."""
    classes = class_damage
    units = sort_units(damage)
    chosen = units.unit.to_numpy()[:top_units]
    class_order = list(dict.fromkeys(classes["class"]))
    drops = classes.pivot(index="unit", columns="class", values="drop").reindex(
        index=chosen, columns=class_order
    )
    matrix = drops.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    finite = np.abs(matrix[np.isfinite(matrix)])
    limit = max(1.0, float(finite.max())) if finite.size else 1.0
    hurt = (
        classes.pivot(index="unit", columns="class", values="hurt")
        .reindex(index=chosen, columns=class_order)
        .map(lambda value: str(value).strip().lower() in ("true", "1", "1.0"))
        .to_numpy()
    )
    with plt.rc_context(STYLE):
        figure, ax = plt.subplots(
            figsize=(max(5.0, 0.5 * len(class_order) + 2.8), 0.28 * len(chosen) + 2.0), layout="constrained"
        )
        cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.8")  # NaN cells grey
        image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(len(class_order)), class_order, rotation=45, ha="right", rotation_mode="anchor")
        ax.set_yticks(range(len(chosen)), [f"unit {u}" for u in chosen])
        ax.spines[:].set_visible(False)
        rows, cols = np.nonzero(hurt)
        ax.scatter(cols, rows, marker="*", s=40, color="black", label="significantly hurt (McNemar, BH)")
        if len(rows):
            figure.legend(loc="outside lower center")
        figure.colorbar(image, ax=ax, label="class accuracy drop (points)")
        ax.set_xlabel("class")
        ax.set_title(title)
    return figure
