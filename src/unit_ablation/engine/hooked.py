"""The fallback for models the engine's plans cannot split: full forward passes with a hook that
ablates the layer's output, as the naive reference does.

torch.fx cannot trace Python control flow that depends on the data, nor some ops; then there is
no trunk to run once and no head to replay. `HookedEngine` runs the whole model instead, one unit
per forward, or K units per forward (the image batch stacked K times, copy k ablating unit k)
where a check on the first batch shows that stacking gives the same logits, bit for bit, as one
forward per unit. A model whose output for an image depends on the other images of the batch
(batch statistics in its control flow) fails that check and keeps one unit per forward, as does
one whose kernels round differently at the larger batch size.
"""

from __future__ import annotations

import logging
import time

import torch
from torch import nn

from unit_ablation.engine.ablation_engine import memory_budget_bytes
from unit_ablation.engine.head_replay import ablate_directions
from unit_ablation.engine.layer_hooks import logits_of, tensor_output

log = logging.getLogger(__name__)

HOOKED_PLAN = "hooks"  # the plan name the counts and tables record


class HookedEngine:
    """Predictions with each of many units ablated, by full forward passes with a hook.

    Same interface as `AblationEngine` (`predictions`, `plan`, `head_seconds`). `units_per_forward`
    is decided on the first batch: `units_per_pass` (else as many stacked copies as `memory_mb`
    allows), kept only if stacking reproduces one forward per unit exactly on that batch.
    """

    plan = HOOKED_PLAN

    def __init__(
        self,
        model: nn.Module,
        module: nn.Module,
        layer: str,
        rotation: torch.Tensor | None = None,
        units_per_pass: int | None = None,
        memory_mb: float | None = None,
    ) -> None:
        self.model = model
        self.module = module
        self.layer = layer
        self.rotation = rotation
        self.units_per_pass = units_per_pass
        self.memory_mb = memory_mb
        self.units_per_forward: int | None = None
        self.stacking_note = ""  # why stacking was or was not used
        self.head_seconds = 0.0  # time of the ablated forwards
        self.executed_flops = 0.0  # not counted: the forwards are not traced

    def _forward(self, x: torch.Tensor, units: list[int] | None, values: torch.Tensor | None) -> torch.Tensor:
        """Logits of the intact model (units None), else of len(units) copies of the batch, copy k
        with unit units[k] ablated: (len(units) * B) x classes, copy-major."""
        calls = [0]

        def ablate(_module: nn.Module, _inputs: object, output: object) -> torch.Tensor | None:
            calls[0] += 1
            out = tensor_output(output, self.layer)
            if units is None:
                return None
            copies = out.view(len(units), -1, *out.shape[1:])
            ablated = [
                ablate_directions(copies[k], [u], self.rotation, values)[0] for k, u in enumerate(units)
            ]
            return ablated[0] if len(units) == 1 else torch.cat(ablated)

        handle = self.module.register_forward_hook(ablate)
        try:
            stacked = x if units is None or len(units) == 1 else x.repeat(len(units), *([1] * (x.dim() - 1)))
            logits = logits_of(self.model(stacked))
        finally:
            handle.remove()
        if calls[0] != 1:
            raise ValueError(
                f"layer {self.layer!r} is called {calls[0]} times in one forward pass; "
                "ablate a module that is called once"
            )
        return logits

    def _bytes_per_image(self, x: torch.Tensor) -> int:
        """Bytes of every module's output for one image (an upper bound on a forward's working set)."""
        total = [0]

        def count(_module: nn.Module, _inputs: object, output: object) -> None:
            if isinstance(output, torch.Tensor):
                total[0] += output[:1].numel() * output.element_size()

        handles = [module.register_forward_hook(count) for module in self.model.modules()]
        try:
            self.model(x[:1])
        finally:
            for handle in handles:
                handle.remove()
        return max(total[0], 4)

    def _choose_units_per_forward(self, x: torch.Tensor, units: list[int], values: torch.Tensor) -> int:
        if self.units_per_pass is not None:
            wanted = max(1, min(len(units), self.units_per_pass))
        else:
            budget = memory_budget_bytes(x.device, self.memory_mb)
            wanted = max(1, min(len(units), budget // (self._bytes_per_image(x) * len(x))))
        if wanted == 1:
            self.stacking_note = "one unit per forward"
            return 1
        group = units[:wanted]
        stacked = self._forward(x, group, values).view(len(group), len(x), -1)
        if all(torch.equal(stacked[k], self._forward(x, [u], values)) for k, u in enumerate(group)):
            self.stacking_note = f"{wanted} units per forward (stacking checked exact on the first batch)"
            return wanted
        self.stacking_note = (
            "one unit per forward (stacked copies gave other logits than single forwards on the first "
            "batch: the batch size changes the model's rounding, or an image's output depends on the batch)"
        )
        return 1

    @torch.no_grad()
    def predictions(
        self, x: torch.Tensor, units: list[int], values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Intact predictions (B) and predictions with each unit ablated (len(units) x B)."""
        intact = self._forward(x, None, None).argmax(1)
        started = time.perf_counter()
        if self.units_per_forward is None:
            self.units_per_forward = self._choose_units_per_forward(x, units, values)
            log.info("layer %s, plan %s: %s", self.layer, self.plan, self.stacking_note)
        size = self.units_per_forward
        predictions = torch.empty(len(units), x.shape[0], dtype=torch.long, device=x.device)
        for start in range(0, len(units), size):
            group = units[start : start + size]
            # the last group is padded to the checked size: the stacked batch keeps the shape checked
            padded = group + [group[-1]] * (size - len(group)) if size > 1 else group
            logits = self._forward(x, padded, values)
            predictions[start : start + len(group)] = logits.argmax(-1).view(len(padded), -1)[: len(group)]
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        self.head_seconds += time.perf_counter() - started
        return intact, predictions
