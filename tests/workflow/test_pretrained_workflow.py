"""Paper-scale path on a small scale: torchvision models on a generated ImageFolder, whole workflow."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from support.workflow_runs import PROJECT_ROOT, TINY_CONFIG, scheduled_jobs, snakemake

pytestmark = pytest.mark.integration
CLASSES = ["bars", "dots", "plain"]
IMAGES_PER_CLASS = 6
UNITS = {"alexnet-places": {"conv5": 256}, "resnet18-random": {"layer4": 512}}
CHUNK_SIZE = 256  # AlexNet's conv5 in one job, ResNet's layer4 in two


def write_image_folder(root: Path) -> Path:
    """3 classes of 80 x 72 RGB images with class-specific patterns."""
    rng = np.random.default_rng(0)
    for index, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(IMAGES_PER_CLASS):
            pixels = rng.integers(0, 80, size=(72, 80, 3), dtype=np.uint8)
            if index == 0:
                pixels[::8] = 255
            elif index == 1:
                pixels[::6, ::6] = 255
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def write_places365_weights(path: Path) -> Path:
    """A random AlexNet with 3 classes saved in the Places365 release's layout."""
    from torchvision.models import alexnet

    torch.manual_seed(0)
    state = {f"module.{key}": value for key, value in alexnet(num_classes=len(CLASSES)).state_dict().items()}
    torch.save({"epoch": 90, "arch": "alexnet", "state_dict": state}, path)
    return path


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    """The image folder and the AlexNet weights file (228 MB), made once for every test here."""
    folder = tmp_path_factory.mktemp("assets")
    write_image_folder(folder / "images")
    write_places365_weights(folder / "alexnet_places365.pth.tar")
    return folder


def study_config(assets: Path) -> dict:
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["data"].update(
        source="images",
        images={
            "test": {"folder": str(assets / "images")},
            "heldout": None,
            "resize": 72,
            "crop": 64,
            "workers": 1,
        },
    )
    config["variants"] = {}
    # one small image set serves both: the override the config check asks for when attributes
    # come from the evaluation images
    config["analysis"]["allow_attributes_on_evaluation_split"] = True
    config["pretrained"] = {
        "alexnet-places": {
            "arch": "alexnet",
            "num_classes": 3,
            "weights": str(assets / "alexnet_places365.pth.tar"),
            "layers": ["conv5"],
        },
        "resnet18-random": {"arch": "resnet18", "num_classes": 3, "weights": None, "layers": ["layer4"]},
    }
    # the canonical basis only: rotated bases run in the tiny study and on these models in
    # tests/unit/engine/test_engine.py
    config["analysis"]["rotation_seeds"] = []
    config["ablation"].update(chunk_size=CHUNK_SIZE, batch_size=9)
    config["correlation"].update(resamples=20, permutations=20)
    config["cumulative"].update(layers=["conv5"], classes=2, max_units=2, random_draws=1)
    return config


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory, assets) -> Path:
    workdir = tmp_path_factory.mktemp("pretrained")
    (workdir / "config.yaml").write_text(yaml.safe_dump(study_config(assets)))
    result = snakemake(workdir)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    return workdir


