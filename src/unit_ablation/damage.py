"""Gather ablation chunks into the per-(unit, class) and per-unit damage tables."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from unit_ablation.data import load_class_names
from unit_ablation.io import write_tsv
from unit_ablation.safe_load import CorruptFileError, check_shapes, load_npz, read_json_array

log = logging.getLogger(__name__)


CHUNK_SHAPES: dict[str, tuple[str, ...]] = {
    "units": ("units",),
    "broken": ("units", "classes"),
    "fixed": ("units", "classes"),
    "n": ("classes",),
    "correct": ("classes",),
    "metadata": (),
}


def load_chunk(path: str | Path) -> dict:
    """One chunk file of `ablation.ablate_chunk_to_file`: its arrays, checked, and its plan name.

    Raises CorruptFileError naming the file when it is missing, truncated, corrupt, lacks an
    array, or holds arrays of the wrong shapes or types.
    """
    what = "ablation chunk"
    chunk: dict = load_npz(path, CHUNK_SHAPES, what=what)
    check_shapes(path, chunk, CHUNK_SHAPES, what)
    for key in ("units", "broken", "fixed", "n", "correct"):
        if chunk[key].dtype.kind not in "iu":
            raise CorruptFileError(f"{path}: {what} array {key!r} is {chunk[key].dtype}, not integer counts")
    metadata = read_json_array(path, chunk["metadata"], "metadata", what)
    if not isinstance(metadata, dict) or not isinstance(metadata.get("plan"), str):
        raise CorruptFileError(f"{path}: {what} metadata has no plan name: {metadata!r}")
    chunk["plan"] = metadata["plan"]
    return chunk


def load_chunks(paths: Sequence[str | Path]) -> dict[str, np.ndarray]:
    """Concatenate chunk files, checking every unit appears exactly once and counts agree."""
    if not paths:
        raise ValueError("no ablation chunk files to gather")
    units, broken, fixed, plans = [], [], [], []
    n = correct = None
    for path in paths:
        chunk = load_chunk(path)
        plans.extend([chunk["plan"]] * len(chunk["units"]))
        units.append(chunk["units"])
        broken.append(chunk["broken"])
        fixed.append(chunk["fixed"])
        if n is None:
            n, correct = chunk["n"], chunk["correct"]
        elif not (np.array_equal(n, chunk["n"]) and np.array_equal(correct, chunk["correct"])):
            raise ValueError(f"{path}: class sizes or intact counts differ from the other chunks")
    all_units = np.concatenate(units)
    order = np.argsort(all_units, kind="stable")
    all_units = all_units[order]
    if len(np.unique(all_units)) != len(all_units) or not np.array_equal(
        all_units, np.arange(len(all_units))
    ):
        raise ValueError(f"chunks {list(map(str, paths))} do not cover units 0..N-1 exactly once")
    return {
        "units": all_units,
        "broken": np.concatenate(broken)[order],
        "fixed": np.concatenate(fixed)[order],
        "n": n,
        "correct": correct,
        "plan": np.array(plans)[order],
    }


def mcnemar_exact_p(broken: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """Two-sided exact McNemar p-value on the discordant pairs: binomial(broken + fixed, 1/2).

    p = min(1, 2 P(X <= min(broken, fixed))); 1 when there is no discordant image.
    """
    broken, fixed = np.asarray(broken), np.asarray(fixed)
    discordant = broken + fixed
    tail = stats.binom.cdf(np.minimum(broken, fixed), np.maximum(discordant, 1), 0.5)
    return np.where(discordant > 0, np.minimum(1.0, 2.0 * tail), 1.0)


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), in the input order."""
    p = np.asarray(p_values, dtype=np.float64).ravel()
    if p.size == 0:
        return p
    order = np.argsort(p, kind="stable")
    ranked = p[order] * p.size / np.arange(1, p.size + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    result = np.empty_like(p)
    result[order] = np.minimum(adjusted, 1.0)
    return result.reshape(np.shape(p_values))


def significance(
    broken: np.ndarray, fixed: np.ndarray, fdr_alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """McNemar p-values, BH q-values over all given pairs, and `hurt` (q <= alpha, broken > fixed)."""
    p_values = mcnemar_exact_p(broken, fixed)
    q_values = benjamini_hochberg(p_values)
    return p_values, q_values, (q_values <= fdr_alpha) & (broken > fixed)


def class_table(
    counts: dict[str, np.ndarray], class_names: Sequence[str], fdr_alpha: float = 0.05
) -> pd.DataFrame:
    """One row per (unit, class): n, correct_intact, broken, fixed, drop (accuracy points), and the
    exact McNemar p-value, its Benjamini-Hochberg q-value over the layer, and `hurt` (q <= alpha
    and more images broken than fixed)."""
    num_units, num_classes = counts["broken"].shape
    n = np.tile(counts["n"], num_units)
    broken = counts["broken"].ravel()
    fixed = counts["fixed"].ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        drop = np.where(n > 0, 100.0 * (broken - fixed) / n, 0.0)
    p_values, q_values, hurt = significance(broken, fixed, fdr_alpha)
    return pd.DataFrame(
        {
            "unit": np.repeat(counts["units"], num_classes),
            "class": np.tile(np.array(class_names, dtype=object), num_units),
            "n": n,
            "correct_intact": np.tile(counts["correct"], num_units),
            "broken": broken,
            "fixed": fixed,
            "drop": drop,
            "mcnemar_p": p_values,
            "q_value": q_values,
            "hurt": hurt,
        }
    )


def unit_table(
    counts: dict[str, np.ndarray],
    class_names: Sequence[str],
    thresholds: Sequence[float] = (2, 5, 10),
    fdr_alpha: float = 0.05,
) -> pd.DataFrame:
    """One row per unit: overall, balanced, max-class and top-5 drops, classes above each threshold,
    and classes significantly hurt (McNemar, BH over the layer's unit-class pairs)."""
    n = counts["n"].astype(np.float64)
    net = (counts["broken"] - counts["fixed"]).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        class_drop = np.where(n > 0, 100.0 * net / n, 0.0)
    present = n > 0
    top = min(5, int(present.sum()))
    sorted_drops = -np.sort(-class_drop[:, present], axis=1)
    table = pd.DataFrame(
        {
            "unit": counts["units"],
            "overall_drop": 100.0 * net.sum(axis=1) / n.sum(),
            "balanced_drop": class_drop[:, present].mean(axis=1),
            "max_class_drop": class_drop.max(axis=1),
            "max_drop_class": [class_names[k] for k in class_drop.argmax(axis=1)],
            "top5_mean_drop": sorted_drops[:, :top].mean(axis=1),
        }
    )
    for tau in thresholds:
        table[f"n_classes_drop_ge_{tau:g}"] = (class_drop >= tau).sum(axis=1)
    hurt = significance(counts["broken"].ravel(), counts["fixed"].ravel(), fdr_alpha)[2]
    table["n_classes_significantly_hurt"] = hurt.reshape(net.shape).sum(axis=1)
    if "plan" in counts:
        table["plan"] = counts["plan"]
    return table


def gather_to_files(
    chunk_paths: Sequence[str | Path],
    class_names_source: str | Path,
    classes_output: str | Path,
    units_output: str | Path,
    thresholds: Sequence[float] = (2, 5, 10),
    fdr_alpha: float = 0.05,
) -> None:
    """Write `{layer}.classes.tsv` and `{layer}.units.tsv` from the chunk files of one layer."""
    counts = load_chunks(chunk_paths)
    class_names = list(load_class_names(class_names_source))
    if len(class_names) != len(counts["n"]):
        raise ValueError(
            f"{chunk_paths[0]}: ablation chunks count {len(counts['n'])} classes, but {class_names_source}"
            f" has {len(class_names)}"
        )
    units = unit_table(counts, class_names, thresholds, fdr_alpha)
    write_tsv(class_table(counts, class_names, fdr_alpha), classes_output)
    write_tsv(units, units_output)
    log.info(
        "%d units: median overall drop %.3f, median max class drop %.2f points (max %.2f)",
        len(units),
        units.overall_drop.median(),
        units.max_class_drop.median(),
        units.max_class_drop.max(),
    )
