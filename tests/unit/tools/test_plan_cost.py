"""Plan costs by forward hooks: they agree with the analytic cost model and with the engine's count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.models import get_model

from unit_ablation.engine.driver import ablate_units
from unit_ablation.engine.options import AblationOptions
from unit_ablation.models.fashion_alexnet import build_model
from unit_ablation.spec import cost
from unit_ablation.tools.plan_cost import PlanCost, plan_costs


@pytest.mark.parametrize("layer", ["conv3", "conv5"])
@pytest.mark.parametrize("rotated", [False, True])
def test_built_in_model_matches_the_torch_free_cost_model(layer, rotated):
    model = build_model(width=1.0)
    costs = {c.plan: c for c in plan_costs(model, layer, (1, 28, 28), rotated=rotated)}
    spec = f"{layer}@rot0" if rotated else layer
    assert costs["head-replay"].trunk_flops == cost.trunk_flops_per_image(spec, 1.0)
    for plan in ("delta", "head-replay"):
        if plan in costs:
            assert costs[plan].head_flops == cost.head_flops_per_copy(spec, 1.0, plan)
    assert ("delta" in costs) == (cost.engine_plan(spec) == "delta")
    assert costs["naive"].head_flops == cost.head_flops_per_copy(spec, 1.0, "naive")


def test_torchvision_alexnet_plans_are_ordered_and_match_the_engines_executed_flops():
    torch.manual_seed(0)
    model = get_model("alexnet", weights=None, num_classes=5).eval()
    costs = plan_costs(model, "features.11", (3, 64, 64))
    assert [c.plan for c in costs] == ["delta", "head-replay", "naive"]
    heads = [c.head_flops for c in costs]
    assert heads == sorted(heads)  # fastest plan first
    images = np.random.default_rng(0).integers(0, 256, size=(6, 3, 64, 64)).astype(np.uint8)
    labels = np.arange(6) % 5
    counts = ablate_units(
        model, "features.11", images, labels, [0, 3, 7], 5, options=AblationOptions(batch_size=3)
    )
    assert counts.plan == "delta"
    assert counts.head_flops == costs[0].head_flops * 3 * 6  # 3 units x 6 images


def test_study_flops_count_the_trunk_once_per_job():
    plan = PlanCost("delta", trunk_flops=10.0, head_flops=2.0)
    assert plan.study_flops(units=4, images=3) == 3 * (10 + 4 * 2)
    assert plan.study_flops(units=4, images=3, jobs=2) == 3 * (2 * 10 + 4 * 2)


@pytest.mark.parametrize(
    ("arch", "layer", "rotated"), [("alexnet", "conv5", False), ("resnet18", "layer4", True)]
)
def test_measured_rate_divides_the_engines_flops_by_the_time(arch, layer, rotated):
    from unit_ablation.models.torchvision_classifier import TorchvisionClassifier
    from unit_ablation.tools.paper_rate import measure_case

    row = measure_case(arch, layer, rotated, images=6, units=3, size=64, device="cpu", batch_size=4)
    model = TorchvisionClassifier(arch).eval()
    expected = next(
        c for c in plan_costs(model, layer, (3, 64, 64), rotated=rotated) if c.plan == row["plan"]
    )
    assert row["plan"] == ("closed-form" if arch == "resnet18" else "delta")
    # the executed FLOPs are the cost model's for 3 units on 6 images (float sums: rel 1e-9)
    assert row["tflop"] * 1e12 == pytest.approx(expected.study_flops(3, 6), rel=1e-9)
    assert row["tflops_per_s"] == pytest.approx(row["tflop"] / row["seconds"], rel=1e-12)
    whole_layer = expected.study_flops(model.unit_count(layer), 50_000)
    assert row["whole_layer_50k_minutes"] * 60 == pytest.approx(
        whole_layer / (row["tflops_per_s"] * 1e12), rel=1e-9
    )
    assert (row["device"], row["precision"], row["images"], row["units"]) == ("cpu", "exact", 6, 3)
