"""SIGTERM in a workflow job: stop at once, or save progress first where a loop can resume.

SLURM preempts a job with SIGTERM and kills it (SIGKILL) after the partition's grace time;
`scancel` and Snakemake's own cancelling send SIGTERM too. `install()` (called for every job by
`workflow.glue.run_stage`) makes SIGTERM raise `Terminated` in the job's main thread, so a stage
stops at once and its `atomic_path` blocks remove their temporaries: nothing partial is left.

A loop that keeps resumable progress (the ablation engine, cumulative ablation) runs inside
`deferred()`: there SIGTERM only sets a flag, the loop finishes its batch, saves its progress and
raises `Terminated` itself (`stop_if_requested`). A rerun of the job resumes from the saved progress.

Outside a job (a notebook, a test), nothing is installed and `requested()` is always False.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

EXIT_CODE = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM

_state = {"deferring": 0, "requested": False}


class Terminated(Exception):  # noqa: N818 - named for what happened, as KeyboardInterrupt is
    """The job received SIGTERM (preemption, scancel, a cancelled run) and stopped."""


def install() -> None:
    """Make SIGTERM stop this process's stage (main thread only; a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, _on_sigterm)
    _state["requested"] = False


def requested() -> bool:
    """True once SIGTERM arrived while a `deferred()` block ran."""
    return bool(_state["requested"])


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within the block SIGTERM only sets `requested()`; the caller saves and stops (nestable)."""
    _state["deferring"] += 1
    try:
        yield
    finally:
        _state["deferring"] -= 1


def stop_if_requested(where: str) -> None:
    """Raise Terminated when SIGTERM has arrived; `where` says what was saved, for the log."""
    if requested():
        raise Terminated(f"stopped by SIGTERM after {where}; a rerun of the job resumes there")


def _on_sigterm(signum: int, _frame: object) -> None:
    _state["requested"] = True
    if not _state["deferring"]:
        raise Terminated("stopped by SIGTERM; nothing was written, a rerun starts the job again")
