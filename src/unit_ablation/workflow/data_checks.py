"""Cross-field checks of the data: split sizes, class counts, paths, and where attributes come from."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

from unit_ablation.spec.arch_spec import TORCHVISION, parse_arch, parse_python_ref
from unit_ablation.spec.fashion_mnist import IDX_NAMES
from unit_ablation.workflow.config_context import WEIGHTS_ENUM_PREFIX, Context, find_data_root, reads
from unit_ablation.workflow.config_schema import show
from unit_ablation.workflow.python_refs import python_ref_problems


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
            if "python" in image_set:
                yield from _python_image_set(f"data.images.{split}.python", image_set["python"])
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
            elif not _torchvision_lower_case(settings["arch"]):
                yield (
                    f"pretrained.{model}.arch: {show(settings['arch'])} cannot fetch torchvision weights"
                    " (accepted: a torchvision architecture name, lower case, e.g. vgg16_bn; timm and"
                    " python: models take a local weights file or null)"
                )
        else:
            yield from _must_exist(f"pretrained.{model}.weights", weights, "file")
    root = config["concepts"]["root"]
    if root is not None and not (Path(root) / "index.csv").is_file():
        yield (
            f"concepts.root: {show(root)} has no index.csv (expected Network Dissection's Broden layout:"
            " index.csv, label.csv, images/)"
        )


def _torchvision_lower_case(arch: str) -> bool:
    try:
        spec = parse_arch(arch)
    except ValueError:
        return True  # reported by check_arch
    return spec.kind == TORCHVISION and all(c.islower() or c.isdigit() or c == "_" for c in spec.name)


def _python_image_set(key: str, value: str) -> Iterator[str]:
    try:
        path, name = parse_python_ref(value, "the reference")
    except ValueError as error:
        yield f"{key}: {error}"
        return
    yield from python_ref_problems(key, value, path, name)


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
