"""Constructed per-network tables for the claim tests: attributes, damage and class damage of
one (network, layer), with effects planted where the test asks for them."""

from __future__ import annotations

import numpy as np
import pandas as pd

CLASSES = [f"c{k}" for k in range(10)]


def network_tables(
    rng: np.random.Generator,
    units: int = 40,
    images_per_class: int = 200,
    selectivity_effect: float = 0.0,
    overall_effect: float = 0.0,
    specificity: float = 1.0,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(attributes, class attributes, damage, class damage) of one simulated network.

    Each unit has a per-class selectivity; its broken counts per class are Poisson with a mean
    that grows with `selectivity_effect` x that selectivity (class damage follows selectivity)
    and, for its overall drop, with `overall_effect` x its unit selectivity. `specificity`
    scales how concentrated the damage is on the unit's favourite class.
    """
    num_classes = len(CLASSES)
    si = rng.normal(0, 1, (units, num_classes))
    favourite = si.argmax(axis=1)
    unit_selectivity = si.max(axis=1)
    base = np.full((units, num_classes), 1.0)
    base[np.arange(units), favourite] += 4.0 * specificity
    rate = base * np.exp(selectivity_effect * si + overall_effect * unit_selectivity[:, None])
    broken = rng.poisson(rate)
    fixed = rng.poisson(1.0, (units, num_classes))
    halves = rng.binomial(broken, 0.5), rng.binomial(fixed, 0.5)
    n = images_per_class
    drop = 100.0 * (broken - fixed) / n
    drop_h0 = 100.0 * (halves[0] - halves[1]) / (n / 2)
    drop_h1 = 100.0 * ((broken - halves[0]) - (fixed - halves[1])) / (n / 2)
    overall = drop.mean(axis=1)
    attributes = pd.DataFrame(
        {
            "unit": np.arange(units),
            "dead": False,
            "active_fraction": 1.0,
            "class_selectivity": unit_selectivity,
            "class_correlation": rng.normal(0, 1, units),
            "l1_in": rng.gamma(2.0, 1.0, units),
            "l1_out": rng.gamma(2.0, 1.0, units),
            "activation_mean": rng.gamma(2.0, 1.0, units),
            "activation_std": rng.gamma(2.0, 1.0, units),
            "activation_sparsity": rng.uniform(0, 1, units),
            "activation_max": rng.gamma(2.0, 1.0, units),
        }
    )
    class_attributes = pd.DataFrame(
        {
            "unit": np.repeat(np.arange(units), num_classes),
            "class": np.tile(CLASSES, units),
            "class_index": np.tile(np.arange(num_classes), units),
            "class_mean": rng.gamma(2.0, 1.0, units * num_classes),
            "class_selectivity": si.ravel(),
            "class_correlation": rng.normal(0, 1, units * num_classes),
        }
    )
    damage = pd.DataFrame(
        {
            "unit": np.arange(units),
            "overall_drop": overall,
            "balanced_drop": drop.mean(axis=1),
            "max_class_drop": drop.max(axis=1),
            "overall_drop_h0": drop_h0.mean(axis=1),
            "overall_drop_h1": drop_h1.mean(axis=1),
        }
    )
    class_damage = pd.DataFrame(
        {
            "unit": np.repeat(np.arange(units), num_classes),
            "class": np.tile(CLASSES, units),
            "n": n,
            "broken": broken.ravel(),
            "fixed": fixed.ravel(),
            "drop": drop.ravel(),
            "hurt": (broken - fixed).ravel() >= 8,
        }
    )
    return attributes, class_attributes, damage, class_damage
