"""Weights around a layer of any fx-traceable network: the filters that produce its units and the
weights that read them, found by walking the traced graph (timm and `python:` models).

From the layer's output, backwards through channel-wise operations (activations, pooling,
dropout, identity, BatchNorm, which is folded in) to the Conv2d or Linear that produces the units;
a residual sum follows its first operand, the main branch (`out = out + shortcut`, as torchvision
and timm write it). Forwards, through the same operations, residual sums and flattening, to every
Conv2d or Linear that reads the units. Any other operation on the way is refused with its name.
"""

from __future__ import annotations

import operator

import torch
from torch import fx, nn

from unit_ablation.models.torchvision_classifier import _fold_bn

_MIXING = (nn.Conv2d, nn.Linear)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
# modules and functions that act on each channel alone (or only rearrange positions)
_CHANNELWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid,
    nn.Tanh, nn.Mish, nn.PReLU, nn.Identity, nn.Dropout, nn.Dropout2d, nn.MaxPool2d, nn.AvgPool2d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten,
)  # fmt: skip
_CHANNELWISE_NAMES = {
    "relu", "relu_", "relu6", "gelu", "silu", "hardswish", "sigmoid", "tanh", "leaky_relu", "elu",
    "dropout", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d", "flatten",
    "mean", "amax", "view", "reshape", "contiguous", "clone", "mul", "truediv", "div", "float",
}  # fmt: skip
_SUMS = {"add", "iadd", "add_"}
_SIZES = {"size", "dim", "shape"}  # read a tensor's shape, not its values

Reader = tuple[nn.Module, nn.BatchNorm1d | nn.BatchNorm2d | None]


def _name(node: fx.Node) -> str:
    target = node.target
    if node.op == "call_method" or isinstance(target, str):
        return str(target)
    return getattr(target, "__name__", str(target))


def _module(root: nn.Module, node: fx.Node) -> nn.Module | None:
    return root.get_submodule(node.target) if node.op == "call_module" else None


def _is_channelwise(root: nn.Module, node: fx.Node) -> bool:
    module = _module(root, node)
    if module is not None:
        return isinstance(module, _CHANNELWISE_MODULES)
    return node.op in ("call_function", "call_method") and _name(node) in _CHANNELWISE_NAMES


def _tensor_args(node: fx.Node) -> list[fx.Node]:
    return [arg for arg in node.args if isinstance(arg, fx.Node)]


def layer_output(graph: fx.Graph, path: str) -> fx.Node:
    """The node whose value a module (a leaf or a container) returns: the last node traced inside it."""
    inside = [
        node
        for node in graph.nodes
        if (node.op == "call_module" and node.target == path)
        or path in (node.meta.get("nn_module_stack") or {})
    ]
    if not inside:
        raise KeyError(f"module {path!r} does not run in the traced forward")
    return inside[-1]


def trace(net: nn.Module) -> fx.Graph:
    """The network's fx graph (ValueError naming the reason when it cannot be traced)."""
    try:
        return fx.Tracer().trace(net)
    except Exception as error:  # noqa: BLE001 - tracing raises many types; all mean "not traceable"
        raise ValueError(
            f"the model cannot be traced with torch.fx: {type(error).__name__}: {error}"
        ) from error


def producer(net: nn.Module, path: str) -> tuple[nn.Module, nn.BatchNorm1d | nn.BatchNorm2d | None]:
    """The Conv2d or Linear that produces the units of module `path`, and the BatchNorm between them."""
    if isinstance(net.get_submodule(path), _MIXING):
        return net.get_submodule(path), None  # no graph needed
    node = layer_output(trace(net), path)
    norm = None
    while True:
        module = _module(net, node)
        if isinstance(module, _MIXING):
            return module, norm
        if isinstance(module, _NORMS):
            norm = module
        elif not (_is_channelwise(net, node) or _name(node) in _SUMS):
            raise ValueError(
                f"layer {path!r}: no Conv2d or Linear produces its units through channel-wise operations"
                f" ({node.op} {_name(node)!r} on the way)"
            )
        inputs = _tensor_args(node)
        if not inputs:
            raise ValueError(f"layer {path!r}: {_name(node)!r} has no tensor input on the way back")
        node = inputs[0]


