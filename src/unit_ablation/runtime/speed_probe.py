"""This machine's speed, for the start-of-run estimate: one thread on the engine's main operation.

`python -m unit_ablation.runtime.speed_probe` prints the GFLOP/s of one thread on a 3x3 fp32
convolution shaped as the ablation engine runs the default model's conv5 for conv3 (channels-last,
96 to 64 channels on an 8 x 8 region): the best of 20 calls of about 10 ms. It takes about 3 s,
most of it importing torch. (`tools.bench.matmul_peak_gflops` measures a square matmul on every
thread instead: the ceiling, not what a 1-thread ablate job runs.) `workflow.run_estimate` scales
the costs it measured on its reference machine by this rate over the reference machine's.

The run starts it in a subprocess (`start`) beside the warm-start server, so that the main
Snakemake process never imports torch, and reads it (`read`) when it logs the estimate.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from unit_ablation.runtime.warm_start import one_thread_environment

BATCH = 256
CHANNELS_IN, CHANNELS_OUT, SIZE = 96, 64, 8  # output 6 x 6
FLOPS_PER_CALL = 2.0 * BATCH * (SIZE - 2) ** 2 * CHANNELS_IN * 9 * CHANNELS_OUT
PROBE_TIMEOUT_S = 60.0


def measure(calls: int = 20) -> float:
    """GFLOP/s of one thread: the best of `calls` timed convolutions, after one untimed."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(BATCH, CHANNELS_IN, SIZE, SIZE, generator=generator)
    images = images.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(CHANNELS_OUT, CHANNELS_IN, 3, 3, generator=generator)
    with torch.no_grad():
        F.conv2d(images, weight)
        best = float("inf")
        for _ in range(max(1, calls)):
            start = time.perf_counter()
            F.conv2d(images, weight)
            best = min(best, time.perf_counter() - start)
    return FLOPS_PER_CALL / best / 1e9


def start(src_dir: str | Path) -> subprocess.Popen:
    """Start the probe in its own one-thread process; `read` gives its result."""
    return subprocess.Popen(
        [sys.executable, "-m", "unit_ablation.runtime.speed_probe"],
        env=one_thread_environment(src_dir),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def read(process: subprocess.Popen, timeout: float = PROBE_TIMEOUT_S) -> float | None:
    """The probe's GFLOP/s, or None when it failed, printed no positive number or took too long."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        return None
    if process.returncode != 0:
        return None
    try:
        gflops = float(output.strip())
    except ValueError:
        return None
    return gflops if gflops > 0 else None


def main() -> None:
    print(f"{measure():.2f}")


if __name__ == "__main__":
    main()
