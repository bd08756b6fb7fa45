"""The start-of-run estimate of a local run's wall time: the jobs Snakemake is about to run, each
costed by the torch-free cost model (`spec.cost`), packed onto the run's cores.

- **train**: `cost.train_flops` at `TRAIN_GFLOPS_PER_THREAD` per thread.
- **ablate**: `cost.job_seconds` plus the start of the job. On the CPU, at `ENGINE_OVER_PROBE`
  times the measured speed (below) per thread. On a GPU, or when the speed was not measured, at
  `ablation.gflops` x `MEAN_OVER_SLOWEST_RATE` per job: `ablation.gflops` is the slowest layer's
  rate, so that chunks sized by it stay within their target, and over a study's jobs the engine
  runs faster.
- **every other job** (prepare, extract, attributes, gather, correlate, plots, report, ...):
  `OTHER_JOB_SECONDS` per thread, the mean over the default study's other jobs.

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

if TYPE_CHECKING:
    from unit_ablation.workflow.study import Study

# Measured on the reference machine, a 2-core AMD EPYC (Zen 4) VM, warm started: the default
# study's `make run` and one network of configs/full.yaml (docs/running.md, Run estimate).
REFERENCE_PROBE_GFLOPS = 100.0  # runtime.speed_probe there (98-102)
TRAIN_GFLOPS_PER_THREAD = 100.0  # 1-thread jobs two at a time, bf16 autocast (default)
JOB_START_SECONDS = 0.25  # from Snakemake's start of a job to its stage and back
# The engine's mean rate over a study's CPU ablate jobs as a share of the probe's rate: the
# cost-model FLOPs of configs/full.yaml's 24 ablate jobs of one network over their seconds in the
# stage, two 1-thread jobs at a time (83 GFLOP/s at a probe of 108; conv3's jobs, whose tail runs
# Winograd, 101 GFLOP/s of direct-convolution FLOPs, conv4's and conv5's 47-54).
ENGINE_OVER_PROBE = 0.77
# Without a measured speed, or on a GPU: the engine's mean rate relative to `ablation.gflops`
# (the slowest layer's rate, for chunk sizing), as measured on a 2-core Xeon (Sapphire Rapids).
MEAN_OVER_SLOWEST_RATE = 1.6
OTHER_JOB_SECONDS = 2.0  # mean seconds in the stage of the jobs other than train and ablate
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


def estimate_run(study: Study, jobs: Iterable[PlannedJob], probe_gflops: float | None = None) -> RunEstimate:
    """Core-seconds of `jobs` for the study (the target rule `all` does no work), on a machine whose
    `runtime.speed_probe` measured `probe_gflops` (None: the reference machine's speed)."""
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
            estimate.ablate += (seconds + JOB_START_SECONDS * slowdown) * threads
            estimate.jobs["ablate"] += 1
        else:
            estimate.other += (OTHER_JOB_SECONDS + JOB_START_SECONDS) * slowdown * threads
            estimate.jobs["other"] += 1
    return estimate
