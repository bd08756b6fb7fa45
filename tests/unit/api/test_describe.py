"""The layer table (`ua.describe_layers`) and `python -m unit_ablation.describe` for torchvision,
timm and python: models."""

from __future__ import annotations

import textwrap

import pytest
import torch
import yaml

import unit_ablation as ua
from unit_ablation.models.torchvision_classifier import TorchvisionClassifier
from unit_ablation.tools.describe import main

from support.custom_models import PerImageBranch

PYTHON_MODEL = """
import torch
from torch import nn


class SmallNet(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def make(num_classes):
    return SmallNet(num_classes)
"""


def rows(table, column="layer"):
    return table.set_index(column)


def test_alexnet_table_has_the_paper_aliases_and_plans() -> None:
    torch.manual_seed(0)
    table = rows(ua.describe_layers(TorchvisionClassifier("alexnet", 10), torch.rand(1, 3, 64, 64)))
    conv5 = table.loc["net.features.11"]
    assert (conv5.alias, conv5.units, conv5.output_shape, conv5.plan) == ("conv5", 256, "256x3x3", "delta")
    assert table.loc["net.features.7", "alias"] == "conv3" and table.loc["net.features.7", "units"] == 384
    # delta at conv5 replays only what follows fc6's output: far less than conv3's delta at conv4
    assert conv5.flops_per_unit_image < table.loc["net.features.7", "flops_per_unit_image"]
    assert "normalize" not in table.index  # the wrapper's own modules are not layers


def test_resnet18_table_marks_shared_modules_and_the_closed_form() -> None:
    table = rows(ua.describe_layers(TorchvisionClassifier("resnet18", 10), torch.rand(1, 3, 32, 32)))
    layer4 = table.loc["net.layer4"]
    assert (layer4.alias, layer4.units, layer4.plan) == ("layer4", 512, "closed-form")
    shared = table.loc["net.layer1.0.relu"]  # torchvision's BasicBlock calls its ReLU twice
    assert shared.plan == "not ablatable" and shared.note == "called 2 times per forward"
    assert table.loc["net.layer3.1.bn1", "plan"] == "delta"
    assert table.loc["net.layer3.0", "plan"] == "head-replay"


def test_untraceable_model_is_described_with_the_fallback() -> None:
    table = rows(ua.describe_layers(PerImageBranch(), torch.rand(1, 1, 28, 28)))
    assert table.loc["relu", "plan"] == "hooks" and "cannot trace" in table.loc["relu", "note"]
    assert table.loc["relu", "units"] == 8


def rows_of(output: str) -> dict[str, str]:
    """Layer -> plan, from the printed table."""
    table = output.split("# config lines")[0].splitlines()[3:]
    return {line.split()[0]: next(w for w in line.split() if w in PLANS) for line in table if line.strip()}


PLANS = ("closed-form", "delta", "head-replay", "hooks", "not")


def pasted(output: str) -> dict:
    return yaml.safe_load(output.split("# config lines")[1].split("\n", 1)[1])["pretrained"]["my-model"]


def test_cli_describes_a_python_model(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "net.py").write_text(textwrap.dedent(PYTHON_MODEL))
    monkeypatch.chdir(tmp_path)
    assert main(["python:models/net.py:make", "--num-classes", "5", "--input-size", "32"]) == 0
    output = capsys.readouterr().out
    entry = pasted(output)
    assert entry["arch"] == "python:models/net.py:make" and entry["num_classes"] == 5
    assert entry["units"]["features.3"] == 16 and entry["units"]["features.0"] == 8
    assert entry["units"]["pool"] == 16
    assert "features  " in output and rows_of(output)["features"] == "closed-form"


def test_cli_describes_a_timm_model(capsys) -> None:
    assert main(["timm:resnet10t", "--num-classes", "7", "--input-size", "32"]) == 0
    entry = pasted(capsys.readouterr().out)
    assert entry["units"]["layer4"] == 512 and entry["units"]["layer1"] == 64 and entry["units"]["fc"] == 7


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("timm:no_such_model_x", "no_such_model_x"),
        ("python:missing.py:make", "missing.py"),
        ("foo:bar", "unknown kind"),
    ],
)
def test_cli_names_a_bad_model_spec(tmp_path, monkeypatch, capsys, spec, message) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([spec]) == 2
    assert message in capsys.readouterr().err
