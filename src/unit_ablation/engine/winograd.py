"""3x3 convolutions of a cropped tail through NNPACK's Winograd transform, on the CPU.

conv3's ablated copies spend most of their time in conv5 on an 8 x 8 region (one F(6x6, 3x3)
Winograd tile per channel). The direct convolution already runs at about the fp32 matmul peak;
Winograd needs about a fifth of the multiplications, and NNPACK's ran about 1.7-2x faster on the
2-core AMD EPYC (500 copies, one thread).

Winograd rounds differently from the direct convolution. On the default study's three trained
networks (conv3's ablated copies, 300 test images) the logits' largest error against float64 was
2.3e-5, against 4.5e-6 for the direct convolution; the engine-versus-naive tests set aside only
images whose top two logits lie within 1e-3. The results are the same for any batch split and any
thread count.
"""

from __future__ import annotations

import functools

import torch
from torch import nn


@functools.cache
def nnpack_ready() -> bool:
    """Whether this torch build has NNPACK and it runs on this CPU (the call initialises it)."""
    return bool(torch._nnpack_available())


def winograd_applies(conv: nn.Conv2d, example: torch.Tensor) -> bool:
    """Whether `conv` (run without padding on a region) can take the Winograd path for inputs like
    `example`: a float32 CPU tensor, a 3x3 stride-1 kernel, no groups or dilation, NNPACK ready."""
    return (
        example.device.type == "cpu"
        and example.dtype == torch.float32
        and conv.weight.dtype == torch.float32
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and nnpack_ready()
    )


def winograd_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The convolution of `x` (N x C x H x W, best NCHW-contiguous) with `weight`, unpadded, as
    `F.conv2d(x, weight, bias)` up to float rounding; the output is NCHW-contiguous."""
    return torch._nnpack_spatial_convolution(x, weight, bias, [0, 0])
