"""Stage `plot_layer`: figures 3 and 4 of one model's layer spec, attributes against damage and the
class damage heatmap (`report.layer_figures`)."""

from __future__ import annotations

from collections.abc import Sequence

from unit_ablation.report.layer_figures import attribute_figure, heatmap_figure
from unit_ablation.report.style import PathLike, read_tables, save_figure


def plot_layer_to_files(
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
    """Read the layer spec's attribute, damage and correlation tables; write both per-layer figures."""
    attributes, damage, class_damage, correlation = read_tables(
        [attributes_path, damage_path, class_damage_path, correlation_path]
    )
    figure = attribute_figure(
        attributes, damage, correlation, layer_spec, title=f"{title}: attributes vs damage"
    )
    save_figure(figure, attributes_outputs, dpi)
    figure = heatmap_figure(
        class_damage, damage, title=f"{title}: most damaging units", top_units=heatmap_units
    )
    save_figure(figure, heatmap_outputs, dpi)
