"""Paper-scale path on a small scale, whole workflow: a torchvision model (weights in the Places365
layout), a timm model and a `python:` model of the test's own, on a generated ImageFolder (the
evaluation images) and a `python:` data set (the attribute images)."""

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

from support.workflow_runs import PROJECT_ROOT, TINY_CONFIG, planned_jobs, scheduled_jobs, snakemake

pytestmark = pytest.mark.integration
CLASSES = ["bars", "dots", "plain"]
IMAGES_PER_CLASS = 6
UNITS = {"alexnet-places": {"conv5": 256}, "timm-resnet": {"layer4": 512}, "python-net": {"features.3": 12}}
ARCHS = {"alexnet-places": "torchvision", "timm-resnet": "timm", "python-net": "python"}
CHUNK_SIZE = 256  # AlexNet's conv5 in one job, the timm ResNet's layer4 in two, the python net's in one
STUDY_LEVEL_RULES = {"summarize"}
# The run goes to the summary (every computing stage of every model) and the python model's
# cumulative curves: the figures of these tables are drawn in the tiny run, and each job here
# costs about 5 s of CPU to start
TARGETS = ("results/summary.md", "results/python-net/cumulative/features.3.tsv")
PYTHON_MODEL = "models/small_net.py"
PYTHON_DATA = "datasets/patterns.py"

# The python: model (written into each test's working directory): it reads [0, 1] images and
# normalises inside itself, as the docs ask; torch.fx cannot trace it
SMALL_NET = """\
import torch
from torch import nn


class SmallNet(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv2d(8, 12, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(12, num_classes)

    def forward(self, x):
        x = (x - 0.5) / 0.25
        # Python control flow on each image's values: torch.fx cannot trace this model, so its
        # jobs take the hook-based fallback (no image is that bright: the output is unchanged)
        x = torch.cat([image * 0.5 if image.mean() > 100 else image for image in x.split(1)])
        return self.classifier(torch.flatten(self.features(x), 1))


def build(num_classes):
    return SmallNet(num_classes)
"""

# The python: data set of the attribute images: uint8 C x H x W tensors, the class names as a
# `classes` attribute (as torchvision's data sets have)
PATTERNS = """\
import numpy as np
import torch
from torch.utils.data import Dataset


class Patterns(Dataset):
    classes = ["bars", "dots", "plain"]

    def __init__(self, per_class, seed):
        rng = np.random.default_rng(seed)
        self.items = []
        for label in range(3):
            for _ in range(per_class):
                pixels = rng.integers(0, 80, size=(3, 72, 80), dtype=np.uint8)
                if label == 0:
                    pixels[:, ::8] = 255
                elif label == 1:
                    pixels[:, ::6, ::6] = 255
                self.items.append((torch.from_numpy(pixels), label))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def heldout():
    return Patterns(per_class=4, seed=1)
"""


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


def write_timm_weights(path: Path) -> Path:
    """A random timm ResNet-10t with 3 classes, without timm's zero-initialised last BatchNorm of
    each block (whose zero scale would give every unit of a stage output zero incoming weights)."""
    import timm

    torch.manual_seed(0)
    net = timm.create_model("resnet10t", pretrained=False, num_classes=len(CLASSES), zero_init_last=False)
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    """The image folder and the AlexNet (228 MB) and timm weights files, made once for every test here."""
    folder = tmp_path_factory.mktemp("assets")
    write_image_folder(folder / "images")
    write_places365_weights(folder / "alexnet_places365.pth.tar")
    write_timm_weights(folder / "resnet10t.pt")
    return folder


def write_python_files(workdir: Path, assets: Path) -> None:
    """The python: model and data set files, relative to the working directory as the config names
    them, and the python model's weights (a state_dict of a seeded build) in the assets."""
    from unit_ablation.models.python_files import python_callable

    for name, text in ((PYTHON_MODEL, SMALL_NET), (PYTHON_DATA, PATTERNS)):
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_text(text)
    weights = assets / "small_net.pt"
    if not weights.exists():
        torch.manual_seed(1)
        net = python_callable(workdir / PYTHON_MODEL, "build", "test")(num_classes=len(CLASSES))
        torch.save(net.state_dict(), weights)


