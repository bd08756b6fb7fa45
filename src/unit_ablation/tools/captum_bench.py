"""`python -m unit_ablation.bench --vs captum`: Captum's `LayerFeatureAblation` against `ua.ablate`.

Both ablate the same units of the same layer, one at a time, over the same images on the CPU,
and must count the same broken and fixed images per (unit, class).

Captum ablates groups of the layer's output given by a 1 x C x 1 x 1 `layer_mask` (channel ->
group), replaces them with its default baseline 0 (zero ablation, as ours), and attributes
forward(intact) - forward(ablated) of a forward function that returns each image's correctness:
+1 is a broken image, -1 a fixed one. Channels not compared form one extra group. Each call
runs two full forward passes (the layer's output, the intact model) and one per group;
`perturbations_per_eval` P stacks P groups into one forward of P x batch images. Each P given is
timed and the faster reported. Captum may be timed on a subset of the units (`--captum-units`)
and its time scaled to all of them by image-forwards: (2 + groups wanted) / (2 + groups run).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from unit_ablation.data.dataset import to_float
from unit_ablation.data.loading import load_dataset
from unit_ablation.engine.graph_split import resolve_layer
from unit_ablation.tools.bench_inputs import load_inputs

# the last conv layer's output (post-ReLU for AlexNet) of the torchvision models, in the wrapper
TORCHVISION_LAYERS = {"alexnet": "net.features.11", "resnet18": "net.layer4"}


class GrayTorchvision(nn.Module):
    """A torchvision classifier on 1-channel images in [0, 1], resized to `size` x `size` inside
    (None: as they come)."""

    def __init__(self, net: nn.Module, size: int | None) -> None:
        super().__init__()
        self.net, self.size = net, size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size is not None:  # fixed at construction: torch.fx traces the branch taken
            x = nn.functional.interpolate(
                x, size=(self.size, self.size), mode="bilinear", align_corners=False
            )
        return self.net(x.expand(-1, 3, -1, -1))


def torchvision_model(arch: str, size: int, calibration: np.ndarray, num_classes: int = 10) -> nn.Module:
    """torchvision `arch` (random init, seed 0) at `size` px. The last layer standardises each
    logit over the calibration images, so that predictions vary between images (random-init
    logits share large per-class offsets) and single-channel ablations change some of them."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    model = GrayTorchvision(net, None if size == calibration.shape[-1] else size)
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(torch.from_numpy(to_float(b))) for b in np.array_split(calibration, 4)])
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        std = logits.std(0).clamp_min(1e-6)
        last.weight.div_(std.unsqueeze(1))
        last.bias.copy_((last.bias - logits.mean(0)) / std)
    return model


def load_case(args: argparse.Namespace) -> tuple[nn.Module, str, np.ndarray, np.ndarray, str]:
    """Model, layer, test images and labels, and the model's description."""
    if args.model not in TORCHVISION_LAYERS:
        return load_inputs(args)
    dataset_path = Path(args.dataset)
    if not dataset_path.exists():
        raise SystemExit(f"error: dataset {dataset_path} not found: run `make run` first or pass --dataset")
    dataset = load_dataset(dataset_path)
    images, labels = dataset.images["test"][: args.images], dataset.labels["test"][: args.images]
    model = torchvision_model(args.model, args.size, dataset.images["heldout"][:256], dataset.num_classes)
    name = f"torchvision {args.model} (random init, calibrated), {args.size} px"
    return model, TORCHVISION_LAYERS[args.model], images, labels, name


def layer_channels(model: nn.Module, module: nn.Module, x: torch.Tensor) -> int:
    """Channels of `module`'s output, by one forward pass."""
    shapes: list[torch.Size] = []
    handle = module.register_forward_hook(lambda _m, _i, out: shapes.append(out.shape))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return shapes[0][1]


