"""Benchmark: the naive per-unit reference against the ablation engine, on one model and layer.

    python -m unit_ablation.bench                      # default model, conv5, 10k test images
    python -m unit_ablation.bench --model resnet18     # ResNet-18-style last stage (closed form)
    python -m unit_ablation.bench --layer conv3 --rotation-seed 0   # conv3 in a rotated basis
    python -m unit_ablation.bench --all                # conv3-conv5 in both bases and ResNet (bench_all)
    python -m unit_ablation.bench --vs captum --images 2000   # Captum against ua.ablate (captum_bench)

Both run on the same model, images and units. The naive reference is timed on a subset of units
and scaled per unit; the engine ablates every unit of the layer. The counts of the subset must
agree. Prints a summary and writes the JSON to --output.

The trunk-bound ceiling is the speedup of an engine that only runs the trunk (the model up to the
layer) once: units x (naive seconds per unit) / (trunk seconds). `ceiling_share` is the share of it
reached; `roofline_fraction`, the engine head's GFLOP/s over the measured matmul peak, is a
diagnostic only (a plan doing more FLOPs faster would score higher and still be slower).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from unit_ablation.data.dataset import to_float
from unit_ablation.engine.basis import basis_matrix
from unit_ablation.engine.driver import ablate_units
from unit_ablation.engine.graph_split import run_trunk, split_model
from unit_ablation.engine.naive import ablate_naive
from unit_ablation.engine.options import AblationOptions
from unit_ablation.runtime.allocator import keep_freed_memory
from unit_ablation.tools import bench_all, captum_bench
from unit_ablation.tools.bench_inputs import DEFAULT_CHECKPOINT, DEFAULT_DATASET, load_inputs


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Measured fp32 matmul throughput of this machine (best of `repeats`) at the current threads."""
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best / 1e9


def trunk_seconds(model: torch.nn.Module, layer: str, images: np.ndarray, batch_size: int) -> float:
    """Seconds to run the trunk (the model up to `layer`) once over `images`."""
    split = split_model(model, layer)
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, len(images), batch_size):
            run_trunk(split, torch.from_numpy(to_float(images[first : first + batch_size])))
    return time.perf_counter() - start


def run_benchmark(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    model, layer, images, labels, model_name = load_inputs(args)
    units_total = run_trunk(split_model(model, layer), torch.from_numpy(to_float(images[:1])))[0].shape[1]
    units = list(range(units_total))
    subset = units[:: max(1, units_total // args.naive_units)][: args.naive_units]
    rotation = basis_matrix(units_total, args.rotation_seed)
    options = AblationOptions(batch_size=args.batch_size)
    peak = matmul_peak_gflops()

    start = time.perf_counter()
    engine = ablate_units(model, layer, images, labels, units, 10, rotation=rotation, options=options)
    engine_s = time.perf_counter() - start

    start = time.perf_counter()
    naive = ablate_naive(model, layer, images, labels, subset, 10, rotation=rotation, options=options)
    naive_subset_s = time.perf_counter() - start
    naive_s = naive_subset_s / len(subset) * units_total
    trunk_s = trunk_seconds(model, layer, images, args.batch_size)

    identical = bool(
        np.array_equal(engine.broken[subset], naive.broken)
        and np.array_equal(engine.fixed[subset], naive.fixed)
        and np.array_equal(engine.correct, naive.correct)
    )
    engine_gflops = engine.head_flops / 1e9 / engine.head_seconds if engine.head_seconds > 0 else 0.0
    speedup = naive_s / engine_s
    ceiling = naive_s / trunk_s if trunk_s > 0 else float("inf")
    return {
        "model": model_name,
        "layer": layer,
        "basis": "canonical" if args.rotation_seed is None else f"rot{args.rotation_seed}",
        "plan": engine.plan,
        "units": units_total,
        "images": len(images),
        "threads": args.threads,
        "device": "cpu",
        "naive_s": round(naive_s, 3),
        "naive_units_measured": len(subset),
        "naive_subset_s": round(naive_subset_s, 3),
        "engine_s": round(engine_s, 3),
        "engine_head_s": round(engine.head_seconds, 3),
        "trunk_s": round(trunk_s, 3),
        "speedup": round(speedup, 1),
        "ceiling": round(ceiling, 1),
        "ceiling_share": round(speedup / ceiling, 3),
        "identical": identical,
        "engine_gflop": round(engine.head_flops / 1e9, 3),
        "engine_gflops": round(engine_gflops, 2),
        "peak_gflops": round(peak, 2),
        "roofline_fraction": round(engine_gflops / peak, 3),
        "changed_predictions": int(engine.broken.sum() + engine.fixed.sum()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--vs", choices=["naive", "captum"], default="naive", help="what the engine is timed against"
    )
    parser.add_argument(
        "--model",
        choices=["fmnist", "resnet18", "alexnet"],
        default="fmnist",
        help="alexnet: --vs captum only",
    )
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="fmnist model checkpoint")
    parser.add_argument("--dataset", default=str(DEFAULT_DATASET), help="prepared Fashion-MNIST .npz")
    parser.add_argument("--layer", default="conv5", help="fmnist layer (resnet18 always uses layer4)")
    parser.add_argument(
        "--rotation-seed", type=int, help="ablate in the random rotated basis of this seed (LAYER@rotN)"
    )
    parser.add_argument(
        "--all", action="store_true", help="one row per case: conv3-conv5 in both bases, ResNet closed form"
    )
    parser.add_argument("--images", type=int, default=10000, help="evaluation images (test split)")
    parser.add_argument("--naive-units", type=int, default=4, help="units timed with the naive reference")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--output", help="JSON file (default results/bench.json, --vs captum: results/bench-captum.json)"
    )
    captum_bench.add_arguments(parser)
    args = parser.parse_args(argv)
    keep_freed_memory()  # as the workflow's jobs do (`workflow.glue.run_stage`)
    if args.vs == "captum":
        result = captum_bench.run_captum_benchmark(args)
        captum_bench.print_summary(result)
        args.output = args.output or "results/bench-captum.json"
    elif args.all:
        result = bench_all.run_all(args, run_benchmark)
        bench_all.print_table(result["cases"])
        args.output = args.output or "results/bench-all.json"
    else:
        if args.model == "alexnet":
            parser.error("--model alexnet is only benchmarked with --vs captum")
        result = run_benchmark(args)
        for key, value in result.items():
            print(f"{key:>22}: {value}")
        args.output = args.output or "results/bench.json"
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
