"""Stage `attributes`: a layer spec's unit and per-class attribute tables from its extracted activations."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from unit_ablation.analysis.attributes import load_activations, unit_attributes
from unit_ablation.files.safe_load import CorruptFileError
from unit_ablation.files.writing import write_tsv, written_together
from unit_ablation.models.checkpoint import check_num_classes, load_model
from unit_ablation.spec.layer_spec import parse_layer_spec

log = logging.getLogger(__name__)


def layer_weight(model: torch.nn.Module, method: str, layer_spec: str) -> np.ndarray | None:
    """`model.incoming_weight(layer)` or `outgoing_weight(layer)` as float64; None (the L1 column
    is then NaN, with a warning) where the model's structure does not determine them: a model
    torch.fx cannot trace, or a layer that feeds the logits directly."""
    try:
        return getattr(model, method)(parse_layer_spec(layer_spec).layer).detach().numpy().astype(np.float64)
    except ValueError as error:
        log.warning("%s: no %s (%s): its L1 norm is NaN", layer_spec, method.replace("_", " "), error)
        return None


def attributes_to_files(
    activations_path: str | Path,
    model_path: str | Path,
    units_output: str | Path,
    classes_output: str | Path,
    layer_spec: str,
) -> None:
    """Compute the attribute tables of one (model, layer spec) from its extracted activations."""
    spec = parse_layer_spec(layer_spec)
    model = load_model(model_path)
    data = load_activations(activations_path)
    units = model.unit_count(spec.layer)
    if data["attr_mean"].shape[1] != units:
        raise CorruptFileError(
            f"{activations_path}: activations have {data['attr_mean'].shape[1]} units, but layer"
            f" {layer_spec} of checkpoint {model_path} has {units} (extracted from another model or layer?)"
        )
    check_num_classes(model, model_path, len(data["class_names"]), activations_path, "activations file")
    per_unit, per_class = unit_attributes(
        mean=data["attr_mean"].astype(np.float64),
        maximum=data["attr_max"].astype(np.float64),
        zero_fraction=data["attr_zero_fraction"],
        logits=data["attr_logits"].astype(np.float64),
        labels=data["attr_labels"],
        class_names=[str(name) for name in data["class_names"]],
        weight_in=layer_weight(model, "incoming_weight", layer_spec),
        weight_out=layer_weight(model, "outgoing_weight", layer_spec),
        rotation=data.get("rotation"),
        minimum=data["attr_min"].astype(np.float64),
    )
    log.info(
        "%s: %d units, %d dead, %d directions flipped to q^T mu >= 0, median selectivity %.3f",
        layer_spec,
        len(per_unit),
        int(per_unit.dead.sum()),
        int((per_unit.orientation < 0).sum()),
        float(per_unit.class_selectivity.median()),
    )
    with written_together(units_output, classes_output):
        write_tsv(per_unit, units_output)
        write_tsv(per_class, classes_output)
