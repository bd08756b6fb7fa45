"""Stage `plot_agreement`: figure 6, selective class against damaged class (`report.study_figures`)."""

from __future__ import annotations

from collections.abc import Sequence

from unit_ablation.report.study_figures import agreement_figure
from unit_ablation.report.style import PathLike, read_tables, save_figure


def plot_agreement_to_files(
    entries: Sequence[tuple[str, str]],
    agreement_paths: Sequence[PathLike],
    outputs: Sequence[PathLike],
    dpi: int = 120,
) -> None:
    """Read, per (model, layer spec) of `entries`, its model's agreement table; write figure 6."""
    save_figure(agreement_figure(entries, read_tables(agreement_paths)), outputs, dpi)
