"""The start-of-run estimate of a local run's wall time: the jobs Snakemake is about to run, each
costed by the torch-free cost model (`spec.cost`), packed onto the run's cores.

- **train**: `cost.train_flops` at `TRAIN_GFLOPS_PER_THREAD` per thread.
- **ablate**: `cost.job_seconds` at `ablation.gflops` x `MEAN_OVER_SLOWEST_RATE` (the job's own
  threads), plus the start of the job. `ablation.gflops` is the slowest layer's rate, so that
  chunks sized by it stay within their target; over a study's jobs the engine runs faster.
- **every other job** (prepare, extract, attributes, gather, correlate, plots, report, ...):
  `OTHER_JOB_SECONDS` per thread, the mean over the default study's other jobs.

The constants were measured on a 2-core Xeon with AMX (bf16 training), the default study, warm
started; docs/running.md has the measurements. The wall time is the sum of the jobs' core-seconds
over the cores: it assumes the cores stay busy, which holds for studies of many jobs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from unit_ablation.spec.cost import job_seconds, train_flops

if TYPE_CHECKING:
    from unit_ablation.workflow.study import Study

TRAIN_GFLOPS_PER_THREAD = 90.0  # 1-thread jobs, bf16 autocast (default); 2-thread jobs: about 65 each
JOB_START_SECONDS = 0.3  # a warm-started job, from Snakemake's start to the stage and back
# The engine's mean rate over the ablate jobs of a study, relative to `ablation.gflops` (the slowest
# layer's rate, for chunk sizing): configs/full.yaml's 40 jobs of one network (conv3 to conv5, four
# bases, zero and mean) took 1,182 s of job time for 47,700 GFLOP of cost-model FLOPs, two 1-thread
# jobs at a time: 40 GFLOP/s, 1.6 x the default 25.
MEAN_OVER_SLOWEST_RATE = 1.6
OTHER_JOB_SECONDS = 2.5  # mean in-job seconds of the default study's jobs other than train and ablate
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

    def wall_seconds(self, cores: int) -> float:
        return (self.train + self.ablate + self.other) / max(1, cores)

    def line(self, cores: int) -> str:
        """The log line: each kind's share and the wall time on `cores` cores."""
        minutes = self.wall_seconds(cores) / 60

        def part(kind: str, seconds: float) -> str:
            return f"{kind} {seconds / 60 / max(1, cores):.1f} min ({self.jobs[kind]} jobs)"

        text = (
            f"run estimate: about {minutes:.0f} min on {cores} core(s): "
            f"{part('train', self.train)}, {part('ablate', self.ablate)}, "
            f"{part('other', self.other)} (cost model; docs/running.md, Run estimate)"
        )
        if self.unknown:
            text += f"; {self.unknown} ablate job(s) the cost model does not know (pretrained) not included"
        return text


def train_images(data: dict) -> int:
    """Images a training job trains on: data.train_size, else Fashion-MNIST's less the held-out set."""
    return int(data.get("train_size") or FASHION_MNIST_TRAIN - int(data["heldout_size"]))


def estimate_run(study: Study, jobs: Iterable[PlannedJob]) -> RunEstimate:
    """Core-seconds of `jobs` for the study (the target rule `all` does no work)."""
    config = study.config
    width = float(config["model"]["width"])
    gflops = float(config["ablation"]["gflops"]) * MEAN_OVER_SLOWEST_RATE
    images = study.evaluation_images()
    estimate = RunEstimate()
    for job in jobs:
        threads = max(1, int(job.threads))
        if job.rule == "all":
            continue
        if job.rule == "train":
            params = study.train_params(job.wildcards["model"])
            flops = train_flops(train_images(config["data"]), params["epochs"], width)
            estimate.train += flops / (TRAIN_GFLOPS_PER_THREAD * 1e9)
            estimate.jobs["train"] += 1
        elif job.rule == "ablate":
            if job.wildcards["model"] not in study.trained:
                estimate.unknown += 1
                continue
            first, last = (int(n) for n in job.wildcards["chunk"].split("-"))
            units = last - first + 1
            spec, plan = job.wildcards["layer_spec"], config["ablation"]["plan"]
            try:
                seconds = job_seconds(units, images, spec, width, gflops, plan)
            except ValueError:  # a layer or plan the cost model does not know: named as left out
                estimate.unknown += 1
                continue
            estimate.ablate += (seconds + JOB_START_SECONDS) * threads
            estimate.jobs["ablate"] += 1
        else:
            estimate.other += (OTHER_JOB_SECONDS + JOB_START_SECONDS) * threads
            estimate.jobs["other"] += 1
    return estimate
