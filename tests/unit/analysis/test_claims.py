"""The verdicts (stage two) on constructed per-network tables: each can come out either way.

Planted-effect simulations use at least 200 replicates. A false-positive rate is checked against
alpha plus three Monte Carlo standard errors, sqrt(alpha (1 - alpha) / R).
"""

import numpy as np
import pandas as pd
import pytest

from unit_ablation.analysis.claims import claim_rows
from unit_ablation.analysis.inference import spearman_z_se
from unit_ablation.analysis.prediction_claims import overall_prediction_rows
from unit_ablation.analysis.specificity_claims import specificity_rows
from unit_ablation.analysis.verdicts import CLAIMS, COLUMNS, Criteria, combine
from unit_ablation.report.summary import markdown_table, summary_markdown

CRITERIA = Criteria()
REPLICATES = 400
MC_TOLERANCE = 3 * np.sqrt(CRITERIA.alpha * (1 - CRITERIA.alpha) / REPLICATES)


def stage_one(rows: list[dict]) -> pd.DataFrame:
    """Stage-one rows with defaults for the identity columns."""
    table = pd.DataFrame(rows)
    for key, value in {
        "attribute": "",
        "units_included": "",
        "se": np.nan,
        "p_value": np.nan,
        "n": 64,
    }.items():
        if key not in table:
            table[key] = value
        table[key] = table[key].fillna(value) if key in ("attribute", "units_included") else table[key]
    table["layer_spec"] = np.where(table.basis == "canonical", table.layer, table.layer + "@rot0")
    return table


def specificity_table(
    rng, networks: int, effect: float, sd: float = 0.3, amount_shift: float = 0.0
) -> pd.DataFrame:
    rows = []
    for variant, shift in (("baseline", 0.0), ("bn", effect)):
        for seed in range(networks):
            model = f"{variant}-s{seed}"
            rows.append(
                dict(
                    model=model,
                    variant=variant,
                    seed=seed,
                    layer="conv5",
                    basis="canonical",
                    statistic="specificity",
                    value=1.0 + shift + rng.normal(0, sd),
                )
            )
            amount = 2.0 + (amount_shift if variant == "bn" else 0.0) + rng.normal(0, sd)
            rows.append(
                dict(
                    model=model,
                    variant=variant,
                    seed=seed,
                    layer="conv5",
                    basis="canonical",
                    statistic="amount",
                    value=amount,
                )
            )
    return stage_one(rows)


def variant_verdicts(table: pd.DataFrame, role: str = "primary") -> list[str]:
    return variant_verdicts_by_role(table)[role]


def variant_verdicts_by_role(table: pd.DataFrame) -> dict[str, list[str]]:
    """The verdicts of the variant contrasts, primary and secondary, from one call."""
    verdicts: dict[str, list[str]] = {"primary": [], "secondary": []}
    for row in specificity_rows(table, "baseline", CRITERIA):
        if "variant" in row["comparison"]:
            verdicts[row["role"]].append(row["verdict"])
    return verdicts


def test_combine_yes_partly_no_inconclusive():
    assert combine(["yes", "yes"]) == "yes"
    assert combine(["yes", "no"]) == "partly"
    assert combine(["yes", "inconclusive"]) == "partly"
    assert combine(["no", "partly", "no"]) == "partly"
    assert combine(["no", "no"]) == "no"
    assert combine(["no", "inconclusive"]) == "inconclusive"
    assert combine([]) == "inconclusive"


def test_variant_contrast_under_no_effect_rarely_says_yes():
    rng = np.random.default_rng(0)
    yes = np.mean([variant_verdicts(specificity_table(rng, 5, 0.0))[0] == "yes" for _ in range(REPLICATES)])
    assert yes <= CRITERIA.alpha + MC_TOLERANCE


