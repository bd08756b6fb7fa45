"""Gather ablation chunks into the per-(unit, class) and per-unit damage tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from unit_ablation.files.formats import check_format
from unit_ablation.files.safe_load import CorruptFileError, check_shapes, load_npz, read_json_array

CHUNK_SHAPES: dict[str, tuple[int | str, ...]] = {
    "units": ("units",),
    "broken": ("units", "classes"),
    "fixed": ("units", "classes"),
    "n": ("classes",),
    "correct": ("classes",),
    # per fixed half of the images (`halves.evaluation_halves`); the totals above are their sums
    "broken_half": (2, "units", "classes"),
    "fixed_half": (2, "units", "classes"),
    "newly": (2, "units", "classes"),
    "no_longer": (2, "units", "classes"),
    "n_half": (2, "classes"),
    "correct_half": (2, "classes"),
    "predicted_half": (2, "classes"),
    "metadata": (),
}
COUNT_ARRAYS = tuple(key for key in CHUNK_SHAPES if key != "metadata")
UNIT_ARRAYS = ("broken", "fixed")  # units x classes: concatenated over chunks along axis 0
UNIT_HALF_ARRAYS = ("broken_half", "fixed_half", "newly", "no_longer")  # along axis 1
CLASS_ARRAYS = ("n", "correct", "n_half", "correct_half", "predicted_half")  # the same in every chunk
TOTALS = {"broken_half": "broken", "fixed_half": "fixed", "n_half": "n", "correct_half": "correct"}
FDR_METHODS = ("mid-p", "exact")


def check_counts(path: str | Path, chunk: Mapping[str, np.ndarray], what: str = "ablation chunk") -> None:
    """The counts of a chunk are non-negative integers, the per-half counts sum to the totals, and
    the predictions that changed agree (as many images leave a class, over all classes, as enter
    one). Raises CorruptFileError naming the file."""
    for key in COUNT_ARRAYS:
        if chunk[key].dtype.kind not in "iu":
            raise CorruptFileError(f"{path}: {what} array {key!r} is {chunk[key].dtype}, not integer counts")
        if chunk[key].size and chunk[key].min() < 0:
            raise CorruptFileError(f"{path}: {what} array {key!r} holds negative counts")
    for half, total in TOTALS.items():
        if not np.array_equal(chunk[half].sum(axis=0), chunk[total]):
            raise CorruptFileError(f"{path}: {what} array {half!r} does not sum over the halves to {total!r}")
    if not np.array_equal(chunk["newly"].sum(axis=2), chunk["no_longer"].sum(axis=2)):
        raise CorruptFileError(f"{path}: {what} arrays 'newly' and 'no_longer' count different changes")
    if not np.array_equal(chunk["predicted_half"].sum(axis=1), chunk["n_half"].sum(axis=1)):
        raise CorruptFileError(f"{path}: {what} array 'predicted_half' does not count every image once")


def load_chunk(path: str | Path) -> dict:
    """One chunk file of `stages.ablate.ablate_chunk_to_file`: its arrays, checked, and its plan name.

    Raises CorruptFileError naming the file when it is missing, truncated, corrupt, lacks an
    array, or holds arrays of the wrong shapes or types, or counts that do not add up.
    """
    what = "ablation chunk"
    chunk: dict = load_npz(path, CHUNK_SHAPES, what=what)
    check_shapes(path, chunk, CHUNK_SHAPES, what)
    check_counts(path, chunk, what)
    metadata = read_json_array(path, chunk["metadata"], "metadata", what)
    check_format(path, metadata, what)
    if not isinstance(metadata, dict) or not isinstance(metadata.get("plan"), str):
        raise CorruptFileError(f"{path}: {what} metadata has no plan name: {metadata!r}")
    chunk["plan"] = metadata["plan"]
    return chunk


def load_chunks(paths: Sequence[str | Path]) -> dict[str, np.ndarray]:
    """Concatenate chunk files in unit order, checking every unit appears exactly once, the class
    counts agree between chunks, and (per chunk) the per-half counts sum to the totals."""
    if not paths:
        raise ValueError("no ablation chunk files to gather")
    parts: dict[str, list[np.ndarray]] = {key: [] for key in ("units", *UNIT_ARRAYS, *UNIT_HALF_ARRAYS)}
    plans: list[str] = []
    classes: dict[str, np.ndarray] | None = None
    for path in paths:
        chunk = load_chunk(path)
        plans.extend([chunk["plan"]] * len(chunk["units"]))
        for key, values in parts.items():
            values.append(chunk[key])
        if classes is None:
            classes = {key: chunk[key] for key in CLASS_ARRAYS}
        elif not all(np.array_equal(classes[key], chunk[key]) for key in CLASS_ARRAYS):
            raise ValueError(f"{path}: class sizes or intact counts differ from the other chunks")
    assert classes is not None
    all_units = np.concatenate(parts["units"])
    order = np.argsort(all_units, kind="stable")
    all_units = all_units[order]
    if len(np.unique(all_units)) != len(all_units) or not np.array_equal(
        all_units, np.arange(len(all_units))
    ):
        raise ValueError(f"chunks {list(map(str, paths))} do not cover units 0..N-1 exactly once")
    merged: dict[str, np.ndarray] = {"units": all_units}
    merged |= {key: np.concatenate(parts[key])[order] for key in UNIT_ARRAYS}
    merged |= {key: np.concatenate(parts[key], axis=1)[:, order] for key in UNIT_HALF_ARRAYS}
    merged |= classes
    merged["plan"] = np.array(plans)[order]
    return merged


def balanced_class_accuracy(
    predictions: np.ndarray, labels: np.ndarray, class_index: int
) -> float | np.ndarray:
    """Balanced single-class accuracy of class k against the rest, in percent (chance 50):
    50 (TPR + TNR), TPR = TP / n_k, TNR = TN / (N - n_k) (Bau et al. 2020).

    `predictions`: N predicted classes (a float back), or R x N (one per row, an array back).
    NaN where the class or the rest has no image.
    """
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.shape[-1] != labels.shape[0] or predictions.ndim not in (1, 2):
        raise ValueError(f"predictions of shape {predictions.shape} do not match {labels.shape[0]} labels")
    positive = labels == class_index
    predicted = predictions == class_index
    true_positive = (predicted & positive).sum(axis=-1)
    true_negative = (~predicted & ~positive).sum(axis=-1)
    result = balanced_accuracy(true_positive, true_negative, positive.sum(), len(labels) - positive.sum())
    return float(result) if predictions.ndim == 1 else result


def balanced_accuracy(
    true_positive: np.ndarray, true_negative: np.ndarray, positives: np.ndarray, negatives: np.ndarray
) -> np.ndarray:
    """50 (TP / positives + TN / negatives), in percent; NaN where positives or negatives is 0."""
    positives, negatives = np.asarray(positives, np.float64), np.asarray(negatives, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 50.0 * (np.asarray(true_positive) / positives + np.asarray(true_negative) / negatives)
    return np.where((positives > 0) & (negatives > 0), value, np.nan)


def balanced_accuracies(counts: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Intact and ablated balanced single-class accuracy (percent), units x classes, from the
    counts: TP = correct, FP = predicted - correct, and after ablation
    TP' = TP - broken + fixed, FP' = FP + (newly - fixed) - (no_longer - broken)."""
    n = counts["n"]
    negatives = n.sum() - n
    correct = counts["correct"]
    false_positive = counts["predicted_half"].sum(axis=0) - correct
    broken, fixed = counts["broken"], counts["fixed"]
    newly, no_longer = counts["newly"].sum(axis=0), counts["no_longer"].sum(axis=0)
    intact = balanced_accuracy(correct, negatives - false_positive, n, negatives)
    ablated_tp = correct - broken + fixed
    ablated_fp = false_positive + (newly - fixed) - (no_longer - broken)
    ablated = balanced_accuracy(ablated_tp, negatives - ablated_fp, n, negatives)
    return np.broadcast_to(intact, ablated.shape), ablated


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


