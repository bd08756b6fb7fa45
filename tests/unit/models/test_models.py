import copy

import pytest
import torch

from unit_ablation.engine.graph_split import resolve_layer
from unit_ablation.models.checkpoint import load_checkpoint, load_model, save_checkpoint
from unit_ablation.models.fashion_alexnet import build_model
from unit_ablation.spec.architecture import CONV_LAYERS, layer_units

VARIANTS = {"baseline": (0.5, False), "nodropout": (0.0, False), "bn": (0.5, True)}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_builds_and_resolves_every_layer(variant):
    dropout, batchnorm = VARIANTS[variant]
    model = build_model(width=0.5, dropout=dropout, batchnorm=batchnorm).eval()
    x = torch.rand(3, 1, 28, 28)
    logits = model(x)
    assert logits.shape == (3, 10)
    units = layer_units(0.5)
    for layer in CONV_LAYERS:
        module = resolve_layer(model, layer)
        assert module is model.features.get_submodule(layer)
        assert resolve_layer(model, f"features.{layer}") is module  # module paths work too
        captured = []
        handle = module.register_forward_hook(lambda _m, _i, out, store=captured: store.append(out))
        model(x)
        handle.remove()
        activation = model.forward_to(layer, x)
        assert activation.shape[1] == units[layer]
        assert torch.equal(activation, captured[0])
        assert (activation >= 0).all(), "the ablation point is post-ReLU"
        # trunk + head is the whole network
        torch.testing.assert_close(model.forward_from(layer, activation), logits, rtol=0, atol=1e-6)
    has_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert has_bn == batchnorm
    assert model.classifier.drop6.p == dropout and model.classifier.drop7.p == dropout


def test_unknown_layer_names_the_layer():
    model = build_model(width=0.25)
    with pytest.raises(KeyError, match="conv9"):
        resolve_layer(model, "conv9")


def test_checkpoint_round_trip_is_self_contained(tmp_path):
    torch.manual_seed(0)
    model = build_model(width=0.25, batchnorm=True).eval()
    save_checkpoint(model, tmp_path / "m.pt", {"variant": "bn", "seed": 0})
    loaded, metadata = load_checkpoint(tmp_path / "m.pt")
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(loaded(x), model(x))
    assert metadata == {"variant": "bn", "seed": 0}
    assert not load_model(tmp_path / "m.pt").training


def test_truncated_checkpoint_error_names_the_file(tmp_path):
    model = build_model(width=0.25)
    save_checkpoint(model, tmp_path / "m.pt", {})
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "bad.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="bad.pt"):
        load_model(tmp_path / "bad.pt")


def test_bn_folded_weights_are_the_effective_linear_maps():
    """incoming/outgoing weights of a BN net equal the linear part of conv + BN in eval mode:
    BN(conv(x)) - BN(conv(0)) is a conv with the folded filters (non-trivial running stats)."""
    torch.manual_seed(0)
    model = build_model(width=0.25, batchnorm=True).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(-2.0, 2.0)
                module.bias.uniform_(-1.0, 1.0)
                module.running_mean.uniform_(-1.0, 1.0)
                module.running_var.uniform_(0.2, 5.0)
    units = layer_units(0.25)
    for layer, reader in zip(CONV_LAYERS[:-1], CONV_LAYERS[1:], strict=True):
        out = model.outgoing_weight(layer)  # float32, as the attribute stage reads it
        assert out.shape == (units[reader], units[layer], 9)
        block = copy.deepcopy(model.features.get_submodule(reader)).double()  # the maps in float64
        x = torch.randn(2, units[layer], 7, 7, dtype=torch.float64)
        with torch.no_grad():
            effective = block.bn(block.conv(x)) - block.bn(block.conv(torch.zeros_like(x)))
            filters = out.double().view(units[reader], units[layer], 3, 3)
            folded = torch.nn.functional.conv2d(x, filters, padding=1)
        torch.testing.assert_close(folded, effective, rtol=1e-5, atol=1e-5)  # float32 rounding of the fold
        # BN is not the identity; the reader's incoming weight is the same fold seen from the other side
        assert not torch.allclose(out, block.conv.weight.float().flatten(2), rtol=1e-3)
        assert torch.equal(model.incoming_weight(reader).flatten(2), out)
    # conv5 is read by fc6 (no BN after it): raw weights per unit and pool5 position
    fc6 = model.classifier.fc6.weight
    assert torch.equal(model.outgoing_weight("conv5"), fc6.view(fc6.shape[0], units["conv5"], 9))


def test_model_metadata_stage_writes_the_json_train_would_write(tmp_path, idx_folder):
    """`train` caches only its checkpoint; `model_metadata` writes the same JSON from it, byte for byte."""
    from unit_ablation.data.fashion_mnist import prepare_fashion_mnist
    from unit_ablation.files.safe_load import CorruptFileError
    from unit_ablation.stages.model_metadata import model_metadata_to_file
    from unit_ablation.stages.train import train_to_checkpoint

    dataset = tmp_path / "data.npz"
    prepare_fashion_mnist(idx_folder, dataset, heldout_size=50, seed=0)
    schedule = {"epochs": 1, "batch_size": 50, "width": 0.25, "seed": 0}
    metadata = train_to_checkpoint(
        dataset, tmp_path / "m.pt", tmp_path / "direct.json", "m", "baseline", schedule
    )
    written = model_metadata_to_file(tmp_path / "m.pt", tmp_path / "m.json")
    assert written == metadata and "machine" in written
    assert (tmp_path / "m.json").read_bytes() == (tmp_path / "direct.json").read_bytes()
    train_to_checkpoint(dataset, tmp_path / "only.pt", None, "m", "baseline", schedule)
    assert sorted(p.name for p in tmp_path.glob("only*")) == ["only.pt"]
    save_checkpoint(build_model(width=0.25), tmp_path / "bare.pt", {})  # no format version
    with pytest.raises(CorruptFileError, match="bare.pt"):
        model_metadata_to_file(tmp_path / "bare.pt", tmp_path / "bare.json")
    assert not (tmp_path / "bare.json").exists()
