"""Killed ablation jobs resume from their saved progress and end with the same counts."""

from __future__ import annotations

import dataclasses
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

from unit_ablation.analysis.damage import load_chunk
from unit_ablation.data.fashion_mnist import prepare_fashion_mnist
from unit_ablation.engine import ablation_engine
from unit_ablation.engine.counts import HALF_ARRAYS
from unit_ablation.engine.driver import ablate_units
from unit_ablation.engine.options import AblationOptions
from unit_ablation.engine.resume import PartialCounts, ProgressSaver, load_progress, progress_path
from unit_ablation.models.checkpoint import save_checkpoint
from unit_ablation.stages.ablate import ablate_chunk_to_file

from support.paths import PROJECT_ROOT
from support.synthetic import synthetic_images

ARRAYS = ("units", "broken", "fixed", "n", "correct", *HALF_ARRAYS)


def partial_of(images_done: int, units: int, classes: int, fill: int = 0) -> PartialCounts:
    """Saved counts of the given sizes, every count `fill`."""
    per_unit = np.full((2, units, classes), fill, dtype=np.int64)
    per_class = np.full((2, classes), fill, dtype=np.int64)
    return PartialCounts(images_done, per_unit, per_unit, per_unit, per_unit, per_class, per_class)


@pytest.mark.parametrize("value", ["zero", "mean"])
def test_counts_resumed_from_the_first_images_equal_one_uninterrupted_pass(small_model, value):
    images, labels = synthetic_images(90, seed=41)
    units = list(range(small_model.unit_count("conv4")))

    def options(batch_size: int) -> AblationOptions:
        return AblationOptions(value=value, units_per_pass=5, batch_size=batch_size)

    whole = ablate_units(
        small_model, "conv4", images, labels, units, 10, options=options(30), mean_images=images
    )
    assert whole.broken.sum() > 0 and whole.newly.sum() > 0
    first = ablate_units(
        small_model, "conv4", images[:37], labels[:37], units, 10, options=options(10), mean_images=images
    )
    partial = PartialCounts.of(37, first)
    resumed = ablate_units(
        small_model,
        "conv4",
        images,
        labels,
        units,
        10,
        options=options(20),
        mean_images=images,
        resume=partial,
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


CHUNK = dict(
    layer_spec="conv5", units=list(range(8)), options=AblationOptions(batch_size=5, units_per_pass=4)
)

# A job that saves after every batch and is slow enough to be killed in the middle.
KILLED_JOB = """
import sys, time
sys.path.insert(0, {src!r})
from unit_ablation.engine import resume
from unit_ablation.engine.options import AblationOptions
from unit_ablation.stages.ablate import ablate_chunk_to_file
save = resume.ProgressSaver.save_arrays
def slow_save(self, images_done, arrays):
    save(self, images_done, arrays)
    time.sleep(0.3)
resume.ProgressSaver.save_arrays = slow_save
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
    predictions = ablation_engine.AblationEngine.predictions

    def counting_predictions(self, x, *args):
        seen.append(len(x))
        return predictions(self, x, *args)

    monkeypatch.setattr(ablation_engine.AblationEngine, "predictions", counting_predictions)
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
        assert whole["broken"].sum() > 0 and whole["newly"].sum() > 0
        assert json.loads(str(resumed["metadata"]))["resumed_at_image"] == saved
        assert json.loads(str(whole["metadata"]))["resumed_at_image"] == 0
    assert sorted(p.name for p in output.parent.iterdir()) == ["0-8.npz"], "no temporary files are left"
    load_chunk(output)  # the resumed chunk passes gather's checks (halves sum to the totals)


def test_progress_of_another_configuration_or_a_corrupt_file_is_ignored(chunk_inputs, tmp_path, caplog):
    model_path, dataset_path = chunk_inputs
    path = tmp_path / "progress.npz"
    ProgressSaver(path, "job-a").save(partial_of(40, 8, 10, fill=1))
    loaded = load_progress(path, "job-a", (8, 10))
    assert loaded.images_done == 40 and loaded.newly.shape == (2, 8, 10) and loaded.broken.sum() == 160
    assert load_progress(path, "job-b", (8, 10)) is None
    assert load_progress(path, "job-a", (9, 10)) is None
    # a progress file of the former format (totals only, no counts per half) is not resumed from
    with np.load(path) as saved:
        arrays = {key: saved[key] for key in saved.files}
    for key in ("broken_half", "fixed_half", "newly", "no_longer", "correct_half", "predicted_half"):
        arrays.pop(key)
    np.savez(path, **arrays, broken=np.ones((8, 10), np.int64), fixed=np.ones((8, 10), np.int64))
    with caplog.at_level(logging.WARNING):
        assert load_progress(path, "job-a", (8, 10)) is None
    assert f"ignoring unreadable progress file {path}" in caplog.text
    # counts per half of another shape, or not integers
    for bad in (np.zeros((1, 8, 10), np.int64), np.zeros((2, 8, 10), np.float64)):
        ProgressSaver(path, "job-a").save(dataclasses.replace(partial_of(40, 8, 10), newly=bad))
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert load_progress(path, "job-a", (8, 10)) is None
        assert "whose newly is not 2 x 8 x 10 integer counts" in caplog.text
    path.write_bytes(path.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        assert load_progress(path, "job-a", (8, 10)) is None
    assert f"ignoring unreadable progress file {path}" in caplog.text

    # a retrained model (new file) makes the saved progress stale: the job starts again at image 0
    output = tmp_path / "chunk.npz"
    ablate_chunk_to_file(model_path, dataset_path, output, **CHUNK)
    with np.load(output) as fresh:
        expected = {name: fresh[name] for name in ARRAYS}
    ProgressSaver(progress_path(output), "stale").save(partial_of(50, 8, 10))
    output.unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        ablate_chunk_to_file(model_path, dataset_path, output, **CHUNK)
    assert "of another job configuration" in caplog.text
    assert "resuming" not in caplog.text
    with np.load(output) as again:
        for name in ARRAYS:
            np.testing.assert_array_equal(again[name], expected[name])
