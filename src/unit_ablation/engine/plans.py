"""Ablation plans: how the logits of K ablated copies are computed from one trunk pass.

- `closed-form`: ablation point -> (identity ops) -> global average pool -> flatten -> Linear
  logits (ResNet's last stage). The logit change of ablating unit u is -W[:, u] (g_u - v_u),
  for every unit in one operation; rotated directions work the same way with W Q and Q^T g.
- `delta`: only channel-wise ops (ReLU, pooling, eval BatchNorm, dropout, flatten) lie between
  the ablation point and the first mixing layer (Linear or Conv2d), as for AlexNet conv5. The
  mixing layer's output changes by W applied to the ablated channel's own change, which is
  cheap; only the rest of the network is replayed. In a rotated basis the same holds with the
  columns W q_j and the coordinates q_j^T a, provided every op of the chain is linear and treats
  all channels alike (identity, dropout, average pooling, flatten), so that it commutes with Q:
  conv3 -> conv4 of the built-in CNN, not conv5 -> max-pool.
- `head-replay`: anything else. The rest of the network runs on K ablated copies at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from unit_ablation.engine.graph_split import SplitModel, max_pool_2x2, subgraph
from unit_ablation.spec.plans import ENGINE_PLANS

_IDENTITY_MODULES = (nn.Identity, nn.Dropout)
_CHANNELWISE_MODULES = (
    nn.ReLU,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.BatchNorm2d,
    *_IDENTITY_MODULES,
)
_CHANNELWISE_FUNCTIONS = {torch.relu, F.relu, max_pool_2x2}


def _module(split: SplitModel, node: fx.Node) -> nn.Module | None:
    return split.root.get_submodule(node.target) if node.op == "call_module" else None


def _is_flatten(split: SplitModel, node: fx.Node) -> bool:
    """Flatten from dim 1 keeps each channel's values contiguous (channel-major)."""
    module = _module(split, node)
    if isinstance(module, nn.Flatten):
        return module.start_dim == 1 and module.end_dim == -1
    if node.op == "call_function" and node.target is torch.flatten:
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        return start == 1 and len(node.args) <= 2
    return False


def _is_identity(split: SplitModel, node: fx.Node) -> bool:
    return isinstance(_module(split, node), _IDENTITY_MODULES)


def _is_global_average_pool(split: SplitModel, node: fx.Node) -> bool:
    module = _module(split, node)
    return isinstance(module, nn.AdaptiveAvgPool2d) and module.output_size in (1, (1, 1))


def _commutes_with_rotation(split: SplitModel, node: fx.Node) -> bool:
    """Linear and the same for every channel: chain(a - q z) = chain(a) - q chain(z)."""
    module = _module(split, node)
    return isinstance(module, (*_IDENTITY_MODULES, nn.AvgPool2d, nn.AdaptiveAvgPool2d)) or _is_flatten(
        split, node
    )


def _is_channelwise(split: SplitModel, node: fx.Node) -> bool:
    module = _module(split, node)
    if isinstance(module, _CHANNELWISE_MODULES) or _is_flatten(split, node):
        return True
    return node.op == "call_function" and node.target in _CHANNELWISE_FUNCTIONS and len(node.args) == 1


def _chain(split: SplitModel) -> tuple[list[fx.Node], fx.Node | None]:
    """Channel-wise nodes following the ablation point one by one, and the node after them."""
    chain: list[fx.Node] = []
    node = split.point
    while len(node.users) == 1:
        user = next(iter(node.users))
        if user.op == "output" or not _is_channelwise(split, user) or user.all_input_nodes != [node]:
            return chain, user
        chain.append(user)
        node = user
    return chain, None


def _is_mixing(split: SplitModel, node: fx.Node | None) -> bool:
    module = None if node is None else _module(split, node)
    if isinstance(module, nn.Linear):
        return True
    return (
        isinstance(module, nn.Conv2d)
        and module.groups == 1
        and module.padding_mode == "zeros"
        and isinstance(module.padding, tuple)
    )


@dataclass
class PlanParts:
    """What a plan needs besides the trunk: the channel-wise chain, the mixing layer, the tail."""

    name: str
    chain: fx.GraphModule | None = None  # activation -> mixing layer input
    mixing: nn.Module | None = None
    tail: fx.GraphModule | None = None  # mixing output, *side -> logits


