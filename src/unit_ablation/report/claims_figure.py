"""Figure 8: per-network effects behind claim 5, each network with its interval.

One panel per layer: every trained network's class specificity (Hodges-Lehmann location over
units, with its interval) by variant in the canonical basis, and in its rotated bases beside it,
so that a reader sees the replicates a variant contrast rests on and how far they spread. Drawn
from the stage-one tables (stage `plot_network_effects`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from unit_ablation.report.style import STYLE, plt

CANONICAL_COLOUR, ROTATED_COLOUR = "#C44E52", "#4C72B0"


def network_effects_figure(statistics: pd.DataFrame, statistic: str = "specificity") -> plt.Figure:
    """Per layer: each network's `statistic` with its interval, grouped by variant, canonical
    and rotated bases side by side; the horizontal tick is the variant's mean over networks.
    `statistics`: the stage-one tables of every network and layer spec, stacked."""
    table = statistics[statistics.statistic == statistic]
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
                    value, low, high = (rows[name].to_numpy(float) for name in ("value", "ci_low", "ci_high"))
                    x = position + offset + np.linspace(-0.08, 0.08, len(rows)) * (len(rows) > 1)
                    ax.errorbar(
                        x,
                        value,
                        yerr=np.clip([value - low, high - value], 0, None),  # see study_figures
                        fmt="o",
                        color=colour,
                        ms=3.5,
                        lw=1.0,
                    )
                    ax.hlines(
                        rows.value.mean(),  # over the networks with a value (NaN skipped)
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
    return figure
