"""Stage `concept_iou`: a layer spec's unit-concept IoU table on a Broden data set."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
import torch

from unit_ablation.analysis.concepts import concept_iou, model_input_shape
from unit_ablation.files.writing import write_tsv
from unit_ablation.models.checkpoint import load_model

log = logging.getLogger(__name__)


def concept_iou_to_file(
    model_path: str | Path,
    layer_spec: str,
    root: str | Path,
    output: str | Path,
    pairs_output: str | Path | None = None,
    batch_size: int = 64,
    quantile: float = 0.005,
    detector_iou: float = 0.04,
    threads: int = 1,
    attributes_path: str | Path | None = None,
) -> None:
    """Dissect a checkpoint's layer spec on the Broden data set at `root` (`concepts.root`); write
    the unit table (and optionally all pairs) as TSV.

    The input format comes from the model (FashionAlexNet: gray 28 x 28, see `model_input_shape`).
    With `attributes_path`, rotated coordinates take the attribute table's `orientation`.
    """
    torch.set_num_threads(max(1, threads))
    model = load_model(model_path)
    channels, size = model_input_shape(model)
    orientation = None
    if attributes_path is not None:
        orientation = pd.read_csv(attributes_path, sep="\t").sort_values("unit")["orientation"].to_numpy()
    units, pairs = concept_iou(
        model,
        layer_spec,
        root,
        batch_size,
        quantile,
        detector_iou,
        channels=channels,
        size=size,
        orientation=orientation,
    )
    write_tsv(units, output)
    if pairs_output is not None:
        write_tsv(pairs, pairs_output)
    log.info(
        "wrote %s: %d units, %d detectors (IoU > %g)",
        output,
        len(units),
        units["detector"].sum(),
        detector_iou,
    )
