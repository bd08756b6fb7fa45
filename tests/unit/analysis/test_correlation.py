import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from unit_ablation.analysis.correlation import UNIT_ATTRIBUTES, correlate, layer_correlations
from unit_ablation.analysis.ranks import resampled_ranks


def test_monotone_and_constant_relations():
    x = np.arange(10.0)
    result = correlate(x, x**3)
    assert result["spearman_rho"] == pytest.approx(1.0)
    assert 0.9 < result["pearson_r"] < 1.0
    assert result["spearman_p"] < 1e-6
    assert math.isnan(correlate(x, np.ones(10))["spearman_rho"])


def test_layer_correlations_cover_every_attribute_and_damage():
    rng = np.random.default_rng(0)
    attributes = pd.DataFrame({"unit": range(20), **{name: rng.random(20) for name in UNIT_ATTRIBUTES}})
    damage = pd.DataFrame(
        {
            "unit": range(20),
            "overall_drop": attributes.class_selectivity * 2,
            "max_class_drop": rng.random(20),
            "topk_mean_drop": rng.random(20),
        }
    )
    table = layer_correlations("conv5@rot2", attributes, damage)
    assert len(table) == len(UNIT_ATTRIBUTES) * 3 * 2  # active units, and all units (sensitivity)
    assert set(table.basis) == {"rotation2"} and set(table.layer) == {"conv5"}
    row = table[(table.attribute == "class_selectivity") & (table.damage == "overall_drop")].iloc[0]
    assert row.spearman_rho == pytest.approx(1.0) and row.pearson_r == pytest.approx(1.0)


def test_spearman_with_ties_matches_scipy():
    x = np.array([1, 2, 2, 3, 3, 3, 4, 5.0])
    y = np.array([2, 1, 4, 3, 3, 5, 6, 6.0])
    expected = stats.spearmanr(x, y)
    result = correlate(x, y)
    assert result["spearman_rho"] == pytest.approx(expected.statistic)
    assert result["spearman_p"] == pytest.approx(expected.pvalue)


def test_bootstrap_intervals_are_reproducible_and_bracket_the_estimate():
    rng = np.random.default_rng(1)
    x = rng.normal(size=60)
    y = x + rng.normal(scale=1.0, size=60)
    first = correlate(x, y, resamples=500, seed=3)
    assert correlate(x, y, resamples=500, seed=3) == first
    assert correlate(x, y, resamples=500, seed=4) != first
    for name, estimate in (("spearman", first["spearman_rho"]), ("pearson", first["pearson_r"])):
        assert first[f"{name}_ci_low"] < estimate < first[f"{name}_ci_high"]
    wider = correlate(x[:15], y[:15], resamples=500, seed=3)
    assert (
        wider["spearman_ci_high"] - wider["spearman_ci_low"]
        > first["spearman_ci_high"] - first["spearman_ci_low"]
    )


def test_two_way_bootstrap_reduces_to_units_when_classes_do_not_matter():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=30), rng.normal(size=30)
    per_unit = correlate(x, y, resamples=300, seed=5)
    # each unit's value repeated for 4 classes: resampling classes too changes nothing
    grid = correlate(np.repeat(x, 4), np.repeat(y, 4), resamples=300, seed=5, classes=4)
    for key in ("spearman_ci_low", "spearman_ci_high", "pearson_ci_low", "pearson_ci_high"):
        assert grid[key] == pytest.approx(per_unit[key])
    assert math.isnan(grid["spearman_p"]) and math.isnan(grid["pearson_p"])  # pairs are not independent
    with pytest.raises(ValueError, match="grid with 7 classes"):
        correlate(np.arange(30.0), y, resamples=10, classes=7)


def test_two_way_bootstrap_widens_intervals_when_classes_drive_the_correlation():
    # both sides share a class effect: the correlation rests on 6 classes, not on 40 x 6 pairs
    rng = np.random.default_rng(3)
    units, classes = 40, 6
    effect = rng.normal(size=classes)
    x = (effect[None, :] + 0.3 * rng.normal(size=(units, classes))).ravel()
    y = (effect[None, :] + 0.3 * rng.normal(size=(units, classes))).ravel()
    two_way = correlate(x, y, resamples=400, seed=1, classes=classes)
    rows = correlate(x, y, resamples=400, seed=1)
    width = two_way["spearman_ci_high"] - two_way["spearman_ci_low"]
    assert width > 3 * (rows["spearman_ci_high"] - rows["spearman_ci_low"])


