"""Killed ablation jobs resume from their saved progress and end with the same counts."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import PROJECT_ROOT, synthetic_images

from unit_ablation import ablation
from unit_ablation.ablation import ablate_chunk_to_file, ablate_units
from unit_ablation.data import prepare_fashion_mnist
from unit_ablation.models import save_checkpoint
from unit_ablation.resume import PartialCounts, ProgressSaver, load_progress, progress_path

ARRAYS = ("units", "broken", "fixed", "n", "correct")


@pytest.mark.parametrize("value", ["zero", "mean"])
def test_counts_resumed_from_the_first_images_equal_one_uninterrupted_pass(small_model, value):
    images, labels = synthetic_images(90, seed=41)
    units = list(range(small_model.unit_count("conv4")))
    options = dict(value=value, mean_images=images, units_per_pass=5)
    whole = ablate_units(small_model, "conv4", images, labels, units, 10, batch_size=30, **options)
    assert whole.broken.sum() > 0
    first = ablate_units(small_model, "conv4", images[:37], labels[:37], units, 10, batch_size=10, **options)
    partial = PartialCounts(37, first.broken, first.fixed, first.correct)
    resumed = ablate_units(
        small_model, "conv4", images, labels, units, 10, batch_size=20, resume=partial, **options
    )
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(resumed, name), getattr(whole, name))


@pytest.fixture
def chunk_inputs(tmp_path, idx_folder, _trained_models):
    """A model checkpoint and a prepared dataset (100 test images), as an ablate job reads them."""
    model_path, dataset_path = tmp_path / "model.pt", tmp_path / "data.npz"
    save_checkpoint(_trained_models[False], model_path, {})
    prepare_fashion_mnist(idx_folder, dataset_path, heldout_size=50, seed=0)
    return model_path, dataset_path


CHUNK = dict(layer="conv5", units=list(range(8)), batch_size=5, units_per_pass=4, device="cpu")

# A job that saves after every batch and is slow enough to be killed in the middle.
KILLED_JOB = """
import sys, time
sys.path.insert(0, {src!r})
from unit_ablation import resume
from unit_ablation.ablation import ablate_chunk_to_file
save = resume.ProgressSaver.save
def slow_save(self, partial):
    save(self, partial)
    time.sleep(0.3)
resume.ProgressSaver.save = slow_save
ablate_chunk_to_file({model!r}, {dataset!r}, {output!r}, save_seconds=0, **{chunk!r})
"""


def saved_images(path: Path) -> int:
    try:
        with np.load(path) as saved:
            return int(saved["images_done"])
    except (OSError, ValueError, KeyError, EOFError):
        return 0


def test_a_killed_job_resumes_from_its_last_saved_images_with_identical_counts(
    chunk_inputs, tmp_path, monkeypatch, caplog
):
    model_path, dataset_path = chunk_inputs
    output = tmp_path / "chunks" / "conv5" / "0-8.npz"
    script = KILLED_JOB.format(
        src=str(PROJECT_ROOT / "src"), model=str(model_path), dataset=str(dataset_path), output=str(output),
        chunk=CHUNK,
    )  # fmt: skip
    job = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    progress = progress_path(output)
    deadline = time.monotonic() + 120
    while saved_images(progress) < 20:
        assert job.poll() is None, f"the job ended before it was killed: {job.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "the job saved no progress in 120 s"
        time.sleep(0.05)
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    assert job.returncode == -signal.SIGKILL
    assert not output.exists(), "a killed job must leave no output"
    saved = saved_images(progress)
    assert 20 <= saved < 100

    seen = []
    predictions = ablation.AblationEngine.predictions

    def counting_predictions(self, x, *args):
        seen.append(len(x))
        return predictions(self, x, *args)

    monkeypatch.setattr(ablation.AblationEngine, "predictions", counting_predictions)
    with caplog.at_level(logging.INFO, logger="unit_ablation"):
        ablate_chunk_to_file(model_path, dataset_path, output, **CHUNK)
    assert f"resuming at image {saved} of 100" in caplog.text
    assert sum(seen) == 100 - saved, "the rerun must ablate only the images left"
    assert not progress.exists(), "the progress file goes once the output is written"

    reference = tmp_path / "uninterrupted.npz"
    ablate_chunk_to_file(model_path, dataset_path, reference, **CHUNK)
    with np.load(output) as resumed, np.load(reference) as whole:
        for name in ARRAYS:
            np.testing.assert_array_equal(resumed[name], whole[name])
        assert whole["broken"].sum() > 0
        assert json.loads(str(resumed["metadata"]))["resumed_at_image"] == saved
        assert json.loads(str(whole["metadata"]))["resumed_at_image"] == 0
    assert sorted(p.name for p in output.parent.iterdir()) == ["0-8.npz"], "no temporary files are left"


def test_progress_of_another_configuration_or_a_corrupt_file_is_ignored(chunk_inputs, tmp_path, caplog):
    model_path, dataset_path = chunk_inputs
    path = tmp_path / "progress.npz"
    counts = np.ones((8, 10), dtype=np.int64)
    ProgressSaver(path, "job-a").save(PartialCounts(40, counts, counts, counts[0]))
    assert load_progress(path, "job-a", (8, 10)).images_done == 40
    assert load_progress(path, "job-b", (8, 10)) is None
    assert load_progress(path, "job-a", (9, 10)) is None
    path.write_bytes(path.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        assert load_progress(path, "job-a", (8, 10)) is None
    assert f"ignoring unreadable progress file {path}" in caplog.text

    # a retrained model (new file) makes the saved progress stale: the job starts again at image 0
    output = tmp_path / "chunk.npz"
    ablate_chunk_to_file(model_path, dataset_path, output, **CHUNK)
    with np.load(output) as fresh:
        expected = {name: fresh[name] for name in ARRAYS}
    ProgressSaver(progress_path(output), "stale").save(
        PartialCounts(50, np.zeros((8, 10), np.int64), np.zeros((8, 10), np.int64), np.zeros(10, np.int64))
    )
    output.unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        ablate_chunk_to_file(model_path, dataset_path, output, **CHUNK)
    assert "of another job configuration" in caplog.text
    assert "resuming" not in caplog.text
    with np.load(output) as again:
        for name in ARRAYS:
            np.testing.assert_array_equal(again[name], expected[name])
