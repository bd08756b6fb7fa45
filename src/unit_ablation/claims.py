"""The paper's claims, each tested by one statistic computed from the run's own tables.

Every function takes the per-(model, layer spec) tables and returns a `Claim` (a summary row)
plus a detail table with one row per model/layer comparison. Criteria are parameters (config
section `claims`), not typed-in results.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

CLAIMS = {
    1: "Ablating any single unit barely changes overall accuracy.",
    2: "The same ablation can sharply lower the accuracy of a few specific classes.",
    3: "Class selectivity (and weight L1 norm, ...) predicts the overall drop poorly.",
    4: "Class selectivity, with other attributes, predicts a unit's importance to individual classes well.",
    5: "Random rotation of the unit basis, batch normalization and dropout change how class-specific "
    "unit importance is.",
}


@dataclass
class Criteria:
    """What counts as support (config `claims`): drops in accuracy points, |rho| boundaries."""

    max_overall_drop: float = 1.0
    sharp_class_drop: float = 5.0
    weak_rho: float = 0.3
    resamples: int = 1000
    seed: int = 0


@dataclass
class Claim:
    number: int
    statistic: str
    value: str
    supported: str  # "yes", "partly" or "no"
    criterion: str
    details: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def text(self) -> str:
        return CLAIMS[self.number]


def verdict(passed: list[bool]) -> str:
    """'yes' when every comparison passes, 'no' when none does, else 'partly'."""
    if passed and all(passed):
        return "yes"
    return "partly" if any(passed) else "no"


def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial confidence interval of a share."""
    if trials == 0:
        return float("nan"), float("nan")
    interval = stats.binomtest(successes, trials).proportion_ci(confidence_level=level, method="exact")
    return float(interval.low), float(interval.high)


