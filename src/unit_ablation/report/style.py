"""What every figure shares: style, labels, colours, the layer-spec grid, reading tables and saving.

Panels of layer specs sit on a grid: rows are layers, columns bases (canonical, rot0, rot1, ...)."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.backend_bases import FigureCanvasBase  # noqa: E402
from matplotlib.layout_engine import ConstrainedLayoutEngine  # noqa: E402
from matplotlib.ticker import FixedFormatter, FixedLocator  # noqa: E402

from unit_ablation.files.writing import atomic_path  # noqa: E402
from unit_ablation.spec.layer_spec import parse_layer_spec  # noqa: E402

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


MISSING_COLOUR = "0.6"


REFERENCE_LINE = {"color": "0.75", "lw": 0.8, "zorder": 0}


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
        # constrained layout already fits every artist into the figure; measuring the tight box
        # again costs a sixth of a many-panel figure's time
        fitted = isinstance(figure.get_layout_engine(), ConstrainedLayoutEngine)
        bbox = None if fitted else "tight"
        with plt.rc_context(STYLE):
            for path in paths:
                suffix = path.suffix.lstrip(".").lower()
                metadata = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}.get(suffix)
                with atomic_path(path) as tmp:
                    figure.savefig(tmp, dpi=dpi, bbox_inches=bbox, format=suffix, metadata=metadata)
                # the layout the first format computed serves the others: constrained layout's
                # solver is a quarter of a many-panel figure's drawing time. None, not "none": with
                # any engine set (even the placeholder "none" leaves) savefig draws twice
                figure.set_layout_engine(None)
                freeze_ticks(figure)
    finally:
        plt.close(figure)


def freeze_ticks(figure: plt.Figure) -> None:
    """Fix every axis's ticks, labels and offset text where the last draw put them, so that later
    formats draw the same ticks without running the locators and formatters again (the same
    bytes; a 27-panel figure's PDF in about 0.4 s rather than 0.65 s). The figure's layout must
    not change after it: a locator's tick count follows the axis's length."""
    for ax in figure.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for ticker in (axis.major, axis.minor):  # shared axes share one ticker
                if isinstance(ticker.locator, FixedLocator) and isinstance(ticker.formatter, FixedFormatter):
                    continue
                locations = ticker.locator()
                fixed = FixedFormatter(ticker.formatter.format_ticks(locations))
                fixed.set_offset_string(ticker.formatter.get_offset())
                ticker.locator, ticker.formatter = FixedLocator(locations), fixed


def read_tables(paths: Sequence[PathLike]) -> list[pd.DataFrame]:
    """The TSV tables at `paths`, in order; a path given more than once (a model's table, once per
    layer spec) is read once."""
    tables: dict[str, pd.DataFrame] = {}
    for path in paths:
        if str(path) not in tables:
            tables[str(path)] = pd.read_csv(path, sep="\t")
    return [tables[str(path)] for path in paths]


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