def mcnemar_midp(broken: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """Two-sided McNemar mid-p value on the discordant pairs, X ~ binomial(broken + fixed, 1/2):
    min(1, 2 (P(X < m) + P(X = m) / 2)), m = min(broken, fixed); 1 when no discordant image.

    The exact test is conservative with few discordant images (5-0 gives p = 0.0625, never
    significant at 0.05); the mid-p value halves the weight of the observed outcome."""
    broken, fixed = np.asarray(broken), np.asarray(fixed)
    discordant = np.maximum(broken + fixed, 1)
    smaller = np.minimum(broken, fixed)
    tail = stats.binom.cdf(smaller - 1, discordant, 0.5) + 0.5 * stats.binom.pmf(smaller, discordant, 0.5)
    return np.where(broken + fixed > 0, np.minimum(1.0, 2.0 * tail), 1.0)


def significance(
    broken: np.ndarray, fixed: np.ndarray, fdr_alpha: float, fdr_method: str = "mid-p"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact McNemar p-values, mid-p values, BH q-values over all given pairs of the p-values that
    `fdr_method` names ("mid-p" or "exact"), and `hurt` (q <= alpha and broken > fixed)."""
    if fdr_method not in FDR_METHODS:
        raise ValueError(f"fdr_method {fdr_method!r} is not one of {', '.join(FDR_METHODS)}")
    exact, midp = mcnemar_exact_p(broken, fixed), mcnemar_midp(broken, fixed)
    q_values = benjamini_hochberg(midp if fdr_method == "mid-p" else exact)
    return exact, midp, q_values, (q_values <= fdr_alpha) & (np.asarray(broken) > np.asarray(fixed))


def drops(net: np.ndarray, n: np.ndarray, absent: float = 0.0) -> np.ndarray:
    """100 net / n (accuracy points), `absent` where n is 0."""
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, 100.0 * np.asarray(net, dtype=np.float64) / n, absent)


def class_table(
    counts: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    fdr_alpha: float = 0.05,
    fdr_method: str = "mid-p",
) -> pd.DataFrame:
    """One row per (unit, class): n, correct_intact, broken, fixed, drop (accuracy points); the
    exact McNemar p-value and mid-p value, the Benjamini-Hochberg q-value over the layer (of the
    p-values `fdr_method` names) and `hurt` (q <= alpha and more images broken than fixed); the
    same counts and drop on each fixed half of the images (`_h0`, `_h1`; drop NaN where the half
    has no image of the class); balanced single-class accuracy intact and ablated (percent, NaN
    where undefined) and its drop (points)."""
    num_units, num_classes = counts["broken"].shape
    n = np.tile(counts["n"], num_units)
    broken = counts["broken"].ravel()
    fixed = counts["fixed"].ravel()
    p_values, midp, q_values, hurt = significance(broken, fixed, fdr_alpha, fdr_method)
    table = pd.DataFrame(
        {
            "unit": np.repeat(counts["units"], num_classes),
            "class": np.tile(np.array(class_names, dtype=object), num_units),
            "n": n,
            "correct_intact": np.tile(counts["correct"], num_units),
            "broken": broken,
            "fixed": fixed,
            "drop": drops(broken - fixed, n),
            "mcnemar_p": p_values,
            "mcnemar_midp": midp,
            "q_value": q_values,
            "hurt": hurt,
        }
    )
    for h in range(2):
        half_broken, half_fixed = counts["broken_half"][h].ravel(), counts["fixed_half"][h].ravel()
        half_n = np.tile(counts["n_half"][h], num_units)
        table[f"broken_h{h}"] = half_broken
        table[f"fixed_h{h}"] = half_fixed
        table[f"n_h{h}"] = half_n
        table[f"drop_h{h}"] = drops(half_broken - half_fixed, half_n, absent=np.nan)
    intact, ablated = balanced_accuracies(counts)
    table["balanced_accuracy_intact"] = intact.ravel()
    table["balanced_accuracy_ablated"] = ablated.ravel()
    table["balanced_accuracy_drop"] = (intact - ablated).ravel()
    return table


def top_k(classes: int) -> int:
    """k of the top-k damage summaries: ceil(5% of the classes), at least 1."""
    return max(1, -(-int(classes) // 20))


def unit_table(
    counts: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    thresholds: Sequence[float] = (2, 5, 10),
    fdr_alpha: float = 0.05,
    fdr_method: str = "mid-p",
) -> pd.DataFrame:
    """One row per unit: overall drop (all images, and each fixed half), balanced drop, max class
    drop and its class (empty when the unit lowers no class), mean of the top-k class drops
    (k = `top_k(classes present)`), classes above each threshold, and classes significantly hurt
    (McNemar, BH over the layer's unit-class pairs of the p-values `fdr_method` names)."""
    n = counts["n"].astype(np.float64)
    net = (counts["broken"] - counts["fixed"]).astype(np.float64)
    class_drop = drops(net, n)
    present = n > 0
    k = top_k(present.sum())
    sorted_drops = -np.sort(-class_drop[:, present], axis=1)
    top_mean = sorted_drops[:, :k].mean(axis=1) if present.any() else np.full(len(net), np.nan)
    max_drop = class_drop.max(axis=1)
    most_damaged = class_drop.argmax(axis=1)
    table = pd.DataFrame(
        {
            "unit": counts["units"],
            "overall_drop": 100.0 * net.sum(axis=1) / n.sum(),
        }
    )
    for h in range(2):
        half_net = (counts["broken_half"][h] - counts["fixed_half"][h]).sum(axis=1)
        table[f"overall_drop_h{h}"] = drops(half_net, np.full(len(net), counts["n_half"][h].sum()), np.nan)
    table["balanced_drop"] = class_drop[:, present].mean(axis=1) if present.any() else np.nan
    table["max_class_drop"] = max_drop
    table["max_drop_class"] = pd.Series(
        [class_names[c] if d > 0 else None for c, d in zip(most_damaged, max_drop, strict=True)],
        dtype=object,
    )
    table["topk_mean_drop"] = top_mean
    table["top_k"] = k
    for tau in thresholds:
        table[f"n_classes_drop_ge_{tau:g}"] = (class_drop >= tau).sum(axis=1)
    hurt = significance(counts["broken"].ravel(), counts["fixed"].ravel(), fdr_alpha, fdr_method)[3]
    table["n_classes_significantly_hurt"] = hurt.reshape(net.shape).sum(axis=1)
    if "plan" in counts:
        table["plan"] = counts["plan"]
    return table
