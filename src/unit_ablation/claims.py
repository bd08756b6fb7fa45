"""Stage two of every verdict: the paper's five claims, each a stated test across networks.

Input: the stage-one rows of `unit_ablation.network_stats` for every (network, layer spec).
Output: `results/claims.tsv`, one row per (claim, comparison) with the estimate, its interval,
the replicates it rests on, the test, p-values, the criterion and a verdict (yes / no / partly /
inconclusive) with its reason. The rules (the science spec's "How claims are decided"):
- "yes" needs the test to reject in the stated direction; "no" needs an equivalence bound met;
  anything else is "inconclusive", with the reason (too few networks, underpowered, noise);
- claims about training conditions (BN, dropout) compare one statistic per trained network,
  across networks, Holm-corrected over layers and variants; fewer than 2 networks per group is
  always inconclusive;
- rotation is compared within each network (rotated bases against its own canonical basis).
Criteria are config values (`claims:`), fixed before a run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from unit_ablation.inference import (
    fisher_combined_p,
    fisher_z,
    holm,
    interval_verdict,
    min_detectable_effect,
    paired_difference,
    pool_correlations,
    pool_normal,
    welch_difference,
)

CLAIMS = {
    1: "Ablating any single unit barely changes overall accuracy.",
    2: "The same ablation can sharply lower the accuracy of a few specific classes.",
    3: "Class selectivity (and weight L1 norm, ...) predicts the overall drop poorly.",
    4: "Class selectivity, with other attributes, predicts a unit's importance to individual classes well.",
    5: "Random rotation of the unit basis, batch normalization and dropout change how class-specific "
    "unit importance is.",
}
VERDICTS = ("yes", "no", "partly", "inconclusive")
MIN_NETWORKS = 2  # per group, for any comparison across networks
COLUMNS = [
    "claim",
    "comparison",
    "role",
    "statistic",
    "estimate",
    "ci_low",
    "ci_high",
    "ci_level",
    "n_replicates",
    "replicates",
    "min_detectable_effect",
    "test",
    "p_value",
    "p_adjusted",
    "criterion",
    "verdict",
    "reason",
]


@dataclass(frozen=True)
class Criteria:
    """What counts as support (config `claims`); drops in accuracy points, rho on its own scale."""

    alpha: float = 0.05
    power: float = 0.8
    max_overall_drop: float = 1.0
    sharp_class_drop: float = 5.0
    few_classes: float = 0.2
    weak_rho: float = 0.3
    predictive_rho: float = 0.3
    contrast_margin: float = 0.1
    specificity_margin: float = 0.25


def combine(verdicts: list[str]) -> str:
    """A claim's verdict from its comparisons: 'yes' when all are yes, 'partly' when some are yes
    or partly, 'no' when all are no, else 'inconclusive'."""
    if not verdicts:
        return "inconclusive"
    if all(v == "yes" for v in verdicts):
        return "yes"
    if any(v in ("yes", "partly") for v in verdicts):
        return "partly"
    if all(v == "no" for v in verdicts):
        return "no"
    return "inconclusive"


def _replicates(group: pd.DataFrame) -> str:
    seeds = ", ".join(str(s) for s in sorted(group.seed.unique()))
    return f"networks ({group.model.nunique()}: seeds {seeds})"


def _row(claim: int, comparison: str, **values) -> dict:
    row = dict.fromkeys(COLUMNS, float("nan"))
    row.update({"claim": claim, "comparison": comparison, "role": "primary", "reason": "", **values})
    return row


def _value(group: pd.DataFrame, statistic: str, attribute: str = "", included: str = "") -> pd.DataFrame:
    picked = group[(group.statistic == statistic)]
    if attribute:
        picked = picked[picked.attribute == attribute]
    if included:
        picked = picked[picked.units_included == included]
    return picked


def overall_drop_rows(table: pd.DataFrame, criteria: Criteria) -> list[dict]:
    """Claim 1 per (variant, layer): every unit's simultaneous exact interval of its overall drop
    lies inside +-max_overall_drop ('yes'), some unit's lies outside ('no'), else inconclusive."""
    rows = []
    bound = criteria.max_overall_drop
    for (variant, layer), group in table[table.basis == "canonical"].groupby(
        ["variant", "layer"], sort=False
    ):
        upper = _value(group, "overall_drop_abs_upper").value.max()
        lower = _value(group, "overall_drop_abs_lower").value.max()
        if upper < bound:
            verdict, reason = "yes", f"every unit's interval is inside +-{bound:g}"
        elif lower >= bound:
            verdict, reason = (
                "no",
                f"some unit's overall drop is beyond +-{bound:g} (its interval excludes it)",
            )
        else:
            verdict, reason = "inconclusive", f"underpowered: some unit's interval reaches {upper:.2f}"
        rows.append(
            _row(
                1,
                f"variant {variant}, {layer}",
                statistic="max |overall drop| over units (points)",
                estimate=_value(group, "max_abs_overall_drop").value.max(),
                ci_low=lower,
                ci_high=upper,
                ci_level=1 - criteria.alpha,
                n_replicates=group.model.nunique(),
                replicates=_replicates(group),
                test="exact McNemar-conditional Clopper-Pearson bounds, Bonferroni over units, worst network",
                criterion=f"every unit's |overall drop| < {bound:g} point (its upper bound)",
                verdict=verdict,
                reason=reason,
            )
        )
    return rows


