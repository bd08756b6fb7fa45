import numpy as np
import torch
from conftest import synthetic_images

from unit_ablation.training import TrainConfig, accuracy, train_model


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
