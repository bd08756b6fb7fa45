"""The ablation engine: trunk once per image batch, then a plan for K ablated copies at once."""

from __future__ import annotations

import logging
import time

import torch
from torch import nn

from unit_ablation.engine.graph_split import run_trunk, split_model
from unit_ablation.engine.plans import (
    PlanParts,
    bytes_per_image,
    choose_plan,
    head_flops_per_copy,
    mixed_after_ablation,
    repeat_batch,
    rotated_weight,
)

log = logging.getLogger(__name__)

DEFAULT_CPU_BUDGET_MB = 256


def memory_budget_bytes(device: torch.device, budget_mb: float | None) -> int:
    """Bytes the ablated copies may use: the given budget, else half the free GPU memory or a CPU default."""
    if budget_mb is not None:
        return int(budget_mb * 2**20)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    return DEFAULT_CPU_BUDGET_MB * 2**20


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError | MemoryError) or "out of memory" in str(error)


def clones(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [t.clone() for t in tensors]


def ablate_directions(
    activation: torch.Tensor, units: list[int], rotation: torch.Tensor | None, values: torch.Tensor
) -> torch.Tensor:
    """K ablated copies (K x B x U x ...) of a B x U x ... activation, one per unit.

    Canonical basis: channel u is set to values[u]. Rotated basis: the coordinate along
    direction q_u is replaced by values[u], i.e. a <- a - q_u (q_u^T a - values[u]).
    """
    if rotation is None:
        copies = activation.unsqueeze(0).repeat(len(units), *([1] * activation.dim()))
        for k, unit in enumerate(units):
            copies[k, :, unit] = values[unit]
        return copies
    index = torch.tensor(units, device=activation.device)
    directions = rotation[:, index].T  # K x U
    spatial = [1] * (activation.dim() - 2)
    projection = torch.einsum("bu...,ku->kb...", activation, directions) - values[index].view(-1, 1, *spatial)
    # one broadcast writes all K copies: a - q_k (q_k^T a - v_k)
    return activation.unsqueeze(0) - directions.view(len(units), 1, -1, *spatial) * projection.unsqueeze(2)


class AblationEngine:
    """Predictions of a model with each of many units ablated, for one layer and basis."""

    def __init__(
        self,
        model: nn.Module,
        layer: str,
        rotation: torch.Tensor | None = None,
        plan: str = "auto",
        units_per_pass: int | None = None,
        memory_mb: float | None = None,
    ) -> None:
        self.split = split_model(model, layer)
        self.rotation = rotation
        self.parts: PlanParts = choose_plan(self.split, rotated=rotation is not None, requested=plan)
        self.plan = self.parts.name
        self.units_per_pass = units_per_pass
        self.memory_mb = memory_mb
        self._copy_bytes: int | None = None
        self.flops_per_copy: float | None = None
        self.executed_flops = 0.0  # Linear/Conv2d FLOPs of the ablated copies
        self.head_seconds = 0.0  # time spent on the ablated copies (not the trunk)

    def _group_size(self, activation: torch.Tensor, side: list[torch.Tensor], units: int) -> int:
        if self.units_per_pass is not None:
            return max(1, min(units, self.units_per_pass))
        if self._copy_bytes is None:
            if self.plan == "head-replay":
                self._copy_bytes = bytes_per_image(self.split.head, activation, *side)
            elif self.plan == "delta":
                mixed = self.parts.mixing(self.parts.chain(activation[:1].clone()))
                self._copy_bytes = bytes_per_image(self.parts.tail, mixed, *side) + 4 * mixed.numel()
            else:
                self._copy_bytes = 4 * self.parts.mixing.out_features
        budget = memory_budget_bytes(activation.device, self.memory_mb)
        return max(1, min(units, budget // max(1, self._copy_bytes * activation.shape[0])))

    @torch.no_grad()
    def predictions(
        self, x: torch.Tensor, units: list[int], values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Intact predictions (B) and predictions with each unit ablated (len(units) x B).

        `values[u]` is what unit u's coordinate is set to (0 for zero ablation).
        """
        activation, side = run_trunk(self.split, x)
        if self.flops_per_copy is None:
            self.flops_per_copy = head_flops_per_copy(self.parts, self.split, activation, side)
        context = self._prepare(activation, side, values)
        intact = context["intact_logits"].argmax(1)
        predictions = torch.empty(len(units), x.shape[0], dtype=torch.long, device=x.device)
        size = self._group_size(activation, side, len(units))
        started = time.perf_counter()
        start = 0
        while start < len(units):
            group = units[start : start + size]
            try:
                logits = self._ablated_logits(context, activation, side, group, values)
            except (RuntimeError, MemoryError) as error:
                if not is_out_of_memory(error) or size == 1:
                    raise
                size = max(1, size // 2)
                self.units_per_pass = size
                log.warning("out of memory with %d ablated copies: halving to %d", len(group), size)
                if x.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            predictions[start : start + len(group)] = logits.argmax(-1).view(len(group), -1)
            self.executed_flops += self.flops_per_copy * len(group) * x.shape[0]
            start += len(group)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        self.head_seconds += time.perf_counter() - started
        return intact, predictions

    def _prepare(self, activation: torch.Tensor, side: list[torch.Tensor], values: torch.Tensor) -> dict:
        # The head and tail may work in place (the model's own in-place ReLUs): values used again
        # for the ablated copies are cloned before an intact pass.
        if self.plan == "head-replay":
            return {"intact_logits": self.split.head(activation.clone(), *clones(side))}
        pooled = self.parts.chain(activation.clone())
        mixed = self.parts.mixing(pooled)
        intact_logits = self.parts.tail(mixed.clone(), *clones(side))
        context = {"pooled": pooled, "mixed": mixed, "intact_logits": intact_logits}
        units = activation.shape[1]
        batch = activation.shape[0]
        if self.plan == "delta":
            constant = values.view(1, -1, *([1] * (activation.dim() - 2))).expand(1, *activation.shape[1:])
            ablated = self.parts.chain(constant.contiguous())  # chain(f(v)) per channel, f(0) may be != 0
            blocks = pooled.reshape(batch, units, *self._block_shape(pooled, units))
            context["ablated_blocks"] = ablated.reshape(1, units, *self._block_shape(pooled, units))
            if self.rotation is not None:  # coordinates q_j^T chain(a) and columns W q_j
                blocks = torch.einsum("bu...,uk->bk...", blocks, self.rotation)
                context["weight"] = rotated_weight(self.parts.mixing, self.rotation)
            context["pooled_blocks"] = blocks
        elif self.rotation is not None:
            context["coordinates"] = pooled @ self.rotation  # z = Q^T g per image
            context["weight"] = self.parts.mixing.weight @ self.rotation  # columns W q_j
        else:
            context["coordinates"] = pooled
            context["weight"] = self.parts.mixing.weight
        return context

    @staticmethod
    def _block_shape(pooled: torch.Tensor, units: int) -> tuple[int, ...]:
        if pooled.dim() == 2:  # flattened channel-major: each unit owns a contiguous block
            return (pooled.shape[1] // units,)
        return tuple(pooled.shape[2:])

    def _ablated_logits(
        self, context: dict, activation: torch.Tensor, side: list[torch.Tensor], group: list[int], values
    ) -> torch.Tensor:
        index = torch.tensor(group, device=activation.device)
        if self.plan == "head-replay":
            copies = ablate_directions(activation, group, self.rotation, values)
            return self.split.head(copies.flatten(0, 1), *repeat_batch(side, len(group)))
        if self.plan == "closed-form":
            shift = context["coordinates"].index_select(1, index) - values.index_select(0, index)  # B x K
            columns = context["weight"].index_select(1, index)  # classes x K
            return context["intact_logits"].unsqueeze(0) - shift.T.unsqueeze(2) * columns.T.unsqueeze(1)
        ablated = context["ablated_blocks"].index_select(1, index)
        change = ablated - context["pooled_blocks"].index_select(1, index)
        mixed = mixed_after_ablation(
            self.parts.mixing, context["mixed"], change, group, activation.shape[1], context.get("weight")
        )
        return self.parts.tail(mixed.flatten(0, 1), *repeat_batch(side, len(group)))
