"""Config checks before any job runs: the JSON schema (`config_schema`), with one clear message
per fault, then cross-field checks (layers of the architecture, splits, class counts, chunk sizes, paths).

Every message names the key, the bad value and what is accepted. All faults are collected and
raised together as one `ConfigError`. Imports no torch and no Snakemake: it runs at parse time
(on the submit host and in every cluster job) and is unit-testable on plain dicts.
"""

from __future__ import annotations

import difflib
import gzip
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from unit_ablation.architecture import canonical_layer
from unit_ablation.config_schema import MAX_LISTED, load_schema, schema_faults, show
from unit_ablation.cost import PLANS, engine_plan
from unit_ablation.fetch_data import DEFAULT_DEST, IDX_NAMES
from unit_ablation.layers import LayerSpec
from unit_ablation.zoo_layers import ARCH_LAYERS
from unit_ablation.zoo_layers import layer_units as zoo_layer_units

MODEL_PREFIX = "fmnist-alexnet"  # trained models are named {MODEL_PREFIX}-{variant}-s{seed}
FASHION_MNIST_CLASS_COUNT = 10
WEIGHTS_ENUM_PREFIX = "torchvision:"


class ConfigError(ValueError):
    """One or more faults in the config; `problems` lists one message per fault."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        count = len(self.problems)
        header = f"config: {count} problem{'s' if count != 1 else ''} (nothing was run):"
        super().__init__("\n".join([header, *(f"  - {problem}" for problem in self.problems)]))


# --------------------------------------------------------------------------- cross-field checks

Check = Callable[[dict, "Context"], Iterator[str]]


def reads(*keys: str) -> Callable[[Check], Check]:
    """Declare the keys a check reads: it is skipped when the schema rejected one of them."""

    def mark(check: Check) -> Check:
        check.reads = keys  # type: ignore[attr-defined]
        return check

    return mark


def _overlaps(path: str, key: str) -> bool:
    """Whether one key path lies within the other (`analysis.layers[1]` and `analysis.layers`)."""
    if path == "(top level)":
        return True
    short, long = sorted((path, key), key=len)
    return long == short or long.startswith((short + ".", short + "["))


class Context:
    """What the cross-field checks share: the download folders, and class names read once."""

    def __init__(self, config: dict, basedir: str | Path | None = None):
        self.config = config
        self.basedir = None if basedir is None else Path(basedir)
        self._classes: dict[str, tuple[tuple[str, ...] | None, str | None]] = {}

    @property
    def source(self) -> str:
        return self.config["data"].get("source", "fashion-mnist")

    @property
    def images(self) -> dict | None:
        return self.config["data"].get("images") if self.source == "images" else None

    def trained(self) -> list[str]:
        """Names of the trained models (empty with image data)."""
        return [
            f"{MODEL_PREFIX}-{variant}-s{seed}"
            for variant in self.config["variants"]
            for seed in self.config["seeds"]
        ]

    def pretrained(self) -> dict:
        return self.config.get("pretrained") or {}

    def download_dirs(self) -> list[str]:
        return download_dirs(self.basedir)

    def classes(self, split: str) -> tuple[tuple[str, ...] | None, str | None]:
        """(class names or None, a fault or None) of an image split; cheap (one listing or file)."""
        if split not in self._classes:
            self._classes[split] = _image_set_classes(self.images, split)
        return self._classes[split]

    def data_class_count(self) -> int | None:
        """The evaluation data's class count, when it is known without reading images."""
        if self.source == "fashion-mnist":
            return FASHION_MNIST_CLASS_COUNT
        classes = self.data_classes()
        return None if classes is None else len(classes)

    def data_classes(self) -> tuple[str, ...] | None:
        """The evaluation data's class names, when they are known without reading images."""
        if self.source == "fashion-mnist":
            from unit_ablation.data import FASHION_MNIST_CLASSES  # numpy, no torch

            return FASHION_MNIST_CLASSES
        if not isinstance(self.images, dict):
            return None
        return self.classes("test")[0]