def class_damage_rows(table: pd.DataFrame, criteria: Criteria) -> list[dict]:
    """Claim 2 per (variant, layer): in every network some (unit, class) pair is both significant
    (McNemar, FDR) and at least sharp_class_drop, and such units hurt at most few_classes of the
    classes ('yes'); 'no' when no pair can reach the sharp drop (simultaneous bound) or sharp units
    hurt many classes."""
    rows = []
    for (variant, layer), group in table[table.basis == "canonical"].groupby(
        ["variant", "layer"], sort=False
    ):
        by_model = group[group.attribute.fillna("") == ""].pivot(
            index="model", columns="statistic", values="value"
        )
        classes = float(by_model.num_classes.iloc[0])
        few = criteria.few_classes * classes
        has_sharp = by_model.units_with_sharp_pair > 0
        focused = by_model.sharp_classes_per_unit.fillna(np.inf) <= few
        network_yes = has_sharp & focused
        network_no = (by_model.class_drop_upper < criteria.sharp_class_drop) | (has_sharp & ~focused)
        if network_yes.all():
            verdict, reason = "yes", "every network has sharply and significantly hurt classes, few per unit"
        elif network_no.all():
            verdict, reason = "no", "no pair can reach the sharp drop, or sharp units hurt many classes"
        elif network_yes.any():
            verdict, reason = "partly", f"{int(network_yes.sum())} of {len(by_model)} networks"
        else:
            verdict, reason = "inconclusive", "no significant sharp pair, but the bounds do not exclude one"
        rows.append(
            _row(
                2,
                f"variant {variant}, {layer}",
                statistic="units with a (unit, class) pair significantly hurt by >= sharp_class_drop "
                "(fewest over networks)",
                estimate=float(by_model.units_with_sharp_pair.min()),
                ci_high=float(by_model.class_drop_upper.max()),
                ci_level=1 - criteria.alpha,
                n_replicates=len(by_model),
                replicates=_replicates(group),
                test="McNemar per pair with FDR (the gather's method); Bonferroni exact bound of class drops",
                criterion=f"a significant pair with drop >= {criteria.sharp_class_drop:g} points in every "
                f"network; such units hurt <= {criteria.few_classes:g} of the classes (median)",
                verdict=verdict,
                reason=reason,
            )
        )
    return rows


def _tost_p(pooled, margin: float) -> float:
    """TOST p-value on the Fisher z scale: the larger of the two one-sided p-values."""
    if not np.isfinite(pooled.se):
        return float("nan")
    z, bound = fisher_z(pooled.estimate), fisher_z(margin)
    return float(max(stats.norm.sf((z + bound) / pooled.se), stats.norm.cdf((z - bound) / pooled.se)))


def _rho_mde(se: float, criteria: Criteria) -> float:
    return float(np.tanh(min_detectable_effect(se, float("inf"), criteria.alpha, criteria.power)))


