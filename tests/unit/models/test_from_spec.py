"""Models named by an arch string: torchvision, timm and `python:` files; their layers, weights
around a layer, weights files, checkpoints and errors."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch
from torch import nn

from unit_ablation.files.safe_load import CorruptFileError
from unit_ablation.models import layer_weights
from unit_ablation.models.checkpoint import load_model, save_checkpoint
from unit_ablation.models.from_spec import build_from_spec
from unit_ablation.models.module_classifier import ModuleClassifier
from unit_ablation.models.torchvision_classifier import TorchvisionClassifier

NET = """\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes, groups=1):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, groups=groups),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Linear(8 * 4 * 4, num_classes)

    def forward(self, x):
        x = self.features((x - 0.5) / 0.25)
        return self.classifier(x.view(x.size(0), -1))


def build(num_classes):
    return Net(num_classes)


def grouped(num_classes):
    return Net(num_classes, groups=4)


def not_a_module(num_classes):
    return "a string"


def wrapped_torchvision(num_classes, name="resnet18"):
    import torchvision

    return torchvision.models.get_model(name, num_classes=num_classes)


def wrapped_alexnet(num_classes):
    return wrapped_torchvision(num_classes, "alexnet")
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "net.py").write_text(NET)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_torchvision_names_with_and_without_the_prefix_build_the_same_wrapper():
    for arch in ("resnet18", "torchvision:resnet18"):
        model = build_from_spec(arch, 5)
        assert isinstance(model, TorchvisionClassifier) and model.config["name"] == "resnet18"
        assert not model.training


def test_a_python_model_reads_0_1_images_as_they_are_and_round_trips_through_a_checkpoint(workdir):
    torch.manual_seed(0)
    model = build_from_spec("python:nets/net.py:build", 3, input_size=(3, 8, 8))
    assert isinstance(model, ModuleClassifier) and isinstance(model.normalize, nn.Identity)
    images = torch.rand(4, 3, 8, 8)
    assert torch.equal(model(images), model.net(images))  # no normalisation added around it
    assert model.config == {
        "arch": "python",
        "source": "python:nets/net.py:build",
        "num_classes": 3,
        "mean": None,
        "std": None,
        "input_size": [3, 8, 8],
    }
    save_checkpoint(model, workdir / "net.pt", {})
    loaded = load_model(workdir / "net.pt")  # imports nets/net.py again, from the working directory
    assert torch.equal(loaded(images), model(images))


def test_a_python_file_is_found_relative_to_the_given_working_directory(
    workdir, tmp_path_factory, monkeypatch
):
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    model = build_from_spec("python:nets/net.py:build", 3, workdir=workdir)
    assert model.config["source"] == f"python:{workdir}/nets/net.py:build"


def test_a_timm_model_is_wrapped_with_its_own_mean_and_std():
    pytest.importorskip("timm")
    torch.manual_seed(0)
    model = build_from_spec("timm:resnet10t", 4, input_size=(3, 32, 32))
    assert model.config["mean"] == pytest.approx(model.net.pretrained_cfg["mean"])
    images = torch.rand(2, 3, 32, 32)
    mean = torch.tensor(model.net.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.net.pretrained_cfg["std"]).view(1, 3, 1, 1)
    assert torch.allclose(model(images), model.net((images - mean) / std))
    assert model.unit_count("layer4") == 512 and model.unit_count("layer1.0.act1") == 64


def test_weights_files_load_into_python_models_and_a_wrong_one_is_named(workdir):
    torch.manual_seed(1)
    source = build_from_spec("python:nets/net.py:build", 3)
    torch.save({f"module.{k}": v for k, v in source.net.state_dict().items()}, workdir / "w.pt")
    model = build_from_spec("python:nets/net.py:build", 3, weights_path=workdir / "w.pt")
    assert torch.equal(model.net.features[0].weight, source.net.features[0].weight)
    with pytest.raises(CorruptFileError, match="does not fit python:nets/net.py:build with 5 classes"):
        build_from_spec("python:nets/net.py:build", 5, weights_path=workdir / "w.pt")


@pytest.mark.parametrize(
    ("arch", "error", "message"),
    [
        ("python:nets/none.py:build", FileNotFoundError, "nets/none.py does not exist"),
        ("python:nets/net.py:make", AttributeError, "'make' is not defined in nets/net.py .*build, grouped"),
        ("python:nets/net.py:not_a_module", TypeError, "returned a str, not an nn.Module"),
        ("keras:resnet", ValueError, "unknown kind 'keras'"),
    ],
)
def test_python_model_faults_name_the_arch_and_the_reason(workdir, arch, error, message):
    with pytest.raises(error, match=message):
        build_from_spec(arch, 3)


def test_unknown_timm_names_get_timms_nearest_names():
    pytest.importorskip("timm")
    with pytest.raises(ValueError, match="timm has no model 'resnet10'; did you mean resnet10t"):
        build_from_spec("timm:resnet10", 3)