def study_config(assets: Path, workdir: Path) -> dict:
    write_python_files(workdir, assets)
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["data"].update(
        source="images",
        images={
            "test": {"folder": str(assets / "images")},
            "heldout": {"python": f"{PYTHON_DATA}:heldout"},
            "resize": 72,
            "crop": 64,
            "workers": 1,
        },
    )
    config["variants"] = {}
    config["pretrained"] = {
        "alexnet-places": {
            "arch": "alexnet",
            "num_classes": 3,
            "weights": str(assets / "alexnet_places365.pth.tar"),
            "layers": ["conv5"],
        },
        "timm-resnet": {
            "arch": "timm:resnet10t",
            "num_classes": 3,
            "weights": str(assets / "resnet10t.pt"),
            "layers": ["layer4"],
            "units": UNITS["timm-resnet"],
        },
        "python-net": {
            "arch": f"python:{PYTHON_MODEL}:build",
            "num_classes": 3,
            "weights": str(assets / "small_net.pt"),
            "layers": ["features.3"],
            "units": UNITS["python-net"],
        },
    }
    # the canonical basis only: rotated bases run in the tiny study and on these models in
    # tests/unit/engine/test_engine.py
    config["analysis"]["rotation_seeds"] = []
    config["ablation"].update(chunk_size=CHUNK_SIZE, batch_size=9)
    config["correlation"].update(resamples=20, permutations=20)
    config["cumulative"].update(layers=["features.3"], classes=2, max_units=2, random_draws=1)
    return config


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory, assets) -> Path:
    workdir = tmp_path_factory.mktemp("pretrained")
    (workdir / "config.yaml").write_text(yaml.safe_dump(study_config(assets, workdir)))
    result = snakemake(workdir, *TARGETS)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    return workdir


