# The study the config describes (unit_ablation.workflow.study): models, layer specs, chunks,
# targets and each rule's config slice. The Snakefile has checked the config already.
# Runs at parse time on the submit host and in every cluster job: keep it cheap (no torch).
from snakemake.logging import logger

from unit_ablation.spec.layer_spec import (
    LAYER_PATTERN,
    LAYER_SPEC_PATTERN,
    parse_layer_spec,
)
from unit_ablation.runtime import shared_folder, speed_probe, warm_start
from unit_ablation.workflow.run_estimate import PlannedJob, estimate_run
from unit_ablation.workflow.scheduler_timers import limit_reevaluation_timers
from unit_ablation.workflow.study import (
    Study,
    attributes_of,
    auto_or_number,
    chunk_units,
    name_pattern,
    optional_int,
    sorted_keys,
)

STUDY = Study(config, CHECKOUT)

# Snakemake's scheduler multiplies its wake-up timers, and each wake-up costs CPU beside the jobs
limit_reevaluation_timers()


# {layer_spec}: a layer spec (conv5, conv5@rot0, conv5+mean); {layer}: a layer (cumulative ablation)
wildcard_constraints:
    model=r"[A-Za-z0-9-]+",
    layer_spec=LAYER_SPEC_PATTERN,
    layer=LAYER_PATTERN,
    chunk=r"[0-9]+-[0-9]+",


# fewer jobs than this run in their own processes: the server's imports would cost more than they save
WARM_START_MIN_JOBS = 4


def start_warm_server():
    """Local runs: jobs fork from one process that has imported torch and the other libraries
    (unit_ablation.runtime.warm_start; UNIT_ABLATION_WARM_START=0 turns it off). The Snakefile's
    onstart calls it; a project that uses this workflow as a module may call it in its own.
    Returns whether the server started (the run estimate costs shared trunks then).
    """
    jobs = len(list(workflow.dag.needrun_jobs()))
    if workflow.non_local_exec or jobs < WARM_START_MIN_JOBS:
        return False
    uses_torchvision = bool(STUDY.pretrained) or STUDY.source != "fashion-mnist"
    torchvision = ("torchvision",) if uses_torchvision else ()
    return warm_start.start_server(
        CHECKOUT / "src", warm_start.DEFAULT_PRELOAD + torchvision
    )


def stop_warm_server():
    """Stop the server start_warm_server started (onsuccess and onerror)."""
    warm_start.stop_server()


def start_speed_probe():
    """A local run that trains or ablates measures this machine's speed for its run estimate
    (unit_ablation.runtime.speed_probe) in a subprocess, beside the warm-start server's imports.
    Returns the process, or None where there is nothing to measure.
    """
    if workflow.non_local_exec or not workflow.resource_settings.cores:
        return None
    rules = {job.rule.name for job in workflow.dag.needrun_jobs()}
    return speed_probe.start(CHECKOUT / "src") if rules & {"train", "ablate"} else None


def log_ablation_estimates(probe=None, warm_started=False):
    """At the start of a run: the cost model's estimate of every layer's ablate jobs, and a warning
    when cluster jobs would be shorter than 10 minutes (schedulers handle many tiny jobs badly).
    A local run also gets the estimate of its wall time: training, ablation and the other jobs
    it is about to run (unit_ablation.workflow.run_estimate), at the speed `probe` measured
    (start_speed_probe); `warm_started` (start_warm_server's answer): the jobs share trunks.
    """
    lines, short_jobs = STUDY.ablation_estimates()
    for line in lines:
        logger.info(line)
    if workflow.non_local_exec and short_jobs is not None:
        logger.warning(short_jobs)
    cores = workflow.resource_settings.cores
    if not workflow.non_local_exec and cores:
        jobs = [
            PlannedJob(job.rule.name, dict(job.wildcards_dict), job.threads)
            for job in workflow.dag.needrun_jobs()
        ]
        gflops = None if probe is None else speed_probe.read(probe)
        estimate = estimate_run(STUDY, jobs, gflops, warm_started and trunk_folder_on())
        logger.info(estimate.line(cores))


def trunk_folder_on():
    """Whether a warm-started run's jobs share trunks (UNIT_ABLATION_TRUNK_CACHE_GB is not 0)."""
    try:
        return shared_folder.budget_gb() > 0
    except ValueError:
        return False
