"""A run killed with SIGKILL in the middle of writing a result, resumed; determinism; atomic writes.

The kill takes the whole run down at once (Snakemake and its jobs), as a crashed node or an
`scancel --signal=KILL` does, while an ablation job is half-way through writing its output. The
killed run computes one model's chain through every stage that uses torch or a seeded random
generator (train, extract, attributes, ablate in both bases, gather, correlate, network statistics,
cumulative ablation), each output in its own directory, before or after the kill: its tables equal
the session's tiny run only if two complete computations are byte-identical.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from support.workflow_runs import CORES, PROJECT_ROOT, SNAKEMAKE, TINY_RUN_LAYER_SPECS, snakemake
from support.write_audit import audit_environment, writes_record, written_in_place

pytestmark = pytest.mark.integration

# Loaded by every Python process of the run (PYTHONPATH): the ablation job whose output path
# contains FAULT_TARGET writes the first half of its .npz, signals, and hangs until killed.
HALF_WRITE = """
import os
target = os.environ.get("FAULT_TARGET")
if target:
    import io, time
    import numpy
    real_savez = numpy.savez
    def savez(file, *args, **kwds):
        name = str(getattr(file, "name", file))
        if target in name and "progress" not in name:
            buffer = io.BytesIO()
            real_savez(buffer, *args, **kwds)
            data = buffer.getvalue()
            file.write(data[: len(data) // 2])
            file.flush()
            os.fsync(file.fileno())
            with open(os.environ["FAULT_SIGNAL"], "w") as signal_file:
                signal_file.write(name)
            time.sleep(3600)
        return real_savez(file, *args, **kwds)
    numpy.savez = savez
"""
MODEL = "fmnist-alexnet-bn-s0"
TARGET = f"{MODEL}/ablation/chunks/conv5/"
# One model's tables for conv5 in both bases: they need every stage that computes with torch or a
# seeded generator, and nothing of the other model.
TARGETS = [
    f"results/{MODEL}/{kind}/{layer_spec}.tsv"
    for kind in ("correlation", "statistics")
    for layer_spec in TINY_RUN_LAYER_SPECS
] + [f"results/{MODEL}/cumulative/conv5.tsv"]
_JOB = re.compile(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    output: (.*)\n", re.MULTILINE)


def jobs_with_outputs(output: str) -> dict[tuple[str, str], list[str]]:
    """(rule, first output) -> all outputs, for every job a dry run printed."""
    jobs = {}
    for rule, outputs in _JOB.findall(output + "\n"):
        files = [part.strip() for part in outputs.split(", ")]
        jobs[(rule, files[0])] = files
    return jobs


def dry_run(workdir: Path, *args: str) -> dict[tuple[str, str], list[str]]:
    result = snakemake(workdir, "-n", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return jobs_with_outputs(result.stdout + result.stderr)


def result_tables(workdir: Path) -> dict[str, bytes]:
    """Every result table (TSV) and the claims summary, by path under results/."""
    results = workdir / "results"
    return {
        str(path.relative_to(results)): path.read_bytes()
        for path in sorted(results.rglob("*"))
        if path.suffix in (".tsv", ".md") and "logs" not in path.parts
    }


def fresh_workdir(tmp_path: Path, name: str, tiny_run: Path) -> Path:
    """A new project folder with the tiny run's config."""
    workdir = tmp_path / name
    workdir.mkdir()
    shutil.copy(tiny_run / "config.yaml", workdir / "config.yaml")
    return workdir


def test_every_job_of_a_complete_run_writes_through_a_temporary_renamed_into_place(tiny_run):
    record = writes_record(tiny_run)
    results = tiny_run.resolve() / "results"
    written = [Path(path) for path in record.read_text().splitlines()]
    seen = {path.relative_to(results).parts[0] for path in written if path.is_relative_to(results)}
    folders = {path.name for path in results.iterdir() if path.is_dir() and path.name != "logs"}
    assert {"figures", "models", "data"} <= folders <= seen, "the audit saw every result folder's writes"
    assert written_in_place(tiny_run, record) == []


def test_a_run_killed_mid_write_reruns_only_the_incomplete_jobs_and_ends_byte_identical(tiny_run, tmp_path):
    workdir = fresh_workdir(tmp_path, "killed", tiny_run)
    every_job = dry_run(workdir, *TARGETS)
    signal_file, record = tmp_path / "half-written", tmp_path / "writes.txt"
    audit = audit_environment(tmp_path / "fault", record, extra_code=HALF_WRITE)
    env = {**os.environ, **audit, "FAULT_TARGET": TARGET, "FAULT_SIGNAL": str(signal_file)}
    command = [SNAKEMAKE, "--snakefile", str(PROJECT_ROOT / "Snakefile"), "--directory", str(workdir)]
    command += ["--configfile", str(workdir / "config.yaml"), "--cores", CORES, *TARGETS]
    run = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 600
    while not signal_file.exists():
        assert run.poll() is None, f"the run ended before the fault: {run.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "no job reached the faulty write in 600 s"
        time.sleep(0.1)
    time.sleep(0.5)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()

    half_written = Path(signal_file.read_text())
    chunk_dir = half_written.parent
    assert half_written.name.startswith(".") and half_written.stat().st_size > 0
    killed_output = chunk_dir / half_written.name[1:].rsplit(".", 2)[0]
    assert not killed_output.exists(), "the half-written file must not appear under the output's name"

    # Snakemake's lock is left behind by the killed run; --unlock is the documented first step.
    unlock = snakemake(workdir, "--unlock")
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    planned = dry_run(workdir, *TARGETS)
    # A job can be killed after its output was renamed into place but before Snakemake recorded
    # the job as finished: Snakemake marks such outputs incomplete and reruns them too.
    marked = {base64.b64decode(name).decode() for name in os.listdir(workdir / ".snakemake" / "incomplete")}
    incomplete = {
        job
        for job, outputs in every_job.items()
        if any(not (workdir / o).exists() or o in marked for o in outputs)
    }
    assert planned.keys() == incomplete, (
        "the rerun must plan exactly the jobs with a missing or unfinished output"
    )
    assert ("ablate", str(killed_output.relative_to(workdir))) in planned
    done = {job for job in every_job if job not in incomplete}
    assert done, "some jobs finished before the kill"
    kept = {output: (workdir / output).stat().st_mtime_ns for job in done for output in every_job[job]}

    rerun = snakemake(workdir, *TARGETS, env=audit)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert {output: (workdir / output).stat().st_mtime_ns for output in kept} == kept, "finished jobs rerun"
    assert not list(chunk_dir.glob(".*.tmp")), "the half-written temporary is removed by the rerun"

    # the jobs, killed or not, wrote their outputs to temporaries that they renamed into place
    assert len(record.read_text().splitlines()) > 20, "the audit saw the jobs' writes"
    assert written_in_place(workdir, record) == []
    # and the two directories' complete computations agree byte for byte
    tables, reference = result_tables(workdir), result_tables(tiny_run)
    assert {f"results/{name}" for name in tables} >= set(TARGETS) and len(tables) >= 15
    assert tables.keys() <= reference.keys()
    assert [name for name, data in tables.items() if reference[name] != data] == []


def test_metadata_records_the_versions_device_and_precision(tiny_run):
    import json
    from importlib import metadata

    import numpy as np
    import torch

    expected = {
        "torch_version": torch.__version__,
        "torchvision_version": metadata.version("torchvision"),
        "snakemake_version": metadata.version("snakemake"),
        "numpy_version": np.__version__,
    }
    results = tiny_run / "results"
    chunk = next(results.glob("*/ablation/chunks/conv5/*.npz"))
    with np.load(chunk) as saved:
        chunk_metadata = json.loads(str(saved["metadata"]))
    model_metadata = json.loads(next((results / "models").glob("*.json")).read_text())
    for found in (chunk_metadata, model_metadata):
        assert {key: found[key] for key in expected} == expected
    assert (chunk_metadata["device"], chunk_metadata["precision"]) == ("cpu", "exact")
    # the machine and build, to tell a same-machine rerun (bit-identical) from another machine's
    from unit_ablation.runtime.machine import machine_description

    here = machine_description("cpu")
    assert chunk_metadata["machine"] == model_metadata["machine"] == here
    assert here["torch_build"].startswith(torch.__version__) and "unknown" not in here["cpu_model"]
    summary = (results / "summary.md").read_text()
    assert "## Where these numbers were computed" in summary and here["cpu_model"] in summary
