"""Does a unit's most selective class coincide with the class its ablation hurts most?"""

from __future__ import annotations

import numpy as np
import pandas as pd

from unit_ablation.spec.layer_spec import parse_layer_spec


def top_k_hits(selective: np.ndarray, damage: np.ndarray, k: int) -> np.ndarray:
    """Per unit: is the class `selective[u]` among the k classes with the largest damage[u]?"""
    top = np.argsort(-damage, axis=1, kind="stable")[:, :k]
    return (top == selective[:, None]).any(axis=1)


def agreement(selective: np.ndarray, damage: np.ndarray, permutations: int, seed: int) -> dict[str, float]:
    """Share of units whose most selective class is their most damaged class (top 1 and top 5),
    against chance: the same share with the selective classes permuted across units.

    `selective`: units (most selective class index); `damage`: units x classes drops.
    The p-value is (1 + #permutations with a share >= observed) / (1 + permutations).
    """
    rng = np.random.default_rng(seed)
    result: dict[str, float] = {"units_used": int(len(selective))}
    for k in (1, 5):
        observed = float(top_k_hits(selective, damage, k).mean()) if len(selective) else float("nan")
        shuffled = np.array(
            [top_k_hits(rng.permutation(selective), damage, k).mean() for _ in range(permutations)]
        )
        result[f"top{k}_share"] = observed
        result[f"top{k}_chance"] = float(shuffled.mean()) if permutations else float("nan")
        result[f"top{k}_p"] = float((1 + np.sum(shuffled >= observed)) / (1 + permutations))
    return result


def layer_agreement(
    layer_spec: str,
    class_attributes: pd.DataFrame,
    class_damage: pd.DataFrame,
    permutations: int,
    seed: int,
) -> dict:
    """Agreement for one layer spec; units that are dead or whose ablation hurts no class are left out."""
    means = class_attributes.pivot(index="unit", columns="class_index", values="class_mean")
    class_order = list(dict.fromkeys(class_attributes.sort_values("class_index")["class"]))
    drops = class_damage.pivot(index="unit", columns="class", values="drop")[class_order].loc[means.index]
    drop_values = drops.to_numpy()
    usable = (drop_values.max(axis=1) > 0) & (np.abs(means.to_numpy()).sum(axis=1) > 0)
    selective = means.to_numpy().argmax(axis=1)[usable]
    spec = parse_layer_spec(layer_spec)
    return {
        "layer_spec": layer_spec,
        "layer": spec.label,
        "basis": spec.basis,
        **agreement(selective, drop_values[usable], permutations, seed),
    }
