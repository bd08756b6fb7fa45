"""Split a model at an ablation point into a trunk and a head (torch.fx).

The trunk computes the ablation point's activation once per image batch, plus any other values
the rest of the network reads (e.g. a residual branch that skips the ablation point). The head
computes the logits from those. Works for any fx-traceable model: the built-in CNN and
torchvision's AlexNet, VGG and ResNet.
"""

from __future__ import annotations

import difflib
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import fx, nn


class TraceFailed(RuntimeError):
    """torch.fx cannot trace the model, or its graph does not call the layer: the engine's plans
    do not apply, and the hook-based fallback (`engine.hooked`) does."""


class _StopAt(fx.Tracer):
    """Trace into every module except the ablation point, which stays one node."""

    def __init__(self, leaf: str) -> None:
        super().__init__()
        self.leaf = leaf

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return qualified_name == self.leaf or super().is_leaf_module(module, qualified_name)


def _where(error: BaseException) -> str:
    """ " at FILE:LINE": the last frame of the failed trace outside torch (the model's own code)."""
    torch_dir = Path(torch.__file__).parent
    found = ""
    for frame, line in traceback.walk_tb(error.__traceback__):
        path = Path(frame.f_code.co_filename)
        if not path.is_relative_to(torch_dir) and path != Path(__file__):
            found = f" at {path.name}:{line}"
    return found


def resolve_layer(model: nn.Module, layer: str) -> nn.Module:
    """The module whose output is the ablation point. A model class with aliases (`conv5`) resolves
    them itself through a `layer_module(layer)` method; any model takes a module path."""
    if hasattr(model, "layer_module"):
        return model.layer_module(layer)
    try:
        return model.get_submodule(layer)
    except AttributeError as error:
        names = [name for name, _ in model.named_modules() if name]
        near = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
        hint = f"; nearest: {', '.join(near)}" if near else ""
        raise KeyError(f"layer {layer!r} not found; use a module path from named_modules(){hint}") from error


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


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """Exactly nn.MaxPool2d(2) (floor mode): a max of four strided views, several times faster on CPU."""
    height, width = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :height, :width]
    top = torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2])
    bottom = torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2])
    return torch.maximum(top, bottom)


def _is_plain_max_pool_2x2(module: nn.Module) -> bool:
    if not isinstance(module, nn.MaxPool2d) or module.return_indices or module.ceil_mode:
        return False
    settings = (module.kernel_size, module.stride, module.padding, module.dilation)
    return all(
        value in (expected, (expected, expected))
        for value, expected in zip(settings, (2, 2, 0, 1), strict=True)
    )


def use_fast_max_pools(graph: fx.Graph, root: nn.Module, keep: fx.Node) -> None:
    """Replace 2x2 max-pool modules by `max_pool_2x2` (a max is exact in any order) except `keep`."""
    for node in list(graph.nodes):
        if (
            node is keep
            or node.op != "call_module"
            or not _is_plain_max_pool_2x2(root.get_submodule(node.target))
        ):
            continue
        with graph.inserting_after(node):
            fast = graph.call_function(max_pool_2x2, tuple(node.args))
        node.replace_all_uses_with(fast)
        graph.erase_node(node)


def split_model(model: nn.Module, layer: str) -> SplitModel:
    """Trace `model` and split it at the output of `layer` (alias or module path).

    The head keeps the model's in-place activations, so it may overwrite its inputs: pass it
    fresh tensors (the ablated copies), or clones of values that are used again.
    """
    path = module_path(model, layer)
    try:
        graph = _StopAt(path).trace(model)
    except Exception as error:  # fx raises TraceError, TypeError, NotImplementedError, ...
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise TraceFailed(
            f"torch.fx cannot trace {type(model).__name__}{_where(error)} ({type(error).__name__}: {reason})"
        ) from error
    nodes = list(graph.nodes)
    points = [n for n in nodes if n.op == "call_module" and n.target == path]
    if not points:
        raise TraceFailed(
            f"the traced graph of {type(model).__name__} does not call layer {layer!r} ({path})"
        )
    if len(points) != 1:
        raise ValueError(
            f"layer {layer!r} ({path}) is called {len(points)} times in forward; need exactly once"
        )
    point = points[0]
    use_fast_max_pools(graph, model, keep=point)
    nodes = list(graph.nodes)
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
