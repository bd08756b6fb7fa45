"""3x3 convolutions of a cropped tail through NNPACK's Winograd transform, on the CPU.

conv3's ablated copies spend most of their time in conv5 on an 8 x 8 region (one F(6x6, 3x3)
Winograd tile per channel). The direct convolution already runs at about the fp32 matmul peak;
Winograd needs about a fifth of the multiplications, and NNPACK's ran about 1.7-2x faster on the
2-core AMD EPYC (500 copies, one thread).

Winograd rounds differently from the direct convolution. On the default study's three trained
networks (conv3's ablated copies, 300 test images) the logits' largest error against float64 was
2.3e-5, against 4.5e-6 for the direct convolution; the engine-versus-naive tests set aside only
images whose top two logits lie within 1e-3.

NNPACK picks its algorithm from the output size, and from the batch: a batch of one image takes
another routine. So the path is taken only for outputs where NNPACK's batched routine uses
Winograd (`winograd_tiles`), and a batch of one is run as two: each copy then gets the same bits
however the copies are batched, and with any number of threads. NNPACK's thread pool is made on
its first convolution, with torch's thread count at that moment, and cannot follow a fork.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

TILE = 6  # the outputs of one F(6x6, 3x3) tile, per side
FFT_TILE = 14  # the outputs of one tile of NNPACK's FFT alternative, per side


@functools.cache
def nnpack_ready() -> bool:
    """Whether this torch build has NNPACK and it runs on this CPU (the call initialises it)."""
    return bool(torch._nnpack_available())


def winograd_tiles(rows: int, cols: int) -> bool:
    """Whether NNPACK's batched routine convolves a rows x cols output with Winograd 8x8 tiles:
    its automatic choice, where they number at most 4 times its FFT's 16x16 tiles."""
    winograd = math.ceil(rows / TILE) * math.ceil(cols / TILE)
    fft = math.ceil(rows / FFT_TILE) * math.ceil(cols / FFT_TILE)
    return winograd <= 4 * fft


def winograd_applies(conv: nn.Conv2d, example: torch.Tensor, output: tuple[int, int]) -> bool:
    """Whether `conv`, run without padding to an `output` of rows x cols, takes the Winograd path
    for inputs like `example`: float32 on the CPU, a 3x3 stride-1 kernel without groups or
    dilation, NNPACK ready and enabled, and an output that NNPACK tiles with Winograd."""
    return (
        example.device.type == "cpu"
        and example.dtype == torch.float32
        and conv.weight.dtype == torch.float32
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and winograd_tiles(*output)
        and torch._C._get_nnpack_enabled()  # torch.backends.nnpack.set_flags
        and nnpack_ready()
    )


def winograd_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The convolution of `x` (N x C x H x W, best NCHW-contiguous) with `weight`, unpadded, as
    `F.conv2d(x, weight, bias)` up to float rounding; the output is NCHW-contiguous."""
    if not nnpack_ready():
        raise RuntimeError("NNPACK is not available in this torch build or on this CPU")
    if len(x) == 1:  # one image takes NNPACK's other routine, which rounds differently
        return torch._nnpack_spatial_convolution(x.repeat(2, 1, 1, 1), weight, bias, [0, 0])[:1]
    return torch._nnpack_spatial_convolution(x, weight, bias, [0, 0])