def test_variant_contrast_finds_a_clear_effect_at_the_stated_power():
    # the planted effect is the minimum detectable effect the row reports (power 0.8 at alpha)
    rng = np.random.default_rng(1)
    probe = [r for r in specificity_rows(specificity_table(rng, 5, 0.0), "baseline", CRITERIA)][0]
    sd = 0.3
    se = sd * np.sqrt(2 / 5)
    from unit_ablation.analysis.inference import min_detectable_effect

    effect = min_detectable_effect(se, 8.0, CRITERIA.alpha, CRITERIA.power)
    assert np.isfinite(probe["min_detectable_effect"])
    yes = np.mean(
        [variant_verdicts(specificity_table(rng, 5, effect, sd))[0] == "yes" for _ in range(REPLICATES)]
    )
    # Welch's df is below the pooled 8, so its power is a little under 0.8: allow 0.05 for that
    assert yes >= CRITERIA.power - 0.05 - 3 * np.sqrt(0.8 * 0.2 / REPLICATES)


def test_a_nuisance_only_variant_is_not_declared_more_specific():
    # the variant changes the amount of damage a lot, and not its specificity
    rng = np.random.default_rng(2)
    verdicts = [
        variant_verdicts_by_role(specificity_table(rng, 5, 0.0, amount_shift=2.0)) for _ in range(REPLICATES)
    ]
    primary_yes = np.mean([v["primary"][0] == "yes" for v in verdicts])
    secondary_yes = np.mean([v["secondary"][0] == "yes" for v in verdicts])
    assert primary_yes <= CRITERIA.alpha + MC_TOLERANCE
    assert secondary_yes > 0.9  # the amount did change: the test is not blind


def test_no_change_within_the_margin_is_a_no():
    rng = np.random.default_rng(3)
    verdicts = [variant_verdicts(specificity_table(rng, 8, 0.0, sd=0.05))[0] for _ in range(200)]
    assert np.mean([v == "no" for v in verdicts]) > 0.9


def test_one_network_per_variant_is_always_inconclusive():
    rng = np.random.default_rng(4)
    rows = specificity_rows(specificity_table(rng, 1, 10.0), "baseline", CRITERIA)
    variant = [r for r in rows if "variant" in r["comparison"]]
    assert {r["verdict"] for r in variant} == {"inconclusive"}
    assert all("too few networks" in r["reason"] for r in variant)


def test_holm_adjusts_over_layers_and_variants():
    rng = np.random.default_rng(5)
    tables = []
    for layer in ("conv4", "conv5"):
        t = specificity_table(rng, 4, 1.0)
        t["layer"] = layer
        tables.append(t)
    rows = [r for r in specificity_rows(pd.concat(tables), "baseline", CRITERIA) if r["role"] == "primary"]
    p = sorted(r["p_value"] for r in rows)
    adjusted = sorted(r["p_adjusted"] for r in rows)
    assert adjusted[0] == pytest.approx(min(1.0, 2 * p[0]))


def test_rotation_is_compared_within_each_network():
    rows = []
    for seed in range(4):
        offset = 10.0 * seed  # a huge between-network spread, cancelled within network
        for basis, value in (("canonical", 1.0 + offset), ("rot0", 0.5 + offset + 0.01 * seed)):
            for statistic in ("specificity", "amount"):
                rows.append(
                    dict(
                        model=f"baseline-s{seed}",
                        variant="baseline",
                        seed=seed,
                        layer="conv5",
                        basis=basis,
                        statistic=statistic,
                        value=value,
                    )
                )
    out = [
        r for r in specificity_rows(stage_one(rows), "baseline", CRITERIA) if "rotation" in r["comparison"]
    ]
    primary = out[0]
    assert primary["estimate"] == pytest.approx(-0.5 + 0.015, abs=1e-9)
    assert primary["verdict"] == "yes" and "less class-specific" in primary["reason"]


