"""The delta plan: channel-wise ops, then a mixing layer whose change from one channel is cheap."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unit_ablation.engine.cropped_tail import CompiledTails, CroppedTail, Region, Span, take_region
from unit_ablation.engine.graph_split import SplitModel
from unit_ablation.engine.plan_base import (
    MixingPlan,
    PlanState,
    bytes_per_image,
    clones,
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
    cropped: CroppedTail | None = None  # the tail compiled to its region (Conv2d mixing only)
    # `mixed` on the region: (B * rows * cols) x out for a channels-last tail, else B x out x (rows * cols)
    mixed_region: torch.Tensor | None = None
    # each unit's (or direction's) filters: U x (kh * kw) x out (channels-last), else U x out x (kh * kw)
    unit_weight: torch.Tensor | None = None


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

    def __init__(self, split: SplitModel, rotation: torch.Tensor | None = None) -> None:
        super().__init__(split, rotation)
        self._compiled = CompiledTails(self.tail)

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
            blocks = torch.einsum("bu...,uk->bk...", blocks, self.rotation).contiguous()
            weight = rotated_weight(self.mixing, self.rotation)
        state = DeltaState(intact_logits, mixed, blocks, ablated_blocks, weight)
        state.cropped = self._cropped_tail(mixed, side)
        if state.cropped is not None:
            region = take_region(mixed, state.cropped.region)
            filters = self.mixing.weight if weight is None else weight  # out x U x kh x kw
            if state.cropped.channels_last:
                state.mixed_region = region.permute(0, 2, 3, 1).reshape(-1, mixed.shape[1])
                state.unit_weight = filters.flatten(2).permute(1, 2, 0).contiguous()
            else:
                state.mixed_region = region.flatten(2).contiguous()
                state.unit_weight = filters.flatten(2).transpose(0, 1).contiguous()
        return state

    def _cropped_tail(self, mixed: torch.Tensor, side: list[torch.Tensor]) -> CroppedTail | None:
        """The tail compiled to the region it reads (`cropped_tail`), for a stride-1 Conv2d mixing
        layer and a tail without side inputs; else None (the fx tail runs)."""
        conv = self.mixing
        plain = isinstance(conv, nn.Conv2d) and conv.stride == (1, 1) and conv.dilation == (1, 1)
        return self._compiled.get(mixed) if plain and not side else None

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
        if state.cropped is not None and not state.cropped.channels_last:
            return tail_by_chunks(self.mixing, state, change, index)
        if state.cropped is not None:
            mixed = mixed_on_region(self.mixing, state, change, index)
            return state.cropped(mixed)
        mixed = mixed_after_ablation(
            self.mixing, state.mixed, change, units, activation.shape[1], state.weight
        )
        return self.tail(mixed.flatten(0, 1), *repeat_batch(side, len(units)))

    def set_logits(
        self, state: DeltaState, side: list[torch.Tensor], units: list[int], values: torch.Tensor
    ) -> torch.Tensor:
        """B x classes with every unit of `units` ablated together: the mixing layer's changes from
        the units' channels add up (it is linear), then the tail runs once (cumulative ablation)."""
        if not units:
            return state.intact_logits
        index = torch.tensor(units, device=state.mixed.device)
        change = state.ablated_blocks.index_select(1, index) - state.pooled_blocks.index_select(1, index)
        weight = self.mixing.weight if state.weight is None else state.weight
        mixing = self.mixing
        if isinstance(mixing, nn.Linear):
            columns = weight.view(mixing.out_features, -1, change.shape[2]).index_select(1, index)
            mixed = torch.addmm(state.mixed, change.flatten(1), columns.flatten(1).T)
        else:
            delta = F.conv2d(
                change, weight.index_select(1, index), None, mixing.stride, mixing.padding, mixing.dilation
            )
            mixed = state.mixed + delta
        return self.tail(mixed, *clones(side))

    def flops(self, activation: torch.Tensor, side: list[torch.Tensor]) -> float:
        """The tail, plus the mixing layer's change from one channel: Linear 2 * out * in / U,
        Conv2d 2 * kh * kw * outputs (on the cropped tail's region where the tail compiles)."""
        mixing = self.mixing
        mixed = self._mixed_example(activation)
        if isinstance(mixing, nn.Linear):
            change = 2.0 * mixing.out_features * mixing.in_features / activation.shape[1]
        else:
            change = 2.0 * mixing.kernel_size[0] * mixing.kernel_size[1] * mixing.out_channels
        cropped = self._cropped_tail(mixed, side)
        if cropped is not None:
            rows, cols = cropped.region
            return change * rows.length * cols.length + cropped.flops()
        outputs = 1 if isinstance(mixing, nn.Linear) else mixed[0, 0].numel()
        return change * outputs + module_flops(self.tail, [mixed, *[s[:1].clone() for s in side]])

    def bytes_per_copy(self, activation: torch.Tensor, side: list[torch.Tensor]) -> int:
        """The tail's intermediate values and the mixing layer's output (on the cropped tail's
        region, with the patches of the change, where the tail compiles)."""
        mixed = self._mixed_example(activation)
        cropped = self._cropped_tail(mixed, side)
        if cropped is not None:
            rows, cols = cropped.region
            kernel = self.mixing.kernel_size[0] * self.mixing.kernel_size[1]
            return cropped.bytes_per_image() + 4 * kernel * rows.length * cols.length
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


