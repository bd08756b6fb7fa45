"""The workflow deployed as a Snakemake module into another project (as snakedeploy does): every
path it resolves (schema, src/, scripts, code hashes, envs, report captions) is the checkout's.

The session's tiny run (tests/conftest.py) is such a project; these tests check it.
"""

from __future__ import annotations

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
