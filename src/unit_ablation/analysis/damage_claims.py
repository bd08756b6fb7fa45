"""Claims 1 and 2: single units barely change overall accuracy; a few classes drop sharply."""

from __future__ import annotations

import numpy as np
import pandas as pd

from unit_ablation.analysis.verdicts import Criteria, _replicates, _row, _value


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
