"""SIGTERM (preemption, scancel) to a running job: save and stop, or stop at once, never half-written.

Each job runs in its own Python process through `workflow.glue.run_stage`, as a Snakemake job does,
and is slowed down after every batch it reports so that the signal lands mid-loop. A marker file
says the loop has started; then the test sends a real SIGTERM.

- `ablate` and `cumulative` finish the batch, save their progress atomically, exit with 143; the
  rerun logs where it resumes and ends equal to an uninterrupted job.
- `train` and `extract` exit with 143 at once, leaving no output and no temporary file; the rerun
  starts from scratch.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from unit_ablation.engine.counts import HALF_ARRAYS
from unit_ablation.engine.options import AblationOptions
from unit_ablation.engine.resume import progress_path
from unit_ablation.runtime.termination import EXIT_CODE
from unit_ablation.stages.ablate import ablate_chunk_to_file
from unit_ablation.stages.cumulative import cumulative_to_file
from unit_ablation.stages.extract import extract_to_file
from unit_ablation.stages.train import train_to_checkpoint

from support.paths import PROJECT_ROOT

ARRAYS = ("units", "broken", "fixed", "n", "correct", *HALF_ARRAYS)
UNITS = list(range(8))
ABLATE = dict(layer_spec="conv5", units=UNITS, options=AblationOptions(batch_size=10, units_per_pass=4))
CUMULATIVE = dict(
    model_name="m", layer="conv5", classes=2, max_units=4, random_draws=2, batch_size=10, device="cpu"
)
TRAIN = dict(
    model_name="m", variant="baseline", train=dict(epochs=1, batch_size=20, lr=0.002, width=0.25, seed=0)
)

# The job's process: every progress report touches the marker, then waits, so SIGTERM lands mid-loop.
JOB = """
import pathlib, sys, time, types
sys.path.insert(0, {src!r})
from unit_ablation.runtime import progress
marker, report = pathlib.Path({marker!r}), progress.Progress.update
def slow_update(self, *args, **kwargs):
    report(self, *args, **kwargs)
    marker.touch()
    time.sleep(0.2)
