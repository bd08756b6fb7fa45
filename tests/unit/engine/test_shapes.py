"""`node_shapes`: the shapes torch.fx's ShapeProp records, without its sympy import."""

from __future__ import annotations

import subprocess
import sys

import torch
from torch.fx.passes.shape_prop import ShapeProp

from unit_ablation.engine.graph_split import run_trunk, split_model
from unit_ablation.engine.shapes import node_shapes
from unit_ablation.models.fashion_alexnet import FashionAlexNet


def test_node_shapes_are_shapeprops_for_every_tensor_node() -> None:
    split = split_model(FashionAlexNet(batchnorm=True).eval(), "conv3")
    activation, side = run_trunk(split, torch.rand(2, 1, 28, 28))
    assert not side
    ours = node_shapes(split.head, activation.clone())
    ShapeProp(split.head).propagate(activation.clone())
    theirs = {
        node: node.meta["tensor_meta"].shape
        for node in split.head.graph.nodes
        if hasattr(node.meta.get("tensor_meta"), "shape")
    }
    assert ours == theirs
    assert len(ours) > 10  # conv4 ... fc8, the placeholder and the output


def test_recording_shapes_does_not_import_sympy() -> None:
    script = (
        "import sys, torch\n"
        "from torch import fx, nn\n"
        "from unit_ablation.engine.shapes import node_shapes\n"
        "node_shapes(fx.symbolic_trace(nn.Sequential(nn.Conv2d(1, 2, 3))), torch.zeros(1, 1, 4, 4))\n"
        "print('sympy' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
