"""At most one pending re-evaluation timer in Snakemake's job scheduler.

Snakemake 9's scheduler ends every pass of its loop by starting a timer that wakes the loop again
after `--max-jobs-per-timespan`'s timespan (1 s by default), so that a rate-limited run submits
more jobs later. Each wake-up is another pass, which starts another timer, and every finished job
adds a pass of its own: the timers multiply, one chain per finished job, each waking the loop
once a second. Every pass checks the size of each ready job's inputs. On the 2-core machine a
456-job run (`configs/full.yaml`'s shape on tiny data) had 259 threads in the Snakemake process,
which used a third of a core, and its jobs 13% longer (snakemake/snakemake#3744 reports the extra
passes).

`limit_reevaluation_timers` keeps one pending timer, the earliest wanted: a wake-up is still due
within the timespan of any pass that asked for one, so rate limits and queue-input waits behave as
before; the timer is a daemon thread, so the run does not wait for it to exit. The Snakefile
applies it at parse time; without the private method it patches (another Snakemake), it does
nothing.
"""

from __future__ import annotations

import threading
import time
from typing import Any

PATCHED = "_unit_ablation_single_timer"


def limit_reevaluation_timers() -> bool:
    """Patch Snakemake's `JobScheduler._schedule_reevalutation`; True if it was patched now."""
    try:
        from snakemake.scheduling.job_scheduler import JobScheduler
    except ImportError:
        return False
    original = getattr(JobScheduler, "_schedule_reevalutation", None)
    if original is None or getattr(original, PATCHED, False):
        return False
    setattr(schedule_reevaluation, PATCHED, True)
    JobScheduler._schedule_reevalutation = schedule_reevaluation
    return True


_LOCK = threading.Lock()


def schedule_reevaluation(scheduler: Any, delay: float) -> None:
    """Release the scheduler's `_open_jobs` after `delay` seconds, unless a pending timer of this
    scheduler fires no later than that."""
    due = time.monotonic() + delay
    with _LOCK:
        pending = scheduler.__dict__.get("_pending_reevaluation")
        if pending is not None and pending <= due:
            return
        scheduler._pending_reevaluation = due

    def fire() -> None:
        with _LOCK:
            if scheduler.__dict__.get("_pending_reevaluation") == due:
                scheduler._pending_reevaluation = None  # before the release: the pass may ask again
        scheduler._open_jobs.release()

    timer = threading.Timer(delay, fire)
    timer.daemon = True
    timer.start()
