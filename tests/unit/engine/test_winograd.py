"""The Winograd path of the cropped tail: its rounding at realistic magnitudes, that it does not
depend on how the copies are batched, when the engine takes it, and that both convolution paths
give the naive reference's counts. A few seconds."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unit_ablation.engine import cropped_tail, delta
from unit_ablation.engine.basis import random_rotation
from unit_ablation.engine.cropped_tail import compile_tail
from unit_ablation.engine.delta import Delta
from unit_ablation.engine.graph_split import run_trunk, split_model
from unit_ablation.engine.options import AblationOptions
from unit_ablation.engine.winograd import nnpack_ready, winograd_applies, winograd_conv2d, winograd_tiles

from support.exactness import assert_matches_naive
from support.synthetic import synthetic_images

pytestmark = pytest.mark.skipif(not nnpack_ready(), reason="this torch build or CPU has no NNPACK")

# conv5's shape in conv3's tail: 96 channels on an 8 x 8 region, Kaiming-scaled weights, outputs up
# to about 5. Winograd F(6x6, 3x3) was off float64 by up to 5.6e-5 over five draws (the direct
# convolution by 1.2e-6); 2e-4 leaves room for other CPUs' kernels.
WINOGRAD_ATOL = 2e-4


def _conv_inputs(seed: int, count: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(count, 96, 8, 8, generator=generator))
    weight = torch.randn(64, 96, 3, 3, generator=generator) * (2 / (96 * 9)) ** 0.5
    bias = torch.randn(64, generator=generator) * 0.1
    return x, weight, bias


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_winograd_is_within_its_stated_rounding_of_float64(seed: int) -> None:
    x, weight, bias = _conv_inputs(seed)
    reference = F.conv2d(x.double(), weight.double(), bias.double())
    out = winograd_conv2d(x, weight, bias)
    assert out.is_contiguous() and out.shape == reference.shape
    error = (out.double() - reference).abs().max().item()
    assert 0 < error <= WINOGRAD_ATOL  # 0 would mean this is not Winograd's rounding at all


def test_winograd_gives_each_copy_the_same_bits_however_the_copies_are_batched() -> None:
    x, weight, bias = _conv_inputs(3, count=40)
    whole = winograd_conv2d(x, weight, bias)
    for start, stop in ((0, 1), (39, 40), (5, 12), (13, 40)):  # one copy alone: NNPACK's other routine
        assert torch.equal(winograd_conv2d(x[start:stop].contiguous(), weight, bias), whole[start:stop])
    channels_last = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(winograd_conv2d(channels_last, weight, bias), whole)


def test_the_path_is_taken_only_where_nnpack_tiles_the_output_with_winograd() -> None:
    # NNPACK's own choice: Winograd 8x8 tiles (6 x 6 outputs each) while they number at most 4
    # times its FFT's 16x16 tiles (14 x 14 outputs), else the FFT
    assert winograd_tiles(6, 6) and winograd_tiles(12, 12) and winograd_tiles(18, 18)
    assert not winograd_tiles(13, 13) and not winograd_tiles(14, 14) and not winograd_tiles(28, 28)
    conv = torch.nn.Conv2d(96, 64, 3)
    example = torch.zeros(1, 96, 8, 8)
    assert winograd_applies(conv, example, (6, 6))
    assert not winograd_applies(conv, example, (14, 14))
    assert not winograd_applies(conv, example.to("meta"), (6, 6))  # any device but the CPU
    assert not winograd_applies(conv, example.double(), (6, 6))
    assert not winograd_applies(torch.nn.Conv2d(96, 64, 5), example, (6, 6))
    assert not winograd_applies(torch.nn.Conv2d(96, 64, 3, stride=2), example, (6, 6))


def _conv3_delta(small_model, count: int = 4):
    split = split_model(small_model, "conv3")
    plan = Delta(split)
    images, _ = synthetic_images(count, seed=40)
    activation, _ = run_trunk(split, torch.from_numpy(images).float() / 255)
    return plan, activation, plan.mixing(plan.chain(activation.clone()))


def test_the_engine_takes_winograd_for_float32_on_the_cpu_only(small_model) -> None:
    plan, activation, mixed = _conv3_delta(small_model)
    state = plan.prepare(activation, [], torch.zeros(activation.shape[1]))
    assert state.cropped is not None and not state.cropped.channels_last  # NCHW: Winograd
    assert compile_tail(plan.tail, mixed[:1].clone(), winograd=False).channels_last
    as_double = compile_tail(plan.tail.double(), mixed[:1].double())
    assert as_double is not None and as_double.channels_last  # float64: the direct convolution
    with pytest.raises(ValueError, match="NNPACK and float32 3x3"):
        compile_tail(plan.tail, mixed[:1].double(), winograd=True)


@pytest.mark.parametrize("images_per_chunk", [1, 3, 10])
@torch.no_grad()
def test_the_tail_in_chunks_gives_each_copy_the_bits_of_the_whole_batch(
    small_model, images_per_chunk: int, monkeypatch
) -> None:
    plan, activation, _ = _conv3_delta(small_model, count=10)
    state = plan.prepare(activation, [], torch.zeros(activation.shape[1]))
    index = torch.tensor([0, 5, 2])
    change = state.ablated_blocks.index_select(1, index) - state.pooled_blocks.index_select(1, index)
    whole = delta.tail_by_chunks(plan.mixing, state, change, index)
    rows, cols = state.cropped.region
    per_image = 4 * plan.mixing.out_channels * rows.length * cols.length
    assert delta.CHUNK_BYTES >= 10 * per_image  # the whole batch is one chunk by default
    monkeypatch.setattr(delta, "CHUNK_BYTES", images_per_chunk * per_image)  # 10 = 3 + 3 + 3 + 1
    chunked = delta.tail_by_chunks(plan.mixing, state, change, index)
    assert whole.shape == (3 * 10, 10) and torch.equal(chunked, whole)


@pytest.mark.parametrize("winograd", [True, False], ids=["winograd", "direct"])
@pytest.mark.parametrize(("rotated", "value"), [(False, "zero"), (True, "mean")])
def test_both_convolution_paths_give_the_naive_references_counts(
    small_model, winograd: bool, rotated: bool, value: str, monkeypatch
) -> None:
    if not winograd:  # the path of CPUs without NNPACK and of float64 models
        monkeypatch.setattr(cropped_tail, "winograd_applies", lambda conv, example, output: False)
    images, labels = synthetic_images(90, seed=41)
    units = list(range(small_model.unit_count("conv3")))
    rotation = random_rotation(len(units), seed=8) if rotated else None
    options = AblationOptions(value=value, batch_size=40, units_per_pass=3)
    counts = assert_matches_naive(
        small_model, "conv3", images, labels, units, rotation=rotation, options=options
    )
    assert counts.plan == "delta"
