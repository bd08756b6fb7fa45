"""Config checks of timm and `python:` models and `python:` image sets, before any job runs: the
user's file is read with `ast`, never run; every message names the key, the file and the reason."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from unit_ablation.workflow.config_check import ConfigError, check_config
from unit_ablation.workflow.config_schema import load_schema

from support.workflow_runs import PROJECT_ROOT, TINY_CONFIG

SCHEMA_PATH = PROJECT_ROOT / "schemas" / "config.schema.yaml"
SCHEMA = load_schema(SCHEMA_PATH)
TINY = yaml.safe_load(TINY_CONFIG.read_text())
NET = """\
import torch
from torch import nn
from torchvision.models import resnet18 as borrowed

LIMIT = 3


class Net(nn.Module):
    pass


def build(num_classes):
    raise SystemExit("the config check must not run this file")
"""


def problems(config: dict) -> list[str]:
    try:
        check_config(config, SCHEMA)
    except ConfigError as error:
        return error.problems
    return []


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A working directory with class folders, a model file and a data set file."""
    for name in ("a", "b", "c"):
        (tmp_path / "images" / name).mkdir(parents=True)
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "net.py").write_text(NET)
    (tmp_path / "sets.py").write_text(
        "def heldout():\n    raise SystemExit('not at parse time')\n\ntest_set = heldout\n"
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def study(**models: dict) -> dict:
    config = copy.deepcopy(TINY)
    config["data"].update(
        source="images",
        images={
            "test": {"folder": "images"},
            "heldout": {"python": "sets.py:heldout"},
            "resize": 8,
            "crop": 8,
        },
    )
    config["data"]["images"]["workers"] = 1
    config["variants"] = {}
    config["pretrained"] = models
    config["ablation"].update(chunk_size=64)
    config["cumulative"].update(layers=[])
    return config


def model(arch: str, **settings) -> dict:
    return {"arch": arch, "num_classes": 3, "weights": None, "layers": ["layer4"]} | settings


def test_timm_and_python_models_with_units_and_a_python_image_set_pass(workdir):
    config = study(
        mine=model("python:nets/net.py:build", layers=["features.3"], units={"features.3": 12}),
        other=model("timm:resnet10t", units={"layer4": 512}),
        tv=model("torchvision:resnet18"),
    )
    assert problems(config) == []


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            model("python:nets/none.py:build", units={"layer4": 8}),
            "pretrained.m.arch: 'python:nets/none.py:build': the file nets/none.py does not exist"
            " (relative paths: from the working directory)",
        ),
        (
            model("python:nets/net.py:make", units={"layer4": 8}),
            "pretrained.m.arch: 'python:nets/net.py:make': nets/net.py defines no 'make' at its top level"
            " (it defines: Net, build)",
        ),
        (
            model("python:nets/net.py:LIMIT", units={"layer4": 8}),
            None,  # a top-level name that is no function: found by ast, refused when the job calls it
        ),
        (
            model("python:nets/net.py", units={"layer4": 8}),
            "pretrained.m.arch: 'python:nets/net.py': 'nets/net.py' is not PATH.py:CALLABLE",
        ),
        (
            model("keras:resnet50", units={"layer4": 8}),
            "pretrained.m.arch: 'keras:resnet50': unknown kind 'keras'",
        ),
        (
            model("timm:resnet10t"),
            "pretrained.m.units.layer4: missing: the unit count of each layer of a timm model"
            " (pretrained.m.layers) is needed before any job runs",
        ),
        (
            model("timm:resnet10t", units={"layer4": 512}, weights="torchvision:IMAGENET1K_V1"),
            "pretrained.m.arch: 'timm:resnet10t' cannot fetch torchvision weights",
        ),
    ],
    ids=[
        "file-missing",
        "callable-missing",
        "not-a-function",
        "no-callable",
        "bad-kind",
        "no-units",
        "tv-weights",
    ],
)
def test_model_faults_name_the_key_the_file_and_the_reason(workdir, settings, expected):
    found = problems(study(m=settings))
    if expected is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0].startswith(expected), found


def test_a_syntax_error_in_the_file_is_named_with_its_line(workdir):
    (workdir / "nets" / "net.py").write_text("def build(num_classes):\n    return (\n")
    found = problems(study(m=model("python:nets/net.py:build", units={"layer4": 8})))
    assert len(found) == 1 and "nets/net.py line 2: syntax error" in found[0]


def test_python_image_set_faults_are_named(workdir):
    config = study(tv=model("resnet18"))
    config["data"]["images"]["heldout"] = {"python": "sets.py:train"}
    config["data"]["images"]["test"] = {"python": "none.py:test"}
    assert problems(config) == [
        "data.images.test.python: 'none.py:test': the file none.py does not exist"
        " (relative paths: from the working directory)",
        "data.images.heldout.python: 'sets.py:train': sets.py defines no 'train' at its top level"
        " (it defines: heldout)",
    ]
    config["data"]["images"]["test"] = {"python": "none.txt:test"}
    assert any("does not match" in problem or "is not accepted" in problem for problem in problems(config))


def test_a_python_image_set_leaves_the_class_count_to_the_jobs(workdir):
    config = study(tv=model("resnet18", num_classes=7))
    config["data"]["images"]["test"] = {"python": "sets.py:test_set"}
    assert problems(config) == []  # class names are known only when the user's code runs


def test_the_checks_import_no_torch_and_run_no_user_code(workdir):
    config = study(
        mine=model("python:nets/net.py:build", layers=["features.3"], units={"features.3": 12}),
        other=model("timm:resnet10t", units={"layer4": 512}),
    )
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    code = (
        "import sys, yaml\nfrom unit_ablation.workflow.config_check import check_config\n"
        f"check_config(yaml.safe_load(open('config.yaml')), {str(SCHEMA_PATH)!r})\n"
        "print('torch' in sys.modules, 'timm' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False False"
