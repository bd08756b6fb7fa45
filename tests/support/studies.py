"""Studies of the tiny config (`workflow.study.Study` on a plain config dict), for the planning tests."""

from __future__ import annotations

import copy
from collections.abc import Callable

import yaml

from unit_ablation.workflow.config_schema import load_schema, schema_problems
from unit_ablation.workflow.study import Study

from support.workflow_runs import PROJECT_ROOT, TINY_CONFIG

SCHEMA = load_schema(PROJECT_ROOT / "schemas" / "config.schema.yaml")
TINY = yaml.safe_load(TINY_CONFIG.read_text())


def study(edit: Callable[[dict], None] | None = None) -> Study:
    """A Study of the tiny config, edited by `edit(config)`, with the schema's defaults filled in."""
    config = copy.deepcopy(TINY)
    if edit is not None:
        edit(config)
    assert schema_problems(config, SCHEMA) == []
    return Study(config, PROJECT_ROOT)


def pretrained(config: dict) -> None:
    """Image data and two torchvision models: AlexNet at its own layers, ResNet-18 at analysis.layers."""
    config["data"].update(
        source="images",
        images={"test": {"folder": "images/val"}, "heldout": None, "resize": 72, "crop": 64, "workers": 1},
    )
    config["variants"] = {}
    config["pretrained"] = {
        "alexnet": {"arch": "alexnet", "num_classes": 3, "weights": "torchvision:IMAGENET1K_V1"},
        "resnet": {"arch": "resnet18", "num_classes": 3, "weights": None, "units": {"layer3": 100}},
    }
    config["pretrained"]["alexnet"]["layers"] = ["conv4", "conv5"]
    config["analysis"]["layers"] = ["layer3"]
    config["ablation"]["chunk_size"] = 128
    config["cumulative"]["layers"] = ["conv5"]
