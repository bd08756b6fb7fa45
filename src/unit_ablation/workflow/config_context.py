"""What the cross-field config checks share: the `reads` declaration, and a `Context` with the
download folders and class names read once. No torch, no Snakemake."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from unit_ablation.spec.fashion_mnist import DEFAULT_DEST, FASHION_MNIST_CLASSES, IDX_NAMES
from unit_ablation.spec.model_names import trained_model_name
from unit_ablation.workflow.config_schema import show

FASHION_MNIST_CLASS_COUNT = len(FASHION_MNIST_CLASSES)


WEIGHTS_ENUM_PREFIX = "torchvision:"


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
            trained_model_name(variant, seed)
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
    if "python" in image_set:
        return None, None  # known when the user's code runs: decode_images and prepare_model check them
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
    from unit_ablation.data.class_names import read_class_names

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
