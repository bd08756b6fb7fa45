"""The workflow deployed as a Snakemake module into another project (as snakedeploy does): every
path it resolves (schema, src/, scripts, code hashes, envs, report captions) is the checkout's."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from workflow_runs import PROJECT_ROOT, TINY_CONFIG, planned_jobs, snakemake

pytestmark = pytest.mark.integration

OUTER_SNAKEFILE = f"""\
configfile: "config.yaml"


module unit_ablation:
    snakefile:
        "{PROJECT_ROOT / "Snakefile"}"
    config:
        config


use rule * from unit_ablation
"""


def small_study(path: Path) -> None:
    """The tiny study cut to one layer in one basis and fewer images: every stage, fewer jobs."""
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["data"].update(train_size=1000, test_size=100, heldout_size=100)
    config["analysis"].update(layers=["conv5"], rotation_seeds=[])
    config["ablation"]["chunk_size"] = 64
    config["cumulative"]["layers"] = []
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def test_the_study_runs_as_a_module_of_another_project(tmp_path):
    project = tmp_path / "project"  # no schemas/, src/ or scripts/ of its own
    project.mkdir()
    (project / "Snakefile").write_text(OUTER_SNAKEFILE)
    small_study(project / "config.yaml")
    run = snakemake(project, snakefile=project / "Snakefile")
    assert run.returncode == 0, run.stderr[-5000:]
    results = project / "results"
    claims = (results / "claims.tsv").read_text().splitlines()
    assert claims[0].startswith("claim\t") and len(claims) > 5
    for model in ("fmnist-alexnet-baseline-s0", "fmnist-alexnet-bn-s0"):
        assert (results / model / "ablation" / "conv5.units.tsv").is_file()
    # the code hashes and params a module computes are stable: nothing left to do
    again = snakemake(project, "-n", snakefile=project / "Snakefile")
    assert again.returncode == 0 and planned_jobs(again.stdout) == set()
    report = snakemake(project, "--report", "results/report.html", snakefile=project / "Snakefile")
    assert report.returncode == 0, report.stderr[-3000:]
    assert (results / "report.html").stat().st_size > 0
