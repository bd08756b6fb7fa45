"""Cross-field checks of the models: layers of their architectures, cumulative layers, class
counts, ablation settings and compared ablation values."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any

from unit_ablation.spec.arch_spec import PYTHON, TORCHVISION, parse_arch
from unit_ablation.spec.architecture import canonical_layer
from unit_ablation.spec.cost import engine_plan
from unit_ablation.spec.layer_spec import study_layer_specs
from unit_ablation.spec.plans import PLANS
from unit_ablation.spec.zoo_layers import ARCH_LAYERS
from unit_ablation.spec.zoo_layers import layer_units as zoo_layer_units
from unit_ablation.workflow.config_context import Context, reads
from unit_ablation.workflow.config_schema import MAX_LISTED, show
from unit_ablation.workflow.python_refs import python_ref_problems


@reads("data.source", "data.images", "variants", "seeds", "pretrained", "concepts.root")
def check_models_and_data(config: dict, context: Context) -> Iterator[str]:
    """Trained variants need Fashion-MNIST; pretrained torchvision models need image data."""
    pretrained = context.pretrained()
    if context.source == "images":
        if config["data"].get("images") is None:
            yield "data.images: required with data.source: images (test, heldout, resize, crop, workers)"
        if config["variants"]:
            yield (
                f"variants: {list(config['variants'])}: models are trained on Fashion-MNIST only;"
                " with data.source: images set variants: {} and list models under pretrained:"
            )
    else:
        if pretrained:
            yield (
                f"pretrained: {list(pretrained)}: torchvision models need data.source: images"
                " (image folders); Fashion-MNIST studies train the built-in model (variants:)"
            )
        if config["data"].get("images") is not None:
            yield (
                "data.images: set, but data.source is 'fashion-mnist', which ignores it"
                " (accepted: null, or data.source: images to analyse these images)"
            )
    if pretrained and config["concepts"]["root"] is not None:
        yield (
            f"concepts.root: {show(config['concepts']['root'])}: concept IoU feeds Broden images to the"
            " built-in model only so far (accepted: null with pretrained models)"
        )
    trained = context.trained()
    clash = sorted(set(trained) & set(pretrained))
    if clash:
        yield f"pretrained: {clash} clash with trained model names (accepted: names other than {trained})"
    if not trained and not pretrained:
        yield "variants, pretrained: no models: both are empty (accepted: at least one model)"


def _model_layers(config: dict, name: str) -> tuple[list[str], str]:
    """A pretrained model's analysed layers and the key they come from."""
    own = config["pretrained"][name].get("layers")
    if own:
        return list(own), f"pretrained.{name}.layers"
    return list(config["analysis"]["layers"]), f"analysis.layers (the layers of pretrained.{name})"


@reads("data.source", "variants", "seeds", "analysis.layers", "pretrained")
def check_layers(config: dict, context: Context) -> Iterator[str]:
    """Analysed layers are layers of the model's architecture: the built-in net or torchvision's."""
    if context.trained():
        seen: dict[str, str] = {}
        for layer in config["analysis"]["layers"]:
            try:
                name = canonical_layer(layer)
            except KeyError as error:
                yield f"analysis.layers: {error.args[0]}"
                continue
            if name in seen:
                yield (
                    f"analysis.layers: {layer!r} and {seen[name]!r} name the same layer"
                    " (accepted: each layer once)"
                )
            seen[name] = layer
    for model, settings in context.pretrained().items():
        units = settings.get("units") or {}
        layers, key = _model_layers(config, model)
        missing = [layer for layer in layers if layer not in units]
        try:
            spec = parse_arch(settings["arch"])
        except ValueError:
            continue  # reported by check_arch
        if spec.kind != TORCHVISION:
            for layer in missing:
                yield (
                    f"pretrained.{model}.units.{layer}: missing: the unit count of each layer of a"
                    f" {spec.kind} model ({key}) is needed before any job runs, to plan the ablate jobs"
                    f" (accepted: units: {{{layer}: N}}, N the layer's output channels;"
                    f" `python -m unit_ablation.describe {settings['arch']}` prints them)"
                )
            continue
        arch = spec.name
        if arch not in ARCH_LAYERS:
            if missing:
                close = difflib.get_close_matches(arch, list(ARCH_LAYERS), n=1)
                hint = f"did you mean `{close[0]}`? " if close else ""
                yield (
                    f"pretrained.{model}.arch: {arch!r} has no layer table; {hint}(accepted: one of"
                    f" {', '.join(sorted(ARCH_LAYERS))}, or any torchvision architecture with"
                    f" `units:` for its layers {missing})"
                )
            continue
        for layer in missing:
            try:
                zoo_layer_units(arch, layer)
            except KeyError as error:
                yield f"{key}: {error.args[0]}"
        for layer, count in units.items():
            try:
                known = zoo_layer_units(arch, layer)
            except KeyError:
                continue
            if known != count:
                yield (
                    f"pretrained.{model}.units.{layer}: {count!r} contradicts {arch}'s {layer}, which has"
                    f" {known} units (accepted: {known}, or leave it out)"
                )