def _image_set_classes(images: dict | None, split: str) -> tuple[tuple[str, ...] | None, str | None]:
    if not isinstance(images, dict):
        return None, None
    image_set = images.get(split)
    if split == "heldout" and image_set is None:
        return None, None
    key = f"data.images.{split}"
    if "folder" in image_set:
        folder = Path(image_set["folder"])
        if not folder.is_dir():
            return None, None  # reported by check_paths
        names = sorted(
            entry.name for entry in os.scandir(folder) if entry.is_dir() and not entry.name.startswith(".")
        )
        if not names:
            return None, f"{key}.folder: {show(image_set['folder'])} has no class sub-folders (one per class)"
        return tuple(names), None
    path = Path(image_set["class_names"])
    if not path.is_file():
        return None, None  # reported by check_paths
    from unit_ablation.images import read_class_names  # PIL and numpy, no torch

    try:
        return read_class_names(path).names, None
    except ValueError as error:
        return None, (
            f"{key}.class_names: {error} (accepted: one class name per line, Places365's categories"
            " file, LOC_synset_mapping.txt or imagenet_class_index.json)"
        )


def download_dirs(basedir: str | Path | None = None) -> list[str]:
    """Where `make data` downloads when Debian's package is not available: the working directory's
    `data/fashion-mnist`, then the checkout's."""
    dirs = [str(DEFAULT_DEST)]
    if basedir is not None:
        dirs.append(str(Path(basedir) / DEFAULT_DEST))
    return dirs


def find_data_root(config: dict, download_dirs: Sequence[str]) -> str | None:
    """The Fashion-MNIST folder: data.root, or (auto) the first folder of the search path (then
    `download_dirs`) holding the four IDX files; None when none has them."""
    root = config["data"]["root"]
    if root != "auto":
        return root
    for candidate in dict.fromkeys([*config["data"]["search_path"], *download_dirs]):
        if all((Path(candidate) / name).is_file() for name in IDX_NAMES):
            return candidate
    return None


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
        arch, units = settings["arch"], settings.get("units") or {}
        layers, key = _model_layers(config, model)
        missing = [layer for layer in layers if layer not in units]
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
    specs = []
    for layer in config["analysis"]["layers"]:
        specs.append(LayerSpec(layer).name)
        specs += [LayerSpec(layer, seed).name for seed in config["analysis"]["rotation_seeds"]]
    return specs


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


def _idx_count(path: Path) -> int | None:
    """Item count in an IDX file's header (8 bytes read), or None when unreadable."""
    try:
        with gzip.open(path, "rb") as handle:
            header = handle.read(8)
    except (OSError, EOFError):
        return None
    return int.from_bytes(header[4:8], "big") if len(header) == 8 else None


@reads(
    "data.source",
    "data.root",
    "data.search_path",
    "data.heldout_size",
    "data.train_size",
    "data.test_size",
    "data.images",
)
def check_splits(config: dict, context: Context) -> Iterator[str]:
    """Split sizes the data has; image splits with the same classes; a crop the image holds."""
    data = config["data"]
    if context.source == "fashion-mnist":
        root = find_data_root(config, context.download_dirs())
        if root is None or not Path(root).is_dir():
            return  # reported by check_paths
        train = _idx_count(Path(root) / IDX_NAMES[1])
        test = _idx_count(Path(root) / IDX_NAMES[3])
        heldout = data["heldout_size"]
        if train is not None:
            if heldout >= train:
                yield (
                    f"data.heldout_size: {heldout} leaves no training images: the train split of {root}"
                    f" has {train} (accepted: 10 to {train - 1})"
                )
            elif data.get("train_size") is not None and data["train_size"] > train - heldout:
                yield (
                    f"data.train_size: {data['train_size']} is more than the {train - heldout} training"
                    f" images left after data.heldout_size {heldout} in {root}"
                    f" (accepted: 10 to {train - heldout}, or null for all)"
                )
        if test is not None and data.get("test_size") is not None and data["test_size"] > test:
            yield (
                f"data.test_size: {data['test_size']} is more than the {test} images of the test split"
                f" in {root} (accepted: 10 to {test}, or null for all)"
            )
        return
    images = context.images
    if not isinstance(images, dict):
        return
    if images["crop"] > images["resize"]:
        yield (
            f"data.images.crop: {images['crop']} is larger than data.images.resize {images['resize']}"
            f" (accepted: at most {images['resize']}: the centre crop is cut from the resized image)"
        )
    for split in ("test", "heldout"):
        fault = context.classes(split)[1]
        if fault:
            yield fault
    test, heldout = context.classes("test")[0], context.classes("heldout")[0]
    if test is not None and heldout is not None and len(test) != len(heldout):
        yield (
            f"data.images.heldout: {len(heldout)} classes, but data.images.test has {len(test)}"
            " (accepted: the same classes, or null for the test images)"
        )


