"""A plan's tail compiled to run on only the positions the logits read.

A floor-mode 2x2 max-pool after a 7x7 map reads 6x6 of it, so the conv before it need not
compute the last row and column (AlexNet's conv5 before pool5: 36 of 49 positions). A
`CroppedTail` runs a sequential tail (ReLU, eval BatchNorm, dropout, stride-1 Conv2d with zero
padding, 2x2 max-pool, flatten, Linear) on a region of its input, in channels-last memory, where
the direct convolutions are fastest on CPU. Where every convolution is a float32 3x3 one on the
CPU that NNPACK tiles with Winograd, they take that transform instead (`winograd`), in NCHW
memory. The region may extend past the input's edges into the next convolution's zero padding;
the plan fills it (any values: those rows are zeroed before the convolution), so that no step
copies its input to pad it.

The logits are those of the fx tail up to float rounding (the engine-versus-naive tests check
the counts). Tails it cannot compile (branches, strided convolutions, a convolution whose
output would reach into the next one's padding, ...) stay fx graphs: `compile_tail` returns None.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from unit_ablation.engine.graph_split import max_pool_2x2
from unit_ablation.engine.shapes import node_shapes
from unit_ablation.engine.winograd import winograd_applies, winograd_conv2d

_ELEMENTWISE_MODULES = (nn.ReLU, nn.BatchNorm2d, nn.Dropout, nn.Identity)
_ELEMENTWISE_FUNCTIONS = {torch.relu, F.relu}


@dataclass(frozen=True)
class Span:
    """Rows (or columns) [start, stop) of a map of `size` rows; outside [0, size): zero padding."""

    start: int
    stop: int
    size: int

    @property
    def length(self) -> int:
        return self.stop - self.start

    @property
    def padded(self) -> bool:
        return self.start < 0 or self.stop > self.size


Region = tuple[Span, Span]  # (rows, columns)


@dataclass
class _Step:
    kind: str  # "elementwise", "conv", "pool", "flatten", "dense"
    run: Callable[[torch.Tensor], torch.Tensor]
    region: Region | None = None  # conv steps: the input region, whose padding is zeroed first
    flops: float = 0.0
    out_numel: int = 0  # values per image of the step's output


def _conv_ok(conv: nn.Conv2d) -> bool:
    return (
        conv.groups == 1
        and conv.padding_mode == "zeros"
        and isinstance(conv.padding, tuple)
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
    )


class CroppedTail:
    """A compiled tail: `region` is the part of its input it reads; call it on that region
    (N x C x rows x cols, any memory format; fastest in `channels_last` memory or, where False,
    NCHW) to get the logits. Build with `compile_tail`."""

    def __init__(
        self, steps: list[_Step], region: Region, in_channels: int, channels_last: bool = True
    ) -> None:
        self.steps = steps
        self.region = region
        self.in_channels = in_channels
        self.channels_last = channels_last

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.spatial(x))

    def spatial(self, x: torch.Tensor) -> torch.Tensor:
        """The steps up to the flatten: N x features. On an NCHW (Winograd) tail each image's values
        are computed apart from the other images', so any split of the batch gives the same bits
        (`winograd_conv2d` runs a batch of one as two; `test_winograd` checks the bits)."""
        for step in self.steps[: self._flatten + 1]:
            if step.region is not None:
                _zero_padding(x, step.region)
            x = step.run(x)
        return x

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """The steps after the flatten, to the logits. Matrix products may round a row
        differently with the number of rows, so the engine runs them on whole passes."""
        for step in self.steps[self._flatten + 1 :]:
            x = step.run(x)
        return x

    @property
    def _flatten(self) -> int:
        return next(i for i, step in enumerate(self.steps) if step.kind == "flatten")

    def flops(self) -> float:
        """Linear/Conv2d FLOPs per image, on the positions computed."""
        return sum(step.flops for step in self.steps)

    def bytes_per_image(self) -> int:
        """The input region and every step's output, in float32."""
        rows, cols = self.region
        return 4 * (self.in_channels * rows.length * cols.length + sum(step.out_numel for step in self.steps))


