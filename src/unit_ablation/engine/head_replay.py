"""Head replay: the rest of the network on K ablated copies of the activation at once."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unit_ablation.engine.cropped_tail import CompiledTails, CroppedTail, take_region
from unit_ablation.engine.graph_split import SplitModel
from unit_ablation.engine.plan_base import (
    Plan,
    PlanState,
    bytes_per_image,
    clones,
    module_flops,
    repeat_batch,
)


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
    return torch.addcmul(
        activation.unsqueeze(0),
        directions.view(len(units), 1, -1, *spatial),
        projection.unsqueeze(2),
        value=-1,
    )


@dataclass
class HeadReplayState(PlanState):
    cropped: CroppedTail | None = None  # the head compiled to its region (`cropped_tail`), if it compiles


class HeadReplay(Plan):
    """Any split: logits_u = head(a - q_u (q_u^T a - v_u), *side) (canonical: a_u <- v_u), with
    the K copies stacked along the batch dimension (rotated conv5, residual blocks).

    A head without side inputs that `cropped_tail` compiles runs on the region of the activation
    it reads (rotated conv5: the 6 x 6 positions pool5 keeps of 7 x 7).
    """

    name = "head-replay"

    def __init__(self, split: SplitModel, rotation: torch.Tensor | None = None) -> None:
        super().__init__(split, rotation)
        self._compiled = CompiledTails(split.head)

    @classmethod
    def applies(cls, split: SplitModel, rotated: bool) -> bool:
        return True

    def prepare(self, activation: torch.Tensor, side: list[torch.Tensor], values: torch.Tensor) -> PlanState:
        """The intact logits (the head may work in place: it gets clones), and the compiled head."""
        return HeadReplayState(
            self.split.head(activation.clone(), *clones(side)), self._cropped_head(activation, side)
        )

    def _cropped_head(self, activation: torch.Tensor, side: list[torch.Tensor]) -> CroppedTail | None:
        return None if side else self._compiled.get(activation)

    def logits(
        self,
        state: PlanState,
        activation: torch.Tensor,
        side: list[torch.Tensor],
        units: list[int],
        values: torch.Tensor,
    ) -> torch.Tensor:
        """(K * B) x classes: the head on the K ablated copies, copy-major."""
        if isinstance(state, HeadReplayState) and state.cropped is not None:
            region = take_region(activation, state.cropped.region).contiguous()
            return state.cropped(ablate_directions(region, units, self.rotation, values).flatten(0, 1))
        copies = ablate_directions(activation, units, self.rotation, values)
        return self.split.head(copies.flatten(0, 1), *repeat_batch(side, len(units)))

    def flops(self, activation: torch.Tensor, side: list[torch.Tensor]) -> float:
        """Every Linear/Conv2d of the head (on the positions computed, where it compiles)."""
        cropped = self._cropped_head(activation, side)
        if cropped is not None:
            return cropped.flops()
        return module_flops(self.split.head, [activation[:1].clone(), *[s[:1].clone() for s in side]])

    def bytes_per_copy(self, activation: torch.Tensor, side: list[torch.Tensor]) -> int:
        """The head's intermediate values."""
        cropped = self._cropped_head(activation, side)
        if cropped is not None:
            return cropped.bytes_per_image()
        return bytes_per_image(self.split.head, activation, *side)
