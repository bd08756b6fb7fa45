"""The results summary: a table per (model, layer spec), the claims in Markdown, seed statistics."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from unit_ablation.spec.layer_spec import parse_layer_spec

SEED_KEYS = ["variant", "layer_spec", "layer", "basis", "level", "attribute", "damage"]


def summary_row(
    model_meta: dict,
    layer_spec: str,
    units: pd.DataFrame,
    correlations: pd.DataFrame,
    agreement: pd.DataFrame,
) -> dict:
    """Accuracy, damage, selectivity correlations and class agreement of one (model, layer spec)."""
    spec = parse_layer_spec(layer_spec)

    def rho(target: str) -> float:
        match = correlations[
            (correlations.layer_spec == layer_spec)
            & (correlations.attribute == "class_selectivity")
            & (correlations.damage == target)
        ]
        return float(match.spearman_rho.iloc[0]) if len(match) else float("nan")

    return {
        "model": model_meta["model"],
        "variant": model_meta["variant"],
        "seed": model_meta["seed"],
        "test_accuracy": model_meta["test_accuracy"],
        "layer": spec.label,
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
            key: agreement.set_index("layer_spec").loc[layer_spec, key]
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
    """Per (model, layer, class): class, balanced single-class and overall drop at the largest k,
    top units vs random units, averaged over the cross-fitting folds that chose the class."""
    if cumulative.empty:
        return pd.DataFrame()
    rows = []
    # a cumulative table's `layer_spec` is a layer (canonical basis), named `layer` in the digest
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
                "folds": int(top.ranked_on.nunique()) if "ranked_on" in top else 1,
                "class_drop_top": float(top.class_drop.mean()),
                "class_drop_random": float(random.class_drop.mean()) if len(random) else float("nan"),
                "balanced_drop_top": float(top.balanced_class_drop.mean())
                if "balanced_class_drop" in top
                else float("nan"),
                "overall_drop_top": float(top.overall_drop.mean()),
                "overall_drop_random": float(random.overall_drop.mean()) if len(random) else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def _format(value: float, digits: int = 2) -> str:
    if not isinstance(value, float | int | np.floating | np.integer) or not np.isfinite(value):
        return ""
    return f"{value:.{digits}g}" if 0 < abs(value) < 10 ** (-digits) else f"{value:.{digits}f}"


def claims_digest(claims: pd.DataFrame) -> pd.DataFrame:
    """The rows of claims.tsv as a readable table: estimate [CI], replicates, test, p, verdict."""

    def interval(row: pd.Series) -> str:
        text = _format(row.estimate)
        if np.isfinite(row.ci_low) or np.isfinite(row.ci_high):
            low, high = _format(row.ci_low) or "–", _format(row.ci_high) or "–"
            text += f" [{low}, {high}] ({100 * row.ci_level:.0f}%)"
        return text

    return pd.DataFrame(
        {
            "comparison": claims.comparison,
            "role": claims.role,
            "statistic": claims.statistic,
            "estimate [CI]": claims.apply(interval, axis=1),
            "n": claims.n_replicates.map(lambda v: "" if not np.isfinite(v) else f"{int(v)}"),
            "replicates": claims.replicates,
            "min. detectable": claims.min_detectable_effect.map(_format),
            "test": claims.test,
            "p": claims.p_value.map(lambda v: _format(v, 3)),
            "p (adjusted)": claims.p_adjusted.map(lambda v: _format(v, 3)),
            "verdict": claims.verdict,
            "reason": claims.reason,
        }
    )


def summary_markdown(
    models: pd.DataFrame,
    claims: pd.DataFrame,
    seeds: pd.DataFrame,
    cumulative: pd.DataFrame,
    machines: Sequence[str] = (),
) -> str:
    """results/summary.md, rendered from claims.tsv: accuracies, a verdict per claim with its
    reason, then each claim's comparisons with test, estimate, CI, replicates and verdict; last,
    the `machines` the models were trained on (`machine_lines`)."""
    headline = claims[claims.comparison == "all comparisons"]
    claim_rows = pd.DataFrame(
        {
            "#": headline.claim,
            "claim": headline.statistic,
            "verdict": headline.verdict,
            "why": headline.reason,
        }
    )
    parts = [
        "# unit-ablation: results summary",
        "Every number below is computed by `snakemake` from this run's tables (`results/`); the rows"
        " are `results/claims.tsv`. Each verdict is a stated test: yes needs the test to reject in the"
        " stated direction, no needs an equivalence bound met, anything else is inconclusive with its"
        ' reason. docs/science.md ("How each verdict is computed") gives every test.',
        "## Models",
        markdown_table(models, digits=2),
        "## Claims",
        markdown_table(claim_rows),
    ]
    for number, text in zip(headline.claim, headline.statistic, strict=True):
        detail = claims[(claims.claim == number) & (claims.comparison != "all comparisons")]
        parts += [
            f"### Claim {number}: {text}",
            markdown_table(claims_digest(detail)) if len(detail) else "(nothing to compare)",
        ]
    if not seeds.empty and seeds.seeds.max() > 1:
        key = seeds[(seeds.attribute == "class_selectivity") & (seeds.basis == "canonical")]
        parts += ["## Across training seeds (mean and sd of Spearman rho)", markdown_table(key)]
    digest = cumulative_digest(cumulative)
    if not digest.empty:
        parts += [
            "## Cumulative ablation (cross-fitted)",
            "Drops (points) after removing the class's k most damaging units together, against k random"
            " units (mean over draws). Units are ranked and classes chosen on one half of the evaluation"
            " images and evaluated on the other, then the halves are swapped; the table averages both.",
            markdown_table(digest, digits=2),
        ]
    if machines:
        parts += [
            "## Where these numbers were computed",
            "Reruns are bit-identical on the same machine and software build; on another CPU, GPU or"
            " library build the kernels round differently, and the numbers are statistically"
            " equivalent, not identical (docs/reliability.md, Determinism). The models were"
            " trained on:",
            "\n".join(f"- {line}" for line in machines),
        ]
    return "\n\n".join(parts) + "\n"


def machine_lines(metas: Iterable[dict]) -> list[str]:
    """One line per distinct machine and build in the models' metadata (`machine`), with the models
    trained there; models without the record are listed as not recorded."""
    groups: dict[str, list[str]] = {}
    for meta in metas:
        machine = meta.get("machine")
        line = machine_line(machine) if isinstance(machine, dict) else "not recorded (older metadata)"
        groups.setdefault(line, []).append(str(meta.get("model", "?")))
    return [f"{line}: {len(models)} model(s), {', '.join(models)}" for line, models in groups.items()]


def machine_line(machine: dict) -> str:
    """A `runtime.machine.machine_description` record as one line."""

    def get(key: str) -> str:
        return str(machine.get(key, "unknown"))

    blas = get("blas") + (f" {get('mkl')}" if get("mkl") != "unknown" else "")
    parts = [
        f"{get('cpu_model')} ({get('cpu_id')}; {get('cpu_capability')} kernels)",
        f"torch {get('torch_build')}",
        f"BLAS {blas}",
        f"oneDNN {get('onednn')}",
    ]
    if "gpu_model" in machine:
        parts.append(f"GPU {get('gpu_model')} (driver {get('gpu_driver')}, CUDA {get('cuda')})")
    return ", ".join(parts)


def with_model(table: pd.DataFrame, meta: dict) -> pd.DataFrame:
    """A model's table with its model, variant and seed columns (`meta`: its metadata JSON)."""
    return table.assign(model=meta["model"], variant=meta["variant"], seed=meta["seed"])


def model_table(metas: Iterable[dict]) -> pd.DataFrame:
    """The summary's table of models: model, variant, seed and test accuracy, one row per metadata JSON."""
    return pd.DataFrame(
        [
            {
                "model": m["model"],
                "variant": m["variant"],
                "seed": m["seed"],
                "test accuracy (%)": m["test_accuracy"],
            }
            for m in metas
        ]
    )
