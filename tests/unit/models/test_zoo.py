"""Paper-scale torchvision models behind the built-in interface: layers, weights, checkpoints, engine.

All models are randomly initialised (no downloads) and run on small images: the adaptive average
pools of AlexNet, VGG and ResNet accept any size from 32 x 32 (VGG) or 64 x 64 (AlexNet) up.
"""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from unit_ablation.engine.basis import basis_matrix
from unit_ablation.engine.graph_split import module_path, resolve_layer, run_trunk, split_model
from unit_ablation.engine.options import AblationOptions
from unit_ablation.models.checkpoint import load_checkpoint, load_model, save_checkpoint
from unit_ablation.models.torchvision_classifier import (
    TorchvisionClassifier,
    build_torchvision,
    layer_aliases,
    load_weights,
)
from unit_ablation.spec.zoo_layers import ARCH_LAYERS, layer_units

from support.exactness import assert_matches_naive

NUM_CLASSES = 7
FIVE_ARCHS = ("alexnet", "vgg16", "vgg16_bn", "resnet18", "resnet50")
SIZES = {"alexnet": 64, "vgg16": 32, "vgg16_bn": 32, "resnet18": 64, "resnet50": 32}


def block_images(count: int, size: int, seed: int) -> np.ndarray:
    """uint8 RGB images of random 8 x 8 colour blocks: strong contrast at every scale."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(count, 3, size // 8, size // 8)).astype(np.uint8)
    return np.repeat(np.repeat(blocks, 8, axis=2), 8, axis=3)


def as_float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).float() / 255


def calibrated_model(name: str) -> TorchvisionClassifier:
    """A random-init wrapper with non-trivial BN statistics whose predictions vary between images.

    Random-init logits share large per-class offsets (every image gets the same class), so the
    last Linear is standardised on calibration images; single-unit ablations then flip some.
    """
    torch.manual_seed(0)
    model = TorchvisionClassifier(name, NUM_CLASSES).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):  # BN is then not the identity
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
        logits = model(as_float(block_images(16, SIZES[name], seed=99)))
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        std = logits.std(0).clamp_min(1e-6)
        last.weight.div_(std.unsqueeze(1))
        last.bias.copy_((last.bias - logits.mean(0)) / std)
    return model


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: when other jobs share the 2 cores, 2 spinning OpenMP threads make these
    small forward passes ~15x slower (measured); with one they are about as fast on an idle machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def zoo():
    """name -> calibrated model, built once per test module (tests must not modify them)."""
    cache: dict[str, TorchvisionClassifier] = {}

    def get(name: str) -> TorchvisionClassifier:
        if name not in cache:
            cache[name] = calibrated_model(name)
        return cache[name]

    yield get
    cache.clear()


# --- layers -------------------------------------------------------------------------------


def test_paper_aliases_resolve_to_the_relu_after_the_conv(zoo):
    alexnet = zoo("alexnet")
    features = alexnet.net.features
    assert resolve_layer(alexnet, "conv5") is features[11]
    assert isinstance(features[11], nn.ReLU) and isinstance(features[10], nn.Conv2d)
    for name in ("features.11", "net.features.11"):  # module paths, relative to net (or the wrapper)
        assert resolve_layer(alexnet, name) is features[11]
    assert module_path(alexnet, "conv5") == "net.features.11"
    assert module_path(alexnet, "features.9") == "net.features.9"

    vgg = zoo("vgg16").net.features
    assert resolve_layer(zoo("vgg16"), "conv5_3") is vgg[29] and isinstance(vgg[28], nn.Conv2d)
    vgg_bn = zoo("vgg16_bn").net.features
    assert resolve_layer(zoo("vgg16_bn"), "conv5_3") is vgg_bn[42]
    assert isinstance(vgg_bn[41], nn.BatchNorm2d) and isinstance(vgg_bn[40], nn.Conv2d)
    for name in ("resnet18", "resnet50"):
        assert resolve_layer(zoo(name), "layer4") is zoo(name).net.layer4
        assert module_path(zoo(name), "layer4") == "net.layer4"


@pytest.mark.parametrize("name", FIVE_ARCHS)
def test_every_alias_is_a_post_relu_point_with_the_tabled_units(zoo, name):
    model = zoo(name)
    modules = {alias: resolve_layer(model, alias) for alias in layer_aliases(name)}
    captured: dict[str, torch.Size] = {}

    def record(alias: str, out: torch.Tensor) -> None:  # a hook returning a value would replace `out`
        captured[alias] = out.shape

    handles = [
        module.register_forward_hook(lambda _m, _i, out, alias=alias: record(alias, out))
        for alias, module in modules.items()
    ]
    try:
        with torch.no_grad():
            model(as_float(block_images(1, SIZES[name], seed=0)))
    finally:
        for handle in handles:
            handle.remove()
    assert set(captured) == set(modules)
    for alias, module in modules.items():
        units = model.unit_count(alias)
        assert captured[alias][1] == units == layer_units(name, alias)
        assert isinstance(module, nn.ReLU if name.startswith(("alexnet", "vgg")) else nn.Sequential)
        assert model.incoming_weight(alias).shape[0] == units
        assert model.outgoing_weight(alias).shape[1] == units


def test_incoming_and_outgoing_weights_of_alexnet_and_vgg(zoo):
    alexnet = zoo("alexnet").net
    assert torch.equal(zoo("alexnet").incoming_weight("conv5"), alexnet.features[10].weight)
    out = zoo("alexnet").outgoing_weight("conv5")  # conv5 -> pool -> avgpool 6x6 -> classifier.1
    assert out.shape == (4096, 256, 36)
    assert torch.equal(out, alexnet.classifier[1].weight.view(4096, 256, 36))
    assert torch.equal(zoo("alexnet").outgoing_weight("features.9"), alexnet.features[10].weight.flatten(2))

    vgg = zoo("vgg16")
    assert torch.equal(vgg.incoming_weight("conv5_3"), vgg.net.features[28].weight)
    assert torch.equal(vgg.outgoing_weight("conv5_3"), vgg.net.classifier[0].weight.view(4096, 512, 49))
    assert torch.equal(vgg.outgoing_weight("conv5_2"), vgg.net.features[28].weight.flatten(2))

    vgg_bn = zoo("vgg16_bn")
    conv, bn = vgg_bn.net.features[40], vgg_bn.net.features[41]
    by_hand = torch.stack(
        [conv.weight[u] * bn.weight[u] / torch.sqrt(bn.running_var[u] + bn.eps) for u in range(512)]
    )
    incoming = vgg_bn.incoming_weight("conv5_3")
    assert incoming.shape == (512, 512, 3, 3)
    torch.testing.assert_close(incoming, by_hand)  # float32 defaults: rtol 1.3e-6, atol 1e-5
    assert not torch.allclose(incoming, conv.weight)  # the fold matters: BN is not the identity
    assert torch.equal(vgg_bn.incoming_weight("features.40"), conv.weight)  # pre-BN point: raw conv
    assert torch.equal(vgg_bn.outgoing_weight("conv5_3"), vgg_bn.net.classifier[0].weight.view(4096, 512, 49))
    # conv5_2 is read by conv5_3, which its BN follows: the outgoing weights are folded with that BN
    outgoing = vgg_bn.outgoing_weight("conv5_2")
    assert outgoing.shape == (512, 512, 9)
    assert_effective_linear_map(outgoing, [(conv, bn)], torch.randn(2, 512, 4, 4), stride=1, padding=1)
    assert not torch.allclose(outgoing, conv.weight.flatten(2))
    assert torch.equal(vgg_bn.outgoing_weight("features.39"), vgg_bn.outgoing_weight("conv5_2"))


def assert_effective_linear_map(
    weight: torch.Tensor,
    readers: list[tuple[nn.Module, nn.Module]],
    x: torch.Tensor,
    stride: int,
    padding: int,
) -> None:
    """`weight` (out, units, positions) as a conv computes the linear part of each reader conv and
    its BN in eval mode, stacked: BN(conv(x)) - BN(conv(0)) (the BN shift is a bias)."""
    size = int(round(weight.shape[2] ** 0.5))
    with torch.no_grad():
        got = nn.functional.conv2d(
            x.double(), weight.double().view(*weight.shape[:2], size, size), stride=stride, padding=padding
        )
        expected = []
        for conv, bn in readers:
            conv64, bn64 = copy.deepcopy(conv).double(), copy.deepcopy(bn).double().eval()
            expected.append(bn64(conv64(x.double())) - bn64(conv64(torch.zeros_like(x, dtype=torch.float64))))
    torch.testing.assert_close(got, torch.cat(expected, dim=1), rtol=1e-5, atol=1e-5)  # float32 fold


def test_incoming_and_outgoing_weights_of_resnets(zoo):
    resnet18 = zoo("resnet18")
    block = resnet18.net.layer4[1]
    scale = block.bn2.weight / torch.sqrt(block.bn2.running_var + block.bn2.eps)
    torch.testing.assert_close(
        resnet18.incoming_weight("layer4"), block.conv2.weight * scale.view(-1, 1, 1, 1)
    )
    assert torch.equal(resnet18.outgoing_weight("layer4"), resnet18.net.fc.weight.view(NUM_CLASSES, 512, 1))

    # layer3 is read by layer4.0's conv1 (3x3, then bn1) and downsample (1x1, zero-padded to the
    # centre, then its BN): together they are one 3x3 conv with conv1's stride and padding, each
    # half folded with the BN that follows it.
    reader = resnet18.net.layer4[0]
    weight = resnet18.outgoing_weight("layer3")
    assert weight.shape == (512 + 512, 256, 9)
    readers = [(reader.conv1, reader.bn1), (reader.downsample[0], reader.downsample[1])]
    assert_effective_linear_map(weight, readers, torch.randn(2, 256, 8, 8), stride=2, padding=1)
    # inside a block: conv1's output is read by conv2, folded with bn2
    inner = resnet18.net.layer3[1]
    assert_effective_linear_map(
        resnet18.outgoing_weight("layer3.1.bn1"), [(inner.conv2, inner.bn2)], torch.randn(2, 256, 4, 4), 1, 1
    )

    resnet50 = zoo("resnet50")
    last = resnet50.net.layer4[2]
    scale = last.bn3.weight / torch.sqrt(last.bn3.running_var + last.bn3.eps)
    incoming = resnet50.incoming_weight("layer4")
    assert incoming.shape == (2048, 512, 1, 1)
    torch.testing.assert_close(incoming, last.conv3.weight * scale.view(-1, 1, 1, 1))
    assert resnet50.outgoing_weight("layer4").shape == (NUM_CLASSES, 2048, 1)
    assert resnet50.unit_count("layer3") == 1024


def test_unknown_and_ambiguous_layers_give_clear_errors(zoo):
    resnet18 = zoo("resnet18")
    with pytest.raises(KeyError, match="layer1, layer2, layer3, layer4"):
        resolve_layer(resnet18, "conv5")
    # a BasicBlock's ReLU runs twice per forward: not a single ablation point
    with pytest.raises(ValueError, match="2 times"):
        resnet18.unit_count("layer4.1.relu")
    with pytest.raises(ValueError, match="2 times"):
        split_model(resnet18, "layer4.1.relu")
    with pytest.raises(ValueError, match="output layer"):
        resnet18.outgoing_weight("fc")


def test_any_architecture_wraps_and_counts_units_by_a_forward_pass():
    torch.manual_seed(0)
    model = TorchvisionClassifier("mobilenet_v3_small", NUM_CLASSES).eval()
    assert layer_aliases("mobilenet_v3_small") == {}
    assert model.unit_count("features.12") == 576
    with torch.no_grad():
        x = torch.rand(2, 3, 64, 64)
        mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
        expected = model.net((x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1))
        torch.testing.assert_close(model(x), expected)
    with pytest.raises(ValueError, match="not supported"):
        model.incoming_weight("features.12")
    assert model.config == {
        "arch": "torchvision",
        "name": "mobilenet_v3_small",
        "num_classes": NUM_CLASSES,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "resize": 256,
        "crop": 224,
    }
    with pytest.raises(ValueError, match="unknown torchvision"):
        TorchvisionClassifier("alexnet9000")


# --- zoo_layers: unit counts without torch ---------------------------------------------------


def test_zoo_layers_imports_without_torch():
    code = "import sys, unit_ablation.spec.zoo_layers; assert 'torch' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", sorted(ARCH_LAYERS))
def test_tabled_unit_counts_match_the_models(name):
    with torch.device("meta"):  # the structure without allocating or initialising weights
        model = TorchvisionClassifier(name, NUM_CLASSES)
    for alias, path in layer_aliases(name).items():
        assert model.unit_count(alias) == layer_units(name, alias) == layer_units(name, path)
        assert model.layer_path(alias) == path


def test_layer_units_errors_name_the_aliases():
    with pytest.raises(KeyError, match="conv1, conv2, conv3, conv4, conv5"):
        layer_units("alexnet", "conv6")
    with pytest.raises(KeyError, match="units:"):
        layer_units("alexnet", "features.10")  # a module path outside the table needs torch
    with pytest.raises(KeyError, match="densenet121"):
        layer_units("densenet121", "features")


# --- engine exactness ---------------------------------------------------------------------


def busiest_units(model: nn.Module, layer: str, images: np.ndarray, count: int) -> list[int]:
    """The units with the largest mean activation: at random init many units are (nearly) dead,
    and ablating those changes no prediction."""
    with torch.no_grad():
        activation = run_trunk(split_model(model, layer), as_float(images))[0]
    means = activation.mean(dim=[0, *range(2, activation.dim())])
    return sorted(means.topk(count).indices.tolist())


# (model, layer, rotated, images): paper layers, a module path, and a rotated basis per plan
ENGINE_CASES = [
    ("alexnet", "conv5", False, 12),
    ("alexnet", "conv5", True, 12),
    ("alexnet", "features.9", False, 12),
    ("vgg16", "conv5_3", False, 12),
    ("vgg16_bn", "conv5_3", False, 12),
    ("resnet18", "layer4", False, 12),
    ("resnet18", "layer4", True, 12),
    ("resnet50", "layer4", False, 12),
]


@pytest.mark.parametrize(("name", "layer", "rotated", "count"), ENGINE_CASES)
def test_engine_matches_the_naive_reference(zoo, name, layer, rotated, count, compute_device):
    model = zoo(name).cpu()  # the CUDA case moves the shared model; start each case on the CPU
    images = block_images(count, SIZES[name], seed=1)
    with torch.no_grad():
        predicted = model(as_float(images)).argmax(1).numpy()
    # labels: the intact prediction on half the images, random on the rest, so that both broken
    # and fixed images can occur
    labels = np.where(np.arange(count) % 2 == 0, predicted, np.random.default_rng(0).integers(0, 7, count))
    total = model.unit_count(layer)
    rotation = basis_matrix(total, 0) if rotated else None
    units = busiest_units(model, layer, images, 5)
    options = AblationOptions(batch_size=8, units_per_pass=3, device=compute_device)
    assert_matches_naive(
        model,
        layer,
        images,
        labels,
        units,
        NUM_CLASSES,
        rotation=rotation,
        options=options,
        naive_batch_size=count,
        every_kind=False,
    )


# --- weights files ------------------------------------------------------------------------


def test_places365_weights_load_and_reproduce_the_outputs(tmp_path):
    torch.manual_seed(1)
    source = TorchvisionClassifier("alexnet", 365).eval()
    state = source.net.state_dict()
    places = tmp_path / "alexnet_places365.pth.tar"
    torch.save(
        {"epoch": 90, "arch": "alexnet", "state_dict": {f"module.{k}": v for k, v in state.items()}}, places
    )
    # legacy layout: only `features` was wrapped in DataParallel
    legacy = tmp_path / "legacy.pth.tar"
    legacy_state = {k.replace("features.", "features.module.", 1): v for k, v in state.items()}
    assert "features.module.0.weight" in legacy_state
    torch.save({"epoch": 1, "arch": "alexnet", "state_dict": legacy_state}, legacy)

    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = source(x)
        for path in (places, legacy):
            model = build_torchvision("alexnet", 365, path)
            assert not model.training
            assert torch.equal(model(x), expected)


def test_plain_state_dicts_load_and_mismatches_are_named(tmp_path):
    torch.manual_seed(2)
    source = TorchvisionClassifier("resnet18", 365).eval()
    plain = tmp_path / "plain.pth"
    torch.save(source.net.state_dict(), plain)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(build_torchvision("resnet18", 365, plain)(x), source(x))

    # files from before PyTorch 0.4.1 lack BN's num_batches_tracked: still a strict, complete load
    old = tmp_path / "old.pth"
    torch.save({k: v for k, v in source.net.state_dict().items() if "num_batches_tracked" not in k}, old)
    with torch.no_grad():
        assert torch.equal(build_torchvision("resnet18", 365, old)(x), source(x))

    imagenet = tmp_path / "resnet18_imagenet.pth"
    torch.save(TorchvisionClassifier("resnet18", 1000).net.state_dict(), imagenet)
    with pytest.raises(ValueError, match="resnet18_imagenet.pth") as error:
        load_weights(TorchvisionClassifier("resnet18", 365), imagenet)
    assert "1000 classes" in str(error.value) and "365" in str(error.value) and "resnet18" in str(error.value)

    with pytest.raises(ValueError, match="missing keys: layer1.0.bn3.bias") as error:
        load_weights(TorchvisionClassifier("resnet50", 365), plain)
    assert "plain.pth" in str(error.value) and "unexpected keys" not in str(error.value)  # fc shapes differ


@pytest.mark.parametrize("kind", ["garbage", "pickled_object", "not_a_state_dict"])
def test_unreadable_weights_files_are_named(tmp_path, kind):
    path = tmp_path / f"{kind}.pth"
    if kind == "garbage":
        path.write_bytes(b"this is not a torch file" * 10)
    elif kind == "pickled_object":  # numpy arrays need weights_only=False
        torch.save({"state_dict": {"conv1.weight": np.zeros(3)}}, path)
    else:
        torch.save({"epoch": 3, "arch": "resnet18"}, path)
    with pytest.raises(ValueError, match=f"{kind}.pth"):
        load_weights(TorchvisionClassifier("resnet18", 365), path)


# --- checkpoints ---------------------------------------------------------------------------


def test_checkpoint_round_trip(zoo, tmp_path):
    model = zoo("resnet18")
    save_checkpoint(model, tmp_path / "m.pt", {"dataset": "places365", "weights": "random"})
    loaded, metadata = load_checkpoint(tmp_path / "m.pt")
    assert isinstance(loaded, TorchvisionClassifier) and not loaded.training
    assert loaded.config == model.config and metadata == {"dataset": "places365", "weights": "random"}
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path / "m.pt")(x), model(x))

    torch.save({"model_config": {"arch": "caffenet"}, "state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="caffenet"):
        load_model(tmp_path / "other.pt")