def claim3_table(
    rng, true_rho: float, networks: int = 3, units: int = 200, reliability: float = 0.9
) -> pd.DataFrame:
    rows = []
    for seed in range(networks):
        x = rng.normal(size=units)
        y = true_rho * x + np.sqrt(1 - true_rho**2) * rng.normal(size=units)
        rho = float(pd.Series(x).corr(pd.Series(y), method="spearman"))
        base = dict(
            model=f"baseline-s{seed}", variant="baseline", seed=seed, layer="conv5", basis="canonical"
        )
        for included in ("active", "all"):
            rows.append(
                dict(
                    base,
                    statistic="rho_overall",
                    attribute="class_selectivity",
                    units_included=included,
                    value=rho,
                    se=spearman_z_se(rho, units),
                    n=units,
                )
            )
        rows.append(
            dict(base, statistic="overall_drop_reliability", units_included="active", value=reliability)
        )
    return stage_one(rows)


def claim3_primary(table: pd.DataFrame) -> dict:
    return [r for r in overall_prediction_rows(table, CRITERIA) if r["role"] == "primary"][0]


def test_claim3_says_yes_under_a_null_correlation_and_rarely_under_a_real_one():
    rng = np.random.default_rng(6)
    null = [claim3_primary(claim3_table(rng, 0.0))["verdict"] for _ in range(REPLICATES)]
    assert np.mean([v == "yes" for v in null]) > 0.9
    # at the margin itself TOST's false-positive rate is at most alpha
    at_margin = [claim3_primary(claim3_table(rng, CRITERIA.weak_rho))["verdict"] for _ in range(REPLICATES)]
    assert np.mean([v == "yes" for v in at_margin]) <= CRITERIA.alpha + MC_TOLERANCE
    strong = [claim3_primary(claim3_table(rng, 0.6))["verdict"] for _ in range(200)]
    assert np.mean([v == "no" for v in strong]) > 0.9


def test_claim3_is_inconclusive_when_the_overall_drop_is_noise():
    rng = np.random.default_rng(7)
    row = claim3_primary(claim3_table(rng, 0.0, reliability=0.05))
    assert row["verdict"] == "inconclusive" and "noise at this scale" in row["reason"]


def test_claim3_noise_ceiling_blocks_yes_but_not_a_clear_correlation():
    rng = np.random.default_rng(10)
    row = claim3_primary(claim3_table(rng, 0.7, reliability=0.05))
    assert row["verdict"] == "no"


def test_claim3_with_few_units_is_underpowered_not_yes():
    rng = np.random.default_rng(8)
    row = claim3_primary(claim3_table(rng, 0.0, networks=1, units=20))
    assert row["verdict"] == "inconclusive" and "underpowered" in row["reason"]


def test_claims_table_has_the_contract_columns_and_a_combined_row_per_claim():
    rng = np.random.default_rng(9)
    from unit_ablation.analysis.network_stats import NetworkOptions, network_statistics

    from support.claim_tables import network_tables

    tables = []
    for variant in ("baseline", "bn"):
        for seed in range(2):
            for basis in ("canonical", "rot0"):
                stats_table = network_statistics(
                    *network_tables(rng), NetworkOptions(resamples=50, permutations=19)
                )
                identity = dict(
                    model=f"{variant}-s{seed}",
                    variant=variant,
                    seed=seed,
                    layer="conv5",
                    basis=basis,
                    layer_spec="conv5" if basis == "canonical" else "conv5@rot0",
                )
                tables.append(stats_table.assign(**identity))
    claims = claim_rows(pd.concat(tables, ignore_index=True), "baseline", CRITERIA)
    assert list(claims.columns) == COLUMNS
    headline = claims[claims.comparison == "all comparisons"]
    assert headline.claim.tolist() == [1, 2, 3, 4, 5]
    assert set(claims.verdict) <= {"yes", "no", "partly", "inconclusive"}
    assert claims.reason.str.len().gt(0).all()
    detail = claims[claims.role != "claim"]
    assert detail.n_replicates.gt(0).all() and detail.test.str.len().gt(0).all()
    text = summary_markdown(pd.DataFrame({"model": ["m"]}), claims, pd.DataFrame(), pd.DataFrame())
    for number in CLAIMS:
        assert f"### Claim {number}: {CLAIMS[number]}" in text
    assert "| verdict |" in text.replace("| verdict | why |", "| verdict |")