@reads("data.source", "data.images", "pretrained")
def check_class_counts(config: dict, context: Context) -> Iterator[str]:
    """A pretrained model's num_classes equals the class count of the evaluation images."""
    classes = context.data_classes() if context.source == "images" else None
    if classes is None:
        return
    image_set = context.images["test"]
    source = image_set.get("folder") or image_set.get("class_names")
    for model, settings in context.pretrained().items():
        if settings["num_classes"] != len(classes):
            yield (
                f"pretrained.{model}.num_classes is {settings['num_classes']}, but data.images.test"
                f" ({source}) has {len(classes)} classes (accepted: {len(classes)})"
            )


def _must_exist(key: str, value: str, kind: str) -> Iterator[str]:
    path = Path(value)
    if kind == "folder" and not path.is_dir():
        state = "is not a folder" if path.exists() else "does not exist"
        yield f"{key}: {show(value)} {state} (accepted: an existing folder)"
    elif kind == "file" and not path.is_file():
        state = "is not a file" if path.exists() else "does not exist"
        yield f"{key}: {show(value)} {state} (accepted: an existing file)"


@reads("data.source", "data.root", "data.search_path", "data.images", "pretrained", "concepts.root")
def check_paths(config: dict, context: Context) -> Iterator[str]:
    """Data, image, weights and Broden paths exist (relative paths: from the working directory)."""
    data = config["data"]
    if context.source == "fashion-mnist":
        root = find_data_root(config, context.download_dirs())
        if data["root"] != "auto":
            if not Path(root).is_dir():
                yield from _must_exist("data.root", root, "folder")
            else:
                lacking = [name for name in IDX_NAMES if not (Path(root) / name).is_file()]
                if lacking:
                    yield (
                        f"data.root: {show(root)} lacks {', '.join(lacking)}"
                        " (accepted: a folder holding the four Fashion-MNIST IDX files, or auto)"
                    )
        elif root is None:
            tried = list(dict.fromkeys([*data["search_path"], *context.download_dirs()]))
            yield (
                f"data.root: 'auto' found Fashion-MNIST in none of {', '.join(tried)}. Run `make data`"
                " (installs Debian's dataset-fashion-mnist, or downloads with torchvision), or set"
                f" data.root to a folder holding {', '.join(IDX_NAMES)}"
            )
    elif isinstance(context.images, dict):
        for split in ("test", "heldout"):
            image_set = context.images.get(split)
            if image_set is None:
                continue
            for key, kind in (
                ("folder", "folder"),
                ("images", "folder"),
                ("labels", "file"),
                ("class_names", "file"),
            ):
                if key in image_set:
                    yield from _must_exist(f"data.images.{split}.{key}", image_set[key], kind)
    for model, settings in context.pretrained().items():
        weights = settings["weights"]
        if weights is None:
            continue
        if weights.startswith(WEIGHTS_ENUM_PREFIX):
            enum = weights[len(WEIGHTS_ENUM_PREFIX) :]
            if not enum or not all(c.isupper() or c.isdigit() or c == "_" for c in enum):
                yield (
                    f"pretrained.{model}.weights: {show(weights)} is not accepted (accepted: a local file,"
                    " torchvision:<ENUM> with the enum in capitals, e.g. torchvision:IMAGENET1K_V1, or null)"
                )
            elif not all(c.islower() or c.isdigit() or c == "_" for c in settings["arch"]):
                yield (
                    f"pretrained.{model}.arch: {show(settings['arch'])} cannot fetch torchvision weights"
                    " (accepted: a torchvision architecture name, lower case, e.g. vgg16_bn)"
                )
        else:
            yield from _must_exist(f"pretrained.{model}.weights", weights, "file")
    root = config["concepts"]["root"]
    if root is not None and not (Path(root) / "index.csv").is_file():
        yield (
            f"concepts.root: {show(root)} has no index.csv (expected Network Dissection's Broden layout:"
            " index.csv, label.csv, images/)"
        )