def captum_counts(
    model: nn.Module,
    layer: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    units: list[int],
    num_classes: int,
    batch_size: int,
    perturbations_per_eval: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Broken and fixed counts (units x classes) from Captum's LayerFeatureAblation, batch by batch.

    `units[j]` is group j of the layer mask; every other channel is group len(units)."""
    from captum.attr import LayerFeatureAblation

    def correctness(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (model(x).argmax(1) == y).float()

    module = resolve_layer(model, layer)
    channels = layer_channels(model, module, images[:1])
    groups = torch.full((channels,), len(units), dtype=torch.long)
    groups[torch.tensor(units)] = torch.arange(len(units))
    mask = groups.view(1, channels, 1, 1)
    ablation = LayerFeatureAblation(correctness, module)
    broken = torch.zeros(len(units), num_classes, dtype=torch.float64)
    fixed = torch.zeros_like(broken)
    for start in range(0, len(images), batch_size):
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
        attributions = ablation.attribute(
            x,
            additional_forward_args=(y,),
            layer_mask=mask,
            attribute_to_layer_input=False,
            perturbations_per_eval=perturbations_per_eval,
        )
        per_unit = attributions[:, units].flatten(2)[:, :, 0]  # N x units: a channel's positions are equal
        by_class = nn.functional.one_hot(y, num_classes).double()
        broken += (per_unit == 1).double().T @ by_class
        fixed += (per_unit == -1).double().T @ by_class
    return broken.long().numpy(), fixed.long().numpy()


@torch.no_grad()
def run_captum_benchmark(args: argparse.Namespace) -> dict:
    """Time `ua.ablate` and Captum on the same case; the JSON row of the comparison."""
    from unit_ablation.api.ablate import ablate

    torch.set_num_threads(args.threads)
    model, layer, images_u8, labels_np, model_name = load_case(args)
    model.eval()
    images, labels = torch.from_numpy(to_float(images_u8)), torch.from_numpy(labels_np.astype(np.int64))
    channels = layer_channels(model, resolve_layer(model, layer), images[:1])
    units = list(range(channels if args.units is None else min(args.units, channels)))
    wanted = len(units) if args.captum_units is None else min(args.captum_units, len(units))
    subset = units[:: max(1, len(units) // wanted)][:wanted]
    num_classes = model(images[:1]).shape[1]
    model(images[: args.batch_size])  # warm-up: the first pass pays one-off set-up costs

    start = time.perf_counter()
    ours = ablate(model, layer, TensorDataset(images, labels), units=units, batch_size=args.batch_size)
    ours_s = time.perf_counter() - start

    def image_forwards(groups: int) -> int:
        return 2 + groups + (1 if groups < channels else 0)  # per image; the rest is one more group

    captum_batch = args.captum_batch_size or args.batch_size
    position = {unit: k for k, unit in enumerate(units)}
    rows = [position[u] for u in subset]
    runs, identical = {}, True
    for p in args.perturbations:
        start = time.perf_counter()
        broken, fixed = captum_counts(model, layer, images, labels, subset, num_classes, captum_batch, p)
        measured = time.perf_counter() - start
        scaled = measured * image_forwards(len(units)) / image_forwards(len(subset))
        runs[p] = {"measured_s": round(measured, 3), "scaled_s": round(scaled, 3)}
        identical &= bool(
            np.array_equal(ours.counts.broken[rows], broken)
            and np.array_equal(ours.counts.fixed[rows], fixed)
        )
    best = min(runs, key=lambda p: runs[p]["scaled_s"])
    captum_s = runs[best]["scaled_s"]
    return {
        "model": model_name,
        "layer": layer,
        "plan": ours.plan,
        "units": len(units),
        "layer_channels": channels,
        "images": len(images),
        "threads": args.threads,
        "device": "cpu",
        "batch_size": args.batch_size,
        "captum_batch_size": captum_batch,
        "captum_units_measured": len(subset),
        "captum_runs": {f"perturbations_per_eval={p}": run for p, run in runs.items()},
        "captum_perturbations_per_eval": best,
        "captum_s": captum_s,
        "ua_ablate_s": round(ours_s, 3),
        "ratio": round(captum_s / ours_s, 1),
        "identical": identical,
        "changed_predictions": int(ours.counts.broken[rows].sum() + ours.counts.fixed[rows].sum()),
    }


def print_summary(result: dict) -> None:
    """The result's keys, then the comparison in words."""
    for key, value in result.items():
        print(f"{key:>30}: {value}")
    scaled = result["captum_units_measured"] < result["units"]
    how = (
        f"timed on {result['captum_units_measured']} of {result['units']} units and scaled by image-forwards"
        if scaled
        else f"all {result['units']} units timed"
    )
    print(
        f"Captum LayerFeatureAblation (perturbations_per_eval={result['captum_perturbations_per_eval']}, "
        f"{how}): {result['captum_s']:.2f} s; ua.ablate ({result['plan']}): {result['ua_ablate_s']:.2f} s; "
        f"ratio Captum / ua.ablate = {result['ratio']}x"
    )
    if result["identical"]:
        print(f"broken and fixed counts: identical on the {result['captum_units_measured']} units compared")
    else:
        print("broken and fixed counts: DIFFER between Captum and ua.ablate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `--vs captum` (the others are shared with the naive benchmark)."""
    group = parser.add_argument_group("--vs captum")
    group.add_argument("--units", type=int, help="ablate units 0..M-1 (default: every unit of the layer)")
    group.add_argument("--captum-units", type=int, help="units timed with Captum, spread (default: all)")
    group.add_argument(
        "--perturbations",
        type=lambda text: [int(p) for p in text.split(",")],
        default=[1, 8],
        help="Captum perturbations_per_eval values to time, comma-separated; the faster is reported",
    )
    group.add_argument("--size", type=int, default=224, help="input size of the torchvision models")
    group.add_argument("--captum-batch-size", type=int, help="images per Captum call (default: --batch-size)")