@reads("pretrained")
def check_arch(config: dict, context: Context) -> Iterator[str]:
    """Architecture strings parse; a `python:` model's file exists and defines its function (read
    with `ast`: the user's code does not run before a job does)."""
    for model, settings in context.pretrained().items():
        key = f"pretrained.{model}.arch"
        try:
            spec = parse_arch(settings["arch"])
        except ValueError as error:
            yield f"{key}: {error}"
            continue
        if spec.kind == PYTHON:
            yield from python_ref_problems(key, settings["arch"], spec.path, spec.callable)


@reads("data.source", "data.images", "variants", "seeds", "analysis.layers", "cumulative", "pretrained")
def check_cumulative(config: dict, context: Context) -> Iterator[str]:
    """Cumulative layers are analysed layers; its classes exist in the data."""
    layers = config["cumulative"]["layers"]
    if context.trained():
        analysed = config["analysis"]["layers"]
        canonical = set()
        for layer in analysed:
            try:
                canonical.add(canonical_layer(layer))
            except KeyError:
                continue  # reported by check_layers
        for layer in layers:
            try:
                name = canonical_layer(layer)
            except KeyError as error:
                yield f"cumulative.layers: {error.args[0]}"
                continue
            if name not in canonical:
                yield (
                    f"cumulative.layers: {layer!r} is not in analysis.layers {analysed}"
                    " (cumulative ablation ranks units by their single-unit class drops)"
                )
    elif context.pretrained():
        per_model = {name: _model_layers(config, name)[0] for name in context.pretrained()}
        for layer in layers:
            if not any(layer in model_layers for model_layers in per_model.values()):
                yield (
                    f"cumulative.layers: {layer!r} is not a layer of any pretrained model ({per_model})"
                    " (accepted: layers the models are analysed at)"
                )
    yield from _check_classes(config["cumulative"]["classes"], context)


def _check_classes(classes: Any, context: Context) -> Iterator[str]:
    if not config_has_cumulative(context.config):
        return
    if isinstance(classes, int):
        count = context.data_class_count()
        if count is not None and classes > count:
            yield (
                f"cumulative.classes: {classes} is more than the data's {count} classes"
                f" (accepted: 1 to {count}, or class names)"
            )
        return
    known = context.data_classes()
    if known is None:
        return
    for name in classes:
        if name in known:
            continue
        close = difflib.get_close_matches(str(name), list(known), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        listed = ", ".join(map(repr, known)) if len(known) <= MAX_LISTED else f"{len(known)} names"
        yield f"cumulative.classes: {name!r} is not a class of the data; {hint}(accepted: {listed})"


def config_has_cumulative(config: dict) -> bool:
    return bool(config["cumulative"]["layers"])


def _trained_specs(config: dict) -> list[str]:
    return study_layer_specs(config["analysis"]["layers"], config["analysis"]["rotation_seeds"])


@reads(
    "data.source", "variants", "seeds", "pretrained", "analysis.layers", "analysis.rotation_seeds", "ablation"
)
def check_ablation(config: dict, context: Context) -> Iterator[str]:
    """Chunk sizes the workflow can use, and an ablation plan that applies to each layer."""
    ablation = config["ablation"]
    if ablation["chunk_size"] == "auto" and context.pretrained():
        yield (
            f"ablation.chunk_size: 'auto' sizes jobs of the built-in model only, not of pretrained"
            f" models {list(context.pretrained())} (accepted: an integer >= 1;"
            " `python -m unit_ablation.plan_cost` prints the FLOPs per plan)"
        )
    plan = ablation["plan"]
    if not context.trained() or plan == "auto":
        return
    specs = [spec for spec in _trained_specs(config) if _applies(spec, "auto")]  # others: check_layers
    refused = [spec for spec in specs if not _applies(spec, plan)]
    if refused:
        accepted = ["auto", *(other for other in PLANS if all(_applies(spec, other) for spec in specs))]
        yield (
            f"ablation.plan: {plan!r} does not apply to {', '.join(refused)} of the built-in model"
            f" (accepted here: {', '.join(accepted)})"
        )


def _applies(spec: str, plan: str) -> bool:
    try:
        engine_plan(spec, plan)
    except ValueError:
        return False
    return True


@reads("analysis.compare_values", "ablation.value")
def check_compare_values(config: dict, context: Context) -> Iterator[str]:
    """Comparison values are values besides the run's own."""
    value = config["ablation"]["value"]
    if value in config["analysis"].get("compare_values", []):
        yield (
            f"analysis.compare_values: {value!r} is already ablation.value (accepted: the other values of"
            " zero and mean, or [])"
        )
