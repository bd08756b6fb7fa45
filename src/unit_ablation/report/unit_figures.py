"""Figures of single units' damage from unit damage tables (stages `plot_overview`, `plot_sorted_units`):

1. `overview_figure`: overall drop against max class drop per unit, every model, one panel per layer spec.
2. `sorted_units_figure`: one model's units sorted by max class drop, with their overall drop."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from unit_ablation.report.style import (
    DAMAGE_LABELS,
    MISSING_COLOUR,
    REFERENCE_LINE,
    STYLE,
    _grid_axes,
    _legend_right,
    _numeric,
    _spec_title,
    model_colours,
    sort_units,
    spec_grid,
)


# --------------------------------------------------------------------------------------------- figure 1
def overview_figure(labels: Sequence[tuple[str, str]], unit_tables: Sequence[pd.DataFrame]) -> plt.Figure:
    """Overall drop vs max class drop per unit; one panel per layer spec (rows: layers, columns: bases),
    one colour per model; axes shared within a row. `labels`: the (model, layer spec) of each table."""
    if not labels:
        raise ValueError("overview_figure: no tables")
    labels = [(str(model), str(spec)) for model, spec in labels]
    tables = list(unit_tables)
    if len(tables) != len(labels):
        raise ValueError(f"{len(labels)} labels but {len(tables)} unit tables")
    layers, bases, positions = spec_grid(spec for _, spec in labels)
    colours = model_colours(model for model, _ in labels)
    with plt.rc_context(STYLE):
        figure = plt.figure(
            figsize=(max(8.0, 2.9 * len(bases) + 2.6), 2.6 * len(layers) + 0.9), layout="constrained"
        )
        axes = _grid_axes(figure, len(layers), len(bases), positions.values())
        for (model, spec), table in zip(labels, tables, strict=True):
            row, col = positions[spec]
            axes[row][col].scatter(
                _numeric(table.overall_drop),
                _numeric(table.max_class_drop),
                s=10,
                alpha=0.6,
                color=colours[model],
                edgecolors="none",
            )
        for spec, (row, col) in positions.items():
            ax = axes[row][col]
            ax.axvline(0, **REFERENCE_LINE)
            ax.axhline(0, **REFERENCE_LINE)
            ax.axline((0, 0), slope=1, ls=":", **REFERENCE_LINE)
            ax.set_title(_spec_title(spec))
        handles = [Line2D([], [], ls="", marker="o", ms=5, color=colour) for colour in colours.values()]
        handles.append(Line2D([], [], ls=":", **{k: v for k, v in REFERENCE_LINE.items() if k != "zorder"}))
        _legend_right(figure, handles, [*colours, "max class drop = overall drop"], title="model")
        figure.supxlabel(DAMAGE_LABELS["overall_drop"])
        figure.supylabel(DAMAGE_LABELS["max_class_drop"])
        figure.suptitle("Single-unit ablation: overall accuracy drop against the largest class drop")
    return figure


# --------------------------------------------------------------------------------------------- figure 2
def sorted_units_figure(
    layer_specs: Sequence[str], unit_tables: Sequence[pd.DataFrame], title: str
) -> plt.Figure:
    """One model: per layer spec, units sorted by max class drop (bars, coloured by the class hurt most)
    with their overall drop (dots); x is the rank."""
    if not layer_specs:
        raise ValueError("sorted_units_figure: no tables")
    specs = [str(spec) for spec in layer_specs]
    tables = [sort_units(table) for table in unit_tables]
    if len(tables) != len(specs):
        raise ValueError(f"{len(specs)} layer specs but {len(tables)} unit tables")
    grid_layers, bases, positions = spec_grid(specs)
    classes = sorted(
        {str(c) for table in tables for c in table.get("max_drop_class", pd.Series()).dropna()},
    )
    palette = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    class_colours = {name: palette(i % palette.N) for i, name in enumerate(classes)}
    with plt.rc_context(STYLE):
        figure = plt.figure(
            figsize=(max(7.0, 3.4 * len(bases) + 2.4), 2.5 * len(grid_layers) + 0.9), layout="constrained"
        )
        axes = _grid_axes(figure, len(grid_layers), len(bases), positions.values())
        for spec, table in zip(specs, tables, strict=True):
            row, col = positions[spec]
            ax = axes[row][col]
            hurt = table.get("max_drop_class", pd.Series([None] * len(table)))
            colours = [
                class_colours.get(str(c), MISSING_COLOUR) if pd.notna(c) else MISSING_COLOUR for c in hurt
            ]
            ax.bar(table["rank"], _numeric(table.max_class_drop), width=1.0, color=colours, linewidth=0)
            ax.plot(table["rank"], _numeric(table.overall_drop), ls="", marker="o", ms=2.5, color="black")
            ax.axhline(0, **REFERENCE_LINE)
            ax.set_xlim(0.5, max(len(table), 1) + 0.5)
            ax.set_title(_spec_title(spec))
        handles = [Patch(color=colour) for colour in class_colours.values()]
        names = [f"max class drop: {name}" for name in class_colours]
        handles.append(Line2D([], [], ls="", marker="o", ms=3, color="black"))
        names.append("overall drop")
        _legend_right(figure, handles, names, title="bars coloured by the class hurt most")
        figure.supxlabel("unit rank (by max class drop, largest first)")
        figure.supylabel("accuracy drop (points)")
        figure.suptitle(title)
    return figure
