"""The start-of-run estimate of a local run (`workflow.run_estimate`) on the tiny config's Study:
each kind of job costed by the cost model, packed onto the cores."""

from __future__ import annotations

import pytest

from unit_ablation.spec.cost import job_seconds, train_flops
from unit_ablation.workflow.run_estimate import (
    ENGINE_OVER_PROBE,
    JOB_START_SECONDS,
    MEAN_OVER_SLOWEST_RATE,
    OTHER_JOB_SECONDS,
    REFERENCE_PROBE_GFLOPS,
    TRAIN_GFLOPS_PER_THREAD,
    PlannedJob,
    estimate_run,
    train_images,
)

from support.studies import pretrained, study

TRAINED = ["fmnist-alexnet-baseline-s0", "fmnist-alexnet-bn-s0"]
WIDTH = study().config["model"]["width"]


def test_each_kind_of_job_is_costed_by_the_cost_model():
    plan = study()
    config = plan.config
    images = train_images(config["data"])
    assert images == (config["data"]["train_size"] or 60_000 - config["data"]["heldout_size"])
    model = TRAINED[0]
    jobs = [
        PlannedJob("all"),
        PlannedJob("train", {"model": model}, threads=2),
        PlannedJob("ablate", {"model": model, "layer_spec": "conv4@rot0", "chunk": "0-23"}),
        PlannedJob("extract", {"model": model}),
        PlannedJob("plot_layer", {"model": model, "layer_spec": "conv5"}, threads=2),
    ]
    estimate = estimate_run(plan, jobs)
    epochs = plan.train_params(model)["epochs"]
    width = config["model"]["width"]
    # training: FLOPs at a per-thread rate, so its core-seconds do not depend on the threads
    assert estimate.train == pytest.approx(
        train_flops(images, epochs, width) / (TRAIN_GFLOPS_PER_THREAD * 1e9)
    )
    # ablation: the cost model at the engine's mean rate, which is above `gflops`, the slowest layer's
    gflops = config["ablation"]["gflops"] * MEAN_OVER_SLOWEST_RATE
    assert MEAN_OVER_SLOWEST_RATE > 1
    ablate = job_seconds(24, plan.evaluation_images(), "conv4@rot0", width, gflops)
    assert estimate.ablate == pytest.approx(ablate + JOB_START_SECONDS)
    assert estimate.other == pytest.approx(3 * (OTHER_JOB_SECONDS + JOB_START_SECONDS))  # 1 + 2 threads
    assert estimate.jobs == {"train": 1, "ablate": 1, "other": 2}
    total = estimate.train + estimate.ablate + estimate.other
    assert estimate.wall_seconds(2) == pytest.approx(total / 2)
    line = estimate.line(2)
    assert line.startswith(f"run estimate: about {total / 2 / 60:.0f} min on 2 core(s): train ")
    assert "(1 jobs)" in line and "not included" not in line
    assert "(cost model at the reference machine's speed, this one's not measured;" in line


JOBS = [
    PlannedJob("train", {"model": TRAINED[0]}),
    PlannedJob("ablate", {"model": TRAINED[0], "layer_spec": "conv3@rot0", "chunk": "0-23"}, threads=2),
    PlannedJob("gather", {"model": TRAINED[0], "layer_spec": "conv3@rot0"}),
]


@pytest.mark.parametrize("speed", [0.5, 2.0])
def test_a_measured_speed_scales_every_job_and_sets_the_cpu_engine_rate(speed):
    plan = study(lambda c: c["ablation"].update(device="cpu"))
    reference = estimate_run(plan, JOBS)
    probe = REFERENCE_PROBE_GFLOPS * speed  # a machine `speed` times as fast as the reference
    measured = estimate_run(plan, JOBS, probe)
    assert measured.train == pytest.approx(reference.train / speed)
    assert measured.other == pytest.approx(reference.other / speed)
    # the engine runs at a share of the probe's one-thread rate, on each of the job's 2 threads
    engine = job_seconds(24, plan.evaluation_images(), "conv3@rot0", WIDTH, 2 * probe * ENGINE_OVER_PROBE)
    assert measured.ablate == pytest.approx(2 * (engine + JOB_START_SECONDS / speed))
    assert f"(cost model at this machine's speed, {speed:.2f} x the reference;" in measured.line(2)


def test_on_a_gpu_the_ablation_keeps_the_configured_rate_and_the_rest_is_scaled():
    plan = study(lambda c: c["ablation"].update(device="cuda"))
    reference = estimate_run(plan, JOBS)
    measured = estimate_run(plan, JOBS, REFERENCE_PROBE_GFLOPS / 2)
    assert measured.train == pytest.approx(2 * reference.train)
    rate = plan.config["ablation"]["gflops"] * MEAN_OVER_SLOWEST_RATE  # per job, whatever its threads
    engine = job_seconds(24, plan.evaluation_images(), "conv3@rot0", WIDTH, rate)
    assert measured.ablate == pytest.approx(2 * (engine + 2 * JOB_START_SECONDS))


def test_a_faster_device_shortens_only_the_ablation():
    jobs = [
        PlannedJob("train", {"model": TRAINED[0]}),
        PlannedJob("ablate", {"model": TRAINED[0], "layer_spec": "conv5", "chunk": "0-31"}),
    ]
    slow = estimate_run(study(), jobs)
    fast = estimate_run(study(lambda c: c["ablation"].update(gflops=c["ablation"]["gflops"] * 10)), jobs)
    assert fast.train == slow.train
    assert fast.ablate - JOB_START_SECONDS == pytest.approx((slow.ablate - JOB_START_SECONDS) / 10)


def test_pretrained_models_ablate_jobs_are_named_as_left_out():
    plan = study(pretrained)
    estimate = estimate_run(
        plan, [PlannedJob("ablate", {"model": "alexnet", "layer_spec": "conv5", "chunk": "0-127"})]
    )
    assert estimate.unknown == 1 and estimate.ablate == 0
    assert estimate.line(4).endswith("1 ablate job(s) the cost model does not know (pretrained) not included")


def test_a_layer_the_cost_model_does_not_know_is_left_out_not_fatal():
    job = PlannedJob("ablate", {"model": TRAINED[0], "layer_spec": "fc6", "chunk": "0-63"})
    estimate = estimate_run(study(), [job])
    assert estimate.unknown == 1 and estimate.ablate == 0
