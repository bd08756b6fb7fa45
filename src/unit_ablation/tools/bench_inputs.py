"""What the benchmarks run on: the built-in model (the default study's checkpoint, or random
init) or a ResNet-18-style model, and the Fashion-MNIST test images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from unit_ablation.data.loading import load_dataset
from unit_ablation.models.checkpoint import load_model
from unit_ablation.models.fashion_alexnet import build_model
from unit_ablation.runtime.device import device_batch

DEFAULT_CHECKPOINT = Path("results/models/fmnist-alexnet-baseline-s0.pt")
DEFAULT_DATASET = Path("results/data/fashion-mnist.npz")


class GrayToRGB(nn.Module):
    """Feeds 1-channel 28x28 images to a 3-channel torchvision classifier."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.expand(-1, 3, -1, -1))


def standardise_last_layer(model: nn.Module, last: nn.Linear, images: np.ndarray) -> nn.Module:
    """Rescale the classifier's last layer so that each logit has mean 0 and sd 1 over `images`.

    Random-init logits share large per-class offsets, so every image gets the same class and no
    ablation changes a prediction; standardised, predictions vary between images.
    """
    with torch.no_grad():
        x, _ = device_batch(images[:256], None, last.weight.device)
        logits = model(x)
        std = logits.std(0).clamp_min(1e-6)
        last.weight.div_(std.unsqueeze(1))
        last.bias.copy_((last.bias - logits.mean(0)) / std)
    return model


def resnet18_style(images: np.ndarray, num_classes: int = 10) -> nn.Module:
    """torchvision resnet18 (random init) on 28x28 gray images, last layer standardised."""
    import torchvision

    torch.manual_seed(0)
    model = GrayToRGB(torchvision.models.resnet18(num_classes=num_classes)).eval()
    return standardise_last_layer(model, model.model.fc, images)


def load_inputs(args: argparse.Namespace) -> tuple[nn.Module, str, np.ndarray, np.ndarray, str]:
    dataset_path = Path(args.dataset)
    if not dataset_path.exists():
        raise SystemExit(f"error: dataset {dataset_path} not found: run `make run` first or pass --dataset")
    dataset = load_dataset(dataset_path)
    images = dataset.images["test"][: args.images]
    labels = dataset.labels["test"][: args.images]
    if args.model == "resnet18":
        return (
            resnet18_style(dataset.images["heldout"]),
            "model.layer4",
            images,
            labels,
            "resnet18-style (random init)",
        )
    checkpoint = Path(args.checkpoint)
    if checkpoint.exists():
        return load_model(checkpoint), args.layer, images, labels, str(checkpoint)
    print(f"note: {checkpoint} not found, using a random-init model of the default shape", file=sys.stderr)
    torch.manual_seed(0)
    model = build_model().eval()
    standardise_last_layer(model, model.classifier.fc8, dataset.images["heldout"])
    return model, args.layer, images, labels, "fmnist_alexnet (random init, last layer standardised)"
