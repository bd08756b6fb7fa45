"""Stage `correlate`: a layer spec's attribute-damage correlations and class agreement tables."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from unit_ablation.analysis.agreement import layer_agreement
from unit_ablation.analysis.correlation import layer_correlations
from unit_ablation.files.writing import write_tsv, written_together

log = logging.getLogger(__name__)


def correlate_to_file(
    layer_specs: Sequence[str],
    attribute_paths: Sequence[str | Path],
    class_attribute_paths: Sequence[str | Path],
    damage_paths: Sequence[str | Path],
    class_damage_paths: Sequence[str | Path],
    output: str | Path,
    agreement_output: str | Path,
    resamples: int = 1000,
    seed: int = 0,
    permutations: int = 1000,
    concept_paths: Sequence[str | Path] | None = None,
    min_active_fraction: float = 0.01,
) -> None:
    """The correlation table and the selective-vs-damaged class agreement table of the given layer
    specs of one model, side by side (the rule: one layer spec). With `concept_paths` (one concept
    IoU table per layer spec), the units' best-concept IoU is one more attribute, `concept_iou`."""
    tables, agreements = [], []
    concepts = [None] * len(layer_specs) if concept_paths is None else list(concept_paths)
    inputs = (attribute_paths, class_attribute_paths, damage_paths, class_damage_paths, concepts)
    for layer_spec, attr, class_attr, dmg, class_dmg, concept in zip(layer_specs, *inputs, strict=True):
        attributes = pd.read_csv(attr, sep="\t")
        if concept is not None:
            iou = pd.read_csv(concept, sep="\t")[["unit", "iou"]].rename(columns={"iou": "concept_iou"})
            attributes = attributes.merge(iou, on="unit", validate="one_to_one")
        class_attributes = pd.read_csv(class_attr, sep="\t")
        class_damage = pd.read_csv(class_dmg, sep="\t")
        table = layer_correlations(
            layer_spec,
            attributes,
            pd.read_csv(dmg, sep="\t"),
            class_attributes,
            class_damage,
            resamples=resamples,
            seed=seed,
            min_active_fraction=min_active_fraction,
        )
        agreements.append(layer_agreement(layer_spec, class_attributes, class_damage, permutations, seed))
        row = table[
            (table.attribute == "class_selectivity") & (table.damage.isin(["overall_drop", "max_class_drop"]))
        ]
        for _, r in row.iterrows():
            log.info(
                "%s: selectivity vs %s: rho=%.3f (p=%.3g)", layer_spec, r.damage, r.spearman_rho, r.spearman_p
            )
        tables.append(table)
    with written_together(output, agreement_output):
        write_tsv(pd.concat(tables, ignore_index=True), output)
        write_tsv(pd.DataFrame(agreements), agreement_output)
