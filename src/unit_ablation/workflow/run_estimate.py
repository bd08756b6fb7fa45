"""The start-of-run estimate of a local run's wall time: the jobs Snakemake is about to run, each
costed by the torch-free cost model (`spec.cost`), packed onto the run's cores.

- **train**: `cost.train_flops` at `TRAIN_GFLOPS_PER_THREAD` per thread.
- **ablate**: `cost.job_seconds` plus the start of the job. On the CPU, at `ENGINE_OVER_PROBE`
  times the measured speed (below) per thread. On a GPU, or when the speed was not measured, at
  `ablation.gflops` x `MEAN_OVER_SLOWEST_RATE` per job: `ablation.gflops` is the slowest layer's
  rate, so that chunks sized by it stay within their target, and over a study's jobs the engine
  runs faster.
- **shared outputs**: in a warm-started run with the trunk folder on (`shared_outputs`), CPU jobs
  of one (model, layer) share the trunk's outputs and the extracted activations
  (`engine.trunk_cache`), so only the first ablate job pays for the trunk, and only the first
  extract job for the forward pass.
- **every other job** (prepare, extract, attributes, gather, correlate, plots, report, ...): its
  rule's mean in `OTHER_RULE_SECONDS` per thread, or `OTHER_JOB_SECONDS` for a rule not listed.

The constants were measured on the reference machine (docs/running.md has the measurements), warm
started. On another machine the run measures its speed first (`runtime.speed_probe`: one thread
on the engine's main convolution) and every time above is scaled by the reference machine's rate
over this one's. The wall time is the sum of the jobs' core-seconds over the cores: it assumes
the cores stay busy, which holds for studies of many jobs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from unit_ablation.spec.cost import job_seconds, train_flops
from unit_ablation.spec.layer_spec import parse_layer_spec

if TYPE_CHECKING:
    from unit_ablation.workflow.study import Study

# Measured on the reference machine, a 2-core AMD EPYC (Zen 4) VM, warm started: configs/full.yaml
# end to end at 6488027 (docs/running.md, Run estimate), with Snakemake's wake-up timers limited
# (`workflow.scheduler_timers`: before that, Snakemake's own CPU slowed every job by about a fifth).
REFERENCE_PROBE_GFLOPS = 100.0  # runtime.speed_probe there (98-109)
TRAIN_GFLOPS_PER_THREAD = 119.0  # 1-thread jobs two at a time, bf16 autocast (default): 69 s a network
JOB_START_SECONDS = 0.2  # from Snakemake's start of a job to its stage and back (median 0.19 s)
# The engine's mean rate over a study's CPU ablate jobs as a share of the probe's rate: the
# cost-model FLOPs of configs/full.yaml's 360 ablate jobs, a trunk per (model, layer), over their
# 5,913 s in the stage, two 1-thread jobs at a time, at a probe of 109.
ENGINE_OVER_PROBE = 0.95
# Without a measured speed, or on a GPU: the engine's mean rate relative to `ablation.gflops`
# (the slowest layer's rate, for chunk sizing), as measured on a 2-core Xeon (Sapphire Rapids).
MEAN_OVER_SLOWEST_RATE = 1.6
# Mean seconds in the stage per job of the other rules, in configs/full.yaml's run at 6488027
# (docs/running.md); a rule not listed takes OTHER_JOB_SECONDS. `extract`: the job that computes a
# layer's activations and logits; the layer's other bases load them (EXTRACT_SHARED_SECONDS).
OTHER_RULE_SECONDS = {
    "plot_layer": 2.31,
    "extract": 2.0,
    "cumulative": 4.67,
    "plot_sorted_units": 3.21,
    "plot_cumulative": 13.4,
    "plot_comparison": 8.92,
    "plot_overview": 4.13,
    "summarize": 3.09,
    "plot_agreement": 2.61,
    "plot_network_effects": 1.13,
    "prepare_data": 0.58,
    "network_statistics": 0.35,
    "correlate": 0.33,
    "attributes": 0.06,
    "combine_correlations": 0.05,
    "gather": 0.03,
    "model_metadata": 0.02,
    "record_config": 0.01,
}
EXTRACT_SHARED_SECONDS = 0.27
OTHER_JOB_SECONDS = 2.0  # a rule without a measured mean (concepts, pretrained models' rules)
FASHION_MNIST_TRAIN = 60_000  # training images of Fashion-MNIST, the held-out set included


@dataclass(frozen=True)
class PlannedJob:
    """A job Snakemake is about to run: its rule, wildcards and threads."""

    rule: str
    wildcards: dict[str, str] = field(default_factory=dict)
    threads: int = 1


@dataclass
class RunEstimate:
    """Core-seconds per kind of job, and the jobs the cost model cannot cost."""

    train: float = 0.0
    ablate: float = 0.0
    other: float = 0.0
    jobs: dict[str, int] = field(default_factory=lambda: {"train": 0, "ablate": 0, "other": 0})
    unknown: int = 0  # ablate jobs the cost model does not know (pretrained models, unknown plans)
    probe_gflops: float | None = None  # this machine's measured speed (None: not measured)

    def wall_seconds(self, cores: int) -> float:
        return (self.train + self.ablate + self.other) / max(1, cores)

    def line(self, cores: int) -> str:
        """The log line: each kind's share and the wall time on `cores` cores."""
        minutes = self.wall_seconds(cores) / 60

        def part(kind: str, seconds: float) -> str:
            return f"{kind} {seconds / 60 / max(1, cores):.1f} min ({self.jobs[kind]} jobs)"

        if self.probe_gflops is None:
            speed = "at the reference machine's speed, this one's not measured"
        else:
            speed = (
                f"at this machine's speed, {self.probe_gflops / REFERENCE_PROBE_GFLOPS:.2f} x the reference"
            )
        text = (
            f"run estimate: about {minutes:.0f} min on {cores} core(s): "
            f"{part('train', self.train)}, {part('ablate', self.ablate)}, "
            f"{part('other', self.other)} (cost model {speed}; docs/running.md, Run estimate)"
        )
        if self.unknown:
            text += f"; {self.unknown} ablate job(s) the cost model does not know (pretrained) not included"
        return text