progress.Progress.update = slow_update
from unit_ablation.engine.options import AblationOptions
from unit_ablation.workflow.glue import run_stage
from unit_ablation.stages.{module} import {function} as stage
job = types.SimpleNamespace(log=[{log!r}], threads=1, rule={rule!r}, wildcards={{}})
run_stage(job, stage, **{kwargs})
"""


def run_until_terminated(tmp_path: Path, rule: str, module: str, function: str, kwargs: str) -> str:
    """Run the stage in its own process, SIGTERM it once its loop has started; returns its log."""
    marker, log = tmp_path / "started", tmp_path / f"{rule}.log"
    script = JOB.format(
        src=str(PROJECT_ROOT / "src"), marker=str(marker), log=str(log), rule=rule, module=module,
        function=function, kwargs=kwargs,
    )  # fmt: skip
    job = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert job.poll() is None, f"the job ended before its loop started: {job.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "the job's loop did not start in 120 s"
        time.sleep(0.02)
    sent = time.monotonic()
    os.kill(job.pid, signal.SIGTERM)
    try:
        job.wait(timeout=30)
    finally:
        job.kill()
    stderr = job.stderr.read()
    assert job.returncode == EXIT_CODE, f"exit status {job.returncode}: {stderr[-3000:]}"
    assert time.monotonic() - sent < 10, "the job must stop within seconds of SIGTERM"
    assert "Traceback" not in stderr, stderr[-3000:]
    text = log.read_text()
    assert f"rule {rule} stopped by SIGTERM" in text
    return text


def no_temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*.tmp")]


def saved_images(path: Path) -> int:
    with np.load(path) as saved:
        return int(saved["images_done"])


def test_sigterm_to_ablate_saves_progress_and_the_rerun_resumes_to_identical_counts(inputs, tmp_path, caplog):
    output = tmp_path / "chunks" / "conv5" / "0-7.npz"
    kwargs = (
        f"dict(model_path={str(inputs['model'])!r}, dataset_path={str(inputs['dataset'])!r}, "
        f"output={str(output)!r}, layer_spec='conv5', units={UNITS!r}, save_seconds=3600, "
        "options=AblationOptions(batch_size=10, units_per_pass=4))"
    )
    log = run_until_terminated(tmp_path, "ablate", "ablate", "ablate_chunk_to_file", kwargs)
    progress = progress_path(output)
    saved = saved_images(progress)  # saved on SIGTERM: no periodic save within 3600 s
    assert 0 < saved < 100 and saved % 10 == 0
    assert f"stopped by SIGTERM after image {saved} of 100, its progress saved" in log
    assert not output.exists() and no_temporaries(tmp_path) == []

    with caplog.at_level(logging.INFO, logger="unit_ablation"):
        ablate_chunk_to_file(inputs["model"], inputs["dataset"], output, **ABLATE)
    assert f"resuming at image {saved} of 100" in caplog.text
    assert not progress.exists()
    reference = tmp_path / "uninterrupted.npz"
    ablate_chunk_to_file(inputs["model"], inputs["dataset"], reference, **ABLATE)
    with np.load(output) as resumed, np.load(reference) as whole:
        assert whole["broken"].sum() > 0
        for name in ARRAYS:
            np.testing.assert_array_equal(resumed[name], whole[name])


def test_sigterm_to_cumulative_saves_predictions_and_the_rerun_resumes_to_an_identical_table(
    inputs, tmp_path, caplog
):
    output = tmp_path / "cumulative" / "conv5.tsv"
    paths = dict(
        model_path=str(inputs["model"]), dataset_path=str(inputs["dataset"]),
        class_damage_path=str(inputs["classes"]), output=str(output),
    )  # fmt: skip
    kwargs = f"dict(**{paths!r}, **{CUMULATIVE!r}, save_seconds=3600)"
    log = run_until_terminated(tmp_path, "cumulative", "cumulative", "cumulative_to_file", kwargs)
    progress = progress_path(output)
    saved = saved_images(progress)
    assert 0 < saved < 100 and saved % 10 == 0
    assert f"stopped by SIGTERM after image {saved} of 100" in log
    assert not output.exists() and no_temporaries(tmp_path) == []

    with caplog.at_level(logging.INFO, logger="unit_ablation"):
        cumulative_to_file(**paths, **CUMULATIVE)
    assert f"resuming at image {saved} of 100" in caplog.text
    assert not progress.exists()
    reference = tmp_path / "uninterrupted.tsv"
    cumulative_to_file(**{**paths, "output": reference}, **CUMULATIVE)
    assert output.read_bytes() == reference.read_bytes()
    assert pd.read_csv(reference, sep="\t").shape[0] > 0


def test_sigterm_to_extract_stops_at_once_with_nothing_written(inputs, tmp_path):
    output = tmp_path / "activations" / "conv5.npz"
    kwargs = (
        f"dict(model_path={str(inputs['model'])!r}, dataset_path={str(inputs['dataset'])!r}, "
        f"output={str(output)!r}, layer_spec='conv5', attribute_split='heldout', batch_size=10)"
    )
    log = run_until_terminated(tmp_path, "extract", "extract", "extract_to_file", kwargs)
    assert "nothing was written, a rerun starts the job again" in log
    assert not output.exists() and no_temporaries(tmp_path) == []
    extract_to_file(inputs["model"], inputs["dataset"], output, "conv5", "heldout", batch_size=10)
    assert output.exists()


def test_sigterm_to_train_stops_at_once_with_nothing_written(inputs, tmp_path):
    checkpoint, metadata = tmp_path / "models" / "m.pt", tmp_path / "models" / "m.json"
    kwargs = (
        f"dict(dataset_path={str(inputs['dataset'])!r}, checkpoint_path={str(checkpoint)!r}, "
        f"metadata_path={str(metadata)!r}, **{TRAIN!r})"
    )
    log = run_until_terminated(tmp_path, "train", "train", "train_to_checkpoint", kwargs)
    assert "nothing was written" in log
    assert not checkpoint.exists() and not metadata.exists() and no_temporaries(tmp_path) == []
    train_to_checkpoint(inputs["dataset"], checkpoint, metadata, **TRAIN)
    assert checkpoint.exists() and metadata.exists()
