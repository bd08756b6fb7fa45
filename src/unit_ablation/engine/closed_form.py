"""The closed form: a global average pool and the final Linear right after the ablation point."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unit_ablation.engine.graph_split import SplitModel
from unit_ablation.engine.plan_base import (
    MixingPlan,
    PlanState,
    is_flatten,
    is_global_average_pool,
    is_identity,
    mixing_chain,
    node_module,
)


@dataclass
class ClosedFormState(PlanState):
    coordinates: torch.Tensor  # B x U: g, or z = Q^T g
    weight: torch.Tensor  # classes x U: W, or the columns W q_j


class ClosedForm(MixingPlan):
    """Ablation point -> (identity ops) -> global average pool -> flatten -> Linear -> logits.

    The logits are linear in the pooled activation g = GAP(a), so setting unit u to v_u changes
    them by -W[:, u] (g_u - v_u), for every unit in one operation (ResNet's `layer4`). In a
    rotated basis the same holds with the coordinates z = Q^T g and the columns W q_j.
    """

    name = "closed-form"

    @classmethod
    def applies(cls, split: SplitModel, rotated: bool) -> bool:
        found = mixing_chain(split)
        if found is None:
            return False
        chain, after = found
        output = list(split.graph.nodes)[-1]
        pool_at = [i for i, node in enumerate(chain) if is_global_average_pool(split, node)]
        return (
            isinstance(node_module(split, after), torch.nn.Linear)
            and list(after.users) == [output]
            and len(pool_at) == 1
            and all(is_identity(split, n) for n in chain[: pool_at[0]])
            and all(is_identity(split, n) or is_flatten(split, n) for n in chain[pool_at[0] + 1 :])
        )

    def prepare(
        self, activation: torch.Tensor, side: list[torch.Tensor], values: torch.Tensor
    ) -> ClosedFormState:
        """The intact logits, the pooled coordinates and the Linear's columns in the basis."""
        pooled, _, intact_logits = self._intact(activation, side)
        if self.rotation is not None:
            return ClosedFormState(
                intact_logits,
                coordinates=pooled @ self.rotation,  # z = Q^T g per image
                weight=self.mixing.weight @ self.rotation,  # columns W q_j
            )
        return ClosedFormState(intact_logits, coordinates=pooled, weight=self.mixing.weight)

    def logits(
        self,
        state: ClosedFormState,
        activation: torch.Tensor,
        side: list[torch.Tensor],
        units: list[int],
        values: torch.Tensor,
    ) -> torch.Tensor:
        """K x B x classes: logits - (z_u - v_u) W q_u for each unit u."""
        index = torch.tensor(units, device=activation.device)
        shift = state.coordinates.index_select(1, index) - values.index_select(0, index)  # B x K
        columns = state.weight.index_select(1, index)  # classes x K
        return state.intact_logits.unsqueeze(0) - shift.T.unsqueeze(2) * columns.T.unsqueeze(1)

    def flops(self, activation: torch.Tensor, side: list[torch.Tensor]) -> float:
        """One column of W per copy: 2 * classes."""
        return 2.0 * self.mixing.out_features

    def bytes_per_copy(self, activation: torch.Tensor, side: list[torch.Tensor]) -> int:
        """One row of logits."""
        return 4 * self.mixing.out_features
