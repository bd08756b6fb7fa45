"""Small classifiers that are not in the zoo, for the notebook API's tests: a residual net with
global average pooling, and models torch.fx cannot trace (Python control flow on the data)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from unit_ablation.data.dataset import to_float

CLASSES = 10


class Block(nn.Module):
    """A residual block with its own ReLU modules (each called once)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu_out = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu1(self.bn1(self.conv1(x)))
        return self.relu_out(self.bn2(self.conv2(h)) + x)


class ResidualNet(nn.Module):
    """Stem, two residual blocks, global average pooling and a linear classifier."""

    def __init__(self, channels: int = 12) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, channels, 3, stride=2, padding=1), nn.ReLU())
        self.block1 = Block(channels)
        self.block2 = Block(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.block2(self.block1(self.stem(x)))), 1))


class PerImageBranch(nn.Module):
    """Python control flow on each image's own values: torch.fx cannot trace it."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3, stride=2)
        self.relu = nn.ReLU()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels * 13 * 13, CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.conv(x))
        rows = [row * 2 if row.mean() > 0.1 else row for row in h.split(1)]
        return self.head(torch.cat(rows))


class BatchBranch(PerImageBranch):
    """Control flow on the whole batch: stacking ablated copies along the batch changes the branch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.conv(x))
        if h.shape[0] > 64:
            h = -h
        return self.head(h)


def calibrated(model: nn.Module, images: np.ndarray, seed: int = 0) -> nn.Module:
    """Random weights and BN statistics, the last layer standardising each logit over the images:
    every class is predicted for some images, and ablating single units changes some predictions."""
    torch.manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(to_float(images)))
        mean, std = logits.mean(0), logits.std(0) + 1e-6
        last.weight.div_(std[:, None])
        last.bias.copy_((last.bias - mean) / std)
    return model


class SharedReLU(nn.Module):
    """One ReLU module called twice per forward: its output is no single ablation point."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4 * 24 * 24, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.relu(self.conv2(self.relu(self.conv1(x)))), 1))
