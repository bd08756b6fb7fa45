"""Figures of the study, each written as one or more files (format from each suffix, e.g. PNG and PDF).

1. `overview_figure`: overall drop against max class drop per unit, every model, one panel per layer spec.
2. `sorted_units_figure`: one model's units sorted by max class drop, with their overall drop.
3. `attribute_figure`: every unit attribute against every damage measure, Spearman rho with bootstrap CI.
4. `heatmap_figure`: class accuracy drop of the most damaging units, every class, significant cells starred.
5. `comparison_figure`: variants and bases side by side (max class drop, selectivity, rho).
6. `agreement_figure`: how often a unit's most selective class is its most damaged class, against chance.
7. `cumulative_figure`: class and overall accuracy as more and more units are ablated together.

Panels of layer specs sit on a grid: rows are layers, columns bases (canonical, rot0, rot1, ...).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.backend_bases import FigureCanvasBase  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from unit_ablation.correlation import UNIT_ATTRIBUTES, UNIT_DAMAGE, correlate  # noqa: E402
from unit_ablation.io import atomic_path  # noqa: E402
from unit_ablation.layers import parse_layer_spec  # noqa: E402

log = logging.getLogger(__name__)
logging.getLogger("fontTools").setLevel(logging.WARNING)  # PDF font subsetting is chatty at INFO

PathLike = str | Path

STYLE = {
    "figure.dpi": 100,
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "legend.frameon": False,
    "figure.titlesize": 11,
    "figure.labelsize": 9,
    "lines.linewidth": 1.4,
    "lines.markersize": 4,
    "errorbar.capsize": 2,
    "pdf.fonttype": 42,  # TrueType in PDFs: text stays text (editable, searchable)
    "ps.fonttype": 42,
    "svg.fonttype": "none",
}
DAMAGE_LABELS = {
    "overall_drop": "overall accuracy drop (points)",
    "max_class_drop": "max class accuracy drop (points)",
    "topk_mean_drop": "mean drop of the k most\nhurt classes (points)",
    "class_drop": "class accuracy drop (points)",
}
ATTRIBUTE_LABELS = {
    "class_selectivity": "class selectivity",
    "class_gap": "class-mean gap (SD units)",
    "class_correlation": "max class correlation",
    "l1_in": "incoming weight L1 norm",
    "l1_out": "outgoing weight L1 norm",
    "activation_mean": "mean activation",
    "activation_std": "activation std",
    "activation_sparsity": "activation sparsity\n(fraction of zeros)",
    "activation_max": "max activation",
}
# Spearman rho bars of the comparison figure: (level, attribute, damage) -> legend label.
RHO_MEASURES = {
    ("unit", "class_selectivity", "overall_drop"): "selectivity vs overall drop (units)",
    ("unit", "class_selectivity", "max_class_drop"): "selectivity vs max class drop (units)",
    ("unit-class", "class_selectivity", "class_drop"): "class selectivity vs class drop (unit-class pairs)",
}
BASIS_COLOURS = {"canonical": "#4C72B0", "rotated": "#DD8452"}
MEASURE_COLOURS = ("#55A868", "#C44E52", "#8172B3")
TOP_COLOUR, RANDOM_COLOUR = "#C44E52", "#4C72B0"
MISSING_COLOUR = "0.6"
REFERENCE_LINE = {"color": "0.75", "lw": 0.8, "zorder": 0}
_SEED_SUFFIX = re.compile(r"-s\d+$")


# --------------------------------------------------------------------------------------------- helpers
def _as_outputs(outputs: Sequence[PathLike] | PathLike) -> list[Path]:
    """A list of output paths with supported suffixes; a single path (str or Path) is accepted too."""
    paths = [Path(outputs)] if isinstance(outputs, str | Path) else [Path(path) for path in outputs]
    if not paths:
        raise ValueError("no output paths given")
    supported = FigureCanvasBase.get_supported_filetypes()
    for path in paths:
        if path.suffix.lstrip(".").lower() not in supported:
            raise ValueError(f"{path}: unsupported figure format; use one of {sorted(supported)}")
    return paths


def save_figure(figure: plt.Figure, outputs: Sequence[PathLike] | PathLike, dpi: int = 120) -> None:
    """Save to every path atomically (format from each suffix), then close the figure.

    PDF and SVG files carry no creation date, so the same data give the same bytes.
    """
    try:
        paths = _as_outputs(outputs)
        with plt.rc_context(STYLE):
            for path in paths:
                suffix = path.suffix.lstrip(".").lower()
                metadata = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}.get(suffix)
                with atomic_path(path) as tmp:
                    figure.savefig(tmp, dpi=dpi, bbox_inches="tight", format=suffix, metadata=metadata)
    finally:
        plt.close(figure)


def _read(path: PathLike, cache: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Read a TSV (once per path when a cache is given)."""
    key = str(path)
    if cache is None:
        return pd.read_csv(path, sep="\t")
    if key not in cache:
        cache[key] = pd.read_csv(path, sep="\t")
    return cache[key]


