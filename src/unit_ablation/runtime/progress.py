"""Progress lines and per-job log files for long steps."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_to_file(path: str | Path | None, level: int = logging.INFO) -> None:
    """Send this process's log records (and warnings) to the job's log file, or to stderr without one.

    Snakemake shows the log of a failed job (`show-failed-logs` in the profile), so the console
    stays readable while every job keeps its full progress log.
    """
    handlers: list[logging.Handler]
    if path is None:
        handlers = [logging.StreamHandler(sys.stderr)]
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers = [logging.FileHandler(path, mode="w")]
    logging.basicConfig(level=level, format=LOG_FORMAT, handlers=handlers, force=True)
    logging.captureWarnings(True)


class Progress:
    """Logs 'label: done/total (rate, eta)' at most every `interval` seconds, and at the end."""

    def __init__(self, logger: logging.Logger, label: str, total: int, unit: str, interval: float = 5.0):
        self.logger, self.label, self.total, self.unit, self.interval = logger, label, total, unit, interval
        self.done = 0
        self.start = self.last = time.monotonic()

    def update(self, count: int = 1, note: str = "") -> None:
        self.done += count
        now = time.monotonic()
        if now - self.last >= self.interval or self.done >= self.total:
            self.last = now
            elapsed = now - self.start
            rate = self.done / elapsed if elapsed > 0 else float("inf")
            eta = (self.total - self.done) / rate if rate > 0 else float("inf")
            suffix = f" {note}" if note else ""
            self.logger.info(
                "%s: %d/%d %s (%.1f %s/s, %.0fs elapsed, eta %.0fs)%s",
                self.label,
                self.done,
                self.total,
                self.unit,
                rate,
                self.unit,
                elapsed,
                eta,
                suffix,
            )
