"""The claim statistics, verdicts and the Markdown summary, on constructed tables."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from unit_ablation.claims import (
    CLAIMS,
    Criteria,
    all_claims,
    class_damage_claim,
    clopper_pearson,
    median_ci,
    median_difference_ci,
    overall_drop_claim,
    overall_prediction_claim,
    specificity_claim,
    verdict,
)
from unit_ablation.summary import markdown_table, seed_statistics, summary_markdown

CRITERIA = Criteria(resamples=500, seed=3)


def units_table(rng: np.random.Generator, model: str, variant: str, basis: str, class_drop_scale: float):
    count = 30
    return pd.DataFrame(
        {
            "model": model,
            "variant": variant,
            "seed": 0,
            "layer": "conv5",
            "basis": basis,
            "layer_spec": "conv5" if basis == "canonical" else f"conv5@{basis}",
            "unit": np.arange(count),
            "overall_drop": rng.normal(0, 0.1, count),
            "max_class_drop": np.abs(rng.normal(0, 1, count)) * class_drop_scale,
            "n_classes_significantly_hurt": (np.arange(count) % 10 == 0).astype(int),
        }
    )


def test_verdict_is_yes_partly_or_no():
    assert verdict([True, True]) == "yes"
    assert verdict([True, False]) == "partly"
    assert verdict([False]) == "no"
    assert verdict([]) == "no"


def test_clopper_pearson_matches_the_beta_quantiles():
    low, high = clopper_pearson(3, 20)
    assert low == pytest.approx(stats.beta.ppf(0.025, 3, 18), rel=1e-6)
    assert high == pytest.approx(stats.beta.ppf(0.975, 4, 17), rel=1e-6)
    assert clopper_pearson(0, 10)[0] == 0.0


def test_median_intervals_are_reproducible_and_cover_the_estimate():
    rng = np.random.default_rng(0)
    a, b = rng.normal(2, 1, 50), rng.normal(0, 1, 60)
    first = median_difference_ci(a, b, 400, seed=1)
    assert first == median_difference_ci(a, b, 400, seed=1)
    assert first != median_difference_ci(a, b, 400, seed=2)
    difference, low, high = first
    assert difference == pytest.approx(np.median(a) - np.median(b))
    assert low < difference < high and low > 0  # a clear shift of 2
    median, low, high = median_ci(a, 400, seed=1)
    assert median == np.median(a) and low < median < high


def test_overall_drop_claim_fails_when_one_unit_exceeds_the_bound():
    rng = np.random.default_rng(1)
    units = units_table(rng, "m", "baseline", "canonical", 1.0)
    assert overall_drop_claim(units, CRITERIA).supported == "yes"
    units.loc[4, "overall_drop"] = -1.5  # an improvement of 1.5 points is also not "barely"
    claim = overall_drop_claim(units, CRITERIA)
    assert claim.supported == "no"
    assert "1.50" in claim.value and "unit 4" in claim.value


def test_class_damage_claim_counts_sharp_significant_units():
    rng = np.random.default_rng(2)
    units = units_table(rng, "m", "baseline", "canonical", 1.0)
    units["max_class_drop"] = 1.0
    assert class_damage_claim(units, 10, CRITERIA).supported == "no"
    units.loc[[0, 10], "max_class_drop"] = 8.0  # both have a significantly hurt class
    units.loc[20, "max_class_drop"] = 8.0  # significant, but ...
    units.loc[20, "n_classes_significantly_hurt"] = 0  # ... not any more
    claim = class_damage_claim(units, 10, CRITERIA)
    assert claim.supported == "yes"
    assert claim.value.startswith("2 of 30 units")


def correlation_rows(rhos: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "model": model,
                "variant": "v",
                "seed": 0,
                "layer_spec": "conv5",
                "layer": "conv5",
                "basis": "canonical",
                "level": "unit",
                "attribute": "class_selectivity",
                "damage": "overall_drop",
                "n": 30,
                "spearman_rho": rho,
                "spearman_p": 0.5,
                "spearman_ci_low": rho - 0.2,
                "spearman_ci_high": rho + 0.2,
                "pearson_r": rho,
            }
            for model, rho in rhos.items()
        ]
    )


def test_overall_prediction_claim_is_partly_supported_when_one_rho_is_strong():
    assert overall_prediction_claim(correlation_rows({"a": 0.1, "b": -0.2}), CRITERIA).supported == "yes"
    claim = overall_prediction_claim(correlation_rows({"a": 0.1, "b": -0.45}), CRITERIA)
    assert claim.supported == "partly"
    assert "-0.45 [-0.65, -0.25]" in claim.value


def test_specificity_claim_detects_rotation_and_variant_shifts():
    rng = np.random.default_rng(4)
    units = pd.concat(
        [
            units_table(rng, "base", "baseline", "canonical", 5.0),
            units_table(rng, "base", "baseline", "rot0", 1.0),  # rotation: smaller class damage
            units_table(rng, "bn", "bn", "canonical", 5.0),  # bn: no change
            units_table(rng, "bn", "bn", "rot0", 1.0),
        ]
    )
    claim = specificity_claim(units, "baseline", CRITERIA)
    by_factor = claim.details.set_index(["factor", "model"])
    assert by_factor.loc[("rotation", "base"), "passes"]
    assert by_factor.loc[("rotation", "base"), "ci_high"] < 0
    assert not by_factor.loc[("variant bn", "bn"), "passes"]
    assert claim.supported == "partly"


def test_seed_statistics_give_mean_and_sd_over_seeds():
    rows = correlation_rows({"m-s0": 0.2, "m-s1": 0.4, "m-s2": 0.6})
    rows["seed"] = [0, 1, 2]
    table = seed_statistics(rows)
    assert len(table) == 1
    assert table.seeds.iloc[0] == 3
    assert table.spearman_rho_mean.iloc[0] == pytest.approx(0.4)
    assert table.spearman_rho_sd.iloc[0] == pytest.approx(0.2)  # sample sd of 0.2, 0.4, 0.6


def test_markdown_has_a_row_per_claim():
    rng = np.random.default_rng(5)
    units = pd.concat(
        [
            units_table(rng, "base", "baseline", "canonical", 5.0),
            units_table(rng, "base", "baseline", "rot0", 1.0),
        ]
    )
    correlations = pd.concat(
        [
            correlation_rows({"base": 0.1}),
            correlation_rows({"base": 0.5}).assign(level="unit-class", damage="class_drop"),
        ]
    )
    agreement = pd.DataFrame(
        [{"model": "base", "layer": "conv5", "basis": "canonical", "top1_share": 0.5, "top1_chance": 0.1,
          "top1_p": 0.01}]
    )  # fmt: skip
    claims = all_claims(units, correlations, agreement, 10, "baseline", CRITERIA)
    models = pd.DataFrame([{"model": "base", "test accuracy (%)": 90.0}])
    text = summary_markdown(models, claims, seed_statistics(correlations), pd.DataFrame())
    claim_lines = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [line.split(" | ")[1] for line in claim_lines] == [CLAIMS[n] for n in range(1, 6)]
    assert all(line.rstrip(" |").split(" | ")[-1] in {"yes", "partly", "no"} for line in claim_lines)


def test_markdown_table_formats_numbers_and_escapes_pipes():
    table = pd.DataFrame({"a": [0.5, 0.00012, np.nan], "b": ["x|y", "z", "w"]})
    lines = markdown_table(table).splitlines()
    assert lines[0] == "| a | b |"
    assert lines[2] == "| 0.500 | x\\|y |"
    assert lines[3] == "| 0.00012 | z |"
    assert lines[4] == "|  | w |"
