"""The study planning of `rules/common.smk` (`workflow.study.Study`) on plain config dicts: models,
layer specs, chunks, cumulative layers, rule params, targets and per-model code hashes."""

from __future__ import annotations

import pytest

from unit_ablation.spec.cost import units_per_job
from unit_ablation.spec.model_classes import MODEL_MODULES
from unit_ablation.workflow.code_hash import stage_code_hash
from unit_ablation.workflow.study import attributes_of, chunk_units, name_pattern

from support.studies import TINY, pretrained, study
from support.workflow_runs import PROJECT_ROOT

TRAINED = ["fmnist-alexnet-baseline-s0", "fmnist-alexnet-bn-s0"]
SPECS = ["conv4", "conv4@rot0", "conv5", "conv5@rot0"]
PACKAGE = PROJECT_ROOT / "src" / "unit_ablation"


class Wildcards:
    def __init__(self, **values: str):
        self.__dict__.update(values)


def test_models_are_the_trained_ones_then_the_pretrained_ones():
    assert list(study().models) == TRAINED
    assert study().models[TRAINED[1]] == ("bn", 0)
    plan = study(pretrained)
    assert list(plan.models) == ["alexnet", "resnet"] and plan.trained == {}
    assert plan.models["resnet"] == ("resnet", 0)
    assert plan.dataset == "results/data/images.json" and study().dataset == "results/data/fashion-mnist.npz"


def test_layer_specs_per_model():
    assert study().layer_specs == {model: SPECS for model in TRAINED}
    compared = study(lambda c: c["analysis"].update(compare_values=["mean"], rotation_seeds=[0, 4]))
    assert compared.layer_specs[TRAINED[0]] == [
        *["conv4", "conv4@rot0", "conv4@rot4", "conv5", "conv5@rot0", "conv5@rot4"],
        *["conv4+mean", "conv4@rot0+mean", "conv4@rot4+mean", "conv5+mean", "conv5@rot0+mean"],
        "conv5@rot4+mean",
    ]
    plan = study(pretrained)  # a model's own layers, else analysis.layers
    assert plan.layer_specs == {"alexnet": ["conv4", "conv4@rot0", "conv5", "conv5@rot0"]} | {
        "resnet": ["layer3", "layer3@rot0"]
    }
    assert plan.model_and_layer_spec_pairs()[-1] == ("resnet", "layer3@rot0")


def test_unit_counts_of_the_built_in_and_torchvision_models():
    assert study().unit_count(TRAINED[0], "conv4@rot0") == 48  # width 0.5
    assert study(lambda c: c["model"].update(width=1.0)).unit_count(TRAINED[0], "features.conv4") == 96
    plan = study(pretrained)
    assert plan.unit_count("alexnet", "conv4+mean") == 256
    assert plan.unit_count("resnet", "layer3@rot0") == 100  # pretrained.resnet.units


@pytest.mark.parametrize(
    ("chunk_size", "layer_spec", "chunks"),
    [(24, "conv4", ["0-23", "24-47"]), (7, "conv5", ["0-6", "7-13", "14-20", "21-27", "28-31"])]
    + [(48, "conv4@rot0", ["0-47"]), (100, "conv5", ["0-31"])],
)
def test_chunks_cover_the_units_in_order(chunk_size, layer_spec, chunks):
    plan = study(lambda c: c["ablation"].update(chunk_size=chunk_size))
    assert plan.chunks(TRAINED[0], layer_spec) == chunks
    covered = [unit for chunk in chunks for unit in chunk_units(chunk)]
    assert covered == list(range(plan.unit_count(TRAINED[0], layer_spec)))


