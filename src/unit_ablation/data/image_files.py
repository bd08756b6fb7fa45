"""Image sets on disk as file lists: torchvision ImageFolder trees and flat validation layouts
(one folder of images, a labels file and a class-names file)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unit_ablation.data.class_names import read_class_names

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".ppm",
    ".pgm",
    ".tif",
    ".tiff",
    ".webp",
)


_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class ImageList:
    """Image files, their class indices (int64) and the class names, in dataset order."""

    paths: tuple[Path, ...]
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        paths = tuple(Path(path) for path in self.paths)
        given = np.asarray(self.labels).reshape(-1)
        if given.dtype.kind not in "iu" and not (
            given.dtype.kind in "fb" and np.array_equal(given, given.round())
        ):
            raise ValueError(f"ImageList labels must be integers, got {given.dtype}")
        labels = given.astype(np.int64)
        labels.flags.writeable = False
        names = tuple(str(name) for name in self.class_names)
        if len(labels) != len(paths):
            raise ValueError(f"ImageList has {len(paths)} paths but {len(labels)} labels")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(names)):
            raise ValueError(f"ImageList labels must lie in 0..{len(names) - 1}")
        if len(set(names)) != len(names):
            raise ValueError("ImageList class names must be unique")
        object.__setattr__(self, "paths", paths)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "class_names", names)

    def __len__(self) -> int:
        return len(self.paths)


def is_image_file(name: str) -> bool:
    """Whether a file name has one of the image extensions (any case) and is not hidden."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


# --------------------------------------------------------------------------- ImageFolder layout


def read_image_folder(root: str | Path) -> ImageList:
    """Read a torchvision ImageFolder tree: one sub-folder per class, classes sorted by name.

    Matches `torchvision.datasets.ImageFolder` order (files found recursively below each class
    folder, folders and names sorted), except that hidden files and folders are ignored.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"image folder {root} does not exist or is not a folder")
    classes = sorted(
        entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith(".")
    )
    if not classes:
        raise ValueError(f"image folder {root} has no class sub-folders")
    paths: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        walked = []
        for folder, dirs, files in os.walk(root / name, followlinks=True):
            dirs[:] = [d for d in dirs if not d.startswith(".")]  # prune hidden folders
            walked.append((folder, files))
        found = [
            Path(folder) / file
            for folder, files in sorted(walked)
            for file in sorted(files)
            if is_image_file(file)
        ]
        if not found:
            raise ValueError(
                f"image folder {root}: class folder {name!r} holds no images ({', '.join(IMAGE_EXTENSIONS)})"
            )
        paths.extend(found)
        labels.extend([index] * len(found))
    return ImageList(tuple(paths), np.array(labels, dtype=np.int64), tuple(classes))


def read_flat_layout(
    images_dir: str | Path,
    labels_file: str | Path,
    class_names_file: str | Path,
    allow_unlisted: bool = False,
) -> ImageList:
    """Read the ImageNet / Places365 validation layout: a flat image folder plus a labels file.

    `labels_file` has lines `<filename> <label>` (filename relative to `images_dir`, without
    spaces; label = 0-based class index, or a class name as accepted by the class-names file,
    which may contain spaces). Images come in the labels file's order. Images in `images_dir`
    that the labels file does not list are an error unless `allow_unlisted`.
    """
    images_dir, labels_file = Path(images_dir), Path(labels_file)
    table = read_class_names(Path(class_names_file))
    if not images_dir.is_dir():
        raise ValueError(f"image folder {images_dir} does not exist or is not a folder")
    if not labels_file.is_file():
        raise ValueError(f"labels file {labels_file} does not exist")
    present = {entry.name for entry in os.scandir(images_dir) if entry.is_file()}
    count = len(table.names)
    paths: list[Path] = []
    labels: list[int] = []
    listed: dict[str, int] = {}
    with open(labels_file, encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line:
                continue
            fields = line.split(maxsplit=1)
            if len(fields) != 2:
                raise ValueError(
                    f"{labels_file}:{number}: malformed line {line!r}, expected '<filename> <label>'"
                )
            filename, label = fields[0], fields[1].strip()
            key = os.path.normpath(filename)
            if key in listed:
                raise ValueError(
                    f"{labels_file}:{number}: image {filename!r} already listed on line {listed[key]}"
                )
            listed[key] = number
            if _INTEGER.fullmatch(label):
                index = int(label)
                if not 0 <= index < count:
                    raise ValueError(
                        f"{labels_file}:{number}: label {index} out of range 0..{count - 1} "
                        f"({count} classes in {class_names_file})"
                    )
            elif label in table.aliases:
                index = table.aliases[label]
            else:
                raise ValueError(
                    f"{labels_file}:{number}: label {label!r} is neither a class index nor a class name "
                    f"of {class_names_file}"
                )
            path = images_dir / filename
            if not (key in present or (os.sep in key and path.is_file())):
                raise ValueError(f"{labels_file}:{number}: image {path} does not exist")
            paths.append(path)
            labels.append(index)
    if not paths:
        raise ValueError(f"labels file {labels_file} lists no images")
    unlisted = sorted(name for name in present if is_image_file(name) and name not in listed)
    if unlisted and not allow_unlisted:
        raise ValueError(
            f"{images_dir} holds {len(unlisted)} images that {labels_file} does not list "
            f"(a labels file that does not match the images?), e.g. {', '.join(unlisted[:5])}"
        )
    return ImageList(tuple(paths), np.array(labels, dtype=np.int64), table.names)


def read_image_set(image_set: dict[str, str]) -> ImageList:
    """The images of a config image set: {"folder": ...} (ImageFolder) or {"images", "labels",
    "class_names"} (a flat validation layout)."""
    if "folder" in image_set:
        return read_image_folder(image_set["folder"])
    return read_flat_layout(image_set["images"], image_set["labels"], image_set["class_names"])
