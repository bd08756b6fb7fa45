"""The workflow deployed as a Snakemake module into another project (as snakedeploy does): every
path it resolves (schema, src/, scripts, code hashes, envs, report captions) is the checkout's.

The session's tiny run (tests/conftest.py) is such a project; these tests check it.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter

import numpy as np
import pytest

from support.workflow_runs import MODULE_SNAKEFILE, planned_jobs, snakemake

pytestmark = pytest.mark.integration


def test_the_study_runs_as_a_module_of_another_project(tiny_run):
    assert (tiny_run / "Snakefile").read_text() == MODULE_SNAKEFILE
    assert not any((tiny_run / name).exists() for name in ("schemas", "src", "scripts", "rules", "envs"))
    results = tiny_run / "results"
    claims = (results / "claims.tsv").read_text().splitlines()
    assert claims[0].startswith("claim\t") and len(claims) > 5
    for model in ("fmnist-alexnet-baseline-s0", "fmnist-alexnet-bn-s0"):
        for layer_spec in ("conv5", "conv5@rot0"):
            assert (results / model / "ablation" / f"{layer_spec}.units.tsv").is_file()
    assert (results / "report.html").stat().st_size > 0


def test_the_module_and_the_checkout_see_the_same_jobs(tiny_run):
    """The code hashes and params a module computes are stable and the checkout's own."""
    again = snakemake(tiny_run, "-n", snakefile=tiny_run / "Snakefile")
    assert again.returncode == 0, again.stderr[-3000:]
    assert planned_jobs(again.stdout) == set()
    direct = snakemake(tiny_run, "-n")
    assert direct.returncode == 0, direct.stderr[-3000:]
    assert planned_jobs(direct.stdout) == set()


def test_its_jobs_fork_from_the_warm_start_server(tiny_run):
    """The project's onstart starts the workflow's warm-start server; the jobs that start after it
    is ready (all but the first few) run in children of it (runtime/warm_start.py)."""
    starts = Counter()
    for log in (tiny_run / "results" / "logs").rglob("*.log"):
        found = re.search(r" (warm|cold) start: ", log.read_text())
        if found:
            starts[found.group(1)] += 1
    assert sum(starts.values()) > 40
    assert starts["warm"] > 4 * starts["cold"], starts


def test_its_ablate_jobs_share_trunk_outputs(tiny_run):
    """A (model, layer)'s ablate jobs (2 chunks x 2 bases here) run its trunk once between them and
    load it from the run's cache otherwise (engine/trunk_cache.py)."""
    loaded = computed = 0
    for log in (tiny_run / "results" / "logs" / "ablate").rglob("*.log"):
        text = log.read_text()
        found = re.search(r"trunk outputs: (\d+) loaded from the run's cache, (\d+) computed", text)
        assert (found is not None) == (" warm start: " in text), log
        if found:
            loaded, computed = loaded + int(found.group(1)), computed + int(found.group(2))
    assert loaded > computed > 0


def test_a_job_started_cold_writes_what_the_warm_one_wrote(tiny_run, tmp_path):
    """The same counts and tables from a job run in its own process as from its warm start."""
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    chunk = "results/fmnist-alexnet-bn-s0/ablation/chunks/conv5@rot0/0-23.npz"
    table = "results/fmnist-alexnet-bn-s0/correlation/conv5@rot0.tsv"
    logs = [
        workdir / "results" / "logs" / f"{log}.log"
        for log in (
            "ablate/fmnist-alexnet-bn-s0/conv5@rot0/0-23",
            "correlate/fmnist-alexnet-bn-s0/conv5@rot0",
        )
    ]
    assert all(" warm start: " in log.read_text() for log in logs)
    switched_off = {"UNIT_ABLATION_WARM_START": "0"}
    cold = snakemake(workdir, "--force", chunk, table, snakefile=workdir / "Snakefile", env=switched_off)
    assert cold.returncode == 0, cold.stderr[-3000:]
    assert all(" cold start: " in log.read_text() for log in logs)
    warm_counts, cold_counts = np.load(tiny_run / chunk), np.load(workdir / chunk)
    arrays = [name for name in warm_counts.files if name != "metadata"]  # metadata: the job's seconds
    assert arrays and set(arrays) == set(cold_counts.files) - {"metadata"}
    for name in arrays:
        np.testing.assert_array_equal(warm_counts[name], cold_counts[name], err_msg=name)
    assert (workdir / table).read_bytes() == (tiny_run / table).read_bytes()