def choose_plan(split: SplitModel, rotated: bool, requested: str = "auto") -> PlanParts:
    """The fastest exact plan for this split (or the requested one, if it applies)."""
    if requested not in ("auto", *ENGINE_PLANS):
        raise ValueError(f"ablation plan {requested!r} not in {('auto', *ENGINE_PLANS)}")
    nodes = list(split.graph.nodes)
    chain, after = _chain(split)
    mixing_ok = _is_mixing(split, after) and after.all_input_nodes == [chain[-1] if chain else split.point]
    output = nodes[-1]
    parts = {}
    if mixing_ok:
        last = chain[-1] if chain else split.point
        chain_module = subgraph(split.root, nodes, [split.point], [last])
        mixing = _module(split, after)
        tail = subgraph(split.root, nodes, [after, *split.side], [output.all_input_nodes[0]])
        pool_at = [i for i, n in enumerate(chain) if _is_global_average_pool(split, n)]
        closed = (
            isinstance(mixing, nn.Linear)
            and list(after.users) == [output]
            and len(pool_at) == 1
            and all(_is_identity(split, n) for n in chain[: pool_at[0]])
            and all(_is_identity(split, n) or _is_flatten(split, n) for n in chain[pool_at[0] + 1 :])
        )
        if closed:
            parts["closed-form"] = PlanParts("closed-form", chain_module, mixing, tail)
        if not rotated or all(_commutes_with_rotation(split, n) for n in chain):
            parts["delta"] = PlanParts("delta", chain_module, mixing, tail)
    parts["head-replay"] = PlanParts("head-replay")
    if requested == "auto":
        return next(parts[name] for name in ENGINE_PLANS if name in parts)
    if requested not in parts:
        raise ValueError(f"plan {requested!r} does not apply here; possible: {sorted(parts)}")
    return parts[requested]


def bytes_per_image(module: fx.GraphModule, *example: torch.Tensor) -> int:
    """Upper bound on the bytes of all intermediate values of `module` for one image.

    Runs `module` on clones: it may work in place.
    """
    shapes = ShapeProp(module)
    shapes.propagate(*[t[:1].clone() for t in example])
    total = 0
    for node in module.graph.nodes:
        meta = node.meta.get("tensor_meta")
        if meta is not None and hasattr(meta, "shape"):
            total += int(torch.Size(meta.shape).numel()) * 4
    return max(total, 4)


def repeat_batch(tensors: list[torch.Tensor], copies: int) -> list[torch.Tensor]:
    """Each tensor (B, ...) repeated to (copies * B, ...), copy-major like `flatten(0, 1)`."""
    return [t.repeat(copies, *([1] * (t.dim() - 1))) for t in tensors]


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


def mixing_flops(layer: nn.Linear | nn.Conv2d, output_shape: Sequence[int]) -> float:
    """Multiply-add FLOPs (2 per MAC) of one image through a Linear or Conv2d layer, from the shape
    of its output for that image (no batch dimension). The FLOP convention of every cost count."""
    outputs = math.prod(output_shape)
    if isinstance(layer, nn.Linear):
        return 2.0 * layer.in_features * layer.out_features * (outputs // layer.out_features)
    return 2.0 * (layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]) * outputs


def head_flops_per_copy(parts: PlanParts, split: SplitModel, activation: torch.Tensor, side: list) -> float:
    """Multiply-add FLOPs (2 per MAC) of Linear/Conv2d work per ablated copy and image."""
    module = split.head if parts.name == "head-replay" else parts.tail
    if parts.name == "closed-form":
        return 2.0 * parts.mixing.out_features  # one column of W per copy
    example = [activation[:1].clone(), *[s[:1].clone() for s in side]]
    if parts.name == "delta":
        with torch.no_grad():
            example = [parts.mixing(parts.chain(activation[:1].clone())), *[s[:1].clone() for s in side]]
    flops = 0.0
    shapes = ShapeProp(module)
    shapes.propagate(*example)
    for node in module.graph.nodes:
        layer = module.get_submodule(node.target) if node.op == "call_module" else None
        meta = node.meta.get("tensor_meta")
        if isinstance(layer, nn.Linear):
            flops += mixing_flops(layer, [layer.out_features])
        elif isinstance(layer, nn.Conv2d) and meta is not None:
            flops += mixing_flops(layer, meta.shape[1:])
    if parts.name == "delta":
        mixing = parts.mixing
        if isinstance(mixing, nn.Linear):
            flops += 2.0 * mixing.out_features * mixing.in_features / activation.shape[1]
        else:
            with torch.no_grad():
                out = mixing(parts.chain(activation[:1].clone()))
            flops += 2.0 * mixing.kernel_size[0] * mixing.kernel_size[1] * out.numel()
    return flops
