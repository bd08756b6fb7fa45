"""Stage `plot_network_effects`: figure 8, per-network effects behind claim 5 (`report.claims_figure`)."""

from __future__ import annotations

from collections.abc import Sequence

from unit_ablation.analysis.network_stats import concatenate_statistics
from unit_ablation.report.claims_figure import network_effects_figure
from unit_ablation.report.style import PathLike, save_figure


def plot_network_effects_to_files(
    statistics_paths: Sequence[PathLike], outputs: Sequence[PathLike], dpi: int = 120
) -> None:
    """Read the stage-one table of every network and layer spec; write figure 8 to `outputs`."""
    save_figure(network_effects_figure(concatenate_statistics(statistics_paths)), outputs, dpi)