def test_dry_run_plans_models_times_layers_times_chunks(tmp_path, assets):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(study_config(assets)))
    result = snakemake(tmp_path, "-n", "--quiet", "rules")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = scheduled_jobs(result.stdout + result.stderr)
    chunks = sum(-(-units // CHUNK_SIZE) for layers in UNITS.values() for units in layers.values())
    assert counts["ablate"] == chunks
    assert counts["prepare_model"] == 2 and counts["decode_images"] == 1 and "train" not in counts
    assert counts["cumulative"] == 1  # conv5 is a layer of the AlexNet only


def test_whole_workflow_runs_on_torchvision_models(pretrained_run):
    results = pretrained_run / "results"
    assert (results / "summary.md").is_file() and (results / "figures" / "variants_and_bases.png").is_file()
    for model, layers in UNITS.items():
        metadata = json.loads((results / "models" / f"{model}.json").read_text())
        assert metadata["architecture"]["arch"] == "torchvision" and metadata["class_names"] == CLASSES
        assert 0 <= metadata["test_accuracy"] <= 100
        for layer, units in layers.items():
            table = pd.read_csv(results / model / "ablation" / f"{layer}.units.tsv", sep="\t")
            assert sorted(table.unit) == list(range(units))
            classes = pd.read_csv(results / model / "ablation" / f"{layer}.classes.tsv", sep="\t")
            assert (classes.groupby("unit").n.sum() == len(CLASSES) * IMAGES_PER_CLASS).all()
            attributes = pd.read_csv(results / model / "attributes" / f"{layer}.tsv", sep="\t")
            assert len(attributes) == units and (attributes.l1_in > 0).all()
    cumulative = pd.read_csv(results / "alexnet-places" / "cumulative" / "conv5.tsv", sep="\t")
    assert set(cumulative.k) == {0, 1, 2}
    log = (results / "logs" / "decode_images" / "test.log").read_text()
    assert "18" in log  # the progress lines count the decoded images


def test_weights_file_was_loaded_not_random(pretrained_run, assets):
    from unit_ablation.models.checkpoint import load_model

    model = load_model(pretrained_run / "results" / "models" / "alexnet-places.pt")
    saved = torch.load(assets / "alexnet_places365.pth.tar", weights_only=True)["state_dict"]
    assert torch.equal(model.net.features[10].weight, saved["module.features.10.weight"])
    metadata = json.loads((pretrained_run / "results" / "models" / "alexnet-places.json").read_text())
    assert metadata["weights"].endswith("alexnet_places365.pth.tar") and len(metadata["weights_sha256"]) == 64


def test_class_count_that_does_not_match_the_data_is_named(tmp_path, assets):
    config = study_config(assets)
    config["pretrained"]["resnet18-random"]["num_classes"] = 5
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "results/models/resnet18-random.pt")
    assert result.returncode != 0
    assert "pretrained.resnet18-random.num_classes is 5" in (result.stdout + result.stderr)
    assert not (tmp_path / "results" / "models" / "resnet18-random.pt").exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["pretrained"]["resnet18-random"].update(layers=["layer9"]), "unknown layer 'layer9'"),
        (lambda c: c.update(variants={"baseline": {"dropout": 0.5, "batchnorm": False}}), "variants:"),
        (lambda c: c["data"].update(images=None), "data.images: required"),
    ],
    ids=["unknown-layer", "training-on-images", "no-image-sets"],
)
def test_bad_pretrained_configs_are_named_before_any_job(tmp_path, assets, edit, message):
    config = study_config(assets)
    edit(config)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n")
    assert result.returncode != 0 and message in result.stdout + result.stderr


@pytest.mark.parametrize("name", ["imagenet", "places365-alexnet"])
def test_example_configs_plan_the_expected_jobs(tmp_path, name):
    for placeholder in [
        "data/imagenet/val_labels.txt",
        "data/places365/places365_val.txt",
        "resources/weights/alexnet_places365.pth.tar",
    ]:
        (tmp_path / placeholder).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / placeholder).touch()
    # the image folders and class-names files with the real class counts (checked before any job)
    (tmp_path / "data/imagenet/val").mkdir()
    (tmp_path / "data/places365/val_256").mkdir()
    synsets = "".join(f"n{i:08d} thing {i}\n" for i in range(1000))
    (tmp_path / "data/imagenet/LOC_synset_mapping.txt").write_text(synsets)
    categories = "".join(f"/c/category{i} {i}\n" for i in range(365))
    (tmp_path / "data/places365/categories_places365.txt").write_text(categories)
    for dataset, classes in (("imagenet", 1000), ("places365", 365)):  # the attributes' training subsets
        for index in range(classes):
            (tmp_path / f"data/{dataset}/train_subset/class{index:04d}").mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "configs" / f"{name}.yaml", tmp_path / "config.yaml")
    result = snakemake(tmp_path, "-n", "--quiet", "rules")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = scheduled_jobs(result.stdout + result.stderr)
    if name == "imagenet":  # 256 units per job, canonical + 1 rotated basis
        chunks = {"alexnet": 1, "vgg16": 2, "vgg16-bn": 2, "resnet18": 2}
        assert counts["fetch_weights"] == 4 and counts["prepare_model"] == 4
    else:
        chunks = {"alexnet-places365": 1}
        assert "fetch_weights" not in counts and counts["prepare_model"] == 1
    assert counts["ablate"] == 2 * sum(chunks.values())
    assert counts["gather"] == counts["extract"] == 2 * len(chunks)
    assert counts["cumulative"] == len(chunks) and "train" not in counts
    assert counts["decode_images"] == 2  # the evaluation images and the attributes' training subset
