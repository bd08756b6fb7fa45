"""The results summary: one row per (model, layer) with the numbers behind the paper's claims."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from unit_ablation.io import write_tsv
from unit_ablation.layers import parse_layer_spec


def summary_row(
    model_meta: dict, layer: str, units: pd.DataFrame, correlations: pd.DataFrame, agreement: pd.DataFrame
) -> dict:
    """Accuracy, damage, selectivity correlations and class agreement of one (model, layer spec)."""
    spec = parse_layer_spec(layer)

    def rho(target: str) -> float:
        match = correlations[
            (correlations.layer_spec == layer)
            & (correlations.attribute == "class_selectivity")
            & (correlations.damage == target)
        ]
        return float(match.spearman_rho.iloc[0]) if len(match) else float("nan")

    return {
        "model": model_meta["model"],
        "variant": model_meta["variant"],
        "seed": model_meta["seed"],
        "test_accuracy": model_meta["test_accuracy"],
        "layer": spec.layer,
        "basis": spec.basis,
        "units": len(units),
        "median_overall_drop": units.overall_drop.median(),
        "max_overall_drop": units.overall_drop.max(),
        "median_max_class_drop": units.max_class_drop.median(),
        "max_max_class_drop": units.max_class_drop.max(),
        "units_with_class_drop_ge_5": int((units.max_class_drop >= 5).sum()),
        "rho_selectivity_overall": rho("overall_drop"),
        "rho_selectivity_max_class": rho("max_class_drop"),
        "units_significantly_hurting_a_class": int((units.n_classes_significantly_hurt > 0).sum()),
        **{
            key: agreement.set_index("layer_spec").loc[layer, key]
            for key in ("top1_share", "top1_chance", "top1_p", "top5_share", "top5_chance")
        },
    }


def summarize_to_file(
    entries: Sequence[tuple[str, str]],
    model_metadata_paths: Sequence[str | Path],
    unit_damage_paths: Sequence[str | Path],
    correlation_paths: Sequence[str | Path],
    agreement_paths: Sequence[str | Path],
    output: str | Path,
) -> None:
    """Write results/summary.tsv from every (model, layer) entry's tables."""
    rows = []
    for (_model, layer), meta_path, units_path, corr_path, agreement_path in zip(
        entries, model_metadata_paths, unit_damage_paths, correlation_paths, agreement_paths, strict=True
    ):
        meta = json.loads(Path(meta_path).read_text())
        tables = [pd.read_csv(path, sep="\t") for path in (units_path, corr_path, agreement_path)]
        rows.append(summary_row(meta, layer, *tables))
    write_tsv(pd.DataFrame(rows), output)
