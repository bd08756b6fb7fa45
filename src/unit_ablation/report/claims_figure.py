"""Figure 8: per-network effects behind claim 5, each network with its interval.

One panel per layer: every trained network's class specificity (Hodges-Lehmann location over
units, with its interval) by variant in the canonical basis, and in its rotated bases beside it,
so that a reader sees the replicates a variant contrast rests on and how far they spread.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from unit_ablation.analysis.network_stats import concatenate_statistics
from unit_ablation.report.style import STYLE, PathLike, plt, save_figure

CANONICAL_COLOUR, ROTATED_COLOUR = "#C44E52", "#4C72B0"


def network_effects_figure(
    statistics_tables: Sequence[PathLike],
    outputs: Sequence[PathLike],
    dpi: int = 120,
    statistic: str = "specificity",
) -> None:
    """Per layer: each network's `statistic` with its interval, grouped by variant, canonical
    and rotated bases side by side; the horizontal tick is the variant's mean over networks."""
    table = concatenate_statistics(statistics_tables)
    table = table[table.statistic == statistic]
    layers = list(dict.fromkeys(table.layer))
    variants = list(dict.fromkeys(table.variant))
    with plt.rc_context(STYLE):
        figure = plt.figure(
            figsize=(max(5.0, 1.4 * len(variants) + 2.5), 2.6 * len(layers) + 0.8), layout="constrained"
        )
        axes = figure.subplots(len(layers), 1, squeeze=False)[:, 0]
        for ax, layer in zip(axes, layers, strict=True):
            by_layer = table[table.layer == layer]
            for position, variant in enumerate(variants):
                for offset, rotated, colour in (
                    (-0.15, False, CANONICAL_COLOUR),
                    (0.15, True, ROTATED_COLOUR),
                ):
                    rows = by_layer[
                        (by_layer.variant == variant) & ((by_layer.basis != "canonical") == rotated)
                    ]
                    if rows.empty:
                        continue
                    rows = rows.groupby("model", sort=True)[["value", "ci_low", "ci_high"]].mean()
                    x = position + offset + np.linspace(-0.08, 0.08, len(rows)) * (len(rows) > 1)
                    ax.errorbar(
                        x,
                        rows.value,
                        yerr=[rows.value - rows.ci_low, rows.ci_high - rows.value],
                        fmt="o",
                        color=colour,
                        ms=3.5,
                        lw=1.0,
                    )
                    ax.hlines(
                        rows.value.mean(),
                        position + offset - 0.12,
                        position + offset + 0.12,
                        color=colour,
                        lw=2,
                    )
            ax.set_xticks(range(len(variants)), variants)
            ax.set_title(layer)
            ax.set_ylabel("class specificity (points)\nmax - mean class drop")
        handles = [
            plt.Line2D([], [], color=CANONICAL_COLOUR, marker="o", ls=""),
            plt.Line2D([], [], color=ROTATED_COLOUR, marker="o", ls=""),
        ]
        figure.legend(
            handles,
            ["canonical basis", "rotated bases (mean over seeds)"],
            loc="outside lower center",
            ncols=2,
        )
        figure.suptitle("Claim 5: class specificity per trained network (Hodges-Lehmann 95% interval)")
        save_figure(figure, outputs, dpi)
