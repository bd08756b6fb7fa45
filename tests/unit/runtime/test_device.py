"""Device and precision settings (the CUDA paths themselves need a GPU: docs/running.md, CPU and GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unit_ablation.engine.options import AblationOptions
from unit_ablation.runtime.device import choose_device, image_batches, set_precision


@pytest.fixture(autouse=True)
def restore_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_exact_turns_tf32_off_and_fast_turns_it_on():
    set_precision("fast")
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    set_precision("exact")
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    with pytest.raises(ValueError, match="'half'.*exact"):
        set_precision("half")


def test_device_choice_falls_back_to_the_cpu_without_cuda():
    assert choose_device("cpu") == torch.device("cpu")
    expected = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    assert choose_device("auto") == expected == choose_device("cuda")
    with pytest.raises(ValueError, match="'tpu'"):
        choose_device("tpu")


def test_batches_are_scaled_in_order_and_cover_every_image():
    images = np.arange(5 * 1 * 2 * 2, dtype=np.uint8).reshape(5, 1, 2, 2)
    labels = np.array([3, 1, 4, 1, 5])
    batches = list(image_batches(images, labels, 2, torch.device("cpu")))
    assert [len(x) for x, _ in batches] == [2, 2, 1]
    x = torch.cat([x for x, _ in batches])
    assert torch.equal(x, torch.from_numpy(images.astype(np.float32) / 255.0))
    assert torch.cat([y for _, y in batches]).tolist() == labels.tolist()


@pytest.mark.parametrize("precision", ["fast", "exact"])
def test_the_engine_and_the_reference_compute_in_the_precision_asked_for(precision, monkeypatch):
    from unit_ablation.engine import ablation_engine, driver, naive
    from unit_ablation.models.fashion_alexnet import build_model

    from support.synthetic import synthetic_images

    seen = []
    predictions = ablation_engine.AblationEngine.predictions
    resolve_layer = naive.resolve_layer

    def spy_predictions(self, *args):
        seen.append(("engine", torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return predictions(self, *args)

    def spy_resolve(*args):
        seen.append(("naive", torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return resolve_layer(*args)

    monkeypatch.setattr(ablation_engine.AblationEngine, "predictions", spy_predictions)
    monkeypatch.setattr(naive, "resolve_layer", spy_resolve)
    set_precision("exact" if precision == "fast" else "fast")  # the opposite, left by an earlier stage
    model = build_model(width=0.25).eval()
    images, labels = synthetic_images(8, seed=3)
    driver.ablate_units(
        model, "conv5", images, labels, [0, 1], 10, options=AblationOptions(precision=precision, batch_size=4)
    )
    naive.ablate_naive(model, "conv5", images, labels, [0], 10, options=AblationOptions(precision=precision))
    tf32 = precision == "fast"
    assert seen == [("engine", tf32, tf32)] * 2 + [("naive", tf32, tf32)]
