"""Stage `plot_overview`: figure 1, overall against max class drop of every unit (`report.unit_figures`)."""

from __future__ import annotations

from collections.abc import Sequence

from unit_ablation.report.style import PathLike, read_tables, save_figure
from unit_ablation.report.unit_figures import overview_figure


def plot_overview_to_files(
    labels: Sequence[tuple[str, str]],
    unit_paths: Sequence[PathLike],
    outputs: Sequence[PathLike],
    dpi: int = 120,
) -> None:
    """Read the unit damage table of each (model, layer spec) in `labels`; write figure 1 to
    `outputs` (a PNG and a PDF)."""
    save_figure(overview_figure(labels, read_tables(unit_paths)), outputs, dpi)
