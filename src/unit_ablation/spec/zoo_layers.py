"""Pure-Python layer tables of the torchvision classifiers (no torch import).

Snakemake reads this at parse time to know how many units a layer of a paper-scale model has,
so it must stay cheap to import. Aliases name the paper's layers; each maps to a module path of
the torchvision model (relative to it: `features.11`, not `net.features.11`).
"""

from __future__ import annotations

TORCHVISION_ARCH = "torchvision"  # `config["arch"]` of zoo.TorchvisionClassifier
# ImageNet statistics; the Places365 models were trained with the same preprocessing.
IMAGENET_MEAN: tuple[float, ...] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, ...] = (0.229, 0.224, 0.225)
RESIZE = 256
CROP = 224

# torchvision.models.vgg `cfgs` as (convs, width) per block; every block ends with a max-pool.
_VGG_BLOCKS: dict[str, tuple[tuple[int, int], ...]] = {
    "vgg11": ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)),
    "vgg13": ((2, 64), (2, 128), (2, 256), (2, 512), (2, 512)),
    "vgg16": ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)),
    "vgg19": ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512)),
}
_BASIC_RESNETS = ("resnet18", "resnet34")
_BOTTLENECK_RESNETS = (
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
)


def _alexnet_layers() -> dict[str, tuple[str, int]]:
    """conv1..conv5: the ReLU after each conv of torchvision's AlexNet."""
    relus = (1, 4, 7, 9, 11)
    widths = (64, 192, 384, 256, 256)
    return {f"conv{i + 1}": (f"features.{relus[i]}", widths[i]) for i in range(5)}


def _vgg_layers(blocks: tuple[tuple[int, int], ...], batchnorm: bool) -> dict[str, tuple[str, int]]:
    """conv{block}_{i}: the ReLU after the i-th conv of a block (features: conv, [BN], ReLU, ..., pool)."""
    layers: dict[str, tuple[str, int]] = {}
    index = 0  # position in `features`
    for block, (convs, width) in enumerate(blocks, start=1):
        for conv in range(1, convs + 1):
            index += 2 if batchnorm else 1  # skip the conv (and BN): the ReLU
            layers[f"conv{block}_{conv}"] = (f"features.{index}", width)
            index += 1
        index += 1  # the max-pool
    return layers


def _resnet_layers(expansion: int) -> dict[str, tuple[str, int]]:
    """layer1..layer4: the stage outputs (after the last block's residual add and ReLU)."""
    return {f"layer{i + 1}": (f"layer{i + 1}", 64 * 2**i * expansion) for i in range(4)}


def _arch_layers() -> dict[str, dict[str, tuple[str, int]]]:
    tables: dict[str, dict[str, tuple[str, int]]] = {"alexnet": _alexnet_layers()}
    for name, blocks in _VGG_BLOCKS.items():
        tables[name] = _vgg_layers(blocks, batchnorm=False)
        tables[f"{name}_bn"] = _vgg_layers(blocks, batchnorm=True)
    tables.update({name: _resnet_layers(1) for name in _BASIC_RESNETS})
    tables.update({name: _resnet_layers(4) for name in _BOTTLENECK_RESNETS})
    return tables


# architecture -> alias -> (module path in the torchvision model, units)
ARCH_LAYERS: dict[str, dict[str, tuple[str, int]]] = _arch_layers()


def layer_aliases(name: str) -> dict[str, str]:
    """Alias -> module path of a torchvision architecture; empty for architectures without aliases."""
    return {alias: path for alias, (path, _) in ARCH_LAYERS.get(name, {}).items()}


def layer_units(name: str, layer: str) -> int:
    """Units (channels) of an alias, or of the module path an alias stands for, without torch.

    Raises KeyError listing the aliases when the layer is not in the table: the width of an
    arbitrary module path needs the model (torch), so use an alias or give `units:` in the config.
    """
    if name not in ARCH_LAYERS:
        raise KeyError(
            f"no layer table for torchvision architecture {name!r}; known: {', '.join(sorted(ARCH_LAYERS))} "
            "(give `units:` in the config for other architectures)"
        )
    table = ARCH_LAYERS[name]
    if layer in table:
        return table[layer][1]
    for path, units in table.values():
        if layer == path:
            return units
    raise KeyError(
        f"unknown layer {layer!r} of {name}: aliases are {', '.join(table)}; the unit count of another "
        "module path is only known with torch, so use an alias or give `units:` in the config"
    )