def overall_prediction_rows(table: pd.DataFrame, criteria: Criteria) -> list[dict]:
    """Claim 3 per (variant, layer, attribute): the pooled rho(attribute, overall drop) is inside
    +-weak_rho by TOST ('yes'), outside it ('no'), else inconclusive. A 'yes' also needs the
    overall drop's split-half reliability r to leave room for a correlation (sqrt(r) > weak_rho):
    otherwise a weak rho is guaranteed and the row is inconclusive (noise at this scale)."""
    rows = []
    w = criteria.weak_rho
    for (variant, layer), group in table[table.basis == "canonical"].groupby(
        ["variant", "layer"], sort=False
    ):
        reliability = _value(group, "overall_drop_reliability").value.to_numpy(float)
        mean_r = float(np.nanmean(reliability)) if np.isfinite(reliability).any() else float("nan")
        ceiling = float(np.sqrt(mean_r)) if np.isfinite(mean_r) and mean_r > 0 else 0.0
        for included, role in (("active", "primary"), ("all", "sensitivity")):
            for attribute in group.attribute[group.statistic == "rho_overall"].unique():
                picked = _value(group, "rho_overall", attribute, included)
                pooled = pool_correlations(
                    picked.value.to_numpy(), picked.se.to_numpy(), 1 - 2 * criteria.alpha
                )
                where = interval_verdict(pooled.ci_low, pooled.ci_high, w)
                # the noise ceiling guards "yes" only: a weak rho is guaranteed when the drop is noise,
                # while a rho clearly beyond the margin shows reliable variance by itself
                if where == "outside":
                    verdict, reason = "no", f"90% CI outside +-{w:g}"
                elif not np.isfinite(mean_r) or ceiling <= w:
                    verdict = "inconclusive"
                    reason = (
                        f"the overall drop is noise at this scale: split-half reliability r = {mean_r:.2f}, "
                        f"ceiling sqrt(r) = {ceiling:.2f} <= {w:g}"
                    )
                elif where == "inside":
                    verdict, reason = "yes", f"90% CI inside +-{w:g}; reliability ceiling {ceiling:.2f}"
                else:
                    verdict, reason = "inconclusive", f"underpowered: 90% CI crosses +-{w:g}"
                suffix = "" if included == "active" else " (dead and near-dead units included)"
                rows.append(
                    _row(
                        3,
                        f"{attribute} vs overall drop, variant {variant}, {layer}{suffix}",
                        role=role,
                        statistic="Spearman rho, pooled over networks (random-effects Fisher z)",
                        estimate=pooled.estimate,
                        ci_low=pooled.ci_low,
                        ci_high=pooled.ci_high,
                        ci_level=pooled.level,
                        n_replicates=pooled.n,
                        replicates=_replicates(group),
                        min_detectable_effect=_rho_mde(pooled.se, criteria),
                        test="TOST on Fisher z (Bonett-Wright SE per network, DerSimonian-Laird pooling)",
                        p_value=_tost_p(pooled, w),
                        criterion=f"90% CI of rho inside +-{w:g}; split-half reliability ceiling above {w:g}",
                        verdict=verdict,
                        reason=reason,
                    )
                )
    return rows