def readers(net: nn.Module, path: str) -> list[Reader]:
    """Every Conv2d or Linear that reads the units of module `path`, each with the BatchNorm after
    it. A residual sum is followed only from its first operand: the units reach the next block's
    convolutions, not, through an identity shortcut, the block after it (as torchvision's ResNet
    readers in `TorchvisionClassifier.outgoing_weight`)."""
    start = layer_output(trace(net), path)
    found: list[Reader] = []
    pending = [(user, start) for user in start.users]
    seen = {start}
    while pending:
        node, source = pending.pop(0)
        if node in seen:
            continue
        module = _module(net, node)
        if _name(node) in _SUMS and _tensor_args(node)[0] is not source:
            continue  # an identity shortcut into a sum (weight 1): not a reader
        seen.add(node)
        if isinstance(module, _MIXING):
            after = list(node.users)
            following = _module(net, after[0]) if len(after) == 1 else None
            found.append((module, following if isinstance(following, _NORMS) else None))
        elif node.op == "output" or _name(node) in _SIZES or node.target is getattr:
            continue
        elif (
            isinstance(module, _NORMS)
            or _is_channelwise(net, node)
            or _name(node) in _SUMS
            or node.target is operator.getitem
        ):
            pending.extend((user, node) for user in node.users)
        else:
            raise ValueError(
                f"layer {path!r}: the weights that read its units are unknown past {node.op} {_name(node)!r}"
                " (supported: channel-wise operations, residual sums and flattening, then Conv2d or Linear)"
            )
    return found


def _grouped_to_dense(conv: nn.Conv2d, weight: torch.Tensor) -> torch.Tensor:
    """A grouped convolution's (out, in / groups, kh, kw) weights as dense (out, in, kh, kw), zeros
    where a group does not read a channel."""
    groups = conv.groups
    if groups == 1:
        return weight
    out, per_group = weight.shape[0], weight.shape[1]
    dense = weight.new_zeros(out, per_group * groups, *weight.shape[2:])
    step = out // groups
    for group in range(groups):
        rows = slice(group * step, (group + 1) * step)
        dense[rows, group * per_group : (group + 1) * per_group] = weight[rows]
    return dense


def dense_weight(module: nn.Module) -> torch.Tensor:
    """A Conv2d's weights with groups expanded to dense, or a Linear's."""
    weight = module.weight
    return _grouped_to_dense(module, weight) if isinstance(module, nn.Conv2d) else weight


def incoming_weight(net: nn.Module, path: str) -> torch.Tensor:
    """Effective filters producing the units of module `path`, (units, in, kh, kw): the producing
    Conv2d (a Linear as 1 x 1 filters), scaled by the BatchNorm between them (`_fold_bn`)."""
    module, norm = producer(net, path)
    weight = dense_weight(module)
    weight = weight if weight.dim() == 4 else weight.view(*weight.shape, 1, 1)
    return _fold_bn(weight, norm)


def outgoing_weight(net: nn.Module, path: str, units: int) -> torch.Tensor:
    """Weights of the layers reading the units of module `path`, (out, units, positions), each
    folded with the BatchNorm after it and stacked along `out` (smaller kernels zero-padded to the
    centre of the largest, as `torchvision_classifier._reading_weights`)."""
    found = readers(net, path)
    if not found:
        raise ValueError(f"layer {path!r} feeds the output directly: no weights read its units")
    linear = [module for module, _ in found if isinstance(module, nn.Linear)]
    if linear:
        if len(found) != 1 or linear[0].in_features % units:
            raise ValueError(
                f"layer {path!r}: its units are read by {len(found)} layers including a Linear of"
                f" {linear[0].in_features} inputs (supported: one Linear reading units x positions)"
            )
        weight = _fold_bn(linear[0].weight, found[0][1])
        return weight.view(weight.shape[0], units, -1)
    weights = [_fold_bn(dense_weight(module), norm) for module, norm in found]
    if any(weight.shape[1] != units for weight in weights):
        shapes = ", ".join(str(tuple(weight.shape)) for weight in weights)
        raise ValueError(f"layer {path!r} has {units} units, but the layers reading it take {shapes}")
    kh, kw = max(w.shape[2] for w in weights), max(w.shape[3] for w in weights)
    padded = []
    for weight in weights:
        dh, dw = kh - weight.shape[2], kw - weight.shape[3]
        padded.append(nn.functional.pad(weight, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2)))
    return torch.cat(padded).flatten(2)
