"""The shape of every tensor a traced module computes, from one run on an example.

torch.fx's `ShapeProp` does the same, but its first call imports sympy (about 0.4 s), a cost every
ablate job would pay; this records shapes only.

Example:
    >>> import torch
    >>> from torch import fx, nn
    >>> module = fx.symbolic_trace(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()))
    >>> {node.name: tuple(shape) for node, shape in node_shapes(module, torch.zeros(1, 1, 5, 5)).items()}
    {'input_1': (1, 1, 5, 5), '_0': (1, 2, 3, 3), '_1': (1, 18), 'output': (1, 18)}
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx


class _ShapeRecorder(fx.Interpreter):
    def __init__(self, module: fx.GraphModule) -> None:
        super().__init__(module)
        self.shapes: dict[fx.Node, torch.Size] = {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if isinstance(result, torch.Tensor):
            self.shapes[n] = result.shape
        return result


@torch.no_grad()
def node_shapes(module: fx.GraphModule, *example: torch.Tensor) -> dict[fx.Node, torch.Size]:
    """Each node of `module` whose value is a tensor (the output node included, as `ShapeProp`
    has it), with its shape when `module` runs on `example` (which it may overwrite in place)."""
    recorder = _ShapeRecorder(module)
    recorder.run(*example)
    return recorder.shapes
