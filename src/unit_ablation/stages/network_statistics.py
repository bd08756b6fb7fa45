"""Stage `network_statistics`: stage one of the verdicts (`analysis.network_stats`) for one network
and layer spec."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from unit_ablation.analysis.network_stats import NetworkOptions, network_statistics
from unit_ablation.files.formats import read_model_metadata
from unit_ablation.files.writing import write_tsv
from unit_ablation.spec.layer_spec import parse_layer_spec

log = logging.getLogger(__name__)


def network_statistics_to_file(
    metadata_path: str | Path,
    attributes_path: str | Path,
    class_attributes_path: str | Path,
    damage_path: str | Path,
    class_damage_path: str | Path,
    output: str | Path,
    layer_spec: str,
    options: NetworkOptions,
    concept_path: str | Path | None = None,
) -> None:
    """Write `results/{model}/statistics/{layer_spec}.tsv`: the stage-one table of one network and
    layer spec."""
    meta = read_model_metadata(metadata_path)
    attributes = pd.read_csv(attributes_path, sep="\t")
    if concept_path is not None:
        iou = pd.read_csv(concept_path, sep="\t")[["unit", "iou"]].rename(columns={"iou": "concept_iou"})
        attributes = attributes.merge(iou, on="unit", validate="one_to_one")
    table = network_statistics(
        attributes,
        pd.read_csv(class_attributes_path, sep="\t"),
        pd.read_csv(damage_path, sep="\t"),
        pd.read_csv(class_damage_path, sep="\t"),
        options,
    )
    spec = parse_layer_spec(layer_spec)
    identity = {
        "model": meta["model"],
        "variant": meta["variant"],
        "seed": meta["seed"],
        "layer_spec": layer_spec,
        "layer": spec.label,  # conv5, or conv5 (mean ablation): the claims compare within it
        "basis": spec.basis,
    }
    for position, (key, value) in enumerate(identity.items()):
        table.insert(position, key, value)
    write_tsv(table, output)
    picked = table.set_index("statistic")
    log.info(
        "%s %s: reliability of the overall drop %.3f, held-out class-drop rho %.3f, median specificity %.3f",
        meta["model"],
        layer_spec,
        picked.loc["overall_drop_reliability", "value"],
        picked.loc["cv_rho", "value"],
        picked.loc["specificity", "value"],
    )
