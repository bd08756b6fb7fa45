"""Run a stage function for a Snakemake job: per-job log file, thread count, logged failures."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from unit_ablation.runtime import termination
from unit_ablation.runtime.allocator import keep_freed_memory
from unit_ablation.runtime.progress import log_to_file
from unit_ablation.runtime.warm_start import is_warm_child

log = logging.getLogger("unit_ablation")


def run_stage(job: Any, function: Callable[..., Any], **kwargs: Any) -> Any:
    """Call `function(**kwargs)` with logging to the job's log file; failures are logged, then raised.

    SIGTERM stops the stage (`runtime.termination`): the job exits with status 143 after its
    resumable loops saved their progress, and leaves no partial output.
    """
    log_to_file(job.log[0] if len(job.log) else None)
    termination.install()
    torch = sys.modules.get("torch")  # imported by the stage's module when it computes with torch
    if torch is not None:
        # the rule's thread count, not one per core: jobs side by side would oversubscribe the
        # cores, and torch's waiting threads spin
        torch.set_num_threads(max(1, int(job.threads)))
        keep_freed_memory()
    log.info("rule %s: %s", job.rule, ", ".join(f"{key}={value!r}" for key, value in job.wildcards.items()))
    # CPU this process spent before the stage: Python, the imports (a warm child's count from its fork)
    log.info(
        "%s start: %.2f CPU-s before the stage",
        "warm" if is_warm_child() else "cold",
        time.process_time(),
    )
    start = time.perf_counter()
    try:
        result = function(**kwargs)
    except termination.Terminated as stop:
        log.error("rule %s %s (after %.1f s)", job.rule, stop, time.perf_counter() - start)
        raise SystemExit(termination.EXIT_CODE) from None
    except Exception:
        log.exception("rule %s failed", job.rule)
        raise
    log.info("rule %s done: %.2f s in the stage", job.rule, time.perf_counter() - start)
    return result
