"""What an ablation study costs, per plan, in the engine's own FLOP counts (any fx-traceable model).

FLOPs are multiply-adds x 2 of Conv2d and Linear layers, as the engine's plans count them
(`Plan.flops`). A job over `images` images and `units` units costs about
`images * (trunk + units * head)`: the trunk runs once per image, the head once per ablated copy.

    python -m unit_ablation.plan_cost            # the paper's layers on 50,000 images at 224 x 224
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from torch import nn

from unit_ablation.engine.graph_split import run_trunk, split_model
from unit_ablation.engine.plan_base import forward_flops
from unit_ablation.engine.plans import choose_plan
from unit_ablation.spec.plans import ENGINE_PLANS

# (architecture, layer module path, name in the paper) of the paper-scale studies
PAPER_LAYERS = (
    ("alexnet", "features.11", "conv5"),
    ("vgg16", "features.29", "conv5_3"),
    ("resnet18", "layer4", "layer4"),
)


@dataclass(frozen=True)
class PlanCost:
    plan: str
    trunk_flops: float  # per image
    head_flops: float  # per ablated copy and image

    def study_flops(self, units: int, images: int, jobs: int = 1) -> float:
        """FLOPs of ablating `units` units one at a time over `images` images in `jobs` chunks
        (each job runs the trunk over every image once)."""
        return images * (jobs * self.trunk_flops + units * self.head_flops)


def plan_costs(
    model: nn.Module, layer: str, image_shape: tuple[int, ...], rotated: bool = False
) -> list[PlanCost]:
    """Trunk FLOPs per image and head FLOPs per copy and image of every plan that applies, fastest
    first, plus `naive` (one whole forward pass per unit)."""
    model = model.eval()
    split = split_model(model, layer)
    image = torch.zeros(1, *image_shape)
    trunk = forward_flops(model, lambda: run_trunk(split, image))
    with torch.no_grad():
        activation, side = run_trunk(split, image)
    costs = []
    for name in ENGINE_PLANS:
        try:
            plan = choose_plan(split, rotated=rotated, requested=name)
        except ValueError:
            continue
        costs.append(PlanCost(name, trunk, plan.flops(activation, side)))
    costs.append(PlanCost("naive", trunk, forward_flops(model, lambda: model(image))))
    return costs


def paper_table(images: int = 50_000, size: int = 224, gflops: float | None = None) -> list[dict]:
    """One row per (paper layer, basis, plan) of torchvision's AlexNet, VGG16 and ResNet-18."""
    from torchvision.models import get_model

    rows = []
    for arch, path, name in PAPER_LAYERS:
        model = get_model(arch, weights=None)
        for rotated in (False, True):
            count = _unit_count(model, path)
            for cost in plan_costs(model, path, (3, size, size), rotated=rotated):
                total = cost.study_flops(count, images)
                row = {
                    "model": arch,
                    "layer": name,
                    "basis": "rotated" if rotated else "canonical",
                    "plan": cost.plan,
                    "units": count,
                    "trunk_gflop_per_image": cost.trunk_flops / 1e9,
                    "head_gflop_per_unit_image": cost.head_flops / 1e9,
                    "trunk_pflop_per_job": cost.trunk_flops * images / 1e15,
                    "study_pflop_one_job": total / 1e15,
                }
                if gflops:
                    row["hours_one_job"] = total / (gflops * 1e9) / 3600
                rows.append(row)
    return rows


def _unit_count(model: nn.Module, path: str) -> int:
    """Channels at a module's output, from a tiny forward pass."""
    found = {}

    def record(_module: nn.Module, _inputs, output: torch.Tensor) -> None:
        found["channels"] = output.shape[1]

    hook = dict(model.named_modules())[path].register_forward_hook(record)
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, 224, 224))
    finally:
        hook.remove()
    return found["channels"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--gflops", type=float, help="sustained GFLOP/s, to print hours")
    args = parser.parse_args(argv)
    rows = paper_table(args.images, args.size, args.gflops)
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
