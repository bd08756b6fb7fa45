"""The machine-speed probe of the run estimate (`runtime.speed_probe`): its own process, its
result, and None for every way it can fail."""

from __future__ import annotations

import subprocess
import sys

import pytest

from unit_ablation.runtime import speed_probe

from support.paths import PROJECT_ROOT


def test_measure_gives_a_positive_rate():
    assert speed_probe.measure(calls=2) > 0


def test_the_probe_runs_in_its_own_one_thread_process_and_reads_back():
    process = speed_probe.start(PROJECT_ROOT / "src")
    assert process.args[1:] == ["-m", "unit_ablation.runtime.speed_probe"]
    gflops = speed_probe.read(process)
    assert gflops is not None and gflops > 0
    assert process.returncode == 0


def _python(code: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )


@pytest.mark.parametrize(
    "code",
    [
        "import sys; print(80.0); sys.exit(3)",  # failed
        "print('fast')",  # not a number
        "print(0)",  # not a rate
        "print(-5.5)",
        "",  # printed nothing
    ],
)
def test_a_failed_or_meaningless_probe_reads_as_none(code):
    assert speed_probe.read(_python(code)) is None


def test_a_probe_that_takes_too_long_is_stopped_and_reads_as_none():
    process = _python("import time; time.sleep(30); print(80.0)")
    assert speed_probe.read(process, timeout=0.5) is None
    assert process.returncode is not None  # killed, not left running


def test_a_probe_that_prints_a_rate_reads_as_that_rate():
    assert speed_probe.read(_python("print(' 81.25 ')")) == 81.25
