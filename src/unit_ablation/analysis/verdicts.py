"""The claims and verdicts every claim test shares: names, criteria, row format, combining."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

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
