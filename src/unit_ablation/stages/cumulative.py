"""Stage `cumulative`: a canonical layer's cumulative ablation curves (`analysis.cumulative`) as a TSV."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from unit_ablation.analysis.cumulative import cumulative_table, set_predictions, unit_counts, unit_sets
from unit_ablation.data.halves import evaluation_halves
from unit_ablation.data.loading import load_dataset
from unit_ablation.engine.resume import ProgressSaver, file_identity, fingerprint, progress_path
from unit_ablation.engine.values import prepare_ablation
from unit_ablation.files.writing import write_tsv
from unit_ablation.models.checkpoint import check_num_classes, load_model
from unit_ablation.runtime.device import choose_device
from unit_ablation.spec.layer_spec import parse_layer_spec
from unit_ablation.spec.model_classes import model_module
from unit_ablation.workflow.code_hash import stage_code_hash

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).parents[1]  # a resumed job must have run this stage's code and model class


def cumulative_to_file(
    model_path: str | Path,
    dataset_path: str | Path,
    class_damage_path: str | Path,
    output: str | Path,
    model_name: str,
    layer: str,
    classes: Sequence[str] | int = 3,
    max_units: int = 32,
    random_draws: int = 5,
    seed: int = 0,
    eval_split: str = "test",
    value: str = "zero",
    mean_split: str | None = None,
    batch_size: int = 500,
    device: str = "auto",
    threads: int = 1,
    precision: str = "exact",
    save_seconds: float = 300.0,
) -> None:
    """Cumulative ablation curves of one (model, layer) in its canonical basis, written to a TSV
    (its `layer_spec` column: the layer, a spec without basis or value).

    The predictions so far are saved beside the output every `save_seconds` and on SIGTERM; a
    rerun of the same job resumes from them.
    """
    torch.set_num_threads(max(1, threads))
    if parse_layer_spec(layer).rotation_seed is not None:
        raise ValueError(f"cumulative ablation takes canonical layers, not {layer!r}")
    model = load_model(model_path)
    dataset = load_dataset(dataset_path)
    check_num_classes(model, model_path, dataset.num_classes, dataset_path)
    class_damage = pd.read_csv(class_damage_path, sep="\t")
    images, labels = dataset.images[eval_split], dataset.labels[eval_split]
    mean_images = None if mean_split is None else dataset.images[mean_split]
    torch_device, _, values = prepare_ablation(
        model, layer, images, None, value, batch_size, choose_device(device), mean_images, precision
    )
    count = model.unit_count(layer)
    missing = {"drop_h0", "drop_h1"} - set(class_damage.columns)
    if missing:
        raise ValueError(
            f"{class_damage_path}: no per-half drops {sorted(missing)} (gathered by an older version?)"
        )
    sets = unit_sets(class_damage, classes, unit_counts(max_units, count), random_draws, seed, count)
    chosen = sorted({s["class"] for s in sets})
    log.info("%s %s: %d unit sets (cross-fitted) for classes %s", model_name, layer, len(sets), chosen)
    distinct = list(dict.fromkeys(tuple(sorted(s["units"])) for s in sets))  # e.g. k = 0 once
    job = fingerprint(
        model=file_identity(model_path), dataset=file_identity(dataset_path), layer=layer, sets=distinct,
        eval_split=eval_split, value=value, mean_split=mean_split, batch_size=batch_size,
        precision=precision, device=torch_device.type, torch=torch.__version__,
        code=stage_code_hash(Path(__file__), PACKAGE_DIR, [model_module(model.config["arch"])]),
    )  # fmt: skip
    saver = ProgressSaver(progress_path(output), job, save_seconds)
    predictions = set_predictions(model, layer, images, distinct, values, batch_size, torch_device, saver)
    row_of = {units: row for row, units in enumerate(distinct)}
    per_set = predictions[[row_of[tuple(sorted(s["units"]))] for s in sets]]
    table = cumulative_table(sets, per_set, labels, list(dataset.class_names), evaluation_halves(labels))
    table.insert(0, "layer_spec", layer)
    table.insert(0, "model", model_name)
    write_tsv(table, output)
    saver.finish()