@reads(
    "data.source", "data.images", "analysis.attribute_split", "analysis.allow_attributes_on_evaluation_split"
)
def check_attribute_split(config: dict, context: Context) -> Iterator[str]:
    """Attributes come from images the ablation is not evaluated on, unless explicitly allowed."""
    if config["analysis"].get("allow_attributes_on_evaluation_split", False):
        return
    override = "set analysis.allow_attributes_on_evaluation_split: true to allow it"
    if config["analysis"]["attribute_split"] == "test":
        yield (
            "analysis.attribute_split: test computes unit attributes on the evaluation images (selection"
            f" on the images evaluated on); use heldout, a training subset, or {override}"
        )
    elif context.source == "images" and isinstance(config["data"].get("images"), dict):
        images = config["data"]["images"]
        if images.get("heldout") is None or images.get("heldout") == images.get("test"):
            yield (
                "data.images.heldout: null (or the test images) computes unit attributes on the evaluation"
                f" split; name a training subset (e.g. 50 images per class of the train set), or {override}"
            )


@reads("analysis.compare_values", "ablation.value")
def check_compare_values(config: dict, context: Context) -> Iterator[str]:
    """Comparison values are values besides the run's own."""
    value = config["ablation"]["value"]
    if value in config["analysis"].get("compare_values", []):
        yield (
            f"analysis.compare_values: {value!r} is already ablation.value (accepted: the other values of"
            " zero and mean, or [])"
        )


CHECKS: tuple[Check, ...] = (
    check_attribute_split,
    check_compare_values,
    check_models_and_data,
    check_layers,
    check_cumulative,
    check_ablation,
    check_splits,
    check_class_counts,
    check_paths,
)


def cross_field_problems(
    config: dict, basedir: str | Path | None = None, rejected: Sequence[str] = ()
) -> list[str]:
    """Faults between keys and against the file system. A check that reads a key the schema
    `rejected` (key paths) is skipped; with any rejected key, a check that trips over a malformed
    value elsewhere is skipped too, instead of raising."""
    context = Context(config, basedir)
    problems: list[str] = []
    for check in CHECKS:
        if any(_overlaps(path, key) for path in rejected for key in getattr(check, "reads", ())):
            continue
        try:
            for problem in check(config, context):
                if problem not in problems:
                    problems.append(problem)
        except (KeyError, TypeError, AttributeError, ValueError, IndexError):
            if not rejected:
                raise
    return problems


def check_config(config: dict, schema: str | Path | dict, basedir: str | Path | None = None) -> None:
    """Validate `config` (filling schema defaults in place), then the cross-field checks; raise one
    ConfigError listing every fault. `basedir`: the checkout (its data/fashion-mnist is searched)."""
    schema = schema if isinstance(schema, dict) else load_schema(schema)
    faults = schema_faults(config, schema)
    problems = [message for _, message in faults]
    problems += cross_field_problems(config, basedir, rejected=[path for path, _ in faults])
    if problems:
        raise ConfigError(problems)
