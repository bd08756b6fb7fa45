"""Running the workflow from tests: the snakemake command line and what a (dry) run scheduled."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from support.paths import PROJECT_ROOT, TINY_CONFIG  # noqa: F401  (re-exported)

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
# What the workflow is made of (copied when a test edits the code)
WORKFLOW_PARTS = ["Snakefile", "rules", "scripts", "src", "schemas", "envs", "report", "profiles"]


# A project that deploys the workflow as a Snakemake module, as snakedeploy does, with the warm-start
# hooks (only the main Snakefile's hooks run; docs/running.md, Warm start)
MODULE_SNAKEFILE = f"""\
configfile: "config.yaml"


module unit_ablation:
    snakefile:
        "{PROJECT_ROOT / "Snakefile"}"
    config:
        config


use rule * from unit_ablation


onstart:
    probe = unit_ablation.start_speed_probe()
    warm_started = unit_ablation.start_warm_server()
    unit_ablation.log_ablation_estimates(probe, warm_started)


onsuccess:
    unit_ablation.stop_warm_server()


onerror:
    unit_ablation.stop_warm_server()
"""


# The session's tiny run (tests/conftest.py) studies conv5 in both bases: one layer keeps the run at
# about 50 jobs, and two-layer studies are planned in the dry-run tests on TINY_CONFIG itself.
TINY_RUN_LAYERS = ["conv5"]


def tiny_run_config() -> dict:
    """TINY_CONFIG with the tiny run's layers."""
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["analysis"]["layers"] = TINY_RUN_LAYERS
    return config


# each layer in the canonical basis and in every rotation of the tiny config
TINY_RUN_LAYER_SPECS = [
    f"{layer}{suffix}"
    for layer in TINY_RUN_LAYERS
    for suffix in ["", *(f"@rot{seed}" for seed in tiny_run_config()["analysis"]["rotation_seeds"])]
]


CORES = "2"  # per workflow run


def snakemake(
    workdir: Path,
    *args: str,
    snakefile: Path = PROJECT_ROOT / "Snakefile",
    configfile: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run snakemake on `workdir` with its config.yaml (or `configfile`), on CORES cores."""
    command = [
        SNAKEMAKE,
        "--snakefile",
        str(snakefile),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile or workdir / "config.yaml"),
        "--cores",
        CORES,
        *args,
    ]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})}
    )


def scheduled_jobs(output: str) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a (dry) run's output."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats:")) + 3
    counts = {}
    for line in lines[start:]:
        name, count = line.split()
        if name == "total":
            return counts
        counts[name] = int(count)
    raise AssertionError("no total line in the job stats")


_JOB = re.compile(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    output: ([^,\n]+)", re.MULTILINE)


def planned_jobs(output: str) -> set[tuple[str, str]]:
    """(rule, first output file) of every job a dry run printed; empty when nothing is to be done."""
    jobs = set(_JOB.findall(output + "\n"))
    if not jobs and "Nothing to be done" not in output:
        raise AssertionError(f"neither jobs nor 'Nothing to be done' in:\n{output[-3000:]}")
    return jobs