def test_markdown_table_escapes_pipes_and_rounds():
    table = pd.DataFrame({"a": ["x|y"], "b": [0.12345], "c": [np.nan]})
    assert markdown_table(table) == "| a | b | c |\n|---|---|---|\n| x\\|y | 0.123 |  |"


def simulated_class_damage(rng, n: int, rate: float, planted: tuple[int, int] = (0, 0)) -> pd.DataFrame:
    """20 units x 10 classes of McNemar counts with no effect, plus `planted` = (broken, fixed)
    added to unit 0, class 0; `hurt` from the gather's own mid-p and BH."""
    from unit_ablation.analysis.damage import significance

    broken, fixed = rng.poisson(rate, (20, 10)), rng.poisson(rate, (20, 10))
    broken[0, 0] += planted[0]
    fixed[0, 0] += planted[1]
    hurt = significance(broken.ravel(), fixed.ravel(), CRITERIA.alpha, "mid-p")[3]
    return pd.DataFrame(
        {
            "unit": np.repeat(np.arange(20), 10),
            "class": np.tile([f"c{k}" for k in range(10)], 20),
            "n": n,
            "broken": broken.ravel(),
            "fixed": fixed.ravel(),
            "drop": 100.0 * (broken - fixed).ravel() / n,
            "hurt": hurt,
        }
    )


def damage_verdict(claim: int, tables: list[pd.DataFrame]) -> str:
    from unit_ablation.analysis.damage_claims import class_damage_rows, overall_drop_rows
    from unit_ablation.analysis.network_stats import damage_bounds, sharp_damage

    rows = []
    for seed, class_damage in enumerate(tables):
        base = dict(
            model=f"baseline-s{seed}", variant="baseline", seed=seed, layer="conv5", basis="canonical"
        )
        stats = {
            **damage_bounds(class_damage, CRITERIA.alpha),
            **sharp_damage(class_damage, CRITERIA.sharp_class_drop),
        }
        stats["max_abs_overall_drop"] = 0.0
        rows += [dict(base, statistic=name, value=value) for name, value in stats.items()]
    builder = overall_drop_rows if claim == 1 else class_damage_rows
    return builder(stage_one(rows), CRITERIA)[0]["verdict"]


def test_claim1_says_yes_without_an_overall_effect_and_no_with_one():
    rng = np.random.default_rng(11)
    null = [damage_verdict(1, [simulated_class_damage(rng, 1000, 2.0) for _ in range(3)]) for _ in range(200)]
    assert np.mean([v == "yes" for v in null]) > 0.95
    assert np.mean([v == "no" for v in null]) <= CRITERIA.alpha + 3 * np.sqrt(CRITERIA.alpha * 0.95 / 200)
    # one unit breaks 300 of the 10,000 images: a 3-point overall drop
    planted = [damage_verdict(1, [simulated_class_damage(rng, 1000, 2.0, (300, 0))] * 3) for _ in range(200)]
    assert np.mean([v == "no" for v in planted]) > 0.95


def test_claim2_finds_a_planted_sharp_class_drop_and_not_a_null_one():
    rng = np.random.default_rng(12)
    # 50 images per class: noise alone rarely makes a significant 5-point pair after FDR
    null = [damage_verdict(2, [simulated_class_damage(rng, 50, 1.0) for _ in range(3)]) for _ in range(200)]
    assert np.mean([v == "yes" for v in null]) <= CRITERIA.alpha + 3 * np.sqrt(CRITERIA.alpha * 0.95 / 200)
    planted = [
        damage_verdict(2, [simulated_class_damage(rng, 50, 1.0, (30, 0)) for _ in range(3)])
        for _ in range(200)
    ]
    assert np.mean([v == "yes" for v in planted]) > 0.9
    # with 1,000 images per class and no effect, the bounds exclude a 5-point drop: "no"
    many = [damage_verdict(2, [simulated_class_damage(rng, 1000, 1.0) for _ in range(3)]) for _ in range(50)]
    assert np.mean([v == "no" for v in many]) > 0.9
