"""Figures across the study's models, drawn from their tables (stages `plot_comparison`,
`plot_agreement`, `plot_cumulative`):

5. `comparison_figure`: variants and bases side by side (max class drop, selectivity, rho).
6. `agreement_figure`: how often a unit's most selective class is its most damaged class, against chance.
7. `cumulative_figure`: class and overall accuracy as more and more units are ablated together."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from unit_ablation.report.style import (
    ATTRIBUTE_LABELS,
    BASIS_COLOURS,
    DAMAGE_LABELS,
    MEASURE_COLOURS,
    RHO_MEASURES,
    STYLE,
    _finite,
    _legend_right,
    _spec_title,
    correlation_rows,
    model_colours,
    spec_grid,
)
from unit_ablation.spec.layer_spec import parse_layer_spec
from unit_ablation.spec.model_names import seed_stem

TOP_COLOUR, RANDOM_COLOUR = "#C44E52", "#4C72B0"


# --------------------------------------------------------------------------------------------- figure 5
def comparison_groups(entries: Sequence[tuple[str, str, str]]) -> tuple[list[tuple[str, str]], dict]:
    """Groups (model without seed, basis group) in order of first appearance, canonical before rotated,
    and a readable label for each ('baseline\\ncanonical')."""
    stems = list(dict.fromkeys(seed_stem(model) for model, _, _ in entries))
    variant_of = {}
    for model, variant, _ in entries:
        variant_of.setdefault(seed_stem(model), str(variant))
    unique = len(set(variant_of.values())) == len(variant_of)
    keys = [
        (stem, basis)
        for stem in stems
        for basis in ("canonical", "rotated")
        if any(seed_stem(m) == stem and _basis_group(s) == basis for m, _, s in entries)
    ]
    labels = {key: f"{variant_of[key[0]] if unique else key[0]}\n{key[1]}" for key in keys}
    return keys, labels


def _basis_group(layer_spec: str) -> str:
    return "canonical" if parse_layer_spec(layer_spec).rotation_seed is None else "rotated"


def _strip_points(ax: plt.Axes, groups: list[np.ndarray], colours: list[str]) -> None:
    """Box plots with the individual values as jittered dots; empty groups are left blank."""
    rng = np.random.default_rng(0)
    present = [i for i, values in enumerate(groups) if values.size]
    if present:
        boxes = ax.boxplot(
            [groups[i] for i in present],
            positions=present,
            widths=0.55,
            showfliers=False,
            patch_artist=True,
            medianprops={"color": "black"},
        )
        for patch, i in zip(boxes["boxes"], present, strict=True):
            patch.set_facecolor(colours[i])
            patch.set_alpha(0.35)
    for i in present:
        jitter = rng.uniform(-0.18, 0.18, size=groups[i].size)
        ax.scatter(i + jitter, groups[i], s=5, color=colours[i], alpha=0.7, edgecolors="none", zorder=3)


def comparison_figure(
    entries: Sequence[tuple[str, str, str]],
    unit_tables: Sequence[pd.DataFrame],
    attribute_tables: Sequence[pd.DataFrame],
    correlation_tables: Sequence[pd.DataFrame],
) -> plt.Figure:
    """Variants and bases side by side, one row per layer: (a) max class drop and (b) class selectivity
    per unit, pooled over training seeds and rotation seeds, per (variant, basis group); (c) Spearman rho
    of selectivity against damage: bars are the mean over the group's models and rotations, dots each
    one's rho with its bootstrap 95% CI. `entries`: the (model, variant, layer spec) of each table (a
    model's correlation table, given once per entry, holds all its layer specs)."""
    entries = [(str(m), str(v), str(s)) for m, v, s in entries]
    if not entries:
        raise ValueError("comparison_figure: no entries")
    if not len(entries) == len(unit_tables) == len(attribute_tables) == len(correlation_tables):
        raise ValueError("comparison_figure: entries and tables differ in length")
    layers = list(dict.fromkeys(parse_layer_spec(spec).label for _, _, spec in entries))
    keys, group_labels = comparison_groups(entries)
    # per (layer, group): max class drops, selectivities, and per measure the (rho, low, high) of each member
    drops: dict = {}
    selectivity: dict = {}
    rhos: dict = {}
    for (model, _, spec), units, attributes, correlation in zip(
        entries, unit_tables, attribute_tables, correlation_tables, strict=True
    ):
        cell = (parse_layer_spec(spec).label, (seed_stem(model), _basis_group(spec)))
        drops.setdefault(cell, []).append(_finite(units.max_class_drop))
        selectivity.setdefault(cell, []).append(_finite(attributes.class_selectivity))
        for level, attribute, target in RHO_MEASURES:
            rows = correlation_rows(correlation, spec, level)
            if (attribute, target) in rows.index:
                row = rows.loc[(attribute, target)]
                values = tuple(
                    float(pd.to_numeric(row.get(name, math.nan), errors="coerce"))
                    for name in ("spearman_rho", "spearman_ci_low", "spearman_ci_high")
                )
            else:
                values = (math.nan, math.nan, math.nan)
            rhos.setdefault((cell, level, attribute, target), []).append(values)
    n_groups = len(keys)
    colours = [BASIS_COLOURS[basis] for _, basis in keys]
    tick_labels = [group_labels[key] for key in keys]
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(
            len(layers),
            3,
            figsize=(max(10.0, 2.3 * n_groups + 3.0), 2.9 * len(layers) + 1.0),
            squeeze=False,
            layout="constrained",
            gridspec_kw={"width_ratios": [1, 1, 1.4]},
        )
        for row, layer in enumerate(layers):
            ax_drop, ax_sel, ax_rho = axes[row]
            for ax, values, label in (
                (ax_drop, drops, DAMAGE_LABELS["max_class_drop"]),
                (ax_sel, selectivity, ATTRIBUTE_LABELS["class_selectivity"]),
            ):
                groups = [
                    np.concatenate(values[layer, key]) if (layer, key) in values else np.empty(0)
                    for key in keys
                ]
                _strip_points(ax, groups, colours)
                ax.set_ylabel(label)
            ax_drop.set_title(f"(a) {layer}: max class drop per unit")
            ax_sel.set_title(f"(b) {layer}: class selectivity per unit")
            width = 0.8 / len(RHO_MEASURES)
            for m, measure in enumerate(RHO_MEASURES):
                for g, key in enumerate(keys):
                    members = np.array(rhos.get(((layer, key), *measure), []), dtype=np.float64).reshape(
                        -1, 3
                    )
                    x = g + (m - (len(RHO_MEASURES) - 1) / 2) * width
                    finite = members[np.isfinite(members[:, 0])]
                    if finite.size:
                        ax_rho.bar(x, finite[:, 0].mean(), width, color=MEASURE_COLOURS[m], alpha=0.55)
                        offsets = np.linspace(-0.25, 0.25, len(finite)) * width if len(finite) > 1 else [0.0]
                        for offset, (rho, low, high) in zip(offsets, finite, strict=True):
                            if np.isfinite(low) and np.isfinite(high):
                                ax_rho.errorbar(
                                    x + offset,
                                    rho,
                                    yerr=[[max(rho - low, 0.0)], [max(high - rho, 0.0)]],  # a percentile
                                    # bootstrap interval need not contain the estimate
                                    fmt="none",
                                    ecolor="black",
                                    elinewidth=0.8,
                                )
                            ax_rho.plot(x + offset, rho, "o", ms=2.5, color="black")
                    elif len(members):
                        ax_rho.text(x, 0, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
            ax_rho.axhline(0, color="0.4", lw=0.8)
            ax_rho.set_ylabel("Spearman rho")
            ax_rho.set_title(f"(c) {layer}: selectivity vs damage")
            for ax in axes[row]:
                ax.set_xticks(range(n_groups), tick_labels)
                ax.set_xlim(-0.6, n_groups - 0.4)
        handles = [Patch(color=colour, alpha=0.55) for colour in MEASURE_COLOURS[: len(RHO_MEASURES)]]
        handles.append(Line2D([], [], color="black", marker="o", ms=2.5, lw=0.8))
        figure.legend(
            handles,
            [*RHO_MEASURES.values(), "one model and basis (bootstrap 95% CI)"],
            loc="outside lower center",
            ncols=2,
            title="(c) bars: mean Spearman rho over the group's training seeds and rotations",
        )
        figure.suptitle("Variants and bases: class-specific damage and selectivity")
    return figure


# --------------------------------------------------------------------------------------------- figure 6
def agreement_figure(
    entries: Sequence[tuple[str, str]], agreement_tables: Sequence[pd.DataFrame]
) -> plt.Figure:
    """Share of units whose most selective class is their most damaged class (top row) or among the five
    most damaged (bottom row); one panel per layer, bases along x, one bar colour per model; black lines
    mark permutation chance, stars p < 0.05. `entries`: the (model, layer spec) of each table (a model's
    agreement table, given once per entry, holds all its layer specs)."""
    entries = [(str(model), str(spec)) for model, spec in entries]
    if not entries:
        raise ValueError("agreement_figure: no entries")
    if len(entries) != len(agreement_tables):
        raise ValueError(f"{len(entries)} entries but {len(agreement_tables)} agreement tables")
    records = {}
    for (model, spec), table in zip(entries, agreement_tables, strict=True):
        rows = table[table.layer_spec.astype(str) == spec]
        records[model, spec] = rows.iloc[0] if len(rows) else pd.Series(dtype=object)
    layers, bases, positions = spec_grid(spec for _, spec in entries)
    models = list(dict.fromkeys(model for model, _ in entries))
    colours = model_colours(models)
    width = 0.8 / len(models)
    panel_width = max(2.2, len(bases) * (0.18 * len(models) + 0.35) + 0.6)
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(
            2,
            len(layers),
            figsize=(max(8.0, panel_width * len(layers) + 2.8), 5.6),
            squeeze=False,
            sharex=True,
            sharey="row",
            layout="constrained",
        )
        for row, k in enumerate((1, 5)):
            for (model, spec), record in records.items():
                layer_index, g = positions[spec]
                ax = axes[row][layer_index]
                share, chance, p = (
                    float(pd.to_numeric(record.get(f"top{k}_{name}", math.nan), errors="coerce"))
                    for name in ("share", "chance", "p")
                )
                x = g + (models.index(model) - (len(models) - 1) / 2) * width
                if np.isfinite(share):
                    ax.bar(x, 100 * share, width * 0.9, color=colours[model])
                    if np.isfinite(p) and p < 0.05:
                        ax.text(x, 100 * share, "*", ha="center", va="bottom", fontsize=10)
                else:
                    ax.text(x, 0, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
                if np.isfinite(chance):
                    ax.hlines(100 * chance, x - width * 0.45, x + width * 0.45, color="black", lw=1.5)
            axes[row][0].set_ylabel(
                f"units (%) whose most selective\nclass is {'the' if k == 1 else 'among the 5'} most hurt"
            )
            for layer_index, layer in enumerate(layers):
                ax = axes[row][layer_index]
                ax.set_title(f"{layer}: top-{k} agreement")
                ax.set_ylim(bottom=0)
        for ax in axes[-1]:
            ax.set_xticks(range(len(bases)), bases)
            ax.set_xlim(-0.6, len(bases) - 0.4)
            ax.set_xlabel("basis")
        handles = [Patch(color=colours[model]) for model in models]
        handles += [Line2D([], [], color="black", lw=1.5), Line2D([], [], ls="", marker="$*$", color="black")]
        _legend_right(
            figure, handles, [*models, "permutation chance", "p < 0.05 (permutation)"], title="model"
        )
        figure.suptitle("Is a unit's most selective class the class its ablation hurts most?")
    return figure


# --------------------------------------------------------------------------------------------- figure 7
def cumulative_curves(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per order ('top', 'random'): by k, the mean, min and max over draws of class and overall accuracy."""
    curves = {}
    for order, rows in table.groupby("order", sort=False):
        numeric = rows[["k", "class_accuracy", "overall_accuracy"]].apply(pd.to_numeric, errors="coerce")
        numeric = numeric.dropna(subset=["k"])
        grouped = numeric.groupby("k").agg(["mean", "min", "max"]).sort_index()
        grouped.columns = [f"{name}_{stat}" for name, stat in grouped.columns]
        curves[str(order)] = grouped.reset_index()
    return curves


def cumulative_figure(cumulative_tables: Sequence[pd.DataFrame]) -> plt.Figure:
    """One row per (model, layer spec), one panel per class: class accuracy (solid) and overall accuracy
    (dashed) as k units are ablated together, the units hurting that class most first ('top') or random
    units (mean over draws, min-max band)."""
    if not cumulative_tables:
        raise ValueError("cumulative_figure: no tables")
    table = pd.concat(list(cumulative_tables), ignore_index=True)
    table["model"] = table["model"].astype(str)
    table["layer_spec"] = table["layer_spec"].astype(str)
    rows = list(dict.fromkeys(zip(table.model, table.layer_spec, strict=True)))
    class_index = pd.to_numeric(table["class_index"], errors="coerce") if "class_index" in table else None
    order = table.assign(_index=class_index).sort_values("_index", kind="stable", na_position="last")
    classes = list(dict.fromkeys(order["class"].astype(str)))
    k_values = np.sort(pd.to_numeric(table["k"], errors="coerce").dropna().unique())
    with plt.rc_context(STYLE):
        figure = plt.figure(
            figsize=(max(9.0, 1.9 * len(classes) + 3.2), 2.1 * len(rows) + 1.0), layout="constrained"
        )
        all_axes = figure.subplots(len(rows), len(classes), squeeze=False, sharex=True, sharey=True)
        first = all_axes[0][0]
        for axes, (model, spec) in zip(all_axes, rows, strict=True):
            selected = table[(table.model == model) & (table.layer_spec == spec)]
            for c, (ax, name) in enumerate(zip(axes, classes, strict=True)):
                ax.set_title(name)
                if c == 0:
                    ax.set_ylabel(f"{model}\n{_spec_title(spec)}\naccuracy (%)")
                panel = selected[selected["class"].astype(str) == name]
                if panel.empty:
                    ax.text(
                        0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="0.5"
                    )
                    continue
                curves = cumulative_curves(panel)
                for order_name, colour in (("random", RANDOM_COLOUR), ("top", TOP_COLOUR)):
                    if order_name not in curves:
                        continue
                    curve = curves[order_name]
                    ax.plot(curve.k, curve.class_accuracy_mean, "-o", ms=2.5, color=colour)
                    ax.plot(curve.k, curve.overall_accuracy_mean, "--", color=colour, lw=1.0)
                    if order_name == "random":
                        ax.fill_between(
                            curve.k,
                            curve.class_accuracy_min,
                            curve.class_accuracy_max,
                            color=colour,
                            alpha=0.2,
                            lw=0,
                        )
        first.set_xscale("symlog", base=2, linthresh=1, linscale=0.5)
        if k_values.size:
            shown = k_values if k_values.size <= 8 else k_values[:: math.ceil(k_values.size / 8)]
            first.set_xticks(shown, [f"{k:g}" for k in shown], fontsize=7)
            first.set_xlim(k_values.min() - 0.1, k_values.max() * 1.1 + 0.1)
        handles = [
            Line2D([], [], color=TOP_COLOUR, marker="o", ms=2.5),
            (Patch(color=RANDOM_COLOUR, alpha=0.2), Line2D([], [], color=RANDOM_COLOUR, marker="o", ms=2.5)),
            Line2D([], [], color=TOP_COLOUR, ls="--", lw=1.0),
            Line2D([], [], color=RANDOM_COLOUR, ls="--", lw=1.0),
        ]
        figure.legend(
            handles,
            [
                "class accuracy, most damaging units first",
                "class accuracy, random units (mean, min-max)",
                "overall accuracy, most damaging units first",
                "overall accuracy, random units (mean)",
            ],
            loc="outside right center",
        )
        figure.supxlabel("units ablated together (k)")
        figure.suptitle("Cumulative ablation: units that hurt a class most, against random units")
    return figure
