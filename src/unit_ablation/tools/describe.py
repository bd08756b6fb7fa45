"""The layers of a model named as in the workflow config, and the config lines that study them.

    python -m unit_ablation.describe resnet18                     # torchvision, 224 x 224
    python -m unit_ablation.describe timm:resnet10t --input-size 128
    python -m unit_ablation.describe python:models/net.py:make --num-classes 10

Prints `ua.describe_layers`'s table (module path, alias, units, output shape, the engine's plan and
its FLOPs per unit and image) and a `units:` block ready to paste under `pretrained.<name>:`
(timm and python models need it: the workflow plans its jobs without torch). A `python:` model
runs the named file's code, as the workflow does.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd
import torch

from unit_ablation.api.describe import describe_layers
from unit_ablation.models.from_spec import build_from_spec
from unit_ablation.spec.arch_spec import parse_arch


def config_lines(arch: str, num_classes: int, table: pd.DataFrame, name: str = "my-model") -> str:
    """A `pretrained:` entry with a `units:` line for every layer that can be ablated."""
    ablatable = table[table.plan != "not ablatable"]
    paths = list(ablatable.layer)
    lines = [
        "pretrained:",
        f"  {name}:",
        f"    arch: {arch}",
        f"    num_classes: {num_classes}",
        "    weights: null  # or a state_dict file",
        f"    layers: [{paths[-1] if paths else ''}]  # any of the paths below",
        "    units:",
    ]
    lines += [f"      {path}: {units}" for path, units in zip(paths, ablatable.units, strict=True)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_spec", help="torchvision:NAME (or NAME), timm:NAME or python:PATH.py:CALLABLE")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--input-size", type=int, help="image height and width (default: the model's own)")
    parser.add_argument("--weights", help="a state_dict file (default: random initialisation)")
    args = parser.parse_args(argv)
    try:
        parse_arch(args.model_spec)
        size = None if args.input_size is None else (3, args.input_size, args.input_size)
        torch.manual_seed(0)
        model = build_from_spec(args.model_spec, args.num_classes, ".", args.weights, size)
    except (ValueError, KeyError, ImportError, FileNotFoundError, AttributeError) as error:
        print(f"describe: {error}", file=sys.stderr)
        return 2
    config = getattr(model, "config", {})
    shape = size or tuple(config.get("input_size") or (3, config.get("crop", 224), config.get("crop", 224)))
    table = describe_layers(model, torch.rand(1, *shape))
    # the workflow names layers inside the wrapped network (`layer4`, not `net.layer4`)
    table["layer"] = [path[len("net.") :] if path.startswith("net.") else path for path in table.layer]
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 60):
        print(f"{args.model_spec}: {len(table)} layers, input 1 x {' x '.join(map(str, shape))}\n")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print("\n# config lines (paste under the study's config; keep the layers you ablate):")
    print(config_lines(args.model_spec, args.num_classes, table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
