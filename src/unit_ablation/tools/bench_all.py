"""`python -m unit_ablation.bench --all`: the engine against the naive reference on every case.

The cases are conv3, conv4 and conv5 of the built-in model in the canonical basis and in the
rotated basis of seed 0, and the ResNet-18-style layer4 (closed form). Each row gives the plan, the
speedup, the trunk-bound ceiling and the share of it reached, the share of the matmul peak,
`changed_predictions` and whether the counts are identical. The run passes when every case is
identical and changes some predictions (with none changed, "identical" would say nothing).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

# (model, layer, rotation seed)
CASES: tuple[tuple[str, str, int | None], ...] = (
    *(("fmnist", layer, seed) for layer in ("conv3", "conv4", "conv5") for seed in (None, 0)),
    ("resnet18", "layer4", None),
)
COLUMNS = (
    ("case", 14),
    ("plan", 12),
    ("speedup", 8),
    ("ceiling", 8),
    ("ceiling_share", 14),
    ("roofline_fraction", 18),
    ("changed_predictions", 20),
    ("identical", 9),
)


def run_all(args: argparse.Namespace, run_benchmark: Callable[[argparse.Namespace], dict]) -> dict:
    """Every case of CASES with the other options of `args`; `identical` is True when every case
    is identical and changes predictions."""
    cases = []
    for model, layer, seed in CASES:
        changed = {"model": model, "layer": layer, "rotation_seed": seed}
        case_args = argparse.Namespace(**{**vars(args), **changed})
        result = run_benchmark(case_args)
        result["case"] = f"{layer}@rot{seed}" if seed is not None else layer
        cases.append(result)
    passed = all(case["identical"] and case["changed_predictions"] > 0 for case in cases)
    return {"cases": cases, "identical": passed}


def print_table(cases: list[dict]) -> None:
    """One row per case."""
    print("  ".join(f"{name:>{width}}" for name, width in COLUMNS))
    for case in cases:
        print("  ".join(f"{case[name]!s:>{width}}" for name, width in COLUMNS))
