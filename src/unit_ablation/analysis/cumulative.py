"""Cumulative ablation: remove a class's k most important units together (k = 1, 2, 4, ...).

Cross-fitted, so that nothing is selected on the images it is evaluated on: units are ranked by
their single-unit drop for the class, and classes chosen, on one fixed half of the evaluation
images (the gather's `drop_h0` / `drop_h1`); the sets are evaluated on the other half; then the
halves swap. Each row records `ranked_on` and `evaluated_on`. The control removes k random
units, several seeded draws per k. For every set we record the class's accuracy, its balanced
single-class accuracy (class against the rest, chance 50%) and the overall accuracy, as in Bau
et al. 2020 (PNAS), Fig. 3.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from unit_ablation.analysis.damage import balanced_class_accuracy
from unit_ablation.engine.delta import Delta
from unit_ablation.engine.graph_split import TraceFailed, resolve_layer, run_trunk, split_model
from unit_ablation.engine.layer_hooks import edited_logits
from unit_ablation.engine.resume import ProgressSaver, load_saved_arrays, save_or_stop
from unit_ablation.runtime import termination
from unit_ablation.runtime.device import image_batches
from unit_ablation.runtime.progress import Progress

log = logging.getLogger(__name__)

PREDICTIONS = "predictions"  # the array of a cumulative job's progress file


def unit_counts(max_units: int, unit_count: int) -> list[int]:
    """k = 0 (intact), then powers of two up to min(max_units, unit_count)."""
    limit = min(max_units, unit_count)
    ks, k = [0], 1
    while k <= limit:
        ks.append(k)
        k *= 2
    return ks


def choose_classes(
    class_damage: pd.DataFrame, classes: Sequence[str] | int, column: str = "drop"
) -> list[str]:
    """The named classes, or the `classes` classes whose most damaging single unit hurts them most
    (by `column`, e.g. the drop on one half of the images)."""
    known = list(dict.fromkeys(class_damage["class"]))
    if isinstance(classes, int):
        largest = class_damage.groupby("class", sort=False)[column].max().reindex(known)
        order = np.argsort(-largest.to_numpy(), kind="stable")
        return [known[i] for i in order[:classes]]
    unknown = [name for name in classes if name not in known]
    if unknown:
        raise ValueError(f"cumulative.classes: {unknown} not among the dataset's classes {known}")
    return list(classes)


def ranked_units(class_damage: pd.DataFrame, class_name: str, column: str = "drop") -> list[int]:
    """Units by their single-unit drop (`column`) for `class_name`, largest first (ties: lower unit first)."""
    rows = class_damage[class_damage["class"] == class_name].sort_values(
        [column, "unit"], ascending=[False, True], kind="stable"
    )
    return [int(u) for u in rows.unit]


def ablate_set(activation: torch.Tensor, units: Sequence[int], values: torch.Tensor) -> torch.Tensor:
    """A copy of the activation with every unit in `units` set to its ablation value."""
    ablated = activation.clone()
    if len(units):
        index = torch.tensor(list(units), device=activation.device)
        shape = [1, len(units), *([1] * (activation.dim() - 2))]
        ablated[:, index] = values.index_select(0, index).view(shape).expand_as(ablated[:, index])
    return ablated


def set_predictor(
    model: nn.Module, layer: str
) -> Callable[[torch.Tensor, Sequence[Sequence[int]], torch.Tensor], torch.Tensor]:
    """A function giving a batch's predictions (sets x B) with each set of units ablated together:
    the trunk once, then per set the delta plan's tail (`Delta.set_logits`) where the plan applies,
    else the head; for a model torch.fx cannot trace, a forward per set with a hook."""
    try:
        split = split_model(model, layer)
    except TraceFailed as error:
        log.warning("%s: each unit set is ablated by a hook in a full forward pass", error)
        module = resolve_layer(model, layer)

        def hooked(x: torch.Tensor, sets: Sequence[Sequence[int]], values: torch.Tensor) -> torch.Tensor:
            rows = [
                edited_logits(model, module, x, lambda out, u=units: ablate_set(out, u, values))
                for units in sets
            ]
            return torch.stack([row.argmax(1) for row in rows])

        return hooked

    def traced(x: torch.Tensor, sets: Sequence[Sequence[int]], values: torch.Tensor) -> torch.Tensor:
        activation, side = run_trunk(split, x)
        # the head may work in place: every set gets fresh copies
        rows = [
            split.head(ablate_set(activation, units, values), *[t.clone() for t in side]) for units in sets
        ]
        return torch.stack([row.argmax(1) for row in rows])

    if not Delta.applies(split, rotated=False):
        return traced
    plan = Delta(split)

    def delta(x: torch.Tensor, sets: Sequence[Sequence[int]], values: torch.Tensor) -> torch.Tensor:
        """The delta plan's sum of the units' changes at the mixing layer, then the tail per set."""
        activation, side = run_trunk(split, x)
        state = plan.prepare(activation, side, values)
        return torch.stack([plan.set_logits(state, side, list(units), values).argmax(1) for units in sets])

    return delta


@torch.no_grad()
def set_predictions(
    model: nn.Module,
    layer: str,
    images: np.ndarray,
    unit_sets: Sequence[Sequence[int]],
    values: torch.Tensor,
    batch_size: int,
    device: torch.device,
    saver: ProgressSaver | None = None,
) -> np.ndarray:
    """Predictions (sets x images) with each set of units ablated together; the trunk runs once per batch.

    With a `saver`, the predictions so far are saved when it is due and on SIGTERM (then
    `runtime.termination.Terminated` is raised), and a rerun with the same saver resumes from them.
    """
    predict = set_predictor(model, layer)
    predictions = np.full((len(unit_sets), len(images)), -1, dtype=np.int16)
    progress = Progress(log, f"cumulative {layer}", len(images), "images")
    start = 0
    saved = (
        None
        if saver is None
        else load_saved_arrays(saver.path, saver.fingerprint, {PREDICTIONS: predictions.shape})
    )
    if saved is not None:
        start, predictions = saved[0], saved[1][PREDICTIONS]
        log.info("resuming at image %d of %d", start, len(images))
        progress.update(start, note="from the saved progress")
    with termination.deferred():  # SIGTERM: finish the batch, save, stop (a rerun resumes)
        for x, _ in image_batches(images[start:], None, batch_size, device):
            predictions[:, start : start + len(x)] = predict(x, unit_sets, values).cpu().numpy()
            progress.update(len(x), note=f"{len(unit_sets)} unit sets")
            start += len(x)
            if start == len(images):
                break
            save_or_stop(saver, start, len(images), lambda: {PREDICTIONS: predictions})
    return predictions.astype(np.int64)


def unit_sets(
    class_damage: pd.DataFrame,
    classes: Sequence[str] | int,
    ks: list[int],
    random_draws: int,
    seed: int,
    unit_count: int,
) -> list[dict]:
    """Every (fold, class, order, draw, k) with its units. Fold h ranks units and chooses classes
    by the drops on half h (`drop_h{h}`) and is evaluated on the other half; the random draws are
    the same in both folds."""
    rng = np.random.default_rng(seed)
    sets = []
    random_sets = [[int(u) for u in rng.permutation(unit_count)] for _ in range(random_draws)]
    for ranked_on in (0, 1):
        column = f"drop_h{ranked_on}"
        fold = {"ranked_on": ranked_on, "evaluated_on": 1 - ranked_on}
        for class_name in choose_classes(class_damage, classes, column):
            top = ranked_units(class_damage, class_name, column)
            sets += [
                {**fold, "class": class_name, "order": "top", "draw": 0, "k": k, "units": top[:k]} for k in ks
            ]
            for draw, permutation in enumerate(random_sets):
                sets += [
                    {
                        **fold,
                        "class": class_name,
                        "order": "random",
                        "draw": draw,
                        "k": k,
                        "units": permutation[:k],
                    }
                    for k in ks
                ]
    return sets


def cumulative_table(
    sets: list[dict],
    predictions: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    halves: np.ndarray | None = None,
) -> pd.DataFrame:
    """Class, balanced single-class and overall accuracy (percent) of every unit set on the images
    it is evaluated on (the half `evaluated_on`, or all images without `halves`), and their drops
    from the intact model on the same images."""
    rows = []
    for s, entry in enumerate(sets):
        evaluated = np.ones(len(labels), dtype=bool) if halves is None else halves == entry["evaluated_on"]
        y, predicted = labels[evaluated], predictions[s, evaluated]
        class_index = class_names.index(entry["class"])
        correct = predicted == y
        rows.append(
            {
                "ranked_on": entry.get("ranked_on", ""),
                "evaluated_on": entry.get("evaluated_on", ""),
                "class": entry["class"],
                "class_index": class_index,
                "order": entry["order"],
                "draw": entry["draw"],
                "k": entry["k"],
                "class_accuracy": 100.0 * correct[y == class_index].mean(),
                "balanced_class_accuracy": balanced_class_accuracy(predicted, y, class_index),
                "overall_accuracy": 100.0 * correct.mean(),
                "units": ",".join(str(u) for u in entry["units"]),
            }
        )
    table = pd.DataFrame(rows)
    key = ["ranked_on", "class"]
    intact = table[table.k == 0].groupby(key)[
        ["class_accuracy", "balanced_class_accuracy", "overall_accuracy"]
    ]
    intact = intact.first()
    reference = table[key].merge(intact, left_on=key, right_index=True, how="left")
    table["class_drop"] = reference.class_accuracy.to_numpy() - table.class_accuracy
    table["balanced_class_drop"] = (
        reference.balanced_class_accuracy.to_numpy() - table.balanced_class_accuracy
    )
    table["overall_drop"] = reference.overall_accuracy.to_numpy() - table.overall_accuracy
    return table