def test_auto_chunks_follow_the_cost_model_per_layer():
    minutes, gflops = 0.05, 1.0
    plan = study(lambda c: c["ablation"].update(chunk_size="auto", job_minutes=minutes, gflops=gflops))
    sizes = {}
    for spec in SPECS:
        units = plan.unit_count(TRAINED[0], spec)
        sizes[spec] = units_per_job(60 * minutes, TINY["data"]["test_size"], spec, 0.5, gflops, units)
        assert plan.chunk_size(TRAINED[0], spec) == sizes[spec]
        assert len(plan.chunks(TRAINED[0], spec)) == -(-units // sizes[spec])
    assert len(set(sizes.values())) > 1  # the layers differ in cost
    one_each = study(lambda c: c["ablation"].update(chunk_size="auto", job_minutes=1e-9))
    assert one_each.chunks(TRAINED[1], "conv5") == [f"{unit}-{unit}" for unit in range(32)]
    whole = study(lambda c: c["ablation"].update(chunk_size="auto", job_minutes=1e6))
    assert whole.chunks(TRAINED[1], "conv4") == ["0-47"]


def test_cumulative_layers_are_named_as_analysis_layers_names_them():
    def paths(config):
        config["analysis"]["layers"] = ["features.conv4", "conv5"]
        config["cumulative"]["layers"] = ["conv4", "features.conv5"]

    plan = study(paths)
    assert plan.cumulative_layers == {model: ["features.conv4", "conv5"] for model in TRAINED}
    assert plan.cumulative_tables()[:2] == [
        f"results/{TRAINED[0]}/cumulative/features.conv4.tsv",
        f"results/{TRAINED[0]}/cumulative/conv5.tsv",
    ]
    assert study(pretrained).cumulative_layers == {"alexnet": ["conv5"], "resnet": []}
    assert study(lambda c: c["cumulative"].update(layers=[])).cumulative_tables() == []


def test_train_params_apply_the_variant_overrides_and_the_seed():
    def overrides(config):
        config["seeds"] = [0, 3]
        config["variants"]["bn"]["train"] = {"epochs": 3, "lr": 0.01, "precision": "bf16"}

    plan = study(overrides)
    assert plan.train_params("fmnist-alexnet-bn-s3") == {
        "epochs": 3,
        "batch_size": 32,
        "lr": 0.01,
        "weight_decay": 0.0,
        "precision": "bf16",
        "warmup": 0.3,
        "width": 0.5,
        "dropout": 0.5,
        "batchnorm": True,
        "seed": 3,
    }
    baseline = plan.train_params("fmnist-alexnet-baseline-s0")
    assert (baseline["epochs"], baseline["lr"], baseline["precision"]) == (1, 0.003, "fp32")
    assert baseline["batchnorm"] is False and baseline["seed"] == 0


def test_targets_of_the_tiny_config():
    targets = study().all_targets()
    assert len(targets) == len(set(targets)) == 4 + 5 * 2 + 2 * 2 + 2 + 2 * 2 + 2 * 4 * 2 * 2
    summaries = ["results/summary.tsv", "results/summary.md", "results/claims.tsv", "results/config.yaml"]
    assert targets[:4] == summaries
    for name in ["network_effects", "overall_vs_max_class_drop", "cumulative_ablation"]:
        assert {f"results/figures/{name}.png", f"results/figures/{name}.pdf"} <= set(targets)
    for model in TRAINED:
        assert f"results/{model}/correlation.tsv" in targets and f"results/{model}/agreement.tsv" in targets
        assert f"results/{model}/cumulative/conv5.tsv" in targets
        assert f"results/figures/{model}.sorted_units.pdf" in targets
        for spec in SPECS:
            assert f"results/figures/{model}.{spec}.heatmap.png" in targets
            assert f"results/figures/{model}.{spec}.attributes.pdf" in targets
    first = targets.index(f"results/figures/{TRAINED[0]}.conv4.attributes.png")  # PNG then PDF
    figures = ["attributes.png", "attributes.pdf", "heatmap.png", "heatmap.pdf"]
    assert targets[first : first + 4] == [f"results/figures/{TRAINED[0]}.conv4.{name}" for name in figures]
    without = study(lambda c: c["cumulative"].update(layers=[])).all_targets()
    assert set(targets) - set(without) == {
        "results/figures/cumulative_ablation.png",
        "results/figures/cumulative_ablation.pdf",
        *(f"results/{model}/cumulative/conv5.tsv" for model in TRAINED),
    }


def test_network_options_name_the_config_keys_they_come_from():
    options = study().network_options()
    assert options["resamples"] == TINY["correlation"]["resamples"]
    assert options["min_active_fraction"] == 0.01  # the schema's default
    assert options["folds"] == 5 and options["permutations"] == 200  # `claims` defaults


def test_attribute_tables_of_a_layer_spec_ignore_its_ablation_value():
    wildcards = Wildcards(model=TRAINED[0], layer_spec="conv5@rot0+mean")
    assert attributes_of("units")(wildcards) == f"results/{TRAINED[0]}/attributes/conv5@rot0.tsv"
    assert (
        attributes_of("per_class")(wildcards) == f"results/{TRAINED[0]}/attributes/per_class/conv5@rot0.tsv"
    )


def test_mean_ablation_split():
    zero = study()
    assert zero.mean_ablation_split() is None
    assert zero.mean_ablation_split(zero.spec_value("conv5+mean")) == "heldout"
    assert zero.spec_value("conv5@rot0") == "zero"
    mean = study(lambda c: c["ablation"].update(value="mean"))
    assert mean.mean_ablation_split() == "heldout" and mean.spec_value("conv5") == "mean"
    assert mean.mean_ablation_split(mean.spec_value("conv5+zero")) is None


@pytest.mark.parametrize("script", ["ablate.py", "train.py", "extract.py"])
def test_checkpoint_loading_stages_hash_each_models_class_module(script):
    path = PROJECT_ROOT / "scripts" / script
    per_job = study().code(script)
    assert callable(per_job)
    built_in = stage_code_hash(path, PACKAGE, [MODEL_MODULES["fmnist_alexnet"]])
    assert per_job(Wildcards(model=TRAINED[0])) == built_in
    torchvision = study(pretrained).code(script)(Wildcards(model="resnet"))
    assert torchvision == stage_code_hash(path, PACKAGE, [MODEL_MODULES["torchvision"]])
    assert torchvision != built_in


def test_other_stages_have_one_code_hash():
    assert study().code("gather.py") == stage_code_hash(PROJECT_ROOT / "scripts" / "gather.py", PACKAGE)
    assert study().code("gather.py") != study().code("correlate.py")


def test_start_of_run_estimates_cover_the_built_in_model_only():
    lines, warning = study().ablation_estimates()
    assert len(lines) == len(TRAINED) * len(SPECS)
    assert lines[0].startswith(f"ablate {TRAINED[0]} conv4: 2 job(s) of up to 24 units, about ")
    assert warning is not None and warning.startswith("ablate jobs of about ")  # the tiny jobs are short
    slow = study(lambda c: c["ablation"].update(gflops=1e-6))
    assert slow.ablation_estimates()[1] is None
    assert study(pretrained).ablation_estimates() == ([], None)  # the cost model knows no torchvision model


def test_weights_images_and_concepts_inputs():
    plan = study(pretrained)
    assert plan.weights_file("alexnet") == "resources/weights/alexnet.IMAGENET1K_V1.pth"
    assert plan.weights_file("resnet") == []
    assert plan.image_cache("heldout") == plan.image_cache("test") == "results/data/images/test"
    assert plan.concept_index() == [] and plan.concept_table("alexnet", "conv5") == []
    broden = study(lambda c: c["concepts"].update(root="/data/broden"))
    assert broden.concept_index() == "/data/broden/index.csv"
    table = f"results/{TRAINED[0]}/concepts/conv5@rot0.tsv"  # one per layer and basis
    assert broden.concept_table(TRAINED[0], "conv5@rot0+mean") == table


def test_name_pattern_matches_exactly_the_names():
    assert name_pattern(["vgg16-bn", "a.b"]) == r"vgg16\-bn|a\.b"
    assert name_pattern([]) == "(?!)"


def own_models(config: dict) -> None:
    """Image data with a python: image set and two python: models of two files, and a timm model."""
    pretrained(config)
    config["data"]["images"]["heldout"] = {"python": "sets.py:heldout"}
    config["pretrained"] = {
        name: {"arch": arch, "num_classes": 3, "weights": None, "layers": ["body.2"], "units": {"body.2": 40}}
        for name, arch in (
            ("one", "python:nets/one.py:build"),
            ("two", "python:nets/two.py:build"),
            ("other", "timm:resnet10t"),
            ("tv", "torchvision:alexnet"),
        )
    }
    config["pretrained"]["tv"].update(layers=["conv5"], units={}, weights="torchvision:IMAGENET1K_V1")
    config["cumulative"]["layers"] = []


def test_python_model_and_data_set_files_join_the_code_hashes_of_their_jobs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # python: files are relative to the working directory
    (tmp_path / "nets").mkdir()
    for name in ("one", "two"):
        (tmp_path / "nets" / f"{name}.py").write_text("def build(num_classes):\n    return None\n")
    (tmp_path / "sets.py").write_text("def heldout():\n    return None\n")

    def hashes() -> tuple[dict[str, str], dict[str, str]]:
        plan = study(own_models)
        per_model = plan.code("extract.py")
        decode = plan.decode_code()
        return (
            {model: per_model(Wildcards(model=model)) for model in plan.pretrained},
            {split: decode(Wildcards(split=split)) for split in ("test", "heldout")},
        )

    models, splits = hashes()
    assert len(set(models.values())) == 4  # each python file, timm and torchvision apart
    assert splits["test"] == stage_code_hash(PROJECT_ROOT / "scripts" / "decode_images.py", PACKAGE)
    assert splits["heldout"] != splits["test"]
    (tmp_path / "nets" / "one.py").write_text("def build(num_classes):\n    # a comment\n    return None\n")
    assert hashes() == (models, splits)  # comments and layout change nothing
    (tmp_path / "nets" / "one.py").write_text("def build(num_classes):\n    return 1\n")
    edited, _ = hashes()
    assert {model for model in models if edited[model] != models[model]} == {"one"}
    (tmp_path / "sets.py").write_text("def heldout():\n    return 1\n")
    _, edited_splits = hashes()
    assert edited_splits["heldout"] != splits["heldout"] and edited_splits["test"] == splits["test"]


def test_own_models_plan_from_their_units_and_their_arch_kinds(tmp_path):
    plan = study(own_models)
    assert plan.model_arch("one") == "python" and plan.model_arch("other") == "timm"
    assert plan.model_arch("tv") == "torchvision" and plan.model_files("one") == ["nets/one.py"]
    assert plan.chunks("other", "body.2") == ["0-39"] and plan.layer_unit_counts("tv") == {"conv5": 256}
    assert plan.weights_file("tv") == "resources/weights/alexnet.IMAGENET1K_V1.pth"
    assert plan.image_set_files("heldout") == ["sets.py"] and plan.image_set_files("test") == []
