"""Stage `summarize`: the study's summary table, claims, Markdown summary and seed statistics
(`report.summary`, `analysis.claims`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from unit_ablation.analysis.claims import claim_rows
from unit_ablation.analysis.network_stats import concatenate_statistics
from unit_ablation.analysis.verdicts import Criteria
from unit_ablation.files.formats import read_model_metadata
from unit_ablation.files.writing import atomic_path, write_tsv
from unit_ablation.report.summary import (
    machine_lines,
    model_table,
    seed_statistics,
    summary_markdown,
    summary_row,
    with_model,
)


def summarize_to_file(
    entries: Sequence[tuple[str, str]],
    model_metadata_paths: Sequence[str | Path],
    unit_damage_paths: Sequence[str | Path],
    correlation_paths: Sequence[str | Path],
    agreement_paths: Sequence[str | Path],
    statistics_paths: Sequence[str | Path],
    output: str | Path,
    claims_output: str | Path,
    markdown_output: str | Path,
    seeds_output: str | Path,
    cumulative_paths: Sequence[str | Path] = (),
    reference_variant: str | None = None,
    criteria: Criteria | None = None,
) -> None:
    """Write results/summary.tsv, claims.tsv, summary.md (rendered from claims.tsv) and the seed
    statistics table; `entries`: the (model, layer spec) of each unit damage table."""
    rows, correlations, agreements, metas = [], {}, {}, {}
    for (model, layer_spec), meta_path, units_path, corr_path, agreement_path in zip(
        entries, model_metadata_paths, unit_damage_paths, correlation_paths, agreement_paths, strict=True
    ):
        meta = metas.setdefault(model, read_model_metadata(meta_path))
        correlation = correlations.setdefault(model, with_model(pd.read_csv(corr_path, sep="\t"), meta))
        agreement = agreements.setdefault(model, with_model(pd.read_csv(agreement_path, sep="\t"), meta))
        rows.append(summary_row(meta, layer_spec, pd.read_csv(units_path, sep="\t"), correlation, agreement))
    write_tsv(pd.DataFrame(rows), output)
    seeds = seed_statistics(pd.concat(correlations.values(), ignore_index=True))
    write_tsv(seeds, seeds_output)
    first = next(iter(metas.values()))
    claims = claim_rows(
        concatenate_statistics(statistics_paths),
        reference_variant or first["variant"],
        criteria or Criteria(),
    )
    write_tsv(claims, claims_output)
    cumulative = (
        pd.concat([pd.read_csv(p, sep="\t") for p in cumulative_paths], ignore_index=True)
        if cumulative_paths
        else pd.DataFrame()
    )
    with atomic_path(markdown_output) as tmp:
        Path(tmp).write_text(
            summary_markdown(
                model_table(metas.values()), claims, seeds, cumulative, machine_lines(metas.values())
            )
        )
