"""What an ablation counts: per (unit, class), the images a unit's removal breaks and fixes, per
fixed half of the images too, and the changes of predicted class that balanced single-class
accuracy needs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from unit_ablation.data.halves import StreamHalves, evaluation_halves


@dataclass
class AblationCounts:
    """Paired counts of one ablation run; `plan`: how it was computed.

    Totals: broken/fixed (units x classes), n/correct (per class, intact model). Per fixed half
    of the images (`halves.evaluation_halves`; the totals are their sums): broken_half,
    fixed_half, newly, no_longer (2 x units x classes) and n_half, correct_half, predicted_half
    (2 x classes). `newly[h, u, k]`: images of half h (of any label) the intact model does not
    predict as k and the ablated model does; `no_longer[h, u, k]`: images it predicts as k and
    the ablated model does not; `predicted_half[h, k]`: images the intact model predicts as k.
    """

    units: np.ndarray
    broken: np.ndarray
    fixed: np.ndarray
    n: np.ndarray
    correct: np.ndarray
    broken_half: np.ndarray
    fixed_half: np.ndarray
    newly: np.ndarray
    no_longer: np.ndarray
    n_half: np.ndarray
    correct_half: np.ndarray
    predicted_half: np.ndarray
    plan: str = "naive"
    head_seconds: float = 0.0  # engine only: time on the ablated copies, trunk excluded
    head_flops: float = 0.0  # engine only: Linear/Conv2d FLOPs executed on the ablated copies

    @property
    def predicted(self) -> np.ndarray:
        """Images the intact model predicts as each class."""
        return self.predicted_half.sum(axis=0)


# the arrays of AblationCounts (and of a chunk file) that are counts per half of the images
UNIT_HALF_ARRAYS = ("broken_half", "fixed_half", "newly", "no_longer")  # 2 x units x classes


HALF_ARRAYS = (*UNIT_HALF_ARRAYS, "n_half", "correct_half", "predicted_half")


def count_changes(
    intact: torch.Tensor, ablated: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (copy, class) counts of broken and fixed images; ablated is K x B predictions."""
    intact_ok = (intact == labels).unsqueeze(0)
    ablated_ok = ablated == labels.unsqueeze(0)
    offsets = torch.arange(ablated.shape[0], device=labels.device).unsqueeze(1) * num_classes
    cell = (offsets + labels.unsqueeze(0)).flatten()
    size = ablated.shape[0] * num_classes
    broken = torch.bincount(cell[(intact_ok & ~ablated_ok).flatten()], minlength=size)
    fixed = torch.bincount(cell[(~intact_ok & ablated_ok).flatten()], minlength=size)
    return broken.view(-1, num_classes), fixed.view(-1, num_classes)


