"""Split a model at an ablation point into a trunk and a head (torch.fx).

The trunk computes the ablation point's activation once per image batch, plus any other values
the rest of the network reads (e.g. a residual branch that skips the ablation point). The head
computes the logits from those. Works for any fx-traceable model: the built-in CNN and
torchvision's AlexNet, VGG and ResNet.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import fx, nn

from unit_ablation.models import resolve_layer


class _StopAt(fx.Tracer):
    """Trace into every module except the ablation point, which stays one node."""

    def __init__(self, leaf: str) -> None:
        super().__init__()
        self.leaf = leaf

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return qualified_name == self.leaf or super().is_leaf_module(module, qualified_name)


def module_path(model: nn.Module, layer: str) -> str:
    """Qualified name of the module that a layer alias or path resolves to."""
    target = resolve_layer(model, layer)
    for name, module in model.named_modules():
        if module is target:
            return name
    raise KeyError(f"layer {layer!r} resolves to a module outside the model")


@dataclass
class SplitModel:
    """trunk(x) -> (activation, *side); head(activation, *side) -> logits."""

    trunk: fx.GraphModule
    head: fx.GraphModule
    graph: fx.Graph  # the whole traced graph, ablation point as one node
    root: nn.Module
    point: fx.Node  # the ablation point's node in `graph`
    side: list[fx.Node]  # trunk values the head reads besides the activation


def _descendants(nodes: list[fx.Node], sources: set[fx.Node]) -> set[fx.Node]:
    found = set(sources)
    for node in nodes:
        if any(arg in found for arg in node.all_input_nodes):
            found.add(node)
    return found


def _ancestors(targets: list[fx.Node], stop: set[fx.Node]) -> set[fx.Node]:
    """Nodes the targets depend on, not looking past the nodes in `stop`."""
    found: set[fx.Node] = set()
    stack = list(targets)
    while stack:
        node = stack.pop()
        if node not in found:
            found.add(node)
            if node not in stop:
                stack.extend(node.all_input_nodes)
    return found


def subgraph(
    root: nn.Module, nodes: list[fx.Node], inputs: list[fx.Node], outputs: list[fx.Node]
) -> fx.GraphModule:
    """A GraphModule computing `outputs` from `inputs`, copying the needed nodes of `nodes`."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {node: graph.placeholder(f"in_{i}") for i, node in enumerate(inputs)}
    needed = _ancestors(outputs, stop=set(inputs))
    for node in nodes:
        if node in env or node not in needed or node.op in ("placeholder", "output"):
            continue
        env[node] = graph.node_copy(node, lambda arg: env[arg])
    result = [env[node] for node in outputs]
    graph.output(result[0] if len(result) == 1 else tuple(result))
    return fx.GraphModule(root, graph)


def split_model(model: nn.Module, layer: str) -> SplitModel:
    """Trace a copy of `model` and split it at the output of `layer` (alias or module path).

    The copy has in-place activations turned off (same results): the trunk's activation is
    reused for many ablated copies, so the head must not overwrite it.
    """
    path = module_path(model, layer)
    model = copy.deepcopy(model).eval()
    for module in model.modules():
        if getattr(module, "inplace", False):
            module.inplace = False
    graph = _StopAt(path).trace(model)
    nodes = list(graph.nodes)
    points = [n for n in nodes if n.op == "call_module" and n.target == path]
    if len(points) != 1:
        raise ValueError(
            f"layer {layer!r} ({path}) is called {len(points)} times in forward; need exactly once"
        )
    point = points[0]
    output = nodes[-1]
    placeholders = [n for n in nodes if n.op == "placeholder"]
    after_point = _descendants(nodes, {point})
    if output not in after_point:
        raise ValueError(f"the logits do not depend on layer {layer!r}")
    data_dependent = _descendants(nodes, set(placeholders))
    head_nodes = [n for n in nodes if n in after_point and n is not point and n.op != "output"]
    side: list[fx.Node] = []
    for node in head_nodes + [output]:
        for arg in node.all_input_nodes:
            if arg not in after_point and arg in data_dependent and arg not in side:
                side.append(arg)
    trunk = subgraph(model, nodes, placeholders, [point, *side])
    head = subgraph(model, nodes, [point, *side], [output.all_input_nodes[0]])
    return SplitModel(trunk=trunk, head=head, graph=graph, root=model, point=point, side=side)


def run_trunk(split: SplitModel, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The activation at the ablation point and the side values, for a batch of images."""
    result = split.trunk(x)
    if isinstance(result, tuple):
        return result[0], list(result[1:])
    return result, []