def _zero_padding(x: torch.Tensor, region: Region) -> None:
    """Zero the rows and columns of a region tensor that lie outside its map (conv padding)."""
    rows, cols = region
    if rows.start < 0:
        x[:, :, : -rows.start].zero_()
    if rows.stop > rows.size:
        x[:, :, rows.size - rows.stop :].zero_()
    if cols.start < 0:
        x[:, :, :, : -cols.start].zero_()
    if cols.stop > cols.size:
        x[:, :, :, cols.size - cols.stop :].zero_()


def _kind(root: nn.Module, node: fx.Node) -> str | None:
    if node.op == "call_function":
        if node.target in _ELEMENTWISE_FUNCTIONS and len(node.args) == 1 and not node.kwargs:
            return "elementwise"
        if node.target is max_pool_2x2:
            return "pool"
        if node.target is torch.flatten and node.args[1:] == (1,) and not node.kwargs:
            return "flatten"
        return None
    if node.op != "call_module":
        return None
    module = root.get_submodule(node.target)
    if isinstance(module, nn.BatchNorm2d) and module.training:
        return None
    if isinstance(module, _ELEMENTWISE_MODULES):
        return "elementwise"
    if isinstance(module, nn.Conv2d) and _conv_ok(module):
        return "conv"
    if isinstance(module, nn.Flatten) and module.start_dim == 1 and module.end_dim == -1:
        return "flatten"
    if isinstance(module, nn.Linear):
        return "dense"
    return None


def compile_tail(
    tail: fx.GraphModule, example: torch.Tensor, winograd: bool | None = None
) -> CroppedTail | None:
    """The tail (one input, a chain of supported ops, logits out) as a `CroppedTail`, or None.

    `example`: the tail's input for one image (1 x C x H x W), for the shapes and the device.
    `winograd`: run the convolutions through `winograd` (None: where every one of them can).
    """
    if example.dim() != 4:
        return None
    nodes = [node for node in tail.graph.nodes if node.op not in ("placeholder", "output")]
    placeholders = [node for node in tail.graph.nodes if node.op == "placeholder"]
    if len(placeholders) != 1 or not nodes:
        return None
    previous = placeholders[0]
    kinds: list[str] = []
    for node in nodes:
        kind = _kind(tail, node)
        if kind is None or node.all_input_nodes != [previous] or len(previous.users) != 1:
            return None
        kinds.append(kind)
        previous = node
    if "flatten" not in kinds or any(k in ("conv", "pool") for k in kinds[kinds.index("flatten") :]):
        return None
    found = node_shapes(tail, example.clone())
    shapes = [tuple(found[placeholders[0]])] + [tuple(found[node]) for node in nodes]
    return _build(tail, nodes, kinds, shapes, example, winograd)


def _build(
    tail: fx.GraphModule,
    nodes: list[fx.Node],
    kinds: list[str],
    shapes: list[tuple[int, ...]],
    example: torch.Tensor,
    winograd: bool | None,
) -> CroppedTail | None:
    flatten_at = kinds.index("flatten")
    # backwards from the flatten, which reads its whole input: the region each step reads
    in_shape = shapes[flatten_at]
    rows, cols = Span(0, in_shape[2], in_shape[2]), Span(0, in_shape[3], in_shape[3])
    regions: list[Region] = [(rows, cols)] * len(nodes)
    for index in range(flatten_at - 1, -1, -1):
        node, kind = nodes[index], kinds[index]
        height, width = shapes[index][2], shapes[index][3]  # the step's input
        if kind == "conv":
            conv = tail.get_submodule(node.target)
            if rows.padded or cols.padded:  # its output would reach into padding: not compiled
                return None
            (kh, kw), (ph, pw) = conv.kernel_size, conv.padding
            rows = Span(rows.start - ph, rows.stop - ph + kh - 1, height)
            cols = Span(cols.start - pw, cols.stop - pw + kw - 1, width)
        elif kind == "pool":
            rows = Span(2 * rows.start, 2 * rows.stop, height)
            cols = Span(2 * cols.start, 2 * cols.stop, width)
        else:
            rows, cols = Span(rows.start, rows.stop, height), Span(cols.start, cols.stop, width)
        regions[index] = (rows, cols)
    convs = [
        (tail.get_submodule(node.target), region)
        for node, kind, region in zip(nodes, kinds, regions, strict=True)
        if kind == "conv"
    ]
    possible = bool(convs) and all(
        winograd_applies(
            conv,
            example,
            (read_rows.length - conv.kernel_size[0] + 1, read_cols.length - conv.kernel_size[1] + 1),
        )
        for conv, (read_rows, read_cols) in convs
    )
    if winograd and convs and not possible:
        raise ValueError(
            "the Winograd path needs NNPACK and float32 3x3 stride-1 convolutions on the CPU whose"
            " outputs NNPACK tiles with Winograd"
        )
    winograd = possible if winograd is None else winograd and possible
    steps = [
        _step(tail, node, kind, regions[i], shapes[i + 1], winograd)
        for i, (node, kind) in enumerate(zip(nodes, kinds, strict=True))
    ]
    return CroppedTail(steps, regions[0], shapes[0][1], channels_last=not winograd)


