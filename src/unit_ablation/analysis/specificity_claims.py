"""Claim 5: how BN, dropout and rotation change the class specificity of single-unit damage."""

from __future__ import annotations

import numpy as np
import pandas as pd

from unit_ablation.analysis.inference import (
    holm,
    interval_verdict,
    min_detectable_effect,
    paired_difference,
    welch_difference,
)
from unit_ablation.analysis.verdicts import MIN_NETWORKS, Criteria, _row


def _specificity_verdict(
    estimate, p_adjusted: float, groups: tuple[int, ...], criteria: Criteria, words: tuple[str, str]
) -> tuple[str, str]:
    if min(groups) < MIN_NETWORKS:
        return (
            "inconclusive",
            f"too few networks ({' and '.join(map(str, groups))}; at least {MIN_NETWORKS} each)",
        )
    low90, high90 = estimate.interval(1 - 2 * criteria.alpha)
    mde = min_detectable_effect(estimate.se, estimate.df, criteria.alpha, criteria.power)
    if np.isfinite(p_adjusted) and p_adjusted < criteria.alpha:
        direction = words[0] if estimate.estimate > 0 else words[1]
        return "yes", f"{direction} (Holm-adjusted p = {p_adjusted:.3g})"
    if interval_verdict(low90, high90, criteria.specificity_margin) == "inside":
        return "no", f"90% CI inside +-{criteria.specificity_margin:g} points"
    if np.isfinite(mde) and mde > criteria.specificity_margin:
        return (
            "inconclusive",
            f"underpowered: detectable effect {mde:.2f} > margin {criteria.specificity_margin:g}",
        )
    return "inconclusive", "neither a change nor equivalence shown"


def specificity_rows(table: pd.DataFrame, reference_variant: str, criteria: Criteria) -> list[dict]:
    """Claim 5. Variants: per layer, the class specificity (max class drop minus mean class drop;
    its Hodges-Lehmann location over units) of each network, variant against reference across
    networks (Welch), Holm over layers
    and variants. Rotation: per layer, each network's rotated bases (mean over rotation seeds)
    minus its own canonical basis, a one-sample t-test over networks, Holm over layers. The
    amount of damage (max class drop) is reported beside it as a secondary row."""
    wide = table[table.statistic.isin(["specificity", "amount"])]
    per_network = wide.pivot(
        index=["model", "variant", "seed", "layer", "basis"], columns="statistic", values="value"
    ).reset_index()
    rows: list[dict] = []
    canonical = per_network[per_network.basis == "canonical"]
    for statistic, role in (("specificity", "primary"), ("amount", "secondary")):
        label = "class specificity (max - mean class drop)" if role == "primary" else "max class drop"
        variant_rows, estimates = [], []
        for layer, by_layer in canonical.groupby("layer", sort=False):
            reference = by_layer[by_layer.variant == reference_variant][statistic].to_numpy()
            for variant, group in by_layer.groupby("variant", sort=False):
                if variant == reference_variant:
                    continue
                estimate = welch_difference(group[statistic].to_numpy(), reference, 1 - criteria.alpha)
                estimates.append((estimate, (len(group), len(reference))))
                variant_rows.append(
                    _contrast_row(
                        f"variant {variant} vs {reference_variant}, {layer}",
                        role,
                        f"{label}, difference of network means (points)",
                        estimate,
                        f"networks ({len(group)} {variant}, {len(reference)} {reference_variant})",
                        "Welch t-test across networks, Holm over layers and variants",
                        criteria,
                    )
                )
        _adjust(variant_rows, estimates, criteria)
        rows += variant_rows
        rotation_rows, estimates = [], []
        for layer, by_layer in per_network.groupby("layer", sort=False):
            rotated = by_layer[by_layer.basis != "canonical"].groupby("model")[statistic].mean()
            own = by_layer[by_layer.basis == "canonical"].set_index("model")[statistic]
            models = rotated.index.intersection(own.index)
            if not len(models):
                continue
            estimate = paired_difference((rotated[models] - own[models]).to_numpy(), 1 - criteria.alpha)
            estimates.append((estimate, (len(models),)))
            rotation_rows.append(
                _contrast_row(
                    f"rotation vs canonical basis, {layer}",
                    role,
                    f"{label}, rotated minus canonical within network (points)",
                    estimate,
                    f"networks ({len(models)}), rotation seeds averaged within each",
                    "one-sample t-test over networks of within-network differences, Holm over layers",
                    criteria,
                )
            )
        _adjust(rotation_rows, estimates, criteria)
        rows += rotation_rows
    return rows


def _contrast_row(
    comparison: str, role: str, statistic: str, estimate, replicates: str, test: str, criteria: Criteria
) -> dict:
    """A claim-5 row before Holm: the estimate, its interval and the minimum detectable effect."""
    return _row(
        5,
        comparison,
        role=role,
        statistic=statistic,
        estimate=estimate.estimate,
        ci_low=estimate.ci_low,
        ci_high=estimate.ci_high,
        ci_level=estimate.level,
        n_replicates=estimate.n,
        replicates=replicates,
        min_detectable_effect=min_detectable_effect(estimate.se, estimate.df, criteria.alpha, criteria.power),
        test=test,
        p_value=estimate.p_value,
        criterion=f"Holm p < {criteria.alpha:g} (no: 90% CI inside +-{criteria.specificity_margin:g})",
    )


def _adjust(rows: list[dict], estimates: list, criteria: Criteria) -> None:
    """Holm over the rows of one family, then each row's verdict."""
    adjusted = holm(np.array([row["p_value"] for row in rows], dtype=float))
    for row, p_adjusted, (estimate, groups) in zip(rows, adjusted, estimates, strict=True):
        words = ("more class-specific", "less class-specific")
        if row["role"] != "primary":
            words = ("more damage", "less damage")
        row["p_adjusted"] = p_adjusted
        row["verdict"], row["reason"] = _specificity_verdict(estimate, p_adjusted, groups, criteria, words)
