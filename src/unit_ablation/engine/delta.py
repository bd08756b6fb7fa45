"""The delta plan: channel-wise ops, then a mixing layer whose change from one channel is cheap."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unit_ablation.engine.graph_split import SplitModel
from unit_ablation.engine.plan_base import (
    MixingPlan,
    PlanState,
    bytes_per_image,
    commutes_with_rotation,
    mixing_chain,
    module_flops,
    repeat_batch,
)


@dataclass
class DeltaState(PlanState):
    mixed: torch.Tensor  # B x ...: the mixing layer's intact output
    pooled_blocks: torch.Tensor  # B x U x ...: each unit's slice of chain(a) (rotated: q_j^T chain(a))
    ablated_blocks: torch.Tensor  # 1 x U x ...: each unit's slice of chain(v)
    weight: torch.Tensor | None = None  # the rotated weight (columns W q_j); None: the layer's own


class Delta(MixingPlan):
    """Ablation point -> channel-wise ops f (ReLU, pooling, eval BN, dropout, flatten) -> mixing
    layer W (Linear or Conv2d) -> tail (AlexNet conv5).

    Ablating unit u changes only channel u of f(a), by f(v_u) - f(a)_u, so the mixing layer's
    output becomes W f(a) + W_u (f(v_u) - f(a)_u): one channel's worth of work; only the tail is
    replayed. In a rotated basis the same holds with the columns W q_j and the coordinates
    q_j^T f(a), provided f is linear and the same for every channel (identity, dropout, average
    pooling, flatten), so that it commutes with Q: conv3 -> conv4 of the built-in CNN, not
    conv5 -> max-pool.
    """

    name = "delta"

    @classmethod
    def applies(cls, split: SplitModel, rotated: bool) -> bool:
        found = mixing_chain(split)
        if found is None:
            return False
        chain, _ = found
        return not rotated or all(commutes_with_rotation(split, node) for node in chain)

    def prepare(self, activation: torch.Tensor, side: list[torch.Tensor], values: torch.Tensor) -> DeltaState:
        """The intact logits and mixing output, and per unit its slice of f(a) and of f(v)."""
        pooled, mixed, intact_logits = self._intact(activation, side)
        units = activation.shape[1]
        batch = activation.shape[0]
        constant = values.view(1, -1, *([1] * (activation.dim() - 2))).expand(1, *activation.shape[1:])
        ablated = self.chain(constant.contiguous())  # chain(f(v)) per channel, f(0) may be != 0
        blocks = pooled.reshape(batch, units, *self._block_shape(pooled, units))
        ablated_blocks = ablated.reshape(1, units, *self._block_shape(pooled, units))
        weight = None
        if self.rotation is not None:  # coordinates q_j^T chain(a) and columns W q_j
            blocks = torch.einsum("bu...,uk->bk...", blocks, self.rotation)
            weight = rotated_weight(self.mixing, self.rotation)
        return DeltaState(intact_logits, mixed, blocks, ablated_blocks, weight)

    @staticmethod
    def _block_shape(pooled: torch.Tensor, units: int) -> tuple[int, ...]:
        if pooled.dim() == 2:  # flattened channel-major: each unit owns a contiguous block
            return (pooled.shape[1] // units,)
        return tuple(pooled.shape[2:])

    def logits(
        self,
        state: DeltaState,
        activation: torch.Tensor,
        side: list[torch.Tensor],
        units: list[int],
        values: torch.Tensor,
    ) -> torch.Tensor:
        """(K * B) x classes: the tail on the K mixing outputs with one unit's change each."""
        index = torch.tensor(units, device=activation.device)
        ablated = state.ablated_blocks.index_select(1, index)
        change = ablated - state.pooled_blocks.index_select(1, index)
        mixed = mixed_after_ablation(
            self.mixing, state.mixed, change, units, activation.shape[1], state.weight
        )
        return self.tail(mixed.flatten(0, 1), *repeat_batch(side, len(units)))

    def flops(self, activation: torch.Tensor, side: list[torch.Tensor]) -> float:
        """The tail, plus the mixing layer's change from one channel: Linear 2 * out * in / U,
        Conv2d 2 * kh * kw * outputs."""
        flops = module_flops(self.tail, [self._mixed_example(activation), *[s[:1].clone() for s in side]])
        mixing = self.mixing
        if isinstance(mixing, nn.Linear):
            flops += 2.0 * mixing.out_features * mixing.in_features / activation.shape[1]
        else:
            out = self._mixed_example(activation)
            flops += 2.0 * mixing.kernel_size[0] * mixing.kernel_size[1] * out.numel()
        return flops

    def bytes_per_copy(self, activation: torch.Tensor, side: list[torch.Tensor]) -> int:
        """The tail's intermediate values and the mixing layer's output."""
        mixed = self._mixed_example(activation)
        return bytes_per_image(self.tail, mixed, *side) + 4 * mixed.numel()


def rotated_weight(mixing: nn.Module, rotation: torch.Tensor) -> torch.Tensor:
    """The mixing layer's weight with its input channels in the rotated basis (columns W q_j)."""
    weight = mixing.weight
    if isinstance(mixing, nn.Linear):  # flattened channel-major input: out x (U * S)
        blocks = weight.view(weight.shape[0], rotation.shape[0], -1)
        return torch.einsum("ous,uk->oks", blocks, rotation).reshape(weight.shape)
    return torch.einsum("ou...,uk->ok...", weight, rotation)


def mixed_after_ablation(
    mixing: nn.Module,
    mixed: torch.Tensor,
    change: torch.Tensor,
    units: list[int],
    unit_count: int,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """The mixing layer's output (K x B x ...) with each unit's own input change applied.

    `mixed` is the intact output (B x ...); `change` is (B, K, ...): the K units' slices of the
    mixing layer's input change. Linear: mixed + change_k W_k^T in one batched matmul.
    `weight` replaces the layer's own weight (the rotated one, see `rotated_weight`).
    """
    weight = mixing.weight if weight is None else weight
    index = torch.tensor(units, device=change.device)
    count = len(units)
    if isinstance(mixing, nn.Linear):
        weight = weight.view(mixing.out_features, unit_count, -1).index_select(1, index)  # out x K x S
        return torch.baddbmm(
            mixed.unsqueeze(0).expand(count, -1, -1),
            change.flatten(2).transpose(0, 1),  # K x B x S
            weight.permute(1, 2, 0),  # K x S x out
        )
    weight = weight.index_select(1, index)  # out x K x kh x kw
    grouped = weight.transpose(0, 1).reshape(-1, 1, *weight.shape[2:])  # (K * out) x 1 x kh x kw
    out = F.conv2d(change, grouped, None, mixing.stride, mixing.padding, mixing.dilation, groups=count)
    delta = out.view(change.shape[0], count, mixing.out_channels, *out.shape[2:]).transpose(0, 1)
    return mixed.unsqueeze(0) + delta