def _step(
    tail: fx.GraphModule,
    node: fx.Node,
    kind: str,
    region: Region,
    out_shape: tuple[int, ...],
    winograd: bool = False,
) -> _Step:
    """One compiled step; `region` is what it reads, `out_shape` the fx output shape (1 image)."""
    rows, cols = region
    if kind == "conv":
        conv = tail.get_submodule(node.target)
        out_rows = rows.length - conv.kernel_size[0] + 1
        out_cols = cols.length - conv.kernel_size[1] + 1
        flops = 2.0 * conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels
        if winograd:
            run = functools.partial(winograd_conv2d, weight=conv.weight.contiguous(), bias=conv.bias)
        else:
            weight = conv.weight.contiguous(memory_format=torch.channels_last)
            run = functools.partial(F.conv2d, weight=weight, bias=conv.bias)
        return _Step(
            "conv",
            run,
            region,
            flops * out_rows * out_cols,
            conv.out_channels * out_rows * out_cols,
        )
    if kind == "pool":
        return _Step("pool", max_pool_2x2, None, 0.0, out_shape[1] * rows.length * cols.length // 4)
    if kind == "flatten":  # channel-major order, as the model's flatten: the next Linear reads it
        return _Step("flatten", lambda x: x.flatten(1), None, 0.0, out_shape[1])
    function = tail.get_submodule(node.target) if node.op == "call_module" else node.target
    if kind == "dense":
        return _Step(
            "dense", function, None, 2.0 * function.in_features * function.out_features, out_shape[1]
        )
    numel = out_shape[1] * (rows.length * cols.length if len(out_shape) == 4 else 1)
    return _Step("elementwise", function, None, 0.0, numel)


class CompiledTails:
    """`compile_tail` of one tail, once per input shape, device and dtype (a plan sees one image
    shape per layer)."""

    def __init__(self, tail: fx.GraphModule) -> None:
        self.tail = tail
        self._by_shape: dict[tuple, CroppedTail | None] = {}

    def get(self, example: torch.Tensor) -> CroppedTail | None:
        """The compiled tail for inputs shaped like `example` (B x C x H x W), or None."""
        key = (tuple(example.shape[1:]), example.device, example.dtype)
        if key not in self._by_shape:
            with torch.no_grad():
                self._by_shape[key] = compile_tail(self.tail, example[:1].clone())
        return self._by_shape[key]


def take_region(x: torch.Tensor, region: Region) -> torch.Tensor:
    """The region of the last two dims of `x`, with zeros where it lies outside them."""
    rows, cols = region
    inner = x[
        ..., max(rows.start, 0) : min(rows.stop, rows.size), max(cols.start, 0) : min(cols.stop, cols.size)
    ]
    pads = (
        max(0, -cols.start),
        max(0, cols.stop - cols.size),
        max(0, -rows.start),
        max(0, rows.stop - rows.size),
    )
    return F.pad(inner, pads) if any(pads) else inner
