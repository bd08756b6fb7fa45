"""Layer specs: a layer, its basis, and optionally its own ablation value."""

import pytest

from unit_ablation.spec.layer_spec import LayerSpec, parse_layer_spec


@pytest.mark.parametrize(
    ("name", "layer", "seed", "value", "basis", "label", "attribute_spec"),
    [
        ("conv5", "conv5", None, None, "canonical", "conv5", "conv5"),
        ("conv5@rot3", "conv5", 3, None, "rotation3", "conv5", "conv5@rot3"),
        ("conv5+mean", "conv5", None, "mean", "canonical", "conv5 (mean ablation)", "conv5"),
        (
            "features.7@rot0+zero",
            "features.7",
            0,
            "zero",
            "rotation0",
            "features.7 (zero ablation)",
            "features.7@rot0",
        ),
    ],
)
def test_specs_round_trip(name, layer, seed, value, basis, label, attribute_spec):
    spec = parse_layer_spec(name)
    assert (spec.layer, spec.rotation_seed, spec.value) == (layer, seed, value)
    assert (spec.basis, spec.label, spec.attribute_spec) == (basis, label, attribute_spec)
    assert spec.name == name == LayerSpec(layer, seed, value).name


@pytest.mark.parametrize("name", ["conv5+median", "conv5@rotx", "conv5+mean@rot0", "conv 5"])
def test_bad_specs_are_named(name):
    with pytest.raises(ValueError, match="bad layer name"):
        parse_layer_spec(name)
