import pytest
import torch

from unit_ablation.architecture import CONV_LAYERS, layer_units
from unit_ablation.models import build_model, load_checkpoint, load_model, resolve_layer, save_checkpoint

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
