"""The start-of-run estimate of a local run (`workflow.run_estimate`) on the tiny config's Study:
each kind of job costed by the cost model, packed onto the cores."""

from __future__ import annotations

import re

import pytest

from unit_ablation.spec.cost import job_seconds, train_flops
from unit_ablation.workflow.run_estimate import (
    ENGINE_OVER_PROBE,
    EXTRACT_SHARED_SECONDS,
    JOB_START_SECONDS,
    MEAN_OVER_SLOWEST_RATE,
    OTHER_JOB_SECONDS,
    OTHER_RULE_SECONDS,
    REFERENCE_PROBE_GFLOPS,
    TRAIN_GFLOPS_PER_THREAD,
    PlannedJob,
    estimate_run,
    train_images,
)

from support.studies import pretrained, study
from support.workflow_runs import PROJECT_ROOT

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
    other = OTHER_RULE_SECONDS["extract"] + 2 * OTHER_RULE_SECONDS["plot_layer"] + 3 * JOB_START_SECONDS
    assert estimate.other == pytest.approx(other)  # each rule's mean, per thread (1 + 2 threads)
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


def test_the_measured_means_name_rules_of_the_workflow():
    rules = {
        match.group(1)
        for path in (PROJECT_ROOT / "rules").glob("*.smk")
        for match in re.finditer(r"^\s*rule (\w+):", path.read_text(), re.MULTILINE)
    }
    assert {"train", "ablate", "plot_layer", "concept_iou"} <= rules
    assert set(OTHER_RULE_SECONDS) <= rules - {"train", "ablate"}


def test_a_rule_without_a_measured_mean_takes_the_default():
    estimate = estimate_run(study(), [PlannedJob("concept_iou"), PlannedJob("gather", {"model": TRAINED[0]})])
    assert "concept_iou" not in OTHER_RULE_SECONDS
    assert OTHER_RULE_SECONDS["gather"] < OTHER_JOB_SECONDS
    assert estimate.other == pytest.approx(
        OTHER_JOB_SECONDS + OTHER_RULE_SECONDS["gather"] + 2 * JOB_START_SECONDS
    )


def test_where_trunks_are_shared_a_models_layer_pays_for_its_trunk_once():
    plan = study(lambda c: c["ablation"].update(device="cpu"))
    images = plan.evaluation_images()

    def ablate(model: str, spec: str) -> PlannedJob:
        return PlannedJob("ablate", {"model": model, "layer_spec": spec, "chunk": "0-23"})

    def seconds(jobs: list[PlannedJob], probe: float | None, shared: bool = True) -> float:
        return estimate_run(plan, jobs, probe, shared_outputs=shared).ablate

    probe = REFERENCE_PROBE_GFLOPS
    rate = probe * ENGINE_OVER_PROBE
    one = seconds([ablate(TRAINED[0], "conv4")], probe)
    trunk = job_seconds(0, images, "conv4", WIDTH, rate)
    assert trunk > 0
    # the layer's other bases and values load the trunk the first job stored
    same = [ablate(TRAINED[0], spec) for spec in ("conv4", "conv4@rot0", "conv4+mean")]
    assert seconds(same, probe) == pytest.approx(3 * one - 2 * trunk)
    # another layer or another model runs its own
    other = [ablate(TRAINED[0], "conv4"), ablate(TRAINED[0], "conv5"), ablate(TRAINED[1], "conv4")]
    assert seconds(other, probe) == pytest.approx(sum(seconds([job], probe) for job in other))
    # a cold-started run, or one with the trunk folder off, shares nothing
    assert seconds(same, probe, shared=False) == pytest.approx(3 * one)
    # on a GPU every job runs its trunk
    plan = study(lambda c: c["ablation"].update(device="cuda"))
    assert seconds(same, probe) == pytest.approx(3 * seconds(same[:1], probe))


def test_where_trunks_are_shared_a_layers_first_extract_job_computes_and_its_other_bases_load():
    plan = study(lambda c: c["ablation"].update(device="cpu"))
    model, other = TRAINED
    specs = [(model, "conv4"), (model, "conv4@rot0"), (model, "conv5"), (other, "conv4@rot0")]
    jobs = [PlannedJob("extract", {"model": m, "layer_spec": spec}) for m, spec in specs]
    computed, loaded = OTHER_RULE_SECONDS["extract"], EXTRACT_SHARED_SECONDS
    assert loaded < computed
    estimate = estimate_run(plan, jobs, shared_outputs=True)
    assert estimate.other == pytest.approx(3 * computed + loaded + 4 * JOB_START_SECONDS)
    every_job = 4 * (computed + JOB_START_SECONDS)
    assert estimate_run(plan, jobs).other == pytest.approx(every_job)  # nothing shared
    on_gpu = estimate_run(study(lambda c: c["ablation"].update(device="cuda")), jobs, shared_outputs=True)
    assert on_gpu.other == pytest.approx(every_job)
