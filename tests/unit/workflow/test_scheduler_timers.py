"""Snakemake's scheduler keeps one pending wake-up timer (`workflow.scheduler_timers`)."""

from __future__ import annotations

import threading

from unit_ablation.workflow import scheduler_timers
from unit_ablation.workflow.scheduler_timers import limit_reevaluation_timers, schedule_reevaluation


class FakeScheduler:
    """What the patched method touches: the semaphore the scheduler's loop waits on."""

    def __init__(self) -> None:
        self._open_jobs = threading.Semaphore(0)


def timers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if isinstance(t, threading.Timer) and t.is_alive()]


def test_the_installed_snakemake_gets_the_patch():
    from snakemake.scheduling.job_scheduler import JobScheduler

    limit_reevaluation_timers()  # the Snakefile may have applied it already in this process
    assert JobScheduler._schedule_reevalutation is schedule_reevaluation
    assert getattr(JobScheduler._schedule_reevalutation, scheduler_timers.PATCHED)
    assert limit_reevaluation_timers() is False  # once only


def test_passes_asking_for_a_wake_up_share_one_timer_and_a_fired_timer_makes_room():
    scheduler = FakeScheduler()
    before = len(timers())
    for _ in range(50):  # 50 passes of the loop, each asking to be woken in 0.3 s
        schedule_reevaluation(scheduler, 0.3)
    assert len(timers()) == before + 1
    assert all(t.daemon for t in timers())  # a run's exit does not wait for it
    assert scheduler._open_jobs.acquire(timeout=10)  # woken once
    assert not scheduler._open_jobs.acquire(timeout=0.5)  # and only once
    schedule_reevaluation(scheduler, 0.05)  # the woken pass asks again: a new timer
    assert scheduler._open_jobs.acquire(timeout=10)


def test_an_earlier_wake_up_is_not_held_back_by_a_later_one():
    scheduler = FakeScheduler()
    schedule_reevaluation(scheduler, 60.0)  # a queue-input wait, say
    schedule_reevaluation(scheduler, 0.05)  # a rate-limit re-evaluation, due sooner
    assert scheduler._open_jobs.acquire(timeout=10)
    schedule_reevaluation(scheduler, 0.05)  # the 60 s timer is still pending; the earlier one fired
    assert scheduler._open_jobs.acquire(timeout=10)