def class_prediction_rows(table: pd.DataFrame, criteria: Criteria) -> list[dict]:
    """Claim 4 per (variant, layer): held-out prediction of d[u, k] from all attributes beats the
    class-only baseline (permutation test, Fisher-combined over networks) and its pooled
    out-of-fold rho's 90% CI is above predictive_rho ('yes'); below it is 'no'. Then, secondary,
    the contrast rho(attribute, max class drop) - rho(attribute, overall drop) per attribute."""
    rows = []
    canonical = table[table.basis == "canonical"]
    for (variant, layer), group in canonical.groupby(["variant", "layer"], sort=False):
        cv = _value(group, "cv_rho")
        pooled = pool_correlations(cv.value.to_numpy(), cv.se.to_numpy(), 1 - 2 * criteria.alpha)
        p_value = fisher_combined_p(_value(group, "cv_gain").p_value.to_numpy())
        baseline = float(_value(group, "cv_rho_class_only").value.mean())
        if p_value < criteria.alpha and pooled.ci_low > criteria.predictive_rho:
            verdict, reason = "yes", f"beats the class-only baseline (rho {baseline:.2f})"
        elif np.isfinite(pooled.ci_high) and pooled.ci_high < criteria.predictive_rho:
            verdict, reason = "no", f"90% CI below {criteria.predictive_rho:g}"
        elif not p_value < criteria.alpha:
            verdict, reason = "inconclusive", f"does not beat the class-only baseline (rho {baseline:.2f})"
        else:
            verdict, reason = "inconclusive", f"underpowered: 90% CI crosses {criteria.predictive_rho:g}"
        rows.append(
            _row(
                4,
                f"held-out prediction of class drops, variant {variant}, {layer}",
                statistic="out-of-fold Spearman rho of predicted vs true class drop (grouped by unit)",
                estimate=pooled.estimate,
                ci_low=pooled.ci_low,
                ci_high=pooled.ci_high,
                ci_level=pooled.level,
                n_replicates=pooled.n,
                replicates=_replicates(group),
                min_detectable_effect=_rho_mde(pooled.se, criteria),
                test="ridge on all attributes, CV grouped by unit; unit-block permutation null vs class-only",
                p_value=p_value,
                criterion=f"permutation p < {criteria.alpha:g} and 90% CI above {criteria.predictive_rho:g}",
                verdict=verdict,
                reason=reason,
            )
        )
        for attribute in group.attribute[group.statistic == "rho_contrast"].unique():
            picked = _value(group, "rho_contrast", attribute, "active")
            contrast = pool_normal(picked.value.to_numpy(), picked.se.to_numpy(), 1 - criteria.alpha)
            low90, high90 = contrast.interval(1 - 2 * criteria.alpha)
            if contrast.ci_low > 0:
                verdict, reason = "yes", "class damage is predicted better than the overall drop"
            elif interval_verdict(low90, high90, criteria.contrast_margin) == "inside":
                verdict, reason = "no", f"90% CI inside +-{criteria.contrast_margin:g}"
            else:
                verdict, reason = "inconclusive", "95% CI includes 0"
            rows.append(
                _row(
                    4,
                    f"claim 4 vs claim 3: {attribute}, variant {variant}, {layer}",
                    role="secondary",
                    statistic="rho(attribute, max class drop) - rho(attribute, overall drop)",
                    estimate=contrast.estimate,
                    ci_low=contrast.ci_low,
                    ci_high=contrast.ci_high,
                    ci_level=contrast.level,
                    n_replicates=contrast.n,
                    replicates=_replicates(group),
                    min_detectable_effect=min_detectable_effect(
                        contrast.se, float("inf"), criteria.alpha, criteria.power
                    ),
                    test="paired bootstrap over units per network, random-effects pooling",
                    p_value=contrast.p_value,
                    criterion=f"95% CI above 0 (no: 90% CI inside +-{criteria.contrast_margin:g})",
                    verdict=verdict,
                    reason=reason,
                )
            )
    return rows


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


def _factor(comparison: str) -> str:
    return comparison.split(",")[0]


def claim_rows(table: pd.DataFrame, reference_variant: str, criteria: Criteria) -> pd.DataFrame:
    """`results/claims.tsv`: every comparison of every claim, then one 'all comparisons' row per
    claim with the combined verdict of its primary rows (claim 5: a factor changes specificity
    when any of its layers does; the claim combines the factors)."""
    rows = (
        overall_drop_rows(table, criteria)
        + class_damage_rows(table, criteria)
        + overall_prediction_rows(table, criteria)
        + class_prediction_rows(table, criteria)
        + specificity_rows(table, reference_variant, criteria)
    )
    detail = pd.DataFrame(rows, columns=COLUMNS)
    summary = []
    for number in CLAIMS:
        primary = detail[(detail.claim == number) & (detail.role == "primary")]
        if number == 5:
            factors = {}
            for factor, group in primary.groupby(primary.comparison.map(_factor), sort=False):
                verdicts = list(group.verdict)
                factors[factor] = (
                    "yes"
                    if "yes" in verdicts
                    else "no"
                    if all(v == "no" for v in verdicts)
                    else "inconclusive"
                )
            verdict = combine(list(factors.values()))
            reason = "; ".join(f"{factor}: {v}" for factor, v in factors.items())
        else:
            verdict = combine(list(primary.verdict))
            counts = primary.verdict.value_counts()
            reason = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if v in counts) or "nothing to compare"
        summary.append(
            _row(
                number,
                "all comparisons",
                role="claim",
                statistic=CLAIMS[number],
                n_replicates=int(table.model.nunique()),
                replicates="networks",
                test="combined verdict of the primary comparisons",
                criterion="yes: all yes; partly: some yes; no: all no; else inconclusive"
                + ("; a factor is yes when any layer is, no when all are" if number == 5 else ""),
                verdict=verdict,
                reason=reason,
            )
        )
    return pd.concat([pd.DataFrame(summary, columns=COLUMNS), detail], ignore_index=True)