def _numeric(values: Iterable) -> np.ndarray:
    return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=np.float64)


def _finite(values: Iterable) -> np.ndarray:
    array = _numeric(values)
    return array[np.isfinite(array)]


def basis_label(layer_spec: str) -> str:
    """'canonical' for `conv5`, 'rot0' for `conv5@rot0`."""
    seed = parse_layer_spec(layer_spec).rotation_seed
    return "canonical" if seed is None else f"rot{seed}"


def _basis_key(layer_spec: str) -> int:
    seed = parse_layer_spec(layer_spec).rotation_seed
    return -1 if seed is None else seed


def spec_grid(layer_specs: Iterable[str]) -> tuple[list[str], list[str], dict[str, tuple[int, int]]]:
    """Rows (layers, in order of first appearance), columns (bases: canonical, then rotations by seed)
    and the (row, column) of each layer spec."""
    specs = list(dict.fromkeys(layer_specs))
    layers = list(dict.fromkeys(parse_layer_spec(spec).label for spec in specs))
    bases = [basis_label(spec) for spec in sorted(specs, key=_basis_key)]
    bases = list(dict.fromkeys(bases))
    positions = {
        spec: (layers.index(parse_layer_spec(spec).label), bases.index(basis_label(spec))) for spec in specs
    }
    return layers, bases, positions


def _grid_axes(
    figure: plt.Figure, nrows: int, ncols: int, used: Iterable[tuple[int, int]], share_rows: bool = True
) -> np.ndarray:
    """A grid of axes; unused cells are hidden, and (share_rows) the used axes of a row share x and y
    (only the first shows y tick labels)."""
    axes = figure.subplots(nrows, ncols, squeeze=False)
    used = set(used)
    for row in range(nrows):
        present = [axes[row][col] for col in range(ncols) if (row, col) in used]
        for col in range(ncols):
            if (row, col) not in used:
                axes[row][col].set_visible(False)
        if share_rows and present:
            for ax in present[1:]:
                ax.sharex(present[0])
                ax.sharey(present[0])
                ax.tick_params(labelleft=False)
    return axes


def _spec_title(layer_spec: str) -> str:
    return f"{parse_layer_spec(layer_spec).label} ({basis_label(layer_spec)})"


def model_colours(models: Iterable[str]) -> dict[str, str]:
    """One colour per model, in order of first appearance."""
    models = list(dict.fromkeys(models))
    palette = plt.get_cmap("tab10" if len(models) <= 10 else "tab20")
    return {model: matplotlib.colors.to_hex(palette(i % palette.N)) for i, model in enumerate(models)}


def seed_stem(model: str) -> str:
    """The model name without its training seed: `fmnist-alexnet-bn-s1` -> `fmnist-alexnet-bn`."""
    return _SEED_SUFFIX.sub("", model)


def format_rho(rho: float, low: float = math.nan, high: float = math.nan) -> str:
    """'rho = 0.31 [0.12, 0.48]' (bootstrap 95% CI), 'rho = 0.31' without a CI, 'rho undefined' for NaN."""
    rho, low, high = (float(value) if value is not None else math.nan for value in (rho, low, high))
    if not np.isfinite(rho):
        return "rho undefined"
    text = f"rho = {rho:.2f}"
    if np.isfinite(low) and np.isfinite(high):
        text += f" [{low:.2f}, {high:.2f}]"
    return text


