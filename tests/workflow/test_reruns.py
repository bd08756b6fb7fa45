"""Incremental reruns: after a complete tiny run, each change schedules exactly the jobs it affects.

Every test compares the set of (rule, output) a dry run plans with the set the change should
touch, derived from the complete job list, not with job counts.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

from support.workflow_runs import PROJECT_ROOT, WORKFLOW_PARTS, planned_jobs, snakemake

pytestmark = pytest.mark.integration
Job = tuple[str, str]
PLOTS = {
    "plot_overview",
    "plot_sorted_units",
    "plot_layer",
    "plot_comparison",
    "plot_agreement",
    "plot_cumulative",
    "plot_network_effects",
}
STUDY_AGGREGATES = {
    "plot_overview",
    "plot_comparison",
    "plot_agreement",
    "plot_network_effects",
    "summarize",
    "record_config",
}
UPSTREAM_OF_ABLATION = {"prepare_data", "train", "model_metadata", "extract", "attributes"}


def dry_run(workdir: Path, config: dict | None = None, snakefile: Path | None = None, *args: str) -> set[Job]:
    """The jobs a dry run of the finished tiny run plans, with `config` instead of its own."""
    configfile = None
    if config is not None:
        # a file of its own: other pytest-xdist workers dry-run the same tiny run at the same time
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=workdir.parent, delete=False) as file:
            yaml.safe_dump(config, file)
        configfile = Path(file.name)
    options = {"configfile": configfile} | ({"snakefile": snakefile} if snakefile else {})
    result = snakemake(workdir, "-n", *args, **options)
    assert result.returncode == 0, result.stderr[-3000:]
    return planned_jobs(result.stdout + result.stderr)


def every_job(workdir: Path, config: dict | None = None) -> set[Job]:
    """Every job of the study in `workdir`, with `config` instead of its own."""
    if config is None:
        return set(_every_job_of_own_config(workdir))
    return dry_run(workdir, config, None, "--forceall")


@functools.cache
def _every_job_of_own_config(workdir: Path) -> frozenset[Job]:
    return frozenset(dry_run(workdir, None, None, "--forceall"))


def of_rules(jobs: set[Job], rules: set[str]) -> set[Job]:
    return {job for job in jobs if job[0] in rules}


def naming(jobs: set[Job], text: str) -> set[Job]:
    return {job for job in jobs if text in job[1]}


@pytest.fixture
def config(tiny_run) -> dict:
    return yaml.safe_load((tiny_run / "config.yaml").read_text())


@pytest.fixture
def workflow_copy(tmp_path) -> Path:
    """The workflow's code copied with fresh modification times, as a new checkout has them."""
    copy = tmp_path / "workflow"
    for part in WORKFLOW_PARTS:
        source = PROJECT_ROOT / part
        ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
        if source.is_dir():
            shutil.copytree(source, copy / part, ignore=ignore, copy_function=shutil.copy)
        else:
            copy.mkdir(exist_ok=True)
            shutil.copy(source, copy / part)
    return copy


def test_no_change_plans_nothing(tiny_run):
    assert dry_run(tiny_run) == set()


def test_same_config_in_another_key_order_plans_nothing(tiny_run, config):
    reordered = {key: config[key] for key in reversed(list(config))}
    assert dry_run(tiny_run, reordered) == set()


def test_plotting_option_reruns_only_the_plots_and_the_recorded_config(tiny_run, config):
    config["plots"]["dpi"] += 10
    assert dry_run(tiny_run, config) == of_rules(every_job(tiny_run), PLOTS | {"record_config"})


def test_heatmap_option_reruns_only_the_layer_figures(tiny_run, config):
    config["plots"]["heatmap_units"] += 1
    assert dry_run(tiny_run, config) == of_rules(every_job(tiny_run), {"plot_layer", "record_config"})


def test_resamples_count_reruns_correlate_and_what_reads_it(tiny_run, config):
    config["correlation"]["resamples"] += 10
    expected = {"correlate", "combine_correlations", "plot_layer", "plot_comparison"}
    expected |= {"plot_agreement", "summarize", "record_config"}
    expected |= {"network_statistics", "plot_network_effects"}  # its bootstraps use the same count
    assert dry_run(tiny_run, config) == of_rules(every_job(tiny_run), expected)


def test_chunk_size_reruns_ablation_and_downstream_but_no_training_or_extraction(tiny_run, config):
    config["ablation"]["chunk_size"] = 16  # chunks 0-15 and 16-31, none of which the run has
    everything = every_job(tiny_run, config)
    planned = dry_run(tiny_run, config)
    assert planned == everything - of_rules(everything, UPSTREAM_OF_ABLATION)
    # 2 models x conv5 (32 units: 2 chunks) x 2 bases
    assert len(of_rules(planned, {"ablate"})) == 2 * 2 * 2


