"""Stage one: the per-network statistics, with planted effects and nulls."""

import numpy as np
import pandas as pd
import pytest

from unit_ablation.analysis.network_stats import (
    NetworkOptions,
    active_units,
    class_drop_prediction,
    damage_bounds,
    network_statistics,
    rho_contrast,
    sharp_damage,
    split_half_reliability,
)

from support.claim_tables import network_tables

ALPHA = 0.05


def grid(rng, units=30, classes=8, effect=0.0):
    features = rng.normal(size=(units, classes, 3))
    class_effect = rng.normal(0, 1, classes)
    drops = class_effect + effect * features[:, :, 0] + rng.normal(size=(units, classes))
    return features, drops


def test_held_out_prediction_null_rejects_at_most_alpha():
    # 200 replicates of the unit-block permutation test with 19 permutations (p = 1/20 at best)
    rng = np.random.default_rng(0)
    options = NetworkOptions(permutations=19, folds=3, resamples=0)
    rejected = [class_drop_prediction(*grid(rng), options)["cv_gain_p"] <= ALPHA for _ in range(200)]
    # the permutation p-value is exact: P(p <= 0.05) = 1/20 under the null; 3 Monte Carlo SEs
    assert np.mean(rejected) <= ALPHA + 3 * np.sqrt(ALPHA * (1 - ALPHA) / 200)


def test_held_out_prediction_finds_a_planted_attribute_effect():
    rng = np.random.default_rng(1)
    options = NetworkOptions(permutations=19, folds=3, resamples=0)
    results = [class_drop_prediction(*grid(rng, effect=1.0), options) for _ in range(200)]
    assert np.mean([r["cv_gain_p"] <= ALPHA for r in results]) > 0.95
    assert np.mean([r["cv_rho"] > r["cv_rho_class_only"] for r in results]) > 0.95


def test_held_out_prediction_uses_the_attributes_out_of_fold_only():
    rng = np.random.default_rng(2)
    features, drops = grid(rng, units=40)
    features[:, :, 0] = drops  # an attribute that is the drop predicts it out of fold too
    good = class_drop_prediction(features, drops, NetworkOptions(permutations=0, resamples=0))
    assert good["cv_rho"] > 0.9
    # uninformative attributes add nothing beyond the class baseline when judged out of fold
    features[:, :, 0] = rng.normal(size=drops.shape)
    none = class_drop_prediction(features, drops, NetworkOptions(permutations=0, resamples=0))
    assert none["cv_rho"] <= none["cv_rho_class_only"] + 0.05


def test_damage_bounds_and_sharp_pairs_by_hand():
    class_damage = pd.DataFrame(
        {
            "unit": [0, 0, 1, 1],
            "class": ["a", "b", "a", "b"],
            "n": [100, 100, 100, 100],
            "broken": [10, 0, 0, 0],
            "fixed": [0, 0, 0, 1],
            "drop": [10.0, 0.0, 0.0, -1.0],
            "hurt": [True, False, False, False],
        }
    )
    bounds = damage_bounds(class_damage, ALPHA)
    assert bounds["overall_drop_abs_lower"] > 0  # unit 0: 10 broken, none fixed
    assert bounds["overall_drop_abs_upper"] <= 100 * 10 / 200 + 1e-9
    sharp = sharp_damage(class_damage, 5.0)
    assert sharp == {
        "sharp_pairs": 1.0,
        "units_with_sharp_pair": 1.0,
        "sharp_classes_per_unit": 1.0,
        "num_classes": 2.0,
    }
    assert sharp_damage(class_damage, 20.0)["units_with_sharp_pair"] == 0.0


def test_split_half_reliability_is_high_for_signal_and_low_for_noise():
    rng = np.random.default_rng(3)
    signal = rng.normal(size=200)
    reliable = pd.DataFrame(
        {
            "overall_drop_h0": signal + 0.2 * rng.normal(size=200),
            "overall_drop_h1": signal + 0.2 * rng.normal(size=200),
        }
    )
    noise = pd.DataFrame({"overall_drop_h0": rng.normal(size=200), "overall_drop_h1": rng.normal(size=200)})
    keep = np.ones(200, dtype=bool)
    assert split_half_reliability(reliable, keep)[0] > 0.9
    assert split_half_reliability(noise, keep)[0] < 0.3  # Spearman-Brown of r near 0 (often below 0)


def test_rho_contrast_is_paired_and_detects_a_planted_difference():
    rng = np.random.default_rng(4)
    x = rng.normal(size=300)
    contrast = rho_contrast(x, x + rng.normal(size=300), rng.normal(size=300), 500, 0)
    assert contrast["ci_low"] > 0.3
    same = rho_contrast(x, rng.normal(size=300), rng.normal(size=300), 500, 0)
    assert same["ci_low"] < 0 < same["ci_high"]


def test_dead_and_near_dead_units_are_left_out_by_the_stated_rule():
    attributes = pd.DataFrame({"dead": [True, False, False], "active_fraction": [0.0, 0.005, 0.5]})
    assert active_units(attributes, 0.01).tolist() == [False, False, True]
    assert active_units(attributes, 0.0).tolist() == [False, True, True]


def test_network_statistics_long_table():
    rng = np.random.default_rng(5)
    table = network_statistics(
        *network_tables(rng, selectivity_effect=0.8), NetworkOptions(resamples=100, permutations=19)
    )
    statistics = set(table.statistic)
    assert {
        "overall_drop_reliability",
        "rho_overall",
        "rho_contrast",
        "cv_rho",
        "cv_gain",
        "specificity",
        "amount",
        "class_drop_upper",
        "sharp_pairs",
    } <= statistics
    rho = table[(table.statistic == "rho_overall") & (table.units_included == "active")]
    assert set(rho.attribute) == {"class_selectivity", "l1_in", "l1_out"}
    assert rho.se.notna().all()
    cv = table.set_index("statistic").loc["cv_gain"]
    assert cv.p_value == pytest.approx(1 / 20)  # the planted effect beats every permutation