def correlation_rows(correlation: pd.DataFrame, layer_spec: str, level: str = "unit") -> pd.DataFrame:
    """The rows of one layer spec and level, indexed by (attribute, damage)."""
    rows = correlation[(correlation.layer_spec.astype(str) == layer_spec) & (correlation.level == level)]
    return rows.drop_duplicates(["attribute", "damage"]).set_index(["attribute", "damage"])


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


def sort_units(table: pd.DataFrame, by: str = "max_class_drop") -> pd.DataFrame:
    """Units sorted by `by`, largest first (NaN last, ties in table order), with rank 1..n."""
    values = pd.to_numeric(table[by], errors="coerce")
    order = np.argsort(-values.fillna(-np.inf).to_numpy(), kind="stable")
    ordered = table.iloc[order].reset_index(drop=True)
    ordered.insert(0, "rank", np.arange(1, len(ordered) + 1))
    return ordered


def _legend_right(figure: plt.Figure, handles: list, labels: list[str], title: str | None = None) -> None:
    if handles:
        figure.legend(handles, labels, loc="outside right center", title=title)


# --------------------------------------------------------------------------------------------- figure 1
def overview_figure(
    labels: Sequence[tuple[str, str]],
    unit_tables: Sequence[PathLike],
    outputs: Sequence[PathLike],
    dpi: int = 120,
) -> None:
    """Overall drop vs max class drop per unit; one panel per layer spec (rows: layers, columns: bases),
    one colour per model; axes shared within a row."""
    if not labels:
        raise ValueError("overview_figure: no tables")
    labels = [(str(model), str(spec)) for model, spec in labels]
    tables = [_read(path) for path in unit_tables]
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
        save_figure(figure, outputs, dpi)


# --------------------------------------------------------------------------------------------- figure 2
def sorted_units_figure(
    layers: Sequence[str],
    unit_tables: Sequence[PathLike],
    outputs: Sequence[PathLike],
    title: str,
    dpi: int = 120,
) -> None:
    """One model: per layer spec, units sorted by max class drop (bars, coloured by the class hurt most)
    with their overall drop (dots); x is the rank."""
    if not layers:
        raise ValueError("sorted_units_figure: no tables")
    specs = [str(spec) for spec in layers]
    tables = [sort_units(_read(path)) for path in unit_tables]
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
        save_figure(figure, outputs, dpi)


