"""Stage `combine_correlations`: a model's per-layer-spec correlation and agreement tables, stacked."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from unit_ablation.files.writing import concatenate_tsv

log = logging.getLogger(__name__)


def combine_to_file(
    correlation_paths: Sequence[str | Path],
    agreement_paths: Sequence[str | Path],
    output: str | Path,
    agreement_output: str | Path,
) -> None:
    """A model's correlation and agreement tables: the per-layer-spec tables of
    `stages.correlate.correlate_to_file`, stacked in the given order."""
    concatenate_tsv(correlation_paths, output)
    concatenate_tsv(agreement_paths, agreement_output)
    log.info("combined %d layer specs into %s and %s", len(correlation_paths), output, agreement_output)
