"""Integration: the whole workflow on the tiny config in a temporary directory."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from snakemake.utils import validate

from unit_ablation.files.formats import FORMAT_KEY, FORMATS

from support.paths import TINY_CONFIG
from support.workflow_runs import PROJECT_ROOT, TINY_RUN_LAYER_SPECS, scheduled_jobs, snakemake

pytestmark = pytest.mark.integration
MODELS = ["fmnist-alexnet-baseline-s0", "fmnist-alexnet-bn-s0"]
LAYERS = TINY_RUN_LAYER_SPECS
TEST_SIZE = 300


def test_every_contract_file_exists(tiny_run):
    results = tiny_run / "results"
    expected = ["report.html", "summary.tsv", "summary.md", "claims.tsv", "correlation_seeds.tsv"]
    expected += ["figures/network_effects.png"]
    expected += ["config.yaml"]
    expected += ["figures/overall_vs_max_class_drop.png"]
    for model in MODELS:
        expected += [f"models/{model}.pt", f"models/{model}.json", f"{model}/correlation.tsv"]
        expected += [f"{model}/agreement.tsv", f"{model}/cumulative/conv5.tsv"]
        for layer in LAYERS:
            expected += [
                f"{model}/ablation/{layer}.classes.tsv",
                f"{model}/ablation/{layer}.units.tsv",
                f"{model}/attributes/{layer}.tsv",
                f"figures/{model}.{layer}.attributes.png",
                f"figures/{model}.{layer}.heatmap.png",
            ]
    missing = [name for name in expected if not (results / name).is_file()]
    assert not missing
    metadata = json.loads((results / "models" / f"{MODELS[0]}.json").read_text())
    for key in (FORMAT_KEY, "architecture", "variant", "training", "data_checksum", "seed", "test_accuracy"):
        assert key in metadata
    assert metadata["training"]["epochs"] == 1 and metadata["variant"] == "baseline"
    recorded = yaml.safe_load((results / "config.yaml").read_text())
    assert recorded.pop(FORMAT_KEY) == FORMATS["study config"]
    given = yaml.safe_load((tiny_run / "config.yaml").read_text())
    validate(given, str(PROJECT_ROOT / "schemas" / "config.schema.yaml"))  # fills in the defaults
    assert recorded == given and given["ablation"]["precision"] == "exact"  # the config this run used
    html = (results / "report.html").read_text(errors="replace")
    assert "overall_vs_max_class_drop.png" in html and "heatmap" in html


@pytest.mark.parametrize("layer", LAYERS)
def test_counts_add_up_and_overall_is_the_weighted_class_drop(tiny_run, layer):
    for model in MODELS:
        classes = pd.read_csv(tiny_run / "results" / model / "ablation" / f"{layer}.classes.tsv", sep="\t")
        units = pd.read_csv(tiny_run / "results" / model / "ablation" / f"{layer}.units.tsv", sep="\t")
        for _, rows in classes.groupby("unit"):
            assert rows.n.sum() == TEST_SIZE  # per-class counts add up to the class sizes
            assert (rows.broken <= rows.correct_intact).all()
            assert (rows.fixed <= rows.n - rows.correct_intact).all()
        weighted = classes.assign(w=classes.n * classes["drop"]).groupby("unit").w.sum() / TEST_SIZE
        np.testing.assert_allclose(units.set_index("unit").overall_drop, weighted, rtol=0, atol=1e-4)
        assert (classes.broken + classes.fixed).sum() > 0, "some ablation must change some prediction"
        assert classes.mcnemar_p.between(0, 1).all() and (classes.q_value >= classes.mcnemar_p).all()
        hurt_per_unit = classes.groupby("unit").hurt.sum()
        np.testing.assert_array_equal(units.set_index("unit").n_classes_significantly_hurt, hurt_per_unit)
        # the ablation's intact model agrees with the accuracy measured after training (to one image)
        metadata = json.loads((tiny_run / "results" / "models" / f"{model}.json").read_text())
        intact_accuracy = 100.0 * classes[classes.unit == 0].correct_intact.sum() / TEST_SIZE
        assert abs(intact_accuracy - metadata["test_accuracy"]) <= 100.0 / TEST_SIZE


def test_each_unit_appears_once_across_chunks(tiny_run):
    for model in MODELS:
        for layer, count in (("conv5", 32), ("conv5@rot0", 32)):
            chunk_files = sorted((tiny_run / "results" / model / "ablation" / "chunks" / layer).glob("*.npz"))
            assert len(chunk_files) == 2
            units = np.concatenate([np.load(path)["units"] for path in chunk_files])
            assert sorted(units.tolist()) == list(range(count))


def test_logs_have_progress_and_nothing_left_to_do(tiny_run):
    train_log = (tiny_run / "results" / "logs" / "train" / f"{MODELS[0]}.log").read_text()
    assert "epoch 1/1" in train_log and "test accuracy" in train_log
    ablate_logs = list((tiny_run / "results" / "logs" / "ablate").rglob("*.log"))
    assert ablate_logs and all("images" in path.read_text() for path in ablate_logs)
    dry = snakemake(tiny_run, "-n")
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr


def test_the_run_logs_its_estimate_at_this_machines_measured_speed(tiny_run):
    logs = sorted((tiny_run / ".snakemake" / "log").glob("*.snakemake.log"))
    run_log = next(path.read_text() for path in logs if "Finished job" in path.read_text())
    estimate = re.search(
        r"run estimate: about \d+ min on \d+ core\(s\): train [\d.]+ min \(2 jobs\), "
        r"ablate [\d.]+ min \((\d+) jobs\), "
        r".*\(cost model at this machine's speed, ([\d.]+) x the reference;",
        run_log,
    )
    assert estimate, run_log[:3000]
    assert int(estimate.group(1)) == len(list((tiny_run / "results" / "logs" / "ablate").rglob("*.log")))
    assert float(estimate.group(2)) > 0


def test_summary_has_a_row_per_claim_from_the_runs_own_tables(tiny_run):
    from unit_ablation.analysis.verdicts import CLAIMS

    text = (tiny_run / "results" / "summary.md").read_text()
    claim_rows = [
        line.split(" | ") for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()
    ]
    assert [row[1] for row in claim_rows] == [CLAIMS[n] for n in range(1, 6)]
    assert all(row[2] in {"yes", "partly", "no", "inconclusive"} for row in claim_rows)
    for model in MODELS:  # the models' accuracies, as measured after training
        accuracy = json.loads((tiny_run / "results" / "models" / f"{model}.json").read_text())[
            "test_accuracy"
        ]
        assert f"| {model} |" in text and f"{accuracy:.2f}" in text
    for number in range(1, 6):  # every claim's comparisons, with their test and verdict
        assert f"### Claim {number}: {CLAIMS[number]}" in text


def test_claims_table_follows_the_contract(tiny_run):
    from unit_ablation.analysis.verdicts import COLUMNS

    claims = pd.read_csv(tiny_run / "results" / "claims.tsv", sep="\t", keep_default_na=False, na_values=[""])
    assert list(claims.columns) == COLUMNS
    headline = claims[claims.comparison == "all comparisons"]
    assert headline.claim.tolist() == [1, 2, 3, 4, 5]
    assert set(claims.verdict) <= {"yes", "no", "partly", "inconclusive"}
    assert claims.reason.notna().all()
    detail = claims[claims.comparison != "all comparisons"]
    assert detail.test.notna().all() and (detail.n_replicates >= 1).all()
    # one network per variant (seeds: [0]): every variant contrast is inconclusive, whatever the data
    variant = detail[(detail.claim == 5) & detail.comparison.str.startswith("variant")]
    assert len(variant) and set(variant.verdict) == {"inconclusive"}
    assert variant.reason.str.contains("too few networks").all()
    # claim 1's estimate is the run's own largest |overall drop| per variant and layer
    for model in MODELS:
        variant_name = json.loads((tiny_run / "results" / "models" / f"{model}.json").read_text())["variant"]
        for layer in ("conv5",):
            units = pd.read_csv(tiny_run / "results" / model / "ablation" / f"{layer}.units.tsv", sep="\t")
            row = detail[(detail.claim == 1) & (detail.comparison == f"variant {variant_name}, {layer}")]
            assert row.estimate.iloc[0] == pytest.approx(units.overall_drop.abs().max())
            stats_table = pd.read_csv(tiny_run / "results" / model / "statistics" / f"{layer}.tsv", sep="\t")
            assert {"cv_rho", "specificity", "overall_drop_reliability"} <= set(stats_table.statistic)


def test_cumulative_curves_start_at_the_intact_model_and_follow_the_ranking(tiny_run):
    for model in MODELS:
        table = pd.read_csv(tiny_run / "results" / model / "cumulative" / "conv5.tsv", sep="\t")
        classes = pd.read_csv(tiny_run / "results" / model / "ablation" / "conv5.classes.tsv", sep="\t")
        assert set(table.groupby("ranked_on")["class"].nunique()) == {2} and sorted(set(table.k)) == [
            0,
            1,
            2,
            4,
        ]
        assert set(table.order) == {"top", "random"} and set(table[table.order == "random"].draw) == {0, 1}
        intact = table[table.k == 0]
        accuracy = json.loads((tiny_run / "results" / "models" / f"{model}.json").read_text())[
            "test_accuracy"
        ]
        # each fold is evaluated on one half: the halves' intact accuracies average to the whole's
        halves = intact.groupby("evaluated_on").overall_accuracy.first()
        assert sorted(halves.index) == [0, 1] and halves.mean() == pytest.approx(accuracy, abs=2.0)
        assert (intact.class_drop == 0).all()
        assert set(zip(table.ranked_on, table.evaluated_on, strict=True)) == {(0, 1), (1, 0)}
        top = table[(table.order == "top") & (table.k == 1)]
        for _, row in top.iterrows():
            # ranked on one half, its top unit's drop measured on the other half's images
            ranked = classes[classes["class"] == row["class"]]
            best = ranked.sort_values([f"drop_h{row.ranked_on}", "unit"], ascending=[False, True]).iloc[0]
            assert str(row.units) == str(int(best.unit))
            assert row.class_drop == pytest.approx(best[f"drop_h{row.evaluated_on}"], abs=1e-6)


def test_concept_iou_option_runs_only_what_it_affects(tiny_run, tmp_path):
    from support.broden_fixture import write_broden

    workdir = tmp_path / "run"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["concepts"]["root"] = str(write_broden(tmp_path / "broden"))
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    dry = snakemake(workdir, "-n", "--quiet", "rules")
    assert dry.returncode == 0, dry.stderr[-2000:]
    scheduled = set(scheduled_jobs(dry.stdout + dry.stderr))
    assert {"concept_iou", "correlate"} <= scheduled
    assert not scheduled & {"train", "extract", "attributes", "ablate", "gather", "cumulative"}
    target = f"results/{MODELS[0]}/correlation.tsv"
    result = snakemake(workdir, target)
    assert result.returncode == 0, result.stderr[-3000:]
    concepts = pd.read_csv(workdir / "results" / MODELS[0] / "concepts" / "conv5@rot0.tsv", sep="\t")
    assert len(concepts) == 32 and concepts.iou.between(0, 1).all()
    table = pd.read_csv(workdir / target, sep="\t")
    assert set(table[table.attribute == "concept_iou"].layer_spec) == set(LAYERS)


BAD_CONFIGS = {
    "chunk_size": ("ablation", "chunk_size", 0, "0"),
    "layers": ("analysis", "layers", ["conv9"], "conv9"),
    "epochs": ("train", "epochs", "three", "three"),
    "colour": ("plots", "colour", "red", "colour"),
}


def write_config(workdir: Path, section: str, key: str, value) -> None:
    config = yaml.safe_load((TINY_CONFIG).read_text())
    config[section][key] = value
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


@pytest.mark.parametrize("key", BAD_CONFIGS)
def test_bad_config_is_rejected_with_key_and_value_named(tmp_path, key):
    section, _, value, shown = BAD_CONFIGS[key]
    write_config(tmp_path, section, key, value)
    result = snakemake(tmp_path, "-n")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert key in output and shown in output
    assert "Job stats" not in output  # rejected before any job was scheduled


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("cumulative", "layers", ["conv3"], "cumulative.layers: 'conv3' is not in analysis.layers"),
        ("concepts", "root", "/nonexistent/broden", "concepts.root: '/nonexistent/broden' has no index.csv"),
        ("cumulative", "classes", 0, "classes"),
    ],
)
def test_bad_option_combinations_are_named(tmp_path, section, key, value, message):
    write_config(tmp_path, section, key, value)
    result = snakemake(tmp_path, "-n")
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_module_paths_name_layers_too(tmp_path):
    write_config(tmp_path, "analysis", "layers", ["features.conv5"])
    result = snakemake(tmp_path, "-n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "features.conv5@rot0" in result.stdout


def test_correlation_tables_have_bootstrap_intervals(tiny_run):
    for model in MODELS:
        table = pd.read_csv(tiny_run / "results" / model / "correlation.tsv", sep="\t")
        assert set(table.layer_spec) == set(LAYERS)
        defined = table.dropna(subset=["spearman_rho", "spearman_ci_low", "spearman_ci_high"])
        assert len(defined) > 0
        assert (defined.spearman_ci_low <= defined.spearman_ci_high).all()
        assert defined.spearman_rho.between(-1, 1).all()


def test_agreement_tables_cover_every_layer(tiny_run):
    for model in MODELS:
        table = pd.read_csv(tiny_run / "results" / model / "agreement.tsv", sep="\t")
        assert table.layer_spec.tolist() == LAYERS
        used = table[table.units_used > 0]
        assert len(used) > 0
        assert used.top1_share.between(0, 1).all() and (used.top5_share >= used.top1_share).all()
        assert used.top1_p.between(0, 1).all()


def dry_run_counts(workdir: Path, **ablation) -> dict[str, int]:
    config = yaml.safe_load((TINY_CONFIG).read_text())
    config["ablation"].update(ablation)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "-n", "--quiet", "rules")
    assert result.returncode == 0, result.stderr[-2000:]
    return scheduled_jobs(result.stdout + result.stderr)


UNITS = {"conv4": 48, "conv4@rot0": 48, "conv5": 32, "conv5@rot0": 32}  # width 0.5


@pytest.mark.parametrize("chunk_size", [1, 7, 24, 48])
def test_ablate_jobs_are_models_times_layers_times_chunks(tmp_path, chunk_size):
    counts = dry_run_counts(tmp_path, chunk_size=chunk_size)
    chunks = sum(-(-units // chunk_size) for units in UNITS.values())
    assert counts["ablate"] == len(MODELS) * chunks
    assert counts["gather"] == len(MODELS) * len(UNITS)


@pytest.mark.parametrize(
    ("job_minutes", "ablate_jobs"),
    [(1e-9, len(MODELS) * sum(UNITS.values())), (1e6, len(MODELS) * len(UNITS))],
    ids=["one-unit-per-job", "one-job-per-layer"],
)
def test_auto_chunks_follow_the_target_job_runtime(tmp_path, job_minutes, ablate_jobs):
    counts = dry_run_counts(tmp_path, chunk_size="auto", job_minutes=job_minutes)
    assert counts["ablate"] == ablate_jobs


def test_auto_chunks_size_each_layer_by_its_own_cost(tmp_path):
    from unit_ablation.spec.cost import units_per_job

    gflops, minutes = 1.0, 0.05  # tiny: a few units per job
    counts = dry_run_counts(tmp_path, chunk_size="auto", job_minutes=minutes, gflops=gflops)
    seconds = 60 * minutes
    per_job = {spec: units_per_job(seconds, TEST_SIZE, spec, 0.5, gflops, n) for spec, n in UNITS.items()}
    assert len(set(per_job.values())) > 1  # the layers really differ in cost at these settings
    assert counts["ablate"] == len(MODELS) * sum(-(-UNITS[spec] // n) for spec, n in per_job.items())


def test_gpu_jobs_claim_the_gpu_that_the_default_profile_has_one_of(tmp_path):
    profile = yaml.safe_load((PROJECT_ROOT / "profiles" / "default" / "profile.yaml").read_text())
    assert "gpu=1" in profile["resources"]  # a one-GPU workstation: one GPU job at a time
    config = yaml.safe_load((TINY_CONFIG).read_text())
    config["ablation"]["device"] = "cuda"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n")
    assert result.returncode == 0, result.stderr[-2000:]
    blocks = (result.stdout + result.stderr).split("\nrule ")[1:]
    gpu_rules = {block.split(":")[0] for block in blocks if re.search(r"resources: .*\bgpu=1\b", block)}
    assert gpu_rules == {"ablate", "cumulative", "extract"}
