"""What every ablation plan shares: the `Plan` interface, the graph tests that decide where a plan
applies, the chain -> mixing layer -> tail split of `MixingPlan`, and FLOP and memory counts."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import fx, nn

from unit_ablation.engine.graph_split import SplitModel, max_pool_2x2, subgraph
from unit_ablation.engine.shapes import node_shapes

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


# --- the interface ---------------------------------------------------------------------------------


@dataclass
class PlanState:
    """What a plan computes once per image batch, before the ablated copies."""

    intact_logits: torch.Tensor  # B x classes


class Plan(ABC):
    """One way to compute the logits of K ablated copies from the trunk's activation.

    A plan is built for a split model and a basis, through `plans.choose_plan`, which checks
    that it `applies`. `rotation` is Q (units x directions, column j = direction q_j), or None
    for the layer's own units; a plan for a rotated basis built without it can only be costed.
    Unit u's coordinate is set to `values[u]`: a_u <- v_u, or a <- a - q_u (q_u^T a - v_u).
    """

    name: ClassVar[str]  # one of `spec.plans.ENGINE_PLANS`

    def __init__(self, split: SplitModel, rotation: torch.Tensor | None = None) -> None:
        self.split = split
        self.rotation = rotation

    @classmethod
    @abstractmethod
    def applies(cls, split: SplitModel, rotated: bool) -> bool:
        """Whether the plan is exact for this split, in the canonical or a rotated basis."""

    @abstractmethod
    def prepare(self, activation: torch.Tensor, side: list[torch.Tensor], values: torch.Tensor) -> PlanState:
        """What is computed once per image batch, the intact logits included."""

    @abstractmethod
    def logits(
        self,
        state: PlanState,
        activation: torch.Tensor,
        side: list[torch.Tensor],
        units: list[int],
        values: torch.Tensor,
    ) -> torch.Tensor:
        """Logits of the K = len(units) ablated copies: (K * B) x classes or K x B x classes."""

    @abstractmethod
    def flops(self, activation: torch.Tensor, side: list[torch.Tensor]) -> float:
        """Linear/Conv2d multiply-add FLOPs (2 per MAC) per ablated copy and image."""

    @abstractmethod
    def bytes_per_copy(self, activation: torch.Tensor, side: list[torch.Tensor]) -> int:
        """Bytes one ablated copy of one image needs, to size the copies per pass."""


# --- graph tests -----------------------------------------------------------------------------------


def node_module(split: SplitModel, node: fx.Node) -> nn.Module | None:
    """The module a `call_module` node calls, else None."""
    return split.root.get_submodule(node.target) if node.op == "call_module" else None


def is_flatten(split: SplitModel, node: fx.Node) -> bool:
    """Flatten from dim 1 keeps each channel's values contiguous (channel-major)."""
    module = node_module(split, node)
    if isinstance(module, nn.Flatten):
        return module.start_dim == 1 and module.end_dim == -1
    if node.op == "call_function" and node.target is torch.flatten:
        start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
        return start == 1 and len(node.args) <= 2
    return False


def is_identity(split: SplitModel, node: fx.Node) -> bool:
    """Identity or dropout (the identity in eval mode)."""
    return isinstance(node_module(split, node), _IDENTITY_MODULES)


def is_global_average_pool(split: SplitModel, node: fx.Node) -> bool:
    module = node_module(split, node)
    return isinstance(module, nn.AdaptiveAvgPool2d) and module.output_size in (1, (1, 1))


def commutes_with_rotation(split: SplitModel, node: fx.Node) -> bool:
    """Linear and the same for every channel: chain(a - q z) = chain(a) - q chain(z)."""
    module = node_module(split, node)
    return isinstance(module, (*_IDENTITY_MODULES, nn.AvgPool2d, nn.AdaptiveAvgPool2d)) or is_flatten(
        split, node
    )


def _is_channelwise(split: SplitModel, node: fx.Node) -> bool:
    module = node_module(split, node)
    if isinstance(module, _CHANNELWISE_MODULES) or is_flatten(split, node):
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
    module = None if node is None else node_module(split, node)
    if isinstance(module, nn.Linear):
        return True
    return (
        isinstance(module, nn.Conv2d)
        and module.groups == 1
        and module.padding_mode == "zeros"
        and isinstance(module.padding, tuple)
    )