def test_dead_units_leave_the_unit_correlations_and_stay_in_the_sensitivity_rows():
    rng = np.random.default_rng(4)
    units = 20
    attributes = pd.DataFrame({"unit": range(units), **{name: rng.random(units) for name in UNIT_ATTRIBUTES}})
    attributes["dead"] = np.arange(units) < 3
    attributes["active_fraction"] = np.where(np.arange(units) == 3, 0.001, 0.9)
    damage = pd.DataFrame(
        {"unit": range(units), "overall_drop": rng.random(units), "max_class_drop": rng.random(units)}
    )
    damage["topk_mean_drop"] = rng.random(units)
    table = layer_correlations("conv5", attributes, damage, resamples=0, min_active_fraction=0.01)
    assert set(table[table.level == "unit"].n) == {units - 4}
    assert set(table[table.level == "unit (all units)"].n) == {units}


def test_concept_iou_joins_the_unit_attributes_when_configured(tmp_path):
    from unit_ablation.stages.correlate import correlate_to_file

    rng = np.random.default_rng(7)
    units, classes = 12, ["a", "b", "c"]
    attributes = pd.DataFrame({"unit": range(units), **{name: rng.random(units) for name in UNIT_ATTRIBUTES}})
    damage = pd.DataFrame(
        {"unit": range(units), **{name: rng.random(units) for name in ("overall_drop", "max_class_drop")}}
    ).assign(topk_mean_drop=rng.random(units))
    pairs = [(u, k, name) for u in range(units) for k, name in enumerate(classes)]
    class_attributes = pd.DataFrame(
        {
            "unit": [p[0] for p in pairs],
            "class_index": [p[1] for p in pairs],
            "class": [p[2] for p in pairs],
            "class_mean": rng.random(len(pairs)),
            "class_selectivity": rng.random(len(pairs)),
            "class_correlation": rng.random(len(pairs)),
        }
    )
    class_damage = pd.DataFrame({"unit": class_attributes.unit, "class": class_attributes["class"]})
    class_damage["drop"] = rng.random(len(pairs))
    concepts = pd.DataFrame({"unit": range(units), "concept": "sky", "category": "object"})
    concepts["iou"] = rng.random(units)
    paths = {}
    for name, table in [
        ("attr", attributes),
        ("dmg", damage),
        ("class_attr", class_attributes),
        ("class_dmg", class_damage),
        ("concepts", concepts),
    ]:
        paths[name] = tmp_path / f"{name}.tsv"
        table.to_csv(paths[name], sep="\t", index=False)
    common = dict(
        layer_specs=["conv5"],
        attribute_paths=[paths["attr"]],
        class_attribute_paths=[paths["class_attr"]],
        damage_paths=[paths["dmg"]],
        class_damage_paths=[paths["class_dmg"]],
        agreement_output=tmp_path / "agreement.tsv",
        resamples=0,
        permutations=10,
    )
    correlate_to_file(output=tmp_path / "plain.tsv", **common)
    correlate_to_file(output=tmp_path / "with.tsv", concept_paths=[paths["concepts"]], **common)
    plain = pd.read_csv(tmp_path / "plain.tsv", sep="\t")
    with_concepts = pd.read_csv(tmp_path / "with.tsv", sep="\t")
    assert "concept_iou" not in set(plain.attribute)
    row = with_concepts[
        (with_concepts.attribute == "concept_iou") & (with_concepts.damage == "max_class_drop")
    ]
    expected = stats.spearmanr(concepts.iou, damage.max_class_drop).statistic
    assert row.spearman_rho.iloc[0] == pytest.approx(expected)
    assert len(with_concepts) == len(plain) + 6  # unit and sensitivity rows


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(3).normal(size=40),  # no ties
        np.random.default_rng(4).integers(0, 4, 40).astype(float),  # many ties
        np.array([0.0, -0.0, 1.0, -0.0, 2.0, 2.0]),  # signed zeros tie
        np.array([5.0]),
    ],
    ids=["distinct", "ties", "signed_zeros", "one"],
)
def test_resampled_ranks_are_scipys_bit_for_bit(values):
    index = np.random.default_rng(5).integers(0, len(values), (300, len(values) + 3))
    expected = stats.rankdata(values[index], axis=1)
    np.testing.assert_array_equal(resampled_ranks(values, index), expected)


def test_resampled_ranks_propagate_nan_to_the_rows_that_draw_it():
    values = np.array([1.0, np.nan, 3.0, 2.0])
    index = np.array([[0, 2, 3, 3], [1, 0, 2, 2]])
    ranks = resampled_ranks(values, index)
    np.testing.assert_array_equal(ranks[0], [1.0, 4.0, 2.5, 2.5])
    assert np.isnan(ranks[1]).all()
    with pytest.raises(ValueError, match="1-D"):
        resampled_ranks(values.reshape(2, 2), index)
