"""Measured engine throughput on the paper's layers, on any device (a lent GPU in particular).

Each case ablates `--units` units of a random-init torchvision model (nothing is downloaded) over
`--images` random images, times the whole `ablate_units` call, and divides the engine's FLOPs
(trunk once per image, plus the head FLOPs it executed) by the time. From the measured rate it
projects the time of the whole layer over 50,000 images in one job.

    python -m unit_ablation.paper_rate --device cuda   # AlexNet conv5, VGG16 conv5_3, ResNet-18 layer4
    python -m unit_ablation.paper_rate --device cpu --size 64 --images 8 --units 4
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from unit_ablation.engine.basis import random_rotation
from unit_ablation.engine.driver import ablate_units
from unit_ablation.engine.options import AblationOptions
from unit_ablation.models.torchvision_classifier import TorchvisionClassifier
from unit_ablation.tools.plan_cost import PAPER_LAYERS, plan_costs

STUDY_IMAGES = 50_000


def measure_case(
    arch: str,
    name: str,
    rotated: bool,
    images: int,
    units: int,
    size: int,
    device: str,
    batch_size: int,
    precision: str = "exact",
) -> dict:
    """Time one (model, layer alias `name`, basis) on `images` random images and `units` units."""
    torch.manual_seed(0)
    model = TorchvisionClassifier(arch, num_classes=1000).eval()
    costs = plan_costs(model, name, (3, size, size), rotated=rotated)
    total_units = model.unit_count(name)
    rotation = random_rotation(total_units, seed=0) if rotated else None
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(images, 3, size, size), dtype=np.uint8)
    labels = rng.integers(0, 1000, size=images)
    chosen = list(range(min(units, total_units)))
    options = AblationOptions(device=device, precision=precision, batch_size=batch_size)
    ablate_units(model, name, pixels[:1], labels[:1], chosen[:1], 1000, rotation, options)  # warm-up
    start = time.perf_counter()
    counts = ablate_units(model, name, pixels, labels, chosen, 1000, rotation, options)
    seconds = time.perf_counter() - start
    cost = next(c for c in costs if c.plan == counts.plan)
    flops = images * cost.trunk_flops + counts.head_flops
    rate = flops / seconds
    study = cost.study_flops(total_units, STUDY_IMAGES)
    return {
        "model": arch,
        "layer": name,
        "basis": "rotated" if rotated else "canonical",
        "plan": counts.plan,
        "device": torch.cuda.get_device_name() if torch.device(device).type == "cuda" else "cpu",
        "precision": precision,
        "images": images,
        "units": len(chosen),
        "seconds": seconds,
        "tflop": flops / 1e12,
        "tflops_per_s": rate / 1e12,
        "whole_layer_50k_minutes": study / rate / 60,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", choices=["exact", "fast"], default="exact")
    parser.add_argument("--images", type=int, default=2_000)
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--only", help="one architecture of the paper table (alexnet, vgg16, resnet18)")
    parser.add_argument("--output", help="write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = []
    for arch, _path, name in PAPER_LAYERS:
        if args.only and arch != args.only:
            continue
        for rotated in (False, True):
            row = measure_case(
                arch,
                name,
                rotated,
                args.images,
                args.units,
                args.size,
                args.device,
                args.batch_size,
                args.precision,
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
