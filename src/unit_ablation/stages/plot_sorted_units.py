"""Stage `plot_sorted_units`: figure 2, one model's units sorted by max class drop (`report.unit_figures`)."""

from __future__ import annotations

from collections.abc import Sequence

from unit_ablation.report.style import PathLike, read_tables, save_figure
from unit_ablation.report.unit_figures import sorted_units_figure


def plot_sorted_units_to_files(
    layer_specs: Sequence[str],
    unit_paths: Sequence[PathLike],
    outputs: Sequence[PathLike],
    title: str,
    dpi: int = 120,
) -> None:
    """Read one model's unit damage table of each layer spec; write figure 2 to `outputs`."""
    save_figure(sorted_units_figure(layer_specs, read_tables(unit_paths), title), outputs, dpi)
