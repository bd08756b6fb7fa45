"""Stage `plot_cumulative`: figure 7, cumulative ablation curves (`report.study_figures`)."""

from __future__ import annotations

from collections.abc import Sequence

from unit_ablation.report.study_figures import cumulative_figure
from unit_ablation.report.style import PathLike, read_tables, save_figure


def plot_cumulative_to_files(
    cumulative_paths: Sequence[PathLike], outputs: Sequence[PathLike], dpi: int = 120
) -> None:
    """Read every cumulative ablation table; write figure 7 to `outputs`."""
    save_figure(cumulative_figure(read_tables(cumulative_paths)), outputs, dpi)
