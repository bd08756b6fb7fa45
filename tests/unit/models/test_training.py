import numpy as np
import pytest
import torch

from unit_ablation.models.training import TrainConfig, accuracy, train_model

from support.synthetic import synthetic_images


def test_same_seed_gives_identical_weights_and_learns():
    images, labels = synthetic_images(1024, seed=3)
    config = TrainConfig(epochs=2, batch_size=32, lr=0.003, width=0.25, dropout=0.5, batchnorm=True, seed=7)
    first = train_model(images, labels, 10, config)
    second = train_model(images, labels, 10, config)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    other_seed = train_model(images, labels, 10, TrainConfig(**{**config.__dict__, "seed": 8}))
    assert not torch.equal(first.features.conv1.conv.weight, other_seed.features.conv1.conv.weight)
    test_images, test_labels = synthetic_images(200, seed=4)
    assert accuracy(first, test_images, test_labels) > 50.0  # the bars are easy: chance is 10%
    assert not first.training


def test_training_does_not_touch_input_arrays():
    images, labels = synthetic_images(64, seed=5)
    before = images.copy()
    train_model(images, labels, 10, TrainConfig(epochs=1, batch_size=16, width=0.25))
    assert np.array_equal(images, before)


def test_bf16_precision_is_deterministic_learns_and_returns_fp32_weights():
    images, labels = synthetic_images(512, seed=3)
    config = TrainConfig(
        epochs=2, batch_size=32, lr=0.003, width=0.25, batchnorm=True, precision="bf16", seed=7
    )
    first = train_model(images, labels, 10, config)
    second = train_model(images, labels, 10, config)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    fp32 = train_model(images, labels, 10, TrainConfig(**{**config.__dict__, "precision": "fp32"}))
    assert not torch.equal(first.features.conv2.conv.weight, fp32.features.conv2.conv.weight)
    assert all(t.dtype in (torch.float32, torch.int64) for t in first.state_dict().values())
    test_images, test_labels = synthetic_images(200, seed=4)
    assert accuracy(first, test_images, test_labels) > 50.0


def test_warmup_sets_the_one_cycle_schedule():
    images, labels = synthetic_images(256, seed=5)
    config = TrainConfig(epochs=1, batch_size=32, lr=0.003, width=0.25, seed=1)
    assert config.warmup == 0.3  # OneCycleLR's default pct_start: the schedule of earlier releases
    default = train_model(images, labels, 10, config)
    short = train_model(images, labels, 10, TrainConfig(**{**config.__dict__, "warmup": 0.1}))
    assert not torch.equal(default.features.conv1.conv.weight, short.features.conv1.conv.weight)


def test_trained_model_comes_back_contiguous():
    """Training runs channels-last; checkpoints and the analysis get plain NCHW tensors."""
    images, labels = synthetic_images(64, seed=5)
    model = train_model(images, labels, 10, TrainConfig(epochs=1, batch_size=16, width=0.25, batchnorm=True))
    for name, tensor in model.state_dict().items():
        assert tensor.is_contiguous(), name


@pytest.mark.parametrize(
    ("field", "value"), [("precision", "fp16"), ("precision", "BF16"), ("warmup", 0.0), ("warmup", 1.0)]
)
def test_bad_precision_or_warmup_is_refused(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})