def test_a_timm_model_without_timm_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` raises ImportError
    with pytest.raises(ImportError, match="timm is not installed: pip install timm"):
        build_from_spec("timm:resnet10t", 3)


def test_a_module_path_that_does_not_exist_names_the_nearest(workdir):
    model = build_from_spec("python:nets/net.py:build", 3, input_size=(3, 8, 8))
    assert model.unit_count("features.4") == 8 and model.unit_count("net.features.4") == 8
    with pytest.raises(KeyError, match="nearest: features.4, features.5"):
        model.unit_count("feature.4")


@pytest.mark.parametrize(
    ("name", "layers"),
    [
        ("wrapped_torchvision", ["layer4", "layer2", "layer3.0.bn2", "layer1.1.conv1", "relu", "maxpool"]),
        ("wrapped_alexnet", ["features.11", "features.4", "features.9"]),
    ],
)
def test_weights_around_a_layer_match_the_torchvision_wrappers_tables(workdir, name, layers):
    """The graph walk finds the same producing and reading weights (BatchNorm folded) as the
    torchvision wrapper's hand-written structure tables, on the same network."""
    torch.manual_seed(0)
    arch = "resnet18" if name == "wrapped_torchvision" else "alexnet"
    reference = TorchvisionClassifier(arch, 5).eval()
    for module in reference.modules():  # non-trivial BatchNorm statistics to fold
        if isinstance(module, nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 2.0)
    model = build_from_spec(f"python:nets/net.py:{name}", 5, input_size=(3, 64, 64))
    model.net.load_state_dict(reference.net.state_dict())
    for layer in layers:
        assert model.unit_count(layer) == reference.unit_count(layer)
        assert torch.equal(model.incoming_weight(layer), reference.incoming_weight(layer)), layer
        assert torch.equal(model.outgoing_weight(layer), reference.outgoing_weight(layer)), layer


def test_grouped_convolutions_read_through_dense_weights(workdir):
    model = build_from_spec("python:nets/net.py:grouped", 3, input_size=(3, 8, 8))
    weight = model.net.features[3].weight  # (8, 2, 3, 3): 4 groups of 2 channels
    out = model.outgoing_weight("features.2")
    assert out.shape == (8, 8, 9)
    assert torch.equal(out[:2, :2], weight[:2].flatten(2)) and not out[:2, 2:].any()
    assert model.incoming_weight("features.5").shape == (8, 8, 3, 3)
    flat = model.outgoing_weight("features.5")  # the classifier reads 8 units x 16 positions
    assert flat.shape == (3, 8, 16)


def test_a_walk_that_meets_an_unknown_operation_names_it():
    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            x = torch.sort(self.conv(x), dim=1).values
            return self.head(x.mean((2, 3)))

    with pytest.raises(ValueError, match="unknown past call_function 'sort'"):
        layer_weights.outgoing_weight(Gate(), "conv", 4)


def test_the_user_file_runs_once_per_version(workdir):
    counter = workdir / "counted.py"
    counter.write_text(
        textwrap.dedent(NET) + "\nimport builtins\nbuiltins.COUNT = getattr(builtins, 'COUNT', 0) + 1\n"
    )
    import builtins

    before = getattr(builtins, "COUNT", 0)
    build_from_spec("python:counted.py:build", 3)
    build_from_spec("python:counted.py:build", 3)
    assert builtins.COUNT == before + 1


def test_modules_beside_the_file_can_be_imported(workdir):
    (workdir / "nets" / "helper_blocks.py").write_text("from torch import nn\nWIDTH = 5\nBlock = nn.Linear\n")
    (workdir / "nets" / "uses_helper.py").write_text(
        "from helper_blocks import WIDTH, Block\n\n\ndef build(num_classes):\n"
        "    return Block(WIDTH, num_classes)\n"
    )
    model = build_from_spec("python:nets/uses_helper.py:build", 3)
    assert model.net.in_features == 5


def test_weights_of_a_model_fx_cannot_trace_are_refused_with_the_reason(workdir):
    (workdir / "branchy.py").write_text(
        "from torch import nn\n\n\nclass Branchy(nn.Module):\n"
        "    def __init__(self, num_classes):\n"
        "        super().__init__()\n"
        "        self.conv, self.act, self.fc = nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Linear(4, num_classes)\n\n"
        "    def forward(self, x):\n"
        "        x = self.act(self.conv(x))\n"
        "        x = x * 2 if x.sum() > 0 else x\n"
        "        return self.fc(x.mean((2, 3)))\n"
    )
    model = build_from_spec("python:branchy.py:Branchy", 3, input_size=(3, 8, 8))
    assert model.unit_count("act") == 4  # counted with a forward hook, no tracing
    assert torch.equal(model.incoming_weight("conv"), model.net.conv.weight)  # the layer's own weights
    with pytest.raises(
        ValueError, match=r"Branchy: the incoming weights \(l1_in\) of 'act': .*cannot be traced"
    ):
        model.incoming_weight("act")
    with pytest.raises(ValueError, match=r"the outgoing weights \(l1_out\) of 'conv': .*cannot be traced"):
        model.outgoing_weight("conv")
