"""The results summary: a table per (model, layer spec), the claims in Markdown, seed statistics."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from unit_ablation.claims import Claim, Criteria, all_claims
from unit_ablation.io import atomic_path, write_tsv
from unit_ablation.layers import parse_layer_spec

SEED_KEYS = ["variant", "layer_spec", "layer", "basis", "level", "attribute", "damage"]


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


def seed_statistics(correlations: pd.DataFrame) -> pd.DataFrame:
    """Mean and sd over training seeds of every correlation, per variant and layer spec."""
    grouped = correlations.groupby(SEED_KEYS, sort=False)
    table = grouped.agg(
        seeds=("seed", "nunique"),
        spearman_rho_mean=("spearman_rho", "mean"),
        spearman_rho_sd=("spearman_rho", "std"),
        pearson_r_mean=("pearson_r", "mean"),
        pearson_r_sd=("pearson_r", "std"),
    )
    return table.reset_index()


def markdown_table(table: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table (floats rounded, NaN shown as blank)."""

    def cell(value: object) -> str:
        if isinstance(value, float | np.floating):
            if np.isnan(value):
                return ""
            small = 0 < abs(value) < 10 ** (-digits)  # p-values: keep their significant digits
            return f"{value:.{digits}g}" if small else f"{value:.{digits}f}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def cumulative_digest(cumulative: pd.DataFrame) -> pd.DataFrame:
    """Per (model, layer, class): class and overall drop at the largest k, top units vs random units."""
    if cumulative.empty:
        return pd.DataFrame()
    rows = []
    for (model, layer, class_name), group in cumulative.groupby(["model", "layer_spec", "class"], sort=False):
        k = group.k.max()
        at_k = group[group.k == k]
        top, random = at_k[at_k.order == "top"], at_k[at_k.order == "random"]
        rows.append(
            {
                "model": model,
                "layer": layer,
                "class": class_name,
                "k": int(k),
                "class_drop_top": float(top.class_drop.mean()),
                "class_drop_random": float(random.class_drop.mean()) if len(random) else float("nan"),
                "overall_drop_top": float(top.overall_drop.mean()),
                "overall_drop_random": float(random.overall_drop.mean()) if len(random) else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def summary_markdown(
    models: pd.DataFrame, claims: list[Claim], seeds: pd.DataFrame, cumulative: pd.DataFrame
) -> str:
    """results/summary.md: accuracies, a row per claim, each claim's evidence, seeds, cumulative ablation."""
    claim_rows = pd.DataFrame(
        [
            {
                "#": c.number,
                "claim": c.text,
                "statistic": c.statistic,
                "measured value [95% CI]": c.value,
                "supported when": c.criterion,
                "supported": c.supported,
            }
            for c in claims
        ]
    )
    parts = [
        "# unit-ablation: results summary",
        "Every number below is computed by `snakemake` from this run's tables (`results/`).",
        "## Models",
        markdown_table(models, digits=2),
        "## Claims",
        markdown_table(claim_rows),
    ]
    for claim in claims:
        parts += [f"### Claim {claim.number}: evidence per model and layer", claim.text]
        parts.append(markdown_table(claim.details) if not claim.details.empty else "(nothing to compare)")
    if not seeds.empty and seeds.seeds.max() > 1:
        key = seeds[(seeds.attribute == "class_selectivity") & (seeds.basis == "canonical")]
        parts += ["## Across training seeds (mean and sd of Spearman rho)", markdown_table(key)]
    digest = cumulative_digest(cumulative)
    if not digest.empty:
        parts += [
            "## Cumulative ablation",
            "Drops (points) after removing the class's k most damaging units together, against k random"
            " units (mean over draws).",
            markdown_table(digest, digits=2),
        ]
    return "\n\n".join(parts) + "\n"


def _with_model(table: pd.DataFrame, meta: dict) -> pd.DataFrame:
    return table.assign(model=meta["model"], variant=meta["variant"], seed=meta["seed"])


def summarize_to_file(
    entries: Sequence[tuple[str, str]],
    model_metadata_paths: Sequence[str | Path],
    unit_damage_paths: Sequence[str | Path],
    correlation_paths: Sequence[str | Path],
    agreement_paths: Sequence[str | Path],
    output: str | Path,
    markdown_output: str | Path | None = None,
    seeds_output: str | Path | None = None,
    cumulative_paths: Sequence[str | Path] = (),
    reference_variant: str | None = None,
    criteria: Criteria | None = None,
) -> None:
    """Write results/summary.tsv and (optionally) summary.md and the seed statistics table."""
    rows, units, correlations, agreements, metas = [], [], {}, {}, {}
    for (model, layer), meta_path, units_path, corr_path, agreement_path in zip(
        entries, model_metadata_paths, unit_damage_paths, correlation_paths, agreement_paths, strict=True
    ):
        meta = metas.setdefault(model, json.loads(Path(meta_path).read_text()))
        correlation = correlations.setdefault(model, _with_model(pd.read_csv(corr_path, sep="\t"), meta))
        agreement = agreements.setdefault(model, _with_model(pd.read_csv(agreement_path, sep="\t"), meta))
        unit_table = pd.read_csv(units_path, sep="\t")
        rows.append(summary_row(meta, layer, unit_table, correlation, agreement))
        spec = parse_layer_spec(layer)
        units.append(
            _with_model(unit_table, meta).assign(layer_spec=layer, layer=spec.layer, basis=spec.basis)
        )
    write_tsv(pd.DataFrame(rows), output)
    all_correlations = pd.concat(correlations.values(), ignore_index=True)
    seeds = seed_statistics(all_correlations)
    if seeds_output is not None:
        write_tsv(seeds, seeds_output)
    if markdown_output is None:
        return
    first = next(iter(metas.values()))
    claims = all_claims(
        pd.concat(units, ignore_index=True),
        all_correlations,
        pd.concat(agreements.values(), ignore_index=True),
        len(first["class_names"]),
        reference_variant or first["variant"],
        criteria or Criteria(),
    )
    models = pd.DataFrame(
        [
            {
                "model": m["model"],
                "variant": m["variant"],
                "seed": m["seed"],
                "test accuracy (%)": m["test_accuracy"],
            }
            for m in metas.values()
        ]
    )
    cumulative = (
        pd.concat([pd.read_csv(p, sep="\t") for p in cumulative_paths], ignore_index=True)
        if cumulative_paths
        else pd.DataFrame()
    )
    with atomic_path(markdown_output) as tmp:
        Path(tmp).write_text(summary_markdown(models, claims, seeds, cumulative))