def count_batch(
    intact: torch.Tensor, ablated: torch.Tensor, labels: torch.Tensor, halves: torch.Tensor, num_classes: int
) -> dict[str, torch.Tensor]:
    """Counts of one batch per half: broken_half, fixed_half, newly, no_longer (2 x K x classes)
    and correct_half, predicted_half (2 x classes) of the intact model.

    intact, labels, halves: B; ablated: K x B predictions.
    """
    copies = ablated.shape[0]
    size = 2 * copies * num_classes
    # cell (half, copy, class) of every (copy, image), less the class
    copy = torch.arange(copies, device=labels.device).unsqueeze(1)
    base = (halves.unsqueeze(0) * copies + copy) * num_classes
    intact_ok = (intact == labels).unsqueeze(0)
    ablated_ok = ablated == labels.unsqueeze(0)
    changed = ablated != intact.unsqueeze(0)

    def tally(cells: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        return torch.bincount(cells[where], minlength=size).view(2, copies, num_classes)

    def tally_intact(cells: torch.Tensor) -> torch.Tensor:
        return torch.bincount(cells, minlength=2 * num_classes).view(2, num_classes)

    by_label = base + labels.unsqueeze(0)
    return {
        "broken_half": tally(by_label, intact_ok & ~ablated_ok),
        "fixed_half": tally(by_label, ~intact_ok & ablated_ok),
        "newly": tally(base + ablated, changed),
        "no_longer": tally(base + intact.unsqueeze(0), changed),
        "correct_half": tally_intact((halves * num_classes + labels)[intact == labels]),
        "predicted_half": tally_intact(halves * num_classes + intact),
    }


def counts_from_predictions(
    intact: np.ndarray, ablated: np.ndarray, labels: np.ndarray, halves: np.ndarray, num_classes: int
) -> dict[str, np.ndarray]:
    """The same counts as `count_batch`, written out class by class in numpy: the reference.

    intact, labels, halves: N; ablated: K x N predictions.
    """
    shape = (2, ablated.shape[0], num_classes)
    counts = {key: np.zeros(shape, np.int64) for key in UNIT_HALF_ARRAYS}
    counts |= {key: np.zeros((2, num_classes), np.int64) for key in ("correct_half", "predicted_half")}
    intact_ok, ablated_ok = intact == labels, ablated == labels
    for h in range(2):
        half = halves == h
        for k in range(num_classes):
            in_class = half & (labels == k)
            counts["broken_half"][h, :, k] = (in_class & intact_ok & ~ablated_ok).sum(axis=1)
            counts["fixed_half"][h, :, k] = (in_class & ~intact_ok & ablated_ok).sum(axis=1)
            counts["newly"][h, :, k] = (half & (intact != k) & (ablated == k)).sum(axis=1)
            counts["no_longer"][h, :, k] = (half & (intact == k) & (ablated != k)).sum(axis=1)
            counts["correct_half"][h, k] = (in_class & intact_ok).sum()
            counts["predicted_half"][h, k] = (half & (intact == k)).sum()
    return counts


def class_sizes_per_half(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """n_half: images of each class in each half (2 x classes)."""
    halves = evaluation_halves(labels)
    return np.stack([np.bincount(labels[halves == h], minlength=num_classes) for h in range(2)])


def finished_counts(
    units: list[int],
    labels: np.ndarray | None,
    num_classes: int,
    half_counts: dict[str, np.ndarray],
    n_half: np.ndarray | None = None,
    **run: object,
) -> AblationCounts:
    """AblationCounts from the per-half counts (numpy), with the totals as their sums; the class
    sizes per half from the labels, or given as `n_half`."""
    if n_half is None:
        n_half = class_sizes_per_half(labels, num_classes)
    return AblationCounts(
        units=np.array(units),
        broken=half_counts["broken_half"].sum(axis=0),
        fixed=half_counts["fixed_half"].sum(axis=0),
        n=n_half.sum(axis=0),
        correct=half_counts["correct_half"].sum(axis=0),
        n_half=n_half,
        **{key: half_counts[key] for key in HALF_ARRAYS if key != "n_half"},
        **run,
    )


class CountTotals:
    """The counts of a stream of image batches, summed on the device: `add` one batch's intact and
    ablated predictions, then `finished` gives the AblationCounts. Each image's half follows
    `evaluation_halves` over the images in the order they arrive (`StreamHalves`)."""

    def __init__(self, units: int, num_classes: int, device: torch.device) -> None:
        self.num_classes = num_classes
        shapes = {key: (2, units, num_classes) for key in UNIT_HALF_ARRAYS}
        shapes |= {"correct_half": (2, num_classes), "predicted_half": (2, num_classes)}
        self.totals = {
            key: torch.zeros(shape, dtype=torch.long, device=device) for key, shape in shapes.items()
        }
        self.halves = StreamHalves(num_classes)
        self.n_half = np.zeros((2, num_classes), np.int64)
        self.images = 0

    def resume(self, partial: object, labels_done: np.ndarray) -> None:
        """Continue from the counts of the first images (a `resume.PartialCounts`) and their labels."""
        for key, total in self.totals.items():
            total += torch.from_numpy(np.asarray(getattr(partial, key))).to(total.device)
        self.add_labels(np.asarray(labels_done))

    def add_labels(self, labels: np.ndarray) -> np.ndarray:
        """Assign the next images' halves and count them; raises naming a label out of range."""
        if len(labels) and not 0 <= labels.min() <= labels.max() < self.num_classes:
            bad = labels[(labels < 0) | (labels >= self.num_classes)][0]
            raise ValueError(
                f"label {bad} is not a class index 0..{self.num_classes - 1} of the model's logits"
            )
        halves = self.halves.assign(labels)
        np.add.at(self.n_half, (halves, labels), 1)
        self.images += len(labels)
        return halves

    def add(self, intact: torch.Tensor, ablated: torch.Tensor, labels: torch.Tensor) -> None:
        """One batch: intact predictions and labels (B), ablated predictions (K x B)."""
        halves = self.add_labels(labels.cpu().numpy())
        batch = count_batch(
            intact, ablated, labels, torch.from_numpy(halves).to(labels.device), self.num_classes
        )
        for key, value in batch.items():
            self.totals[key] += value

    def numpy(self) -> dict[str, np.ndarray]:
        return {key: value.cpu().numpy() for key, value in self.totals.items()}

    def finished(self, units: list[int], **run: object) -> AblationCounts:
        return finished_counts(units, None, self.num_classes, self.numpy(), n_half=self.n_half.copy(), **run)