def test_dry_run_plans_models_times_layers_times_chunks(tmp_path, assets):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(study_config(assets, tmp_path)))
    result = snakemake(tmp_path, "-n", "--quiet", "rules")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = scheduled_jobs(result.stdout + result.stderr)
    chunks = sum(-(-units // CHUNK_SIZE) for layers in UNITS.values() for units in layers.values())
    assert counts["ablate"] == chunks
    assert counts["prepare_model"] == 3 and counts["decode_images"] == 2 and "train" not in counts
    assert counts["cumulative"] == 1  # features.3 is a layer of the python model only


def test_whole_workflow_runs_on_torchvision_timm_and_python_models(pretrained_run):
    results = pretrained_run / "results"
    assert (results / "summary.md").is_file()
    for model, layers in UNITS.items():
        metadata = json.loads((results / "models" / f"{model}.json").read_text())
        assert metadata["architecture"]["arch"] == ARCHS[model] and metadata["class_names"] == CLASSES
        assert 0 <= metadata["test_accuracy"] <= 100
        for layer, units in layers.items():
            table = pd.read_csv(results / model / "ablation" / f"{layer}.units.tsv", sep="\t")
            assert sorted(table.unit) == list(range(units))
            classes = pd.read_csv(results / model / "ablation" / f"{layer}.classes.tsv", sep="\t")
            assert (classes.groupby("unit").n.sum() == len(CLASSES) * IMAGES_PER_CLASS).all()
            attributes = pd.read_csv(results / model / "attributes" / f"{layer}.tsv", sep="\t")
            assert len(attributes) == units
            if model == "python-net":  # the weights are found by tracing: not for this model
                assert attributes.l1_in.isna().all() and attributes.activation_mean.notna().all()
            else:
                assert (attributes.l1_in > 0).all()
    cumulative = pd.read_csv(results / "python-net" / "cumulative" / "features.3.tsv", sep="\t")
    assert set(cumulative.k) == {0, 1, 2}
    # the python model cannot be traced: exact hook-based ablation, named in the tables and logs
    python_units = pd.read_csv(results / "python-net" / "ablation" / "features.3.units.tsv", sep="\t")
    assert set(python_units.plan) == {"hooks"} and python_units.overall_drop.abs().sum() > 0
    ablate_logs = (results / "logs" / "ablate" / "python-net").rglob("*.log")
    assert any(
        "torch.fx cannot trace ModuleClassifier at small_net.py:" in path.read_text() for path in ablate_logs
    )
    log = (results / "logs" / "decode_images" / "test.log").read_text()
    assert "18" in log  # the progress lines count the decoded images
    timm_meta = json.loads((results / "models" / "timm-resnet.json").read_text())["architecture"]
    assert timm_meta["mean"] == [0.485, 0.456, 0.406] and timm_meta["input_size"] == [3, 64, 64]


def test_python_data_set_is_decoded_into_the_image_cache(pretrained_run):
    from unit_ablation.data.image_cache import load_image_cache

    images, labels, names = load_image_cache(pretrained_run / "results" / "data" / "images" / "heldout")
    assert images.shape == (12, 3, 64, 64) and names == tuple(CLASSES)
    assert labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert (images[:4, :, :, ::8] > 200).mean() > (images[8:, :, :, ::8] > 200).mean()  # the bars
    attributes = json.loads((pretrained_run / "results" / "data" / "images.json").read_text())
    assert attributes["splits"]["heldout"].endswith("images/heldout")


def test_weights_file_was_loaded_not_random(pretrained_run, assets, monkeypatch):
    from unit_ablation.models.checkpoint import load_model

    model = load_model(pretrained_run / "results" / "models" / "alexnet-places.pt")
    saved = torch.load(assets / "alexnet_places365.pth.tar", weights_only=True)["state_dict"]
    assert torch.equal(model.net.features[10].weight, saved["module.features.10.weight"])
    monkeypatch.chdir(pretrained_run)  # a python: model's file is found from the working directory
    model = load_model(pretrained_run / "results" / "models" / "python-net.pt")
    saved = torch.load(assets / "small_net.pt", weights_only=True)
    assert torch.equal(model.net.features[2].weight, saved["features.2.weight"])
    model = load_model(pretrained_run / "results" / "models" / "timm-resnet.pt")
    saved = torch.load(assets / "resnet10t.pt", weights_only=True)
    assert torch.equal(model.net.layer4[0].bn2.weight, saved["layer4.0.bn2.weight"])
    metadata = json.loads((pretrained_run / "results" / "models" / "alexnet-places.json").read_text())
    assert metadata["weights"].endswith("alexnet_places365.pth.tar") and len(metadata["weights_sha256"]) == 64


def test_class_count_that_does_not_match_the_data_is_named(tmp_path, assets):
    config = study_config(assets, tmp_path)
    config["pretrained"]["timm-resnet"]["num_classes"] = 5
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "results/models/timm-resnet.pt")
    assert result.returncode != 0
    assert "pretrained.timm-resnet.num_classes is 5" in (result.stdout + result.stderr)
    assert not (tmp_path / "results" / "models" / "timm-resnet.pt").exists()


def dry_run(workdir: Path, *args: str) -> set[tuple[str, str]]:
    result = snakemake(workdir, "-n", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return planned_jobs(result.stdout + result.stderr)


def test_editing_the_python_model_file_reruns_exactly_that_models_jobs(pretrained_run):
    mine = {job for job in dry_run(pretrained_run, "--forceall", *TARGETS) if "python-net" in job[1]}
    file = pretrained_run / PYTHON_MODEL
    original = file.read_text()
    try:
        file.write_text(original + "\n# a comment changes no behaviour\n")
        assert dry_run(pretrained_run, *TARGETS) == set()
        file.write_text(original.replace("(x - 0.5) / 0.25", "(x - 0.5) / 0.3"))
        planned = dry_run(pretrained_run, *TARGETS)
    finally:
        file.write_text(original)
    # every job of the python model, and the summary over the whole study
    assert {job for job in planned if "python-net" in job[1]} == mine
    assert {rule for rule, output in planned - mine} == STUDY_LEVEL_RULES
    assert dry_run(pretrained_run, *TARGETS) == set()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["pretrained"]["alexnet-places"].update(layers=["conv9"]), "unknown layer 'conv9'"),
        (
            lambda c: c["pretrained"]["timm-resnet"].pop("units"),
            "pretrained.timm-resnet.units.layer4: missing",
        ),
        (
            lambda c: c["pretrained"]["python-net"].update(arch=f"python:{PYTHON_MODEL}:make"),
            f"{PYTHON_MODEL} defines no 'make' at its top level (it defines: SmallNet, build)",
        ),
        (lambda c: c.update(variants={"baseline": {"dropout": 0.5, "batchnorm": False}}), "variants:"),
        (lambda c: c["data"].update(images=None), "data.images: required"),
    ],
    ids=[
        "unknown-layer",
        "timm-without-units",
        "python-callable-not-found",
        "training-on-images",
        "no-image-sets",
    ],
)
def test_bad_pretrained_configs_are_named_before_any_job(tmp_path, assets, edit, message):
    config = study_config(assets, tmp_path)
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
