"""The engine at the paper's scale, exact: every conv5 unit of AlexNet over 50,000 images at 224 px.

The images are a synthetic uint8 cache (random pixels, memory-mapped like a decoded image cache),
generated on the device itself; the model is a random-init torchvision AlexNet whose last layer is
standardised over 256 of them, so that ablations change predictions. Nothing is downloaded.

    python -m unit_ablation.tools.paper_scale --device cuda              # the GPU check (.ci/gpu-check)
    python -m unit_ablation.tools.paper_scale --device cpu --images 64 --units 4

It prints one JSON object: the engine's time over all the images (the whole `ablate_units` call,
trunk and transfers included, after a warm-up call), its plan, and `changed_predictions`, the
(unit, image) pairs whose prediction the ablation changed. The engine-versus-naive check on these
inputs is `tests/unit/engine/test_paper_scale.py`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from unit_ablation.engine.driver import ablate_units
from unit_ablation.engine.options import AblationOptions
from unit_ablation.models.torchvision_classifier import TorchvisionClassifier
from unit_ablation.runtime.device import choose_device, set_precision
from unit_ablation.tools.bench_inputs import standardise_last_layer

CLASSES = 1000
LAYER = "conv5"  # torchvision AlexNet features.11, the paper's conv5


def write_synthetic_cache(
    folder: str | Path, count: int, size: int = 224, device: str | torch.device = "cpu", seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """`count` random uint8 images (count x 3 x size x size), drawn on `device` and written to
    `folder`/images.u8, and random labels; returns the images memory-mapped read-only, and the labels.

    The same arguments give the same bytes on one device type.
    """
    path = Path(folder) / "images.u8"
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (count, 3, size, size)
    images = np.memmap(path, dtype=np.uint8, mode="w+", shape=shape)
    generator = torch.Generator(device=device).manual_seed(seed)
    chunk = max(1, 2**28 // (3 * size * size))  # about 256 MB at a time
    for start in range(0, count, chunk):
        part = min(chunk, count - start)
        drawn = torch.randint(
            0, 256, (part, *shape[1:]), generator=generator, device=device, dtype=torch.uint8
        )
        images[start : start + part] = drawn.cpu().numpy()
    images.flush()
    del images
    labels = np.random.default_rng(seed).integers(0, CLASSES, size=count)
    return np.memmap(path, dtype=np.uint8, mode="r", shape=shape), labels


def standardised_alexnet(images: np.ndarray, device: str | torch.device = "cpu") -> torch.nn.Module:
    """A random-init torchvision AlexNet (seed 0) on `device`, its last layer rescaled so that
    each logit has mean 0 and sd 1 over the first 256 `images` (`standardise_last_layer`)."""
    torch.manual_seed(0)
    model = TorchvisionClassifier("alexnet", num_classes=CLASSES).eval().to(torch.device(device))
    return standardise_last_layer(model, model.net.classifier[-1], images)


def measure(
    images: np.ndarray,
    labels: np.ndarray,
    model: torch.nn.Module,
    units: int | None,
    device: torch.device,
    batch_size: int,
) -> dict:
    """Time `ablate_units` on every image for the first `units` conv5 units (None: all), exact."""
    total = model.unit_count(LAYER)
    chosen = list(range(total if units is None else min(units, total)))
    options = AblationOptions(device=device, precision="exact", batch_size=batch_size)
    ablate_units(model, LAYER, images[:batch_size], labels[:batch_size], chosen[:2], CLASSES, None, options)
    start = time.perf_counter()
    counts = ablate_units(model, LAYER, images, labels, chosen, CLASSES, None, options)
    seconds = time.perf_counter() - start
    return {
        "model": "alexnet (random init, last layer standardised)",
        "layer": LAYER,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "precision": "exact (fp32, TF32 off)",
        "tf32": torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32,
        "images": len(images),
        "size": images.shape[-1],
        "units": len(chosen),
        "plan": counts.plan,
        "engine_s": round(seconds, 2),
        "engine_head_s": round(counts.head_seconds, 2),
        "changed_predictions": int(counts.broken.sum() + counts.fixed.sum()),
    }


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--images", type=_positive, default=50_000)
    parser.add_argument(
        "--size", type=_positive, default=224, help="image side in pixels (AlexNet: 63 or more)"
    )
    parser.add_argument("--units", type=_positive, help="the first N conv5 units (default: all 256)")
    parser.add_argument("--batch-size", type=_positive, default=500)
    parser.add_argument("--cache", help="folder for the synthetic cache (default: a temporary one)")
    parser.add_argument("--output", help="also write the JSON object here")
    args = parser.parse_args(argv)
    set_precision("exact")
    device = choose_device(args.device)
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        images, labels = write_synthetic_cache(args.cache or scratch, args.images, args.size, device)
        cache_s = time.perf_counter() - started
        model = standardised_alexnet(images, device)
        row = measure(images, labels, model, args.units, device, args.batch_size)
        row["cache_s"] = round(cache_s, 2)
        del images
    print(json.dumps(row), flush=True)
    if args.output:
        Path(args.output).write_text(json.dumps(row, indent=1) + "\n")
    return 0 if row["changed_predictions"] > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
