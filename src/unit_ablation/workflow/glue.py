"""Run a stage function for a Snakemake job: per-job log file, thread count, logged failures."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from unit_ablation.runtime.progress import log_to_file

log = logging.getLogger("unit_ablation")


def run_stage(job: Any, function: Callable[..., Any], **kwargs: Any) -> Any:
    """Call `function(**kwargs)` with logging to the job's log file; failures are logged, then raised."""
    log_to_file(job.log[0] if len(job.log) else None)
    torch = sys.modules.get("torch")  # imported by the stage's module when it computes with torch
    if torch is not None:
        # the rule's thread count, not one per core: jobs side by side would oversubscribe the
        # cores, and torch's waiting threads spin
        torch.set_num_threads(max(1, int(job.threads)))
    log.info("rule %s: %s", job.rule, ", ".join(f"{key}={value!r}" for key, value in job.wildcards.items()))
    try:
        return function(**kwargs)
    except Exception:
        log.exception("rule %s failed", job.rule)
        raise
