"""Stage `gather`: a layer spec's ablation chunks gathered into its class and unit damage tables."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from unit_ablation.analysis.damage import FDR_METHODS, class_table, load_chunks, unit_table
from unit_ablation.data.loading import load_class_names
from unit_ablation.files.writing import write_tsv, written_together

log = logging.getLogger(__name__)


def gather_to_files(
    chunk_paths: Sequence[str | Path],
    class_names_source: str | Path,
    classes_output: str | Path,
    units_output: str | Path,
    damage_thresholds: Sequence[float] = (2, 5, 10),
    fdr_alpha: float = 0.05,
    fdr_method: str = "mid-p",
) -> None:
    """Write `{layer_spec}.classes.tsv` and `{layer_spec}.units.tsv` from the chunk files of one layer
    spec; `fdr_method` ("mid-p" or "exact") names the McNemar p-values Benjamini-Hochberg ranks."""
    if fdr_method not in FDR_METHODS:
        raise ValueError(f"fdr_method {fdr_method!r} is not one of {', '.join(FDR_METHODS)}")
    counts = load_chunks(chunk_paths)
    class_names = list(load_class_names(class_names_source))
    if len(class_names) != len(counts["n"]):
        raise ValueError(
            f"{chunk_paths[0]}: ablation chunks count {len(counts['n'])} classes, but {class_names_source}"
            f" has {len(class_names)}"
        )
    units = unit_table(counts, class_names, damage_thresholds, fdr_alpha, fdr_method)
    with written_together(classes_output, units_output):
        write_tsv(class_table(counts, class_names, fdr_alpha, fdr_method), classes_output)
        write_tsv(units, units_output)
    log.info(
        "%d units: median overall drop %.3f, median max class drop %.2f points (max %.2f); "
        "%d unit-class pairs significantly hurt (BH over %s p-values at %g)",
        len(units),
        units.overall_drop.median(),
        units.max_class_drop.median(),
        units.max_class_drop.max(),
        int(units.n_classes_significantly_hurt.sum()),
        fdr_method,
        fdr_alpha,
    )