def train_images(data: dict) -> int:
    """Images a training job trains on: data.train_size, else Fashion-MNIST's less the held-out set."""
    return int(data.get("train_size") or FASHION_MNIST_TRAIN - int(data["heldout_size"]))


def estimate_run(
    study: Study,
    jobs: Iterable[PlannedJob],
    probe_gflops: float | None = None,
    shared_outputs: bool = False,
) -> RunEstimate:
    """Core-seconds of `jobs` for the study (the target rule `all` does no work), on a machine whose
    `runtime.speed_probe` measured `probe_gflops` (None: the reference machine's speed).
    `shared_outputs`: the run's CPU jobs share a layer's trunk and activations (a warm-started run
    with the trunk folder on)."""
    config = study.config
    width = float(config["model"]["width"])
    slowdown = 1.0 if probe_gflops is None else REFERENCE_PROBE_GFLOPS / probe_gflops
    on_cpu = probe_gflops is not None and not study.ablation_gpus()
    if on_cpu:  # per thread
        gflops = probe_gflops * ENGINE_OVER_PROBE
    else:  # the job's rate, whatever its threads
        gflops = float(config["ablation"]["gflops"]) * MEAN_OVER_SLOWEST_RATE
    images = study.evaluation_images()
    estimate = RunEstimate(probe_gflops=probe_gflops)
    shared = shared_outputs and not study.ablation_gpus()
    computed: set[tuple[str, str, str]] = set()  # (rule, model, layer) a job has computed

    def loads(job: PlannedJob) -> bool:
        """Whether the job loads what an earlier job of its (model, layer) computed and stored."""
        key = (job.rule, job.wildcards["model"], parse_layer_spec(job.wildcards["layer_spec"]).layer)
        found = key in computed
        computed.add(key)
        return shared and found

    for job in jobs:
        threads = max(1, int(job.threads))
        if job.rule == "all":
            continue
        if job.rule == "train":
            params = study.train_params(job.wildcards["model"])
            flops = train_flops(train_images(config["data"]), params["epochs"], width)
            estimate.train += flops / (TRAIN_GFLOPS_PER_THREAD * 1e9) * slowdown
            estimate.jobs["train"] += 1
        elif job.rule == "ablate":
            if job.wildcards["model"] not in study.trained:
                estimate.unknown += 1
                continue
            first, last = (int(n) for n in job.wildcards["chunk"].split("-"))
            units = last - first + 1
            spec, plan = job.wildcards["layer_spec"], config["ablation"]["plan"]
            try:
                rate = gflops * threads if on_cpu else gflops
                seconds = job_seconds(units, images, spec, width, rate, plan)
            except ValueError:  # a layer or plan the cost model does not know: named as left out
                estimate.unknown += 1
                continue
            if loads(job):  # the trunk, from the run's folder
                seconds -= job_seconds(0, images, spec, width, rate, plan)
            estimate.ablate += (seconds + JOB_START_SECONDS * slowdown) * threads
            estimate.jobs["ablate"] += 1
        else:
            mean = OTHER_RULE_SECONDS.get(job.rule, OTHER_JOB_SECONDS)
            if job.rule == "extract" and "layer_spec" in job.wildcards and loads(job):
                mean = EXTRACT_SHARED_SECONDS
            estimate.other += (mean + JOB_START_SECONDS) * slowdown * threads
            estimate.jobs["other"] += 1
    return estimate
