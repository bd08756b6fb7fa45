"""Figures: damage overview, attribute-vs-damage scatter grids, unit x class drop heatmaps."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from unit_ablation.correlation import UNIT_ATTRIBUTES, correlate  # noqa: E402
from unit_ablation.io import atomic_path  # noqa: E402

log = logging.getLogger(__name__)

STYLE = {
    "figure.dpi": 100,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
}
DAMAGE_LABELS = {
    "overall_drop": "overall accuracy drop (points)",
    "max_class_drop": "max class accuracy drop (points)",
}


def save_figure(figure: plt.Figure, path: str | Path, dpi: int) -> None:
    """Save atomically (format from the file suffix) and close."""
    suffix = Path(path).suffix.lstrip(".")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, bbox_inches="tight", format=suffix)
    plt.close(figure)


def overview_figure(
    labels: Sequence[tuple[str, str]], unit_tables: Sequence[str | Path], output: str | Path, dpi: int = 120
) -> None:
    """Overall drop vs max class drop per unit; one panel per layer, one colour per model."""
    by_layer: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    for (model, layer), path in zip(labels, unit_tables, strict=True):
        by_layer.setdefault(layer, []).append((model, pd.read_csv(path, sep="\t")))
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(
            1, len(by_layer), figsize=(4.2 * len(by_layer), 3.8), squeeze=False, sharey=True
        )
        for ax, (layer, entries) in zip(axes[0], by_layer.items(), strict=True):
            for model, table in entries:
                ax.scatter(table.overall_drop, table.max_class_drop, s=12, alpha=0.7, label=model)
            ax.axvline(0, color="0.7", lw=0.8)
            ax.axhline(0, color="0.7", lw=0.8)
            ax.set_title(layer)
            ax.set_xlabel(DAMAGE_LABELS["overall_drop"])
        axes[0][0].set_ylabel(DAMAGE_LABELS["max_class_drop"])
        axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)
        figure.suptitle("Single-unit ablation: overall accuracy drop against the largest class drop")
        save_figure(figure, output, dpi)


def attribute_figure(
    attributes_path: str | Path, damage_path: str | Path, output: str | Path, title: str, dpi: int = 120
) -> None:
    """Scatter grid: every unit attribute (columns) against overall and max class drop (rows), with rho."""
    table = pd.read_csv(attributes_path, sep="\t").merge(pd.read_csv(damage_path, sep="\t"), on="unit")
    targets = list(DAMAGE_LABELS)
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(
            len(targets),
            len(UNIT_ATTRIBUTES),
            figsize=(2.4 * len(UNIT_ATTRIBUTES), 2.4 * len(targets)),
            squeeze=False,
        )
        for row, target in enumerate(targets):
            for col, attribute in enumerate(UNIT_ATTRIBUTES):
                ax = axes[row][col]
                ax.scatter(table[attribute], table[target], s=8, alpha=0.7, color=f"C{row}")
                rho = correlate(table[attribute], table[target])["spearman_rho"]
                ax.set_title(f"rho = {rho:.2f}" if np.isfinite(rho) else "rho undefined")
                ax.set_xlabel(attribute.replace("_", " "))
                if col == 0:
                    ax.set_ylabel(DAMAGE_LABELS[target])
        figure.suptitle(title)
        figure.tight_layout()
        save_figure(figure, output, dpi)


def heatmap_figure(
    class_damage_path: str | Path,
    damage_path: str | Path,
    output: str | Path,
    title: str,
    top_units: int = 20,
    dpi: int = 120,
) -> None:
    """Class accuracy drop for the units with the largest max class drop (rows) and every class."""
    classes = pd.read_csv(class_damage_path, sep="\t")
    units = pd.read_csv(damage_path, sep="\t").sort_values("max_class_drop", ascending=False, kind="stable")
    chosen = units.unit.to_numpy()[:top_units]
    class_order = list(dict.fromkeys(classes["class"]))
    matrix = classes.pivot(index="unit", columns="class", values="drop").loc[chosen, class_order]
    limit = max(1.0, float(np.abs(matrix.to_numpy()).max()))
    with plt.rc_context(STYLE):
        figure, ax = plt.subplots(figsize=(0.5 * len(class_order) + 2.5, 0.28 * len(chosen) + 1.8))
        image = ax.imshow(matrix.to_numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(len(class_order)), class_order, rotation=60, ha="right")
        ax.set_yticks(range(len(chosen)), [f"unit {u}" for u in chosen])
        hurt = classes.pivot(index="unit", columns="class", values="hurt").loc[chosen, class_order].to_numpy()
        rows, cols = np.nonzero(hurt.astype(bool))
        ax.scatter(cols, rows, marker="*", s=40, color="black", label="significantly hurt (McNemar, BH)")
        if len(rows):
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), frameon=False)
        figure.colorbar(image, ax=ax, label="class accuracy drop (points)")
        ax.set_title(title)
        save_figure(figure, output, dpi)


def layer_figures(
    attributes_path: str | Path,
    damage_path: str | Path,
    class_damage_path: str | Path,
    attributes_output: str | Path,
    heatmap_output: str | Path,
    title: str,
    heatmap_units: int = 20,
    dpi: int = 120,
) -> None:
    """Both per-layer figures of one (model, layer spec)."""
    attribute_figure(
        attributes_path, damage_path, attributes_output, title=f"{title}: attributes vs damage", dpi=dpi
    )
    heatmap_figure(
        class_damage_path,
        damage_path,
        heatmap_output,
        title=f"{title}: most damaging units",
        top_units=heatmap_units,
        dpi=dpi,
    )
