"""Stage `plot_comparison`: figure 5, variants and bases side by side (`report.study_figures`)."""

from __future__ import annotations

from collections.abc import Sequence

from unit_ablation.report.study_figures import comparison_figure
from unit_ablation.report.style import PathLike, read_tables, save_figure


def plot_comparison_to_files(
    entries: Sequence[tuple[str, str, str]],
    unit_paths: Sequence[PathLike],
    attribute_paths: Sequence[PathLike],
    correlation_paths: Sequence[PathLike],
    outputs: Sequence[PathLike],
    dpi: int = 120,
) -> None:
    """Read, per (model, variant, layer spec) of `entries`, its unit damage and attribute tables and
    its model's correlation table; write figure 5 to `outputs`."""
    figure = comparison_figure(
        entries, read_tables(unit_paths), read_tables(attribute_paths), read_tables(correlation_paths)
    )
    save_figure(figure, outputs, dpi)