# --------------------------------------------------------------------------------------------- figure 3
def attribute_figure(
    attributes_path: PathLike,
    damage_path: PathLike,
    correlation_path: PathLike,
    layer_spec: str,
    outputs: Sequence[PathLike],
    title: str,
    dpi: int = 120,
) -> None:
    """Scatter grid: every unit attribute (columns) against each damage measure (rows); panel titles give
    Spearman rho and its bootstrap 95% CI from the correlation table."""
    attributes = _read(attributes_path)
    damage = _read(damage_path)
    table = attributes.merge(damage, on="unit", how="inner", suffixes=("", "_damage"))
    columns = [a for a in UNIT_ATTRIBUTES if a in table]
    targets = [t for t in UNIT_DAMAGE if t in table]
    titles = attribute_panel_titles(_read(correlation_path), str(layer_spec), table, columns, targets)
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(
            max(1, len(targets)),
            max(1, len(columns)),
            figsize=(2.3 * max(1, len(columns)) + 0.6, 2.2 * max(1, len(targets)) + 0.7),
            squeeze=False,
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
                ax.set_xlabel(ATTRIBUTE_LABELS.get(attribute, attribute.replace("_", " ")))
                if col == 0:
                    ax.set_ylabel(DAMAGE_LABELS.get(target, target.replace("_", " ")))
        figure.suptitle(f"{title} (Spearman rho over {len(table)} units, bootstrap 95% CI)")
        save_figure(figure, outputs, dpi)


# --------------------------------------------------------------------------------------------- figure 4
def heatmap_figure(
    class_damage_path: PathLike,
    damage_path: PathLike,
    outputs: Sequence[PathLike],
    title: str,
    top_units: int = 20,
    dpi: int = 120,
) -> None:
    """Class accuracy drop for the units with the largest max class drop (rows) and every class."""
    classes = _read(class_damage_path)
    units = sort_units(_read(damage_path))
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
        save_figure(figure, outputs, dpi)


def layer_figures(
    attributes_path: PathLike,
    damage_path: PathLike,
    class_damage_path: PathLike,
    correlation_path: PathLike,
    layer_spec: str,
    attributes_outputs: Sequence[PathLike],
    heatmap_outputs: Sequence[PathLike],
    title: str,
    heatmap_units: int = 20,
    dpi: int = 120,
) -> None:
    """Both per-layer figures of one (model, layer spec)."""
    attribute_figure(
        attributes_path,
        damage_path,
        correlation_path,
        layer_spec,
        attributes_outputs,
        title=f"{title}: attributes vs damage",
        dpi=dpi,
    )
    heatmap_figure(
        class_damage_path,
        damage_path,
        heatmap_outputs,
        title=f"{title}: most damaging units",
        top_units=heatmap_units,
        dpi=dpi,
    )


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
    unit_tables: Sequence[PathLike],
    attribute_tables: Sequence[PathLike],
    correlation_tables: Sequence[PathLike],
    outputs: Sequence[PathLike],
    dpi: int = 120,
) -> None:
    """Variants and bases side by side, one row per layer: (a) max class drop and (b) class selectivity
    per unit, pooled over training seeds and rotation seeds, per (variant, basis group); (c) Spearman rho
    of selectivity against damage: bars are the mean over the group's models and rotations, dots each
    one's rho with its bootstrap 95% CI."""
    entries = [(str(m), str(v), str(s)) for m, v, s in entries]
    if not entries:
        raise ValueError("comparison_figure: no entries")
    if not len(entries) == len(unit_tables) == len(attribute_tables) == len(correlation_tables):
        raise ValueError("comparison_figure: entries and tables differ in length")
    cache: dict[str, pd.DataFrame] = {}
    layers = list(dict.fromkeys(parse_layer_spec(spec).label for _, _, spec in entries))
    keys, group_labels = comparison_groups(entries)
    # per (layer, group): max class drops, selectivities, and per measure the (rho, low, high) of each member
    drops: dict = {}
    selectivity: dict = {}
    rhos: dict = {}
    for (model, _, spec), units_path, attr_path, corr_path in zip(
        entries, unit_tables, attribute_tables, correlation_tables, strict=True
    ):
        cell = (parse_layer_spec(spec).label, (seed_stem(model), _basis_group(spec)))
        drops.setdefault(cell, []).append(_finite(_read(units_path).max_class_drop))
        selectivity.setdefault(cell, []).append(_finite(_read(attr_path).class_selectivity))
        correlation = _read(corr_path, cache)
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
                                    yerr=[[rho - low], [high - rho]],
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
        save_figure(figure, outputs, dpi)


# --------------------------------------------------------------------------------------------- figure 6
def agreement_figure(
    entries: Sequence[tuple[str, str]],
    agreement_tables: Sequence[PathLike],
    outputs: Sequence[PathLike],
    dpi: int = 120,
) -> None:
    """Share of units whose most selective class is their most damaged class (top row) or among the five
    most damaged (bottom row); one panel per layer, bases along x, one bar colour per model; black lines
    mark permutation chance, stars p < 0.05."""
    entries = [(str(model), str(spec)) for model, spec in entries]
    if not entries:
        raise ValueError("agreement_figure: no entries")
    if len(entries) != len(agreement_tables):
        raise ValueError(f"{len(entries)} entries but {len(agreement_tables)} agreement tables")
    cache: dict[str, pd.DataFrame] = {}
    records = {}
    for (model, spec), path in zip(entries, agreement_tables, strict=True):
        table = _read(path, cache)
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
        save_figure(figure, outputs, dpi)


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


def cumulative_figure(
    cumulative_tables: Sequence[PathLike],
    outputs: Sequence[PathLike],
    dpi: int = 120,
) -> None:
    """One row per (model, layer spec), one panel per class: class accuracy (solid) and overall accuracy
    (dashed) as k units are ablated together, the units hurting that class most first ('top') or random
    units (mean over draws, min-max band)."""
    if not cumulative_tables:
        raise ValueError("cumulative_figure: no tables")
    table = pd.concat([_read(path) for path in cumulative_tables], ignore_index=True)
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
        save_figure(figure, outputs, dpi)