def test_new_layer_runs_its_own_jobs_and_the_aggregates_that_take_it_in(tiny_run, config):
    config["analysis"]["layers"] = ["conv3", *config["analysis"]["layers"]]
    everything = every_job(tiny_run, config)
    aggregates = STUDY_AGGREGATES | {"combine_correlations", "plot_sorted_units"}
    expected = naming(everything, "/conv3") | naming(everything, ".conv3") | of_rules(everything, aggregates)
    assert dry_run(tiny_run, config) == expected
    assert {rule for rule, _ in naming(expected, "conv3")} == {
        "extract",
        "attributes",
        "ablate",
        "gather",
        "correlate",
        "network_statistics",
        "plot_layer",
    }


def test_a_mean_ablation_comparison_adds_its_ablation_and_analysis_only(tiny_run, config):
    config["analysis"]["compare_values"] = ["mean"]
    planned = dry_run(tiny_run, config)
    added = naming(planned, "+mean")
    assert {rule for rule, _ in added} == {
        "ablate",
        "gather",
        "correlate",
        "network_statistics",
        "plot_layer",
    }
    # the same units' attributes serve both values: no extraction, no training
    assert not of_rules(planned, UPSTREAM_OF_ABLATION)
    assert naming(planned, "conv5@rot0+mean/") and naming(planned, "conv5+mean.")
    assert of_rules(planned, {"summarize"})


def test_a_verdict_criterion_reruns_only_the_summary(tiny_run, config):
    config["claims"]["weak_rho"] = 0.25
    assert dry_run(tiny_run, config) == of_rules(every_job(tiny_run), {"summarize", "record_config"})


def test_one_variants_epochs_rerun_that_variants_chain_only(tiny_run, config):
    config["variants"]["bn"]["train"] = {"epochs": 2}
    everything = every_job(tiny_run, config)
    expected = naming(everything, "-bn-s0") | of_rules(everything, STUDY_AGGREGATES | {"plot_cumulative"})
    planned = dry_run(tiny_run, config)
    assert planned == expected
    assert ("train", "results/models/fmnist-alexnet-bn-s0.pt") in planned
    assert not naming(planned, "-baseline-s0")


def test_fresh_checkout_of_the_same_code_plans_nothing(tiny_run, workflow_copy):
    assert dry_run(tiny_run, snakefile=workflow_copy / "Snakefile") == set()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_comment_edits_in_scripts_and_library_plan_nothing(tiny_run, workflow_copy):
    edit(workflow_copy / "scripts" / "ablate.py", "import sys\n", "import sys  # edited comment\n\n")
    engine = workflow_copy / "src" / "unit_ablation" / "engine" / "ablation_engine.py"
    edit(engine, "import time\n", "import time  # edited\n")
    assert dry_run(tiny_run, snakefile=workflow_copy / "Snakefile") == set()


def test_editing_the_figure_style_reruns_only_the_plots(tiny_run, workflow_copy):
    style = workflow_copy / "src" / "unit_ablation" / "report" / "style.py"
    style.write_text(style.read_text() + "\nEDITED = True\n")
    planned = dry_run(tiny_run, snakefile=workflow_copy / "Snakefile")
    assert planned == of_rules(every_job(tiny_run), PLOTS)


@pytest.mark.parametrize(
    "module",
    [
        "data/image_files.py",  # reading ImageNet-style image folders
        "data/image_decode.py",
        "data/broden.py",  # Network Dissection's concept data
        "analysis/concepts.py",
        "models/torchvision_classifier.py",  # the checkpoint loader imports it by name, for its models only
        "models/fetch_weights.py",
    ],
)
def test_editing_code_the_fashion_mnist_study_never_runs_reruns_nothing(tiny_run, workflow_copy, module):
    path = workflow_copy / "src" / "unit_ablation" / module
    path.write_text(path.read_text() + "\n\ndef added_function():\n    return 1\n")
    assert dry_run(tiny_run, snakefile=workflow_copy / "Snakefile") == set()


def test_editing_the_engine_reruns_ablation_and_downstream_only(tiny_run, workflow_copy):
    engine = workflow_copy / "src" / "unit_ablation" / "engine" / "ablation_engine.py"
    engine.write_text(engine.read_text() + "\nEDITED = True\n")
    everything = every_job(tiny_run)
    planned = dry_run(tiny_run, snakefile=workflow_copy / "Snakefile")
    assert planned == everything - of_rules(everything, UPSTREAM_OF_ABLATION | {"record_config"})
    assert of_rules(planned, {"cumulative"})  # cumulative ablation uses the engine too