def mixing_chain(split: SplitModel) -> tuple[list[fx.Node], fx.Node] | None:
    """The channel-wise nodes after the ablation point and the mixing layer (Linear or Conv2d)
    that reads only their result, or None when no such layer follows."""
    chain, after = _chain(split)
    if not _is_mixing(split, after) or after.all_input_nodes != [chain[-1] if chain else split.point]:
        return None
    return chain, after


class MixingPlan(Plan):
    """A plan for activation -> channel-wise chain -> mixing layer -> tail -> logits."""

    def __init__(self, split: SplitModel, rotation: torch.Tensor | None = None) -> None:
        super().__init__(split, rotation)
        found = mixing_chain(split)
        if found is None:
            raise ValueError(f"plan {self.name!r}: no mixing layer follows the ablation point")
        chain, after = found
        nodes = list(split.graph.nodes)
        last = chain[-1] if chain else split.point
        self.chain: fx.GraphModule = subgraph(split.root, nodes, [split.point], [last])  # a -> mixing input
        self.mixing: nn.Linear | nn.Conv2d = node_module(split, after)
        # mixing output, *side -> logits
        self.tail: fx.GraphModule = subgraph(
            split.root, nodes, [after, *split.side], [nodes[-1].all_input_nodes[0]]
        )

    def _intact(
        self, activation: torch.Tensor, side: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """chain(a), the mixing layer's output on it, and the intact logits.

        The tail may work in place (the model's own in-place ReLUs): values used again for the
        ablated copies are cloned before the intact pass.
        """
        pooled = self.chain(activation.clone())
        mixed = self.mixing(pooled)
        intact_logits = self.tail(mixed.clone(), *clones(side))
        return pooled, mixed, intact_logits

    def _mixed_example(self, activation: torch.Tensor) -> torch.Tensor:
        """The mixing layer's output for the first image."""
        with torch.no_grad():
            return self.mixing(self.chain(activation[:1].clone()))


# --- helpers ---------------------------------------------------------------------------------------


def clones(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [t.clone() for t in tensors]


def repeat_batch(tensors: list[torch.Tensor], copies: int) -> list[torch.Tensor]:
    """Each tensor (B, ...) repeated to (copies * B, ...), copy-major like `flatten(0, 1)`."""
    return [t.repeat(copies, *([1] * (t.dim() - 1))) for t in tensors]


def bytes_per_image(module: fx.GraphModule, *example: torch.Tensor) -> int:
    """Upper bound on the bytes of all intermediate values of `module` for one image.

    Runs `module` on clones: it may work in place.
    """
    shapes = node_shapes(module, *[t[:1].clone() for t in example])
    return max(sum(shape.numel() * 4 for shape in shapes.values()), 4)


def mixing_flops(layer: nn.Linear | nn.Conv2d, output_shape: Sequence[int]) -> float:
    """Multiply-add FLOPs (2 per MAC) of one image through a Linear or Conv2d layer, from the shape
    of its output for that image (no batch dimension). The FLOP convention of every cost count."""
    outputs = math.prod(output_shape)
    if isinstance(layer, nn.Linear):
        return 2.0 * layer.in_features * layer.out_features * (outputs // layer.out_features)
    return 2.0 * (layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]) * outputs


def module_flops(module: fx.GraphModule, example: list[torch.Tensor]) -> float:
    """Linear/Conv2d FLOPs of one run of `module` on `example` (one image; may be overwritten)."""
    flops = 0.0
    shapes = node_shapes(module, *example)
    for node in module.graph.nodes:
        layer = module.get_submodule(node.target) if node.op == "call_module" else None
        if isinstance(layer, nn.Linear):
            flops += mixing_flops(layer, [layer.out_features])
        elif isinstance(layer, nn.Conv2d) and node in shapes:
            flops += mixing_flops(layer, shapes[node][1:])
    return flops


def forward_flops(model: nn.Module, run: Callable[[], object]) -> float:
    """Conv2d/Linear FLOPs per image of `run()` (a call that runs modules of `model` on one image)."""
    total = 0.0

    def count(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        total += mixing_flops(module, output.shape[1:])

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    try:
        with torch.no_grad():
            run()
    finally:
        for hook in hooks:
            hook.remove()
    return total
