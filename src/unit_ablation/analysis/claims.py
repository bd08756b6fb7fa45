"""Stage two of every verdict: the paper's five claims, each a stated test across networks.

Input: the stage-one rows of `unit_ablation.analysis.network_stats` for every (network, layer spec).
Output: `results/claims.tsv`, one row per (claim, comparison) with the estimate, its interval,
the replicates it rests on, the test, p-values, the criterion and a verdict (yes / no / partly /
inconclusive) with its reason. The rules (docs/science.md, "How each verdict is computed"):
- "yes" needs the test to reject in the stated direction; "no" needs an equivalence bound met;
  anything else is "inconclusive", with the reason (too few networks, underpowered, noise);
- claims about training conditions (BN, dropout) compare one statistic per trained network,
  across networks, Holm-corrected over layers and variants; fewer than 2 networks per group is
  always inconclusive;
- rotation is compared within each network (rotated bases against its own canonical basis).
Criteria are config values (`claims:`), fixed before a run.
"""

from __future__ import annotations

import pandas as pd

from unit_ablation.analysis.damage_claims import class_damage_rows, overall_drop_rows
from unit_ablation.analysis.prediction_claims import class_prediction_rows, overall_prediction_rows
from unit_ablation.analysis.specificity_claims import specificity_rows
from unit_ablation.analysis.verdicts import CLAIMS, COLUMNS, VERDICTS, Criteria, _row, combine


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
