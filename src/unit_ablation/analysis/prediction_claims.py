"""Claims 3 and 4: whether unit attributes predict the overall drop (equivalence tests against a
noise ceiling) and the class drops (held-out prediction)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from unit_ablation.analysis.inference import (
    fisher_combined_p,
    fisher_z,
    interval_verdict,
    min_detectable_effect,
    pool_correlations,
    pool_normal,
)
from unit_ablation.analysis.verdicts import Criteria, _replicates, _row, _value


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
