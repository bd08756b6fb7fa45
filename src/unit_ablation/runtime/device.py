"""Where and how precisely the work runs: the device, fp32 or TF32, and batches on the device."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator

import numpy as np
import torch

from unit_ablation.data.dataset import to_float

log = logging.getLogger(__name__)


PRECISIONS = ("exact", "fast")


def software_versions() -> dict[str, str]:
    """Versions that can change results, for the metadata of every model and ablation chunk."""
    from importlib import metadata
    from platform import python_version

    versions = {"python_version": python_version(), "torch_version": torch.__version__}
    for package in ("torchvision", "numpy", "snakemake"):
        try:
            versions[f"{package}_version"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[f"{package}_version"] = "not installed"
    return versions


def set_precision(mode: str) -> None:
    """`exact`: fp32 matmuls and convolutions (TF32 off), the default; `fast`: TF32 on GPUs that
    have it (about 10 mantissa bits: predictions near a tie can then differ from the CPU's)."""
    if mode not in PRECISIONS:
        raise ValueError(f"ablation precision {mode!r} not in {PRECISIONS}")
    torch.backends.cuda.matmul.allow_tf32 = mode == "fast"
    torch.backends.cudnn.allow_tf32 = mode == "fast"


def choose_device(name: str = "auto") -> torch.device:
    """'auto' or 'cuda' use CUDA when it is available; otherwise (with a warning for 'cuda') the CPU."""
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"ablation device {name!r} not in ('auto', 'cpu', 'cuda')")
    if name == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if name == "cuda":
        log.warning("ablation.device is 'cuda' but CUDA is not available: running on the CPU")
    return torch.device("cpu")


def image_batches(
    images: np.ndarray, labels: np.ndarray | None, batch_size: int, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """uint8 images (and labels) in order, as float batches in [0, 1] on `device`."""
    for start in range(0, len(images), batch_size):
        end = start + batch_size
        yield device_batch(images[start:end], None if labels is None else labels[start:end], device)


@functools.cache
def _byte_floats(device: torch.device) -> torch.Tensor:
    """`to_float` of the bytes 0-255, on `device`."""
    return torch.from_numpy(to_float(np.arange(256, dtype=np.uint8))).to(device)


def device_batch(
    images: np.ndarray, labels: np.ndarray | None, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One batch of uint8 images (and labels) as floats in [0, 1] on `device`."""
    if device.type == "cuda" and images.dtype == np.uint8:
        # the bytes cross the bus (a quarter of the floats) from pinned memory, and a table of the
        # 256 floats `to_float` gives maps them there: a GPU division by 255 multiplies by the
        # reciprocal instead, and gets some bytes one ulp off the CPU's floats
        pinned = torch.empty(images.shape, dtype=torch.uint8, pin_memory=True)
        pinned.numpy()[...] = images
        raw = pinned.to(device, non_blocking=True)
        x = _byte_floats(device).index_select(0, raw.view(-1).int()).view(raw.shape)
    else:
        x = torch.from_numpy(to_float(images))
        x = x.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else x.to(device)
    y = None if labels is None else torch.from_numpy(labels.astype(np.int64)).to(device)
    return x, y
