"""The ablation engine: trunk once per image batch, then a plan for K ablated copies at once."""

from __future__ import annotations

import logging
import time

import torch
from torch import nn

from unit_ablation.engine.graph_split import run_trunk, split_model
from unit_ablation.engine.head_replay import ablate_directions
from unit_ablation.engine.plans import Plan, choose_plan

__all__ = ["AblationEngine", "ablate_directions", "is_out_of_memory", "memory_budget_bytes"]

log = logging.getLogger(__name__)

# Under glibc's 32 MB mmap threshold, so that a process without the workflow's allocator setting
# (`runtime.allocator`: a notebook calling `ua.ablate`) does not fault in every pass's copies
# afresh: 256 MB cost it 13-33% on conv3, conv4 and rotated conv5 (docs/engine.md).
DEFAULT_CPU_BUDGET_MB = 32


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
        self.plan_object: Plan = choose_plan(
            self.split, rotated=rotation is not None, requested=plan, rotation=rotation
        )
        self.plan = self.plan_object.name  # the plan's name, as the metadata records it
        self.units_per_pass = units_per_pass
        self.memory_mb = memory_mb
        self._copy_bytes: int | None = None
        self.flops_per_copy: float | None = None
        self.executed_flops = 0.0  # Linear/Conv2d FLOPs of the ablated copies
        self.head_seconds = 0.0  # time spent on the ablated copies (not the trunk)

    def _group_size(self, activation: torch.Tensor, side: list[torch.Tensor], units: int) -> int:
        """Ablated copies per pass: `units_per_pass`, else as many as the memory budget holds."""
        if self.units_per_pass is not None:
            return max(1, min(units, self.units_per_pass))
        if self._copy_bytes is None:
            self._copy_bytes = self.plan_object.bytes_per_copy(activation, side)
        budget = memory_budget_bytes(activation.device, self.memory_mb)
        return max(1, min(units, budget // max(1, self._copy_bytes * activation.shape[0])))

    @torch.no_grad()
    def predictions(
        self,
        x: torch.Tensor,
        units: list[int],
        values: torch.Tensor,
        trunk: tuple[torch.Tensor, list[torch.Tensor]] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Intact predictions (B) and predictions with each unit ablated (len(units) x B).

        `values[u]` is what unit u's coordinate is set to (0 for zero ablation). `trunk`: the
        trunk's outputs for `x` (`run_trunk`), when they are known already.
        """
        activation, side = run_trunk(self.split, x) if trunk is None else trunk
        if self.flops_per_copy is None:
            self.flops_per_copy = self.plan_object.flops(activation, side)
        state = self.plan_object.prepare(activation, side, values)
        intact = state.intact_logits.argmax(1)
        predictions = torch.empty(len(units), x.shape[0], dtype=torch.long, device=x.device)
        size = self._group_size(activation, side, len(units))
        started = time.perf_counter()
        start = 0
        while start < len(units):
            group = units[start : start + size]
            try:
                logits = self.plan_object.logits(state, activation, side, group, values)
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