def _patches(mixing: nn.Conv2d, state: DeltaState, change: torch.Tensor) -> list[torch.Tensor]:
    """The kh * kw windows (K x B x rows x cols each) of the change maps that the mixing layer's
    kernel offsets read for the cropped tail's region (zeros where they reach into padding)."""
    rows, cols = state.cropped.region
    (kh, kw), (ph, pw) = mixing.kernel_size, mixing.padding
    height, width = change.shape[2:]
    source: Region = (
        Span(rows.start - ph, rows.stop - ph + kh - 1, height),
        Span(cols.start - pw, cols.stop - pw + kw - 1, width),
    )
    padded = take_region(change, source).transpose(0, 1)  # K x B x ...
    return [padded[:, :, i : i + rows.length, j : j + cols.length] for i in range(kh) for j in range(kw)]


def mixed_on_region(
    mixing: nn.Conv2d, state: DeltaState, change: torch.Tensor, index: torch.Tensor
) -> torch.Tensor:
    """(K * B) x out x rows x cols, channels-last: the mixing layer's output on the cropped tail's
    region with each of the K units' own input change (`change`: B x K x H x W) applied.

    Position p gets mixed[p] + sum over kernel offsets o of W_u[:, o] change_u[p + o - padding]:
    one batched matmul over the units of the change maps' patches by the units' filters, added to
    the intact output in the same call. (An NCHW tail takes `tail_by_chunks`.)
    """
    rows, cols = state.cropped.region
    windows = _patches(mixing, state, change)
    patches = torch.stack(windows, -1)
    count, batch = patches.shape[:2]
    out = torch.baddbmm(
        state.mixed_region.expand(count, -1, -1),
        patches.view(count, -1, len(windows)),
        state.unit_weight.index_select(0, index),
    )
    return out.view(count * batch, rows.length, cols.length, -1).permute(0, 3, 1, 2)


# Images per step of `tail_by_chunks`: a chunk's mixing output should stay in the core's cache
# through the tail's elementwise steps and convolution (AlexNet conv3 -> conv4: 24.6 KB an image).
# 3 MB (128 images) measured fastest of 1.5-6 MB on a 1 MB-L2 Zen 4; conv3 ran 19-22% faster than
# with whole 500-image batches while a second job ran, about 10% alone (docs/engine.md).
CHUNK_BYTES = 3 << 20


def tail_by_chunks(
    mixing: nn.Conv2d, state: DeltaState, change: torch.Tensor, index: torch.Tensor
) -> torch.Tensor:
    """(K * B) x classes: the cropped (NCHW) tail on the mixing layer's output with each of the K
    units' own input change applied (per unit, a batched matmul over the images of the change
    maps' patches by the unit's filters, added to the intact output in the same call).

    The tail's spatial steps run unit by unit on a chunk of images at a time, so that a chunk's
    values stay in cache from the mixing layer to the flatten; its dense steps then run once on
    all K * B copies. The logits are the bits of one chunk per unit (`CroppedTail.spatial`)."""
    rows, cols = state.cropped.region
    patches = torch.stack(_patches(mixing, state, change), 2).flatten(3)  # K x B x (kh * kw) x positions
    count, batch = patches.shape[:2]
    weights = state.unit_weight.index_select(0, index)
    per_image = 4 * mixing.out_channels * rows.length * cols.length
    chunk = max(1, min(batch, CHUNK_BYTES // per_image))
    buffer = patches.new_empty(chunk, mixing.out_channels, rows.length * cols.length)
    features: torch.Tensor | None = None
    for k in range(count):
        for start in range(0, batch, chunk):
            stop = min(batch, start + chunk)
            out = buffer[: stop - start]
            torch.baddbmm(
                state.mixed_region[start:stop],
                weights[k].expand(stop - start, -1, -1),
                patches[k, start:stop],
                out=out,
            )
            spatial = state.cropped.spatial(out.view(stop - start, -1, rows.length, cols.length))
            if features is None:
                features = spatial.new_empty(count * batch, spatial.shape[1])
            features[k * batch + start : k * batch + stop] = spatial
    return state.cropped.dense(features)