def _bootstrap_medians(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    return np.median(values[rng.integers(0, len(values), (resamples, len(values)))], axis=1)


def _percentile_interval(boot: np.ndarray, level: float) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(boot, [tail, 100 - tail])
    return float(low), float(high)


def median_ci(a: np.ndarray, resamples: int, seed: int, level: float = 0.95) -> tuple[float, float, float]:
    """The median with a percentile bootstrap CI over the values."""
    a = np.asarray(a, dtype=float)
    median = float(np.median(a))
    if not resamples:
        return median, float("nan"), float("nan")
    boot = _bootstrap_medians(a, resamples, np.random.default_rng(seed))
    return median, *_percentile_interval(boot, level)


def median_difference_ci(
    a: np.ndarray, b: np.ndarray, resamples: int, seed: int, level: float = 0.95
) -> tuple[float, float, float]:
    """median(a) - median(b) with a percentile bootstrap CI, resampling each group's units."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    difference = float(np.median(a) - np.median(b))
    if not resamples:
        return difference, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    boot = _bootstrap_medians(a, resamples, rng) - _bootstrap_medians(b, resamples, rng)
    return difference, *_percentile_interval(boot, level)


def _interval(value: float, low: float, high: float, digits: int = 2) -> str:
    if not np.isfinite(value):
        return "undefined"
    text = f"{value:.{digits}f}"
    return text + (f" [{low:.{digits}f}, {high:.{digits}f}]" if np.isfinite(low) else "")


def overall_drop_claim(units: pd.DataFrame, criteria: Criteria) -> Claim:
    """Claim 1: the largest |overall drop| of any unit (canonical bases) stays below the bound."""
    canonical = units[units.basis == "canonical"]
    rows = []
    for (model, layer), group in canonical.groupby(["model", "layer"], sort=False):
        drops = group.overall_drop.to_numpy()
        rows.append(
            {
                "model": model,
                "layer": layer,
                "units": len(drops),
                "median_overall_drop": float(np.median(drops)),
                "max_abs_overall_drop": float(np.abs(drops).max()),
                "passes": bool(np.abs(drops).max() < criteria.max_overall_drop),
            }
        )
    details = pd.DataFrame(rows)
    drops = canonical.overall_drop.to_numpy()
    median, low, high = median_ci(drops, criteria.resamples, criteria.seed)
    worst = canonical.loc[canonical.overall_drop.abs().idxmax()]
    return Claim(
        1,
        "per-unit overall accuracy drop (points), all canonical units",
        f"max |drop| {abs(worst.overall_drop):.2f} ({worst.model} {worst.layer} unit {int(worst.unit)}); "
        f"median {_interval(median, low, high)}; {len(drops)} units",
        verdict(details.passes.tolist()),
        f"every unit's |overall drop| < {criteria.max_overall_drop:g} point in every model and layer",
        details,
    )


def class_damage_claim(units: pd.DataFrame, num_classes: int, criteria: Criteria) -> Claim:
    """Claim 2: some units significantly hurt a class by a sharp drop, and only a few classes."""
    canonical = units[units.basis == "canonical"]
    sharp = (canonical.n_classes_significantly_hurt > 0) & (
        canonical.max_class_drop >= criteria.sharp_class_drop
    )
    rows = []
    for (model, layer), group in canonical.assign(sharp=sharp).groupby(["model", "layer"], sort=False):
        hurting = group[group.n_classes_significantly_hurt > 0]
        classes_hurt = float(hurting.n_classes_significantly_hurt.median()) if len(hurting) else 0.0
        rows.append(
            {
                "model": model,
                "layer": layer,
                "units": len(group),
                "units_sharply_hurting_a_class": int(group.sharp.sum()),
                "max_class_drop": float(group.max_class_drop.max()),
                "max_overall_drop": float(group.overall_drop.max()),
                "median_classes_hurt_by_hurting_units": classes_hurt,
                "passes": bool(group.sharp.any() and classes_hurt <= num_classes / 2),
            }
        )
    details = pd.DataFrame(rows)
    count, total = int(sharp.sum()), len(canonical)
    low, high = clopper_pearson(count, total)
    return Claim(
        2,
        f"units with a class significantly hurt (exact McNemar, BH) by >= {criteria.sharp_class_drop:g}"
        " points",
        f"{count} of {total} units ({100 * count / max(total, 1):.1f}% [{100 * low:.1f}, {100 * high:.1f}]); "
        f"largest class drop {canonical.max_class_drop.max():.1f} points",
        verdict(details.passes.tolist()),
        "in every model and layer at least one such unit, and units that hurt classes hurt at most half"
        " of them (median)",
        details,
    )


def _correlation_rows(
    correlations: pd.DataFrame, level: str, attribute: str, damage: str, basis: str = "canonical"
) -> pd.DataFrame:
    rows = correlations[
        (correlations.level == level)
        & (correlations.attribute == attribute)
        & (correlations.damage == damage)
        & (correlations.basis == basis)
    ]
    columns = ["model", "layer", "n", "spearman_rho", "spearman_ci_low", "spearman_ci_high", "spearman_p"]
    return rows[columns].reset_index(drop=True)


def overall_prediction_claim(correlations: pd.DataFrame, criteria: Criteria) -> Claim:
    """Claim 3: |rho(class selectivity, overall drop)| is weak in every model and layer."""
    details = _correlation_rows(correlations, "unit", "class_selectivity", "overall_drop")
    details["passes"] = details.spearman_rho.abs() < criteria.weak_rho
    others = correlations[
        (correlations.level == "unit")
        & (correlations.damage == "overall_drop")
        & (correlations.basis == "canonical")
        & (correlations.attribute != "class_selectivity")
    ]
    strongest = others.loc[others.spearman_rho.abs().idxmax()] if len(others) else None
    value = _rho_range(details)
    if strongest is not None:
        value += (
            f"; strongest other attribute: {strongest.attribute} rho = {strongest.spearman_rho:.2f} "
            f"({strongest.model} {strongest.layer})"
        )
    return Claim(
        3,
        "Spearman rho, class selectivity vs overall drop, per model and layer (bootstrap 95% CI)",
        value,
        verdict(details.passes.tolist()),
        f"|rho| < {criteria.weak_rho:g} in every model and layer",
        details,
    )


def _rho_range(details: pd.DataFrame) -> str:
    if details.empty:
        return "no canonical layer analysed"
    low_row = details.loc[details.spearman_rho.idxmin()]
    high_row = details.loc[details.spearman_rho.idxmax()]
    return (
        f"rho from {_interval(low_row.spearman_rho, low_row.spearman_ci_low, low_row.spearman_ci_high)} "
        f"to {_interval(high_row.spearman_rho, high_row.spearman_ci_low, high_row.spearman_ci_high)} "
        f"over {len(details)} model/layer pairs"
    )


def class_prediction_claim(correlations: pd.DataFrame, agreement: pd.DataFrame, criteria: Criteria) -> Claim:
    """Claim 4: per-class selectivity predicts the class drop (pooled unit-class rho clearly > 0)."""
    details = _correlation_rows(correlations, "unit-class", "class_selectivity", "class_drop")
    canonical_agreement = agreement[agreement.basis == "canonical"][
        ["model", "layer", "top1_share", "top1_chance", "top1_p"]
    ]
    details = details.merge(canonical_agreement, on=["model", "layer"], how="left")
    details["passes"] = (details.spearman_rho >= criteria.weak_rho) & (details.spearman_ci_low > 0)
    agreeing = int((details.top1_p < 0.05).sum())
    return Claim(
        4,
        "pooled Spearman rho, per-class selectivity vs class drop over (unit, class) pairs (cluster "
        "bootstrap 95% CI); most selective = most damaged class vs permutation chance",
        f"{_rho_range(details)}; top-1 agreement above chance (p < 0.05) in {agreeing} of {len(details)}",
        verdict(details.passes.tolist()),
        f"rho >= {criteria.weak_rho:g} with the CI above 0 in every model and layer",
        details,
    )


def specificity_claim(units: pd.DataFrame, reference_variant: str, criteria: Criteria) -> Claim:
    """Claim 5: rotation, BN and dropout change the max class drop (median difference, bootstrap CI).

    Rotation: each model's rotated bases (all rotation seeds pooled) against its canonical basis.
    Variants: each variant against the reference variant of the same training seed (canonical).
    """
    rows = []
    canonical = units[units.basis == "canonical"]
    for (model, layer), group in canonical.groupby(["model", "layer"], sort=False):
        rotated = units[(units.model == model) & (units.layer == layer) & (units.basis != "canonical")]
        if len(rotated):
            rows.append(_comparison("rotation", model, layer, rotated, group, criteria))
    for (variant, seed, layer), group in canonical.groupby(["variant", "seed", "layer"], sort=False):
        if variant == reference_variant:
            continue
        reference = canonical[
            (canonical.variant == reference_variant) & (canonical.seed == seed) & (canonical.layer == layer)
        ]
        if len(reference):
            rows.append(
                _comparison(f"variant {variant}", group.model.iloc[0], layer, group, reference, criteria)
            )
    details = pd.DataFrame(rows)
    if details.empty:
        return Claim(5, "median max class drop differences", "no comparison configured", "no", "", details)
    factors = []
    summaries = []
    for factor, group in details.groupby("factor", sort=False):
        changed = int(group.passes.sum())
        factors.append(changed > 0)
        summaries.append(
            f"{factor}: {changed} of {len(group)} layers changed, median difference "
            f"{group.median_difference.median():+.2f} points"
        )
    return Claim(
        5,
        f"median max class drop, changed condition minus reference (rotated minus canonical; variant minus "
        f"{reference_variant}), bootstrap 95% CI over units",
        "; ".join(summaries),
        verdict(factors),
        "for rotation and for every variant, the CI excludes 0 in at least one layer",
        details,
    )


def _comparison(
    factor: str, model: str, layer: str, changed: pd.DataFrame, reference: pd.DataFrame, criteria: Criteria
) -> dict:
    difference, low, high = median_difference_ci(
        changed.max_class_drop.to_numpy(),
        reference.max_class_drop.to_numpy(),
        criteria.resamples,
        criteria.seed,
    )
    return {
        "factor": factor,
        "model": model,
        "layer": layer,
        "median_changed": float(changed.max_class_drop.median()),
        "median_reference": float(reference.max_class_drop.median()),
        "median_difference": difference,
        "ci_low": low,
        "ci_high": high,
        "passes": bool(low > 0 or high < 0),
    }


def all_claims(
    units: pd.DataFrame,
    correlations: pd.DataFrame,
    agreement: pd.DataFrame,
    num_classes: int,
    reference_variant: str,
    criteria: Criteria,
) -> list[Claim]:
    """The five claims from the combined tables (columns model, variant, seed, layer, basis added)."""
    return [
        overall_drop_claim(units, criteria),
        class_damage_claim(units, num_classes, criteria),
        overall_prediction_claim(correlations, criteria),
        class_prediction_claim(correlations, agreement, criteria),
        specificity_claim(units, reference_variant, criteria),
    ]
