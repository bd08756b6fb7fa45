"""Config checks before any job runs: a battery of malformed configs, each rejected with the key,
the bad value and what is accepted; the shipped configs pass; a bad config stops a dry run."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from unit_ablation.spec.zoo_layers import ARCH_LAYERS
from unit_ablation.workflow.config_check import ConfigError, check_config
from unit_ablation.workflow.config_schema import describe, load_schema

from support.workflow_runs import PROJECT_ROOT, TINY_CONFIG, snakemake

SCHEMA_PATH = PROJECT_ROOT / "schemas" / "config.schema.yaml"
SCHEMA = load_schema(SCHEMA_PATH)
TINY = yaml.safe_load(TINY_CONFIG.read_text())
CLASSES = ("bars", "dots", "plain")
LAYER_PATTERN = "^[A-Za-z0-9_.]+$"
ZOO_TAIL = (
    "the unit count of another module path is only known with torch, so use an alias or give `units:`"
    " in the config"
)
RESNET_ALIASES = "aliases are layer1, layer2, layer3, layer4"


def problems(config: dict, basedir: Path | None = None) -> list[str]:
    """The messages check_config raises (empty when the config passes)."""
    try:
        check_config(config, SCHEMA, basedir=basedir)
    except ConfigError as error:
        return error.problems
    return []


def tiny(tmp: Path) -> dict:
    return copy.deepcopy(TINY)


def image_study(tmp: Path, classes: tuple[str, ...] = CLASSES) -> dict:
    """The tiny config on an ImageFolder (class folders only: the checks never read images) with a
    random-init AlexNet and ResNet-18."""
    folder = tmp / "images"
    for name in classes:
        (folder / name).mkdir(parents=True)
    config = copy.deepcopy(TINY)
    config["data"].update(
        source="images",
        images={"test": {"folder": str(folder)}, "heldout": None, "resize": 72, "crop": 64, "workers": 1},
    )
    config["analysis"]["allow_attributes_on_evaluation_split"] = True  # the checks below are about other keys
    config["variants"] = {}
    config["pretrained"] = {
        "alexnet": {"arch": "alexnet", "num_classes": 3, "weights": None, "layers": ["conv5"]},
        "resnet": {"arch": "resnet18", "num_classes": 3, "weights": None, "layers": ["layer4"]},
    }
    config["ablation"].update(chunk_size=128)
    config["cumulative"].update(layers=["conv5"], classes=2)
    return config


def flat_study(tmp: Path, names: int = 1000) -> dict:
    """An ImageNet-style flat layout: image folder, labels file, class-names file of `names` synsets."""
    (tmp / "val").mkdir()
    (tmp / "labels.txt").write_text("a.jpg 0\n")
    (tmp / "synsets.txt").write_text("".join(f"n{i:08d} thing {i}, other\n" for i in range(names)))
    config = image_study(tmp)
    config["data"]["images"]["test"] = {
        "images": str(tmp / "val"),
        "labels": str(tmp / "labels.txt"),
        "class_names": str(tmp / "synsets.txt"),
    }
    config["pretrained"] = {
        "vgg": {"arch": "vgg16", "num_classes": 1000, "weights": None, "layers": ["conv5_3"]}
    }
    config["cumulative"]["layers"] = ["conv5_3"]
    return config


def class_folders(root: Path, names: tuple[str, ...] = ("a", "b")) -> str:
    """A folder with these class sub-folders."""
    root.mkdir(parents=True)
    for name in names:
        (root / name).mkdir()
    return str(root)


def edit(base: Callable[[Path], dict], change: Callable[[dict, Path], object]) -> Callable[[Path], dict]:
    def make(tmp: Path) -> dict:
        config = base(tmp)
        change(config, tmp)
        return config

    return make


def put(section: str, **values) -> Callable[[dict, Path], None]:
    return lambda config, tmp: config[section].update(values)


# (config maker, expected messages: a list, or a function of the temporary folder)
CASES: dict[str, tuple[Callable[[Path], dict], list[str] | Callable[[Path], list[str]]]] = {
    # ---- wrong types
    "type-batch-size-string": (
        edit(tiny, put("ablation", batch_size="big")),
        ["ablation.batch_size: 'big' is not accepted (accepted: an integer >= 1)"],
    ),
    "type-epochs-string": (
        edit(tiny, put("train", epochs="three")),
        ["train.epochs: 'three' is not accepted (accepted: an integer >= 1)"],
    ),
    "type-width-string": (
        edit(tiny, put("model", width="wide")),
        ["model.width: 'wide' is not accepted (accepted: a number > 0 and <= 16)"],
    ),
    "type-batchnorm-string": (
        edit(tiny, lambda c, t: c["variants"]["bn"].update(batchnorm="yes")),
        ["variants.bn.batchnorm: 'yes' is not accepted (accepted: true or false)"],
    ),
    "type-threads-bool": (
        edit(tiny, put("threads", train=True)),
        ["threads.train: True is not accepted (accepted: an integer >= 1)"],
    ),
    "type-layers-not-a-list": (
        edit(tiny, put("analysis", layers="conv5")),
        [
            "analysis.layers: 'conv5' is not accepted (accepted: a list of at least 1 unique items,"
            f" each a string matching {LAYER_PATTERN})",
        ],
    ),
    "type-layer-name-pattern": (
        edit(tiny, put("analysis", layers=["conv4", "conv 5"])),
        [f"analysis.layers[1]: 'conv 5' is not accepted (accepted: a string matching {LAYER_PATTERN})"],
    ),
    "type-seed-string": (
        edit(tiny, lambda c, t: c.update(seeds=[0, "1"])),
        ["seeds[1]: '1' is not accepted (accepted: an integer >= 0)"],
    ),
    "type-chunk-size-float": (
        edit(tiny, put("ablation", chunk_size=2.5)),
        ["ablation.chunk_size: 2.5 is not accepted (accepted: an integer >= 1, or 'auto')"],
    ),
    "type-device-enum": (
        edit(tiny, put("ablation", device="gpu")),
        ["ablation.device: 'gpu' is not accepted (accepted: one of 'auto', 'cpu', 'cuda')"],
    ),
    "type-image-set": (
        edit(image_study, lambda c, t: c["data"]["images"].update(test={"folder": 1})),
        [
            "data.images.test: {'folder': 1} is not accepted (accepted: a mapping with keys folder,"
            " or a mapping with keys images, labels, class_names, or a mapping with keys python)"
        ],
    ),
    # ---- out-of-range numbers
    "range-chunk-size-zero": (
        edit(tiny, put("ablation", chunk_size=0)),
        ["ablation.chunk_size: 0 is not accepted (accepted: an integer >= 1, or 'auto')"],
    ),
    "range-units-per-pass-negative": (
        edit(tiny, put("ablation", units_per_pass=-8)),
        ["ablation.units_per_pass: -8 is not accepted (accepted: an integer >= 1, or 'auto')"],
    ),
    "range-dpi": (
        edit(tiny, put("plots", dpi=6)),
        ["plots.dpi: 6 is not accepted (accepted: an integer >= 30 and <= 600)"],
    ),
    "range-fdr-alpha": (
        edit(tiny, put("analysis", fdr_alpha=1.0)),
        ["analysis.fdr_alpha: 1.0 is not accepted (accepted: a number > 0 and < 1)"],
    ),
    "range-dropout": (
        edit(tiny, lambda c, t: c["variants"]["baseline"].update(dropout=1)),
        ["variants.baseline.dropout: 1 is not accepted (accepted: a number >= 0 and < 1)"],
    ),
    "range-heldout-size": (
        edit(tiny, put("data", heldout_size=5)),
        ["data.heldout_size: 5 is not accepted (accepted: an integer >= 10)"],
    ),
    "range-weak-rho": (
        edit(tiny, put("claims", weak_rho=1.5)),
        ["claims.weak_rho: 1.5 is not accepted (accepted: a number > 0 and <= 1)"],
    ),
    "range-no-layers": (
        edit(
            tiny,
            lambda c, t: c.update(
                analysis={**c["analysis"], "layers": []}, cumulative={**c["cumulative"], "layers": []}
            ),
        ),
        [
            "analysis.layers: [] is not accepted (accepted: a list of at least 1 unique items,"
            f" each a string matching {LAYER_PATTERN})"
        ],
    ),
    "range-cumulative-classes-zero": (
        edit(tiny, put("cumulative", classes=0)),
        [
            "cumulative.classes: 0 is not accepted (accepted: an integer >= 1, or a list of at least 1"
            " unique items, each a string)"
        ],
    ),
    # ---- seeds
    "seed-negative": (
        edit(tiny, lambda c, t: c.update(seeds=[-1])),
        ["seeds[0]: -1 is not accepted (accepted: an integer >= 0)"],
    ),
    "seed-duplicate": (
        edit(tiny, lambda c, t: c.update(seeds=[0, 1, 0])),
        ["seeds: [0, 1, 0] repeats 0 (accepted: a list of at least 1 unique items, each an integer >= 0)"],
    ),
    "seed-rotation-duplicate": (
        edit(tiny, put("analysis", rotation_seeds=[3, 3])),
        [
            "analysis.rotation_seeds: [3, 3] repeats 3 (accepted: a list of unique items, each an integer"
            " >= 0)"
        ],
    ),
    "seed-split-negative": (
        edit(tiny, put("data", split_seed=-2)),
        ["data.split_seed: -2 is not accepted (accepted: an integer >= 0)"],
    ),
    "duplicate-damage-thresholds": (
        edit(tiny, put("analysis", damage_thresholds=[2, 2])),
        [
            "analysis.damage_thresholds: [2, 2] repeats 2 (accepted: a list of at least 1 unique items,"
            " each a number > 0)"
        ],
    ),
    # ---- unknown and missing keys
    "unknown-key-typo-renamed": (
        edit(tiny, lambda c, t: c["ablation"].update(chunck_size=c["ablation"].pop("chunk_size"))),
        [
            "unknown key `ablation.chunck_size`; did you mean `chunk_size`?",
            "missing key `ablation.chunk_size` (accepted: an integer >= 1, or 'auto')",
        ],
    ),
    "renamed-key-correlation-bootstrap": (  # workflow.config_schema.RENAMED_KEYS
        edit(tiny, lambda c, t: c["correlation"].update(bootstrap=c["correlation"].pop("resamples"))),
        [
            "`correlation.bootstrap` was renamed to `correlation.resamples` in unit-ablation config format 2:"
            " rename it in your config",
        ],
    ),
    "renamed-key-beside-other-faults": (
        edit(
            tiny, lambda c, t: c["correlation"].update(bootstrap=c["correlation"].pop("resamples"), seed=-1)
        ),
        [
            "`correlation.bootstrap` was renamed to `correlation.resamples` in unit-ablation config format 2:"
            " rename it in your config",
            "correlation.seed: -1 is not accepted (accepted: an integer >= 0)",
        ],
    ),
    "unknown-key-top-level-typo": (
        edit(tiny, lambda c, t: c.update(seed=1)),
        ["unknown key `seed`; did you mean `seeds`?"],
    ),
    "unknown-key-no-close-match": (
        edit(tiny, put("plots", colour="red")),
        ["unknown key `plots.colour`; accepted keys: dpi, heatmap_units"],
    ),
    "unknown-key-in-variant": (
        edit(tiny, lambda c, t: c["variants"]["bn"].update(batchnrom=True)),
        ["unknown key `variants.bn.batchnrom`; did you mean `batchnorm`?"],
    ),
    "unknown-key-in-image-set-options": (
        edit(image_study, lambda c, t: c["data"]["images"].update(worker=2)),
        ["unknown key `data.images.worker`; did you mean `workers`?"],
    ),
    "missing-section": (
        edit(tiny, lambda c, t: c.pop("plots")),
        ["missing key `plots` (accepted: a mapping with keys dpi, heatmap_units)"],
    ),
    "bad-variant-name": (
        edit(tiny, lambda c, t: c["variants"].update(base_line={"dropout": 0.1, "batchnorm": False})),
        ["variants: name 'base_line' is not accepted (accepted: names matching ^[A-Za-z0-9]+$)"],
    ),
    "bad-pretrained-name": (
        edit(image_study, lambda c, t: c["pretrained"].update(alex_net=c["pretrained"].pop("alexnet"))),
        ["pretrained: name 'alex_net' is not accepted (accepted: names matching ^[A-Za-z0-9-]+$)"],
    ),
    "pretrained-missing-num-classes": (
        edit(image_study, lambda c, t: c["pretrained"]["resnet"].pop("num_classes")),
        ["missing key `pretrained.resnet.num_classes` (accepted: an integer >= 2)"],
    ),
    # ---- layers valid for the architecture
    "layer-unknown-builtin": (
        edit(tiny, put("analysis", layers=["conv9", "conv5"])),
        [
            "analysis.layers: unknown layer 'conv9': the built-in model's layers are conv1, conv2, conv3,"
            " conv4, conv5 (module paths features.conv1 ... features.conv5 also work)"
        ],
    ),
    "layer-twice-alias-and-path": (
        edit(tiny, put("analysis", layers=["conv5", "features.conv5"])),
        ["analysis.layers: 'features.conv5' and 'conv5' name the same layer (accepted: each layer once)"],
    ),
    "layer-unknown-torchvision": (
        edit(image_study, lambda c, t: c["pretrained"]["resnet"].update(layers=["layer9"])),
        [f"pretrained.resnet.layers: unknown layer 'layer9' of resnet18: {RESNET_ALIASES}; {ZOO_TAIL}"],
    ),
    "layer-default-not-of-arch": (
        edit(image_study, lambda c, t: c["pretrained"]["resnet"].pop("layers")),
        [
            f"analysis.layers (the layers of pretrained.resnet): unknown layer '{layer}' of resnet18:"
            f" {RESNET_ALIASES}; {ZOO_TAIL}"
            for layer in TINY["analysis"]["layers"]
        ],
    ),
    "layer-arch-typo": (
        edit(image_study, lambda c, t: c["pretrained"]["resnet"].update(arch="resnet-18")),
        lambda t: [
            "pretrained.resnet.arch: 'resnet-18' has no layer table; did you mean `resnet18`? (accepted:"
            f" one of {', '.join(sorted(ARCH_LAYERS))}, or any"
            " torchvision architecture with `units:` for its layers ['layer4'])"
        ],
    ),
    "layer-units-contradict-table": (
        edit(image_study, lambda c, t: c["pretrained"]["alexnet"].update(units={"conv5": 100})),
        [
            "pretrained.alexnet.units.conv5: 100 contradicts alexnet's conv5, which has 256 units"
            " (accepted: 256, or leave it out)"
        ],
    ),
    "cumulative-layer-not-analysed": (
        edit(tiny, put("cumulative", layers=["conv3"])),
        [
            "cumulative.layers: 'conv3' is not in analysis.layers ['conv4', 'conv5']"
            " (cumulative ablation ranks units by their single-unit class drops)"
        ],
    ),
    "cumulative-layer-unknown": (
        edit(tiny, put("cumulative", layers=["conv9"])),
        [
            "cumulative.layers: unknown layer 'conv9': the built-in model's layers are conv1, conv2, conv3,"
            " conv4, conv5 (module paths features.conv1 ... features.conv5 also work)"
        ],
    ),
    "cumulative-layer-of-no-pretrained-model": (
        edit(image_study, put("cumulative", layers=["conv5_3"])),
        [
            "cumulative.layers: 'conv5_3' is not a layer of any pretrained model"
            " ({'alexnet': ['conv5'], 'resnet': ['layer4']}) (accepted: layers the models are analysed at)"
        ],
    ),
    # ---- class counts and class names that match the data
    "classes-more-than-fashion-mnist": (
        edit(tiny, put("cumulative", classes=11)),
        ["cumulative.classes: 11 is more than the data's 10 classes (accepted: 1 to 10, or class names)"],
    ),
    "classes-name-typo": (
        edit(tiny, put("cumulative", classes=["Sandals", "Bag"])),
        [
            "cumulative.classes: 'Sandals' is not a class of the data; did you mean 'Sandal'? (accepted:"
            " 'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag',"
            " 'Ankle boot')"
        ],
    ),
    "classes-more-than-image-folder": (
        edit(image_study, put("cumulative", classes=4)),
        ["cumulative.classes: 4 is more than the data's 3 classes (accepted: 1 to 3, or class names)"],
    ),
    "num-classes-vs-image-folder": (
        edit(image_study, lambda c, t: c["pretrained"]["resnet"].update(num_classes=5)),
        lambda t: [
            f"pretrained.resnet.num_classes is 5, but data.images.test ({t / 'images'}) has 3 classes"
            " (accepted: 3)"
        ],
    ),
    "num-classes-vs-class-names-file": (
        lambda t: flat_study(t, names=365),
        lambda t: [
            f"pretrained.vgg.num_classes is 1000, but data.images.test ({t / 'synsets.txt'}) has 365"
            " classes (accepted: 365)"
        ],
    ),
    "class-names-file-empty": (
        edit(lambda t: flat_study(t), lambda c, t: (t / "synsets.txt").write_text("")),
        lambda t: [
            f"data.images.test.class_names: class-names file {t / 'synsets.txt'} is empty (accepted: one"
            " class name per line, Places365's categories file, LOC_synset_mapping.txt or"
            " imagenet_class_index.json)"
        ],
    ),
    "image-folder-without-classes": (
        edit(lambda t: image_study(t, classes=()), lambda c, t: (t / "images").mkdir()),
        lambda t: [
            f"data.images.test.folder: {str(t / 'images')!r} has no class sub-folders (one per class)"
        ],
    ),
    # ---- splits that exist
    "split-attribute-train": (
        edit(tiny, put("analysis", attribute_split="train")),
        ["analysis.attribute_split: 'train' is not accepted (accepted: one of 'heldout', 'test')"],
    ),
    "split-attributes-on-the-evaluation-split": (
        edit(tiny, put("analysis", attribute_split="test")),
        [
            "analysis.attribute_split: test computes unit attributes on the evaluation images (selection on"
            " the images evaluated on); use heldout, a training subset, or set"
            " analysis.allow_attributes_on_evaluation_split: true to allow it"
        ],
    ),
    "split-images-heldout-null-is-the-evaluation-split": (
        edit(image_study, put("analysis", allow_attributes_on_evaluation_split=False)),
        [
            "data.images.heldout: null (or the test images) computes unit attributes on the evaluation split;"
            " name a training subset (e.g. 50 images per class of the train set), or set"
            " analysis.allow_attributes_on_evaluation_split: true to allow it"
        ],
    ),
    "compare-values-repeat-the-run-value": (
        edit(tiny, put("analysis", compare_values=["zero"])),
        [
            "analysis.compare_values: 'zero' is already ablation.value (accepted: the other values of zero"
            " and mean, or [])"
        ],
    ),
    "split-heldout-takes-all-training-images": (
        edit(tiny, lambda c, t: c["data"].update(heldout_size=60000, train_size=None)),
        [
            "data.heldout_size: 60000 leaves no training images: the train split of"
            " /usr/share/datasets/fashion-mnist has 60000 (accepted: 10 to 59999)"
        ],
    ),
    "split-train-size-too-large": (
        edit(tiny, put("data", heldout_size=5000, train_size=59000)),
        [
            "data.train_size: 59000 is more than the 55000 training images left after data.heldout_size"
            " 5000 in /usr/share/datasets/fashion-mnist (accepted: 10 to 55000, or null for all)"
        ],
    ),
    "split-test-size-too-large": (
        edit(tiny, put("data", test_size=20000)),
        [
            "data.test_size: 20000 is more than the 10000 images of the test split in"
            " /usr/share/datasets/fashion-mnist (accepted: 10 to 10000, or null for all)"
        ],
    ),
    "split-heldout-other-classes": (
        edit(
            image_study,
            lambda c, t: c["data"]["images"].update(heldout={"folder": class_folders(t / "held")}),
        ),
        [
            "data.images.heldout: 2 classes, but data.images.test has 3"
            " (accepted: the same classes, or null for the test images)"
        ],
    ),
    "crop-larger-than-resize": (
        edit(image_study, lambda c, t: c["data"]["images"].update(resize=64, crop=72)),
        [
            "data.images.crop: 72 is larger than data.images.resize 64"
            " (accepted: at most 64: the centre crop is cut from the resized image)"
        ],
    ),
    # ---- models against the data source
    "training-on-images": (
        edit(image_study, lambda c, t: c.update(variants={"baseline": {"dropout": 0.5, "batchnorm": False}})),
        [
            "variants: ['baseline']: models are trained on Fashion-MNIST only; with data.source: images set"
            " variants: {} and list models under pretrained:"
        ],
    ),
    "pretrained-on-fashion-mnist": (
        edit(
            tiny,
            lambda c, t: c.update(
                pretrained={
                    "r": {"arch": "resnet18", "num_classes": 10, "weights": None, "layers": ["layer4"]}
                }
            ),
        ),
        [
            "pretrained: ['r']: torchvision models need data.source: images (image folders);"
            " Fashion-MNIST studies train the built-in model (variants:)"
        ],
    ),
    "image-sets-on-fashion-mnist": (
        edit(
            image_study,
            lambda c, t: c.update(
                data={**c["data"], "source": "fashion-mnist"}, variants=TINY["variants"], pretrained={}
            ),
        ),
        [
            "data.images: set, but data.source is 'fashion-mnist', which ignores it"
            " (accepted: null, or data.source: images to analyse these images)"
        ],
    ),
    "no-image-sets": (
        edit(image_study, lambda c, t: c["data"].update(images=None)),
        ["data.images: required with data.source: images (test, heldout, resize, crop, workers)"],
    ),
    "concepts-with-pretrained": (
        edit(image_study, lambda c, t: c["concepts"].update(root=class_folders(t / "broden", names=()))),
        lambda t: [
            f"concepts.root: {str(t / 'broden')!r}: concept IoU feeds Broden images to the built-in model"
            " only so far (accepted: null with pretrained models)",
            f"concepts.root: {str(t / 'broden')!r} has no index.csv (expected Network Dissection's Broden"
            " layout: index.csv, label.csv, images/)",
        ],
    ),
    "no-models": (
        edit(image_study, lambda c, t: c.update(pretrained={})),
        ["variants, pretrained: no models: both are empty (accepted: at least one model)"],
    ),
    # ---- chunk sizes and plans
    "chunk-size-auto-with-pretrained": (
        edit(image_study, put("ablation", chunk_size="auto")),
        [
            "ablation.chunk_size: 'auto' sizes jobs of the built-in model only, not of pretrained models"
            " ['alexnet', 'resnet'] (accepted: an integer >= 1; `python -m unit_ablation.plan_cost` prints"
            " the FLOPs per plan)"
        ],
    ),
    "plan-that-never-applies": (
        edit(tiny, put("ablation", plan="closed-form")),
        [
            "ablation.plan: 'closed-form' does not apply to conv4, conv4@rot0, conv5, conv5@rot0 of the"
            " built-in model (accepted here: auto, head-replay, naive)"
        ],
    ),
    "plan-not-for-rotated-conv5": (
        edit(tiny, put("ablation", plan="delta")),
        [
            "ablation.plan: 'delta' does not apply to conv5@rot0 of the built-in model"
            " (accepted here: auto, head-replay, naive)"
        ],
    ),
    # ---- paths that exist
    "path-data-root-missing": (
        edit(tiny, put("data", root="/nonexistent/fashion-mnist")),
        ["data.root: '/nonexistent/fashion-mnist' does not exist (accepted: an existing folder)"],
    ),
    "path-data-root-without-idx-files": (
        edit(tiny, lambda c, t: c["data"].update(root=str(t))),
        lambda t: [
            f"data.root: {str(t)!r} lacks train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,"
            " t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (accepted: a folder holding the four"
            " Fashion-MNIST IDX files, or auto)"
        ],
    ),
    "path-image-folder-missing": (
        edit(image_study, lambda c, t: c["data"]["images"].update(test={"folder": str(t / "nowhere")})),
        lambda t: [
            f"data.images.test.folder: {str(t / 'nowhere')!r} does not exist (accepted: an existing folder)"
        ],
    ),
    "path-flat-layout-files-missing": (
        edit(
            lambda t: flat_study(t),
            lambda c, t: c["data"]["images"]["test"].update(
                labels=str(t / "no-labels.txt"), class_names=str(t / "val")
            ),
        ),
        lambda t: [
            f"data.images.test.labels: {str(t / 'no-labels.txt')!r} does not exist"
            " (accepted: an existing file)",
            f"data.images.test.class_names: {str(t / 'val')!r} is not a file (accepted: an existing file)",
        ],
    ),
    "path-weights-file-missing": (
        edit(image_study, lambda c, t: c["pretrained"]["alexnet"].update(weights=str(t / "alexnet.pth"))),
        lambda t: [
            f"pretrained.alexnet.weights: {str(t / 'alexnet.pth')!r} does not exist"
            " (accepted: an existing file)"
        ],
    ),
    "weights-enum-lower-case": (
        edit(
            image_study, lambda c, t: c["pretrained"]["alexnet"].update(weights="torchvision:imagenet1k_v1")
        ),
        [
            "pretrained.alexnet.weights: 'torchvision:imagenet1k_v1' is not accepted (accepted: a local file,"
            " torchvision:<ENUM> with the enum in capitals, e.g. torchvision:IMAGENET1K_V1, or null)"
        ],
    ),
    "path-concepts-root-missing": (
        edit(tiny, put("concepts", root="/nonexistent/broden")),
        [
            "concepts.root: '/nonexistent/broden' has no index.csv (expected Network Dissection's Broden"
            " layout: index.csv, label.csv, images/)"
        ],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_malformed_config_is_named_with_key_value_and_accepted(tmp_path, case):
    make, expected = CASES[case]
    config = make(tmp_path)
    expected = expected(tmp_path) if callable(expected) else expected
    assert problems(config) == expected


def test_data_root_auto_that_finds_nothing_names_the_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tiny(tmp_path)
    config["data"]["search_path"] = [str(tmp_path / "empty")]
    assert problems(config, basedir=tmp_path / "checkout") == [
        f"data.root: 'auto' found Fashion-MNIST in none of {tmp_path / 'empty'}, data/fashion-mnist,"
        f" {tmp_path / 'checkout' / 'data' / 'fashion-mnist'}. Run `make data` (installs Debian's"
        " dataset-fashion-mnist, or downloads with torchvision), or set data.root to a folder holding"
        " train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz,"
        " t10k-labels-idx1-ubyte.gz"
    ]


def test_every_fault_is_collected_into_one_error(tmp_path):
    config = tiny(tmp_path)
    config["ablation"]["chunk_size"] = 0
    config["plots"]["colour"] = "red"
    config["cumulative"]["layers"] = ["conv3"]
    with pytest.raises(ConfigError) as raised:
        check_config(config, SCHEMA_PATH)
    assert isinstance(raised.value, ValueError)
    assert str(raised.value) == (
        "config: 3 problems (nothing was run):\n"
        "  - ablation.chunk_size: 0 is not accepted (accepted: an integer >= 1, or 'auto')\n"
        "  - unknown key `plots.colour`; accepted keys: dpi, heatmap_units\n"
        "  - cumulative.layers: 'conv3' is not in analysis.layers ['conv4', 'conv5'] (cumulative ablation"
        " ranks units by their single-unit class drops)"
    )


def test_cross_field_checks_skip_values_the_schema_rejected(tmp_path):
    """A malformed value is reported once, by the schema; no check trips over it."""
    config = image_study(tmp_path)
    config["pretrained"]["resnet"]["layers"] = "layer4"
    config["data"]["images"]["crop"] = "big"
    assert problems(config) == [
        "data.images.crop: 'big' is not accepted (accepted: an integer >= 1)",
        "pretrained.resnet.layers: 'layer4' is not accepted (accepted: a list of at least 1 unique items,"
        f" each a string matching {LAYER_PATTERN})",
    ]


def test_defaults_are_filled_as_snakemake_validate_fills_them(tmp_path):
    from snakemake.utils import validate

    ours, theirs = tiny(tmp_path), tiny(tmp_path)
    check_config(ours, SCHEMA_PATH)
    validate(theirs, str(SCHEMA_PATH))
    assert ours == theirs
    assert ours["data"]["source"] == "fashion-mnist" and ours["pretrained"] == {}
    assert ours["weights_mirror"] is None and ours["ablation"]["precision"] == "exact"


def test_describe_names_what_a_schema_accepts():
    chunk = SCHEMA["properties"]["ablation"]["properties"]["chunk_size"]
    assert describe(chunk, SCHEMA) == "an integer >= 1, or 'auto'"
    heldout = SCHEMA["properties"]["data"]["properties"]["images"]["properties"]["heldout"]
    assert describe(heldout, SCHEMA) == (
        "a mapping with keys folder, or a mapping with keys images, labels, class_names,"
        " or a mapping with keys python, or null"
    )


def write_example_placeholders(workdir: Path) -> None:
    """Stand-ins for the example configs' data and weights: folders, labels files, and class-names
    files with the real class counts (ImageNet 1000 synsets, Places365 365 categories)."""
    for folder in ["data/imagenet/val", "data/places365/val_256", "resources/weights"]:
        (workdir / folder).mkdir(parents=True, exist_ok=True)
    for labels in ["data/imagenet/val_labels.txt", "data/places365/places365_val.txt"]:
        (workdir / labels).write_text("a.jpg 0\n")
    synsets = "".join(f"n{i:08d} thing {i}, other\n" for i in range(1000))
    (workdir / "data/imagenet/LOC_synset_mapping.txt").write_text(synsets)
    categories = "".join(f"/c/category{i} {i}\n" for i in range(365))
    (workdir / "data/places365/categories_places365.txt").write_text(categories)
    (workdir / "resources/weights/alexnet_places365.pth.tar").touch()
    for dataset, classes in (("imagenet", 1000), ("places365", 365)):  # the attribute training subsets
        for index in range(classes):
            (workdir / f"data/{dataset}/train_subset/class{index:04d}").mkdir(parents=True, exist_ok=True)


@pytest.mark.parametrize(
    "path",
    [
        "config.yaml",
        "tests/tiny-config.yaml",
        "configs/full.yaml",
        "configs/imagenet.yaml",
        "configs/places365-alexnet.yaml",
    ],
)
def test_shipped_configs_pass(tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)
    write_example_placeholders(tmp_path)
    config = yaml.safe_load((PROJECT_ROOT / path).read_text())
    assert problems(config, basedir=PROJECT_ROOT) == []


def test_module_imports_neither_torch_nor_snakemake(tmp_path):
    config = flat_study(tmp_path)
    code = (
        "import sys, yaml; from unit_ablation.workflow.config_check import check_config;"
        f"check_config(yaml.safe_load(open({str(tmp_path / 'c.yaml')!r})), {str(SCHEMA_PATH)!r});"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'snakemake'));"
        "assert not bad, bad"
    )
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- whole workflow


@pytest.mark.integration
def test_dry_run_of_bad_config_names_every_fault_and_creates_nothing(tmp_path):
    config = copy.deepcopy(TINY)
    config["ablation"]["chunck_size"] = config["ablation"].pop("chunk_size")
    config["correlation"]["bootstrap"] = config["correlation"].pop("resamples")
    config["plots"]["dpi"] = 6
    config["cumulative"]["classes"] = ["Sandals"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for message in [
        "config: 5 problems (nothing was run):",
        "  - missing key `ablation.chunk_size` (accepted: an integer >= 1, or 'auto')",
        "  - unknown key `ablation.chunck_size`; did you mean `chunk_size`?",
        "  - `correlation.bootstrap` was renamed to `correlation.resamples` in unit-ablation config format 2:"
        " rename it in your config",
        "  - plots.dpi: 6 is not accepted (accepted: an integer >= 30 and <= 600)",
        "  - cumulative.classes: 'Sandals' is not a class of the data; did you mean 'Sandal'?",
    ]:
        assert message in output, output[-3000:]
    assert "Job stats" not in output
    assert not (tmp_path / "results").exists()


@pytest.mark.integration
def test_dry_run_of_impossible_image_study_stops_before_any_job(tmp_path):
    config = image_study(tmp_path)
    config["pretrained"]["resnet"]["num_classes"] = 1000
    config["data"]["images"]["heldout"] = {"folder": str(tmp_path / "missing")}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert (
        f"pretrained.resnet.num_classes is 1000, but data.images.test ({tmp_path / 'images'}) has 3"
        " classes (accepted: 3)"
    ) in output
    assert f"data.images.heldout.folder: {str(tmp_path / 'missing')!r} does not exist" in output
    assert "Job stats" not in output and not (tmp_path / "results").exists()


@pytest.mark.integration
@pytest.mark.parametrize("name", ["imagenet", "places365-alexnet"])
def test_example_configs_dry_run_with_placeholders(tmp_path, name):
    write_example_placeholders(tmp_path)
    shutil.copy(PROJECT_ROOT / "configs" / f"{name}.yaml", tmp_path / "config.yaml")
    result = snakemake(tmp_path, "-n", "--quiet", "rules")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Job stats" in result.stdout + result.stderr
