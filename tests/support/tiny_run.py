"""The session's tiny run, made once per test session and shared by every pytest-xdist worker.

It starts in a background process as soon as the tests are collected (`start_in_background`), so
that it runs beside the first tests instead of after them; that process holds a file lock until the
run is complete. The `tiny_run` fixture waits for the lock (`wait_or_build`), and builds the run
itself when nothing started it.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import yaml

from support.workflow_runs import MODULE_SNAKEFILE, snakemake, tiny_run_config
from support.write_audit import audit_environment, writes_record

FOLDER, LOCK, STARTED, COMPLETE, FAILED = "tiny", "tiny.lock", "tiny.started", "tiny.complete", "tiny.failed"


def start_in_background(shared: Path) -> None:
    """Start the build in a background process that holds the lock until the run is complete; only
    the first caller of the session starts it."""
    try:
        os.close(os.open(shared / STARTED, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    with open(shared / LOCK, "w") as lock, open(shared / "tiny-build.log", "w") as log:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # the child inherits the locked file: the lock is released when it exits
        subprocess.Popen(
            [sys.executable, "-m", "support.tiny_run", str(shared)],
            cwd=Path(__file__).parents[1],
            pass_fds=(lock.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_or_build(shared: Path) -> Path:
    """The complete tiny run: wait for the background build, or build it here when none started."""
    with open(shared / LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / COMPLETE).exists() and not (shared / FAILED).exists():
            if (shared / FOLDER).exists():
                log = shared / "tiny-build.log"
                _build_ended(shared, f"the background build stopped before the end: {log}")
            else:
                _build_ended(shared, build(shared / FOLDER))
    if (shared / FAILED).exists():
        raise RuntimeError((shared / FAILED).read_text())
    return shared / FOLDER


def build(workdir: Path) -> str | None:
    """Run the tiny study and its report in `workdir`; the error output when either fails."""
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(tiny_run_config()))
    snakefile = workdir / "Snakefile"
    snakefile.write_text(MODULE_SNAKEFILE)
    # every file the run's jobs open for writing, for the atomic-write test
    audit = audit_environment(workdir.parent / f"{workdir.name}-audit", writes_record(workdir))
    result = snakemake(workdir, snakefile=snakefile, env=audit)
    if result.returncode != 0:
        return f"the tiny run failed:\n{result.stderr[-5000:]}"
    report = snakemake(workdir, "--report", "results/report.html", snakefile=snakefile)
    if report.returncode != 0:
        return f"the tiny run's report failed:\n{report.stderr[-3000:]}"
    return None


def _build_ended(shared: Path, error: str | None) -> None:
    if error:
        (shared / FAILED).write_text(error)
    else:
        (shared / COMPLETE).touch()


if __name__ == "__main__":  # the background build: python -m support.tiny_run SHARED_FOLDER (in tests/)
    folder = Path(sys.argv[1])
    try:
        _build_ended(folder, build(folder / FOLDER))
    except BaseException as error:
        _build_ended(folder, f"the tiny run's build raised {error!r}")
        raise
