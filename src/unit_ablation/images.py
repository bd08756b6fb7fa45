"""Paper-scale image sets (ImageNet / Places365 validation): file lists, one decode into a uint8 cache.

The images are decoded once, with the model's preprocessing (torchvision `Resize(resize)` then
`CenterCrop(crop)` on the RGB image), into a folder that every job memory-maps:

    output_dir/images.u8    raw uint8, N x 3 x crop x crop, C order (np.memmap)
    output_dir/labels.npy   int64, N
    output_dir/sources.txt  the source files, one per line, relative to their common folder
    output_dir/meta.json    count, shape, resize, crop, class names, checksum, format version

Class-name files accepted by `read_flat_layout` (the format is detected from the content):

* one name per line, line number (0-based) = class index, e.g. `T-shirt/top`;
* name and index per line, as Places365's `categories_places365.txt`: `/a/airfield 0`;
  the name is kept as written (`/a/airfield`); labels may also use it without the
  `/a/` prefix (`airfield`) where that is unique;
* ImageNet's `LOC_synset_mapping.txt` / Caffe's `synset_words.txt`: `n01440764 tench, Tinca tinca`,
  index = line number. The class name is the first synonym (`tench`); where two synsets share
  it (ImageNet has two `crane`s and two `maillot`s) both become `name (wnid)`, e.g.
  `crane (n02012849)`, so that class names stay unique. Labels may name a class by wnid,
  by the full description, by the class name, or by the first synonym where unique;
* `imagenet_class_index.json` (`{"0": ["n01440764", "tench"], ...}`), same naming rule.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import logging
import math
import multiprocessing
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageFile

from unit_ablation.data import Dataset
from unit_ablation.io import atomic_path
from unit_ablation.progress import Progress
from unit_ablation.safe_load import CorruptFileError, load_npy

log = logging.getLogger(__name__)

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
CACHE_FORMAT_VERSION = 1
IMAGES_FILE, LABELS_FILE, META_FILE, SOURCES_FILE = "images.u8", "labels.npy", "meta.json", "sources.txt"
CHANNELS = 3
CHUNK_SIZE = 32  # images per decode task

_SYNSET_LINE = re.compile(r"(n\d{8})\s+(\S.*)")
_NAME_INDEX_LINE = re.compile(r"(\S+)\s+(\d+)")
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


# --------------------------------------------------------------------------- flat validation layout


@dataclass(frozen=True)
class ClassTable:
    """A class-names file: the names in index order, and every spelling a labels file may use."""

    names: tuple[str, ...]
    aliases: dict[str, int]  # every accepted spelling of a class in a labels file -> index


def _unique_aliases(candidates: Sequence[tuple[str, int]]) -> dict[str, int]:
    """Alias -> index, dropping aliases that point at more than one class."""
    seen: dict[str, set[int]] = {}
    for alias, index in candidates:
        seen.setdefault(alias, set()).add(index)
    return {alias: next(iter(indices)) for alias, indices in seen.items() if len(indices) == 1}


def _synset_table(entries: Sequence[tuple[str, str]]) -> ClassTable:
    """(wnid, description) per class -> names: first synonym, `name (wnid)` where it repeats."""
    firsts = [description.split(",")[0].strip() for _, description in entries]
    counts: dict[str, int] = {}
    for first in firsts:
        counts[first] = counts.get(first, 0) + 1
    names = tuple(
        first if counts[first] == 1 else f"{first} ({wnid})"
        for first, (wnid, _) in zip(firsts, entries, strict=True)
    )
    candidates: list[tuple[str, int]] = []
    for index, ((wnid, description), name, first) in enumerate(zip(entries, names, firsts, strict=True)):
        candidates += [(name, index), (wnid, index), (description.strip(), index), (first, index)]
    aliases = _unique_aliases(candidates)
    aliases.update({name: index for index, name in enumerate(names)})
    return ClassTable(names, aliases)


def read_class_names(path: Path) -> ClassTable:
    """Parse a class-names file in any of the formats of the module docstring."""
    if not path.is_file():
        raise ValueError(f"class-names file {path} does not exist")
    if path.suffix.lower() == ".json":
        return _read_class_index_json(path)
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ValueError(f"class-names file {path} is empty")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise ValueError(f"{path}:{number}: blank line in a class-names file")
    stripped = [line.strip() for line in lines]

    synsets = [_SYNSET_LINE.fullmatch(line) for line in stripped]
    if all(synsets):
        table = _synset_table([(m.group(1), m.group(2)) for m in synsets if m])
        _check_unique([m.group(1) for m in synsets if m], path, "wnid")
        return table

    name_index = [_NAME_INDEX_LINE.fullmatch(line) for line in stripped]
    if all(name_index):
        count = len(lines)
        names: list[str | None] = [None] * count
        for number, match in enumerate(name_index, start=1):
            assert match is not None
            name, index = match.group(1), int(match.group(2))
            if index >= count:
                raise ValueError(f"{path}:{number}: class index {index} out of range 0..{count - 1}")
            if names[index] is not None:
                raise ValueError(f"{path}:{number}: class index {index} given twice")
            names[index] = name
        final = tuple(name for name in names if name is not None)
        _check_unique(final, path, "class name")
        short = [(re.sub(r"^/[^/]/", "", name), index) for index, name in enumerate(final)]
        aliases = _unique_aliases(short)
        aliases.update({name: index for index, name in enumerate(final)})
        return ClassTable(final, aliases)

    _check_unique(stripped, path, "class name")
    return ClassTable(tuple(stripped), {name: index for index, name in enumerate(stripped)})


def _read_class_index_json(path: Path) -> ClassTable:
    """`imagenet_class_index.json`: {"0": ["n01440764", "tench"], ...}."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = [data[str(index)] for index in range(len(data))]
        pairs = [(str(wnid), str(name)) for wnid, name in entries]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"class-names file {path} is not an imagenet_class_index.json mapping "
            f'{{"0": ["n01440764", "tench"], ...}}: {error}'
        ) from error
    if not pairs:
        raise ValueError(f"class-names file {path} is empty")
    _check_unique([wnid for wnid, _ in pairs], path, "wnid")
    return _synset_table(pairs)


def _check_unique(values: Sequence[str], path: Path, what: str) -> None:
    first: dict[str, int] = {}
    for number, value in enumerate(values, start=1):
        if value in first:
            raise ValueError(f"{path}:{number}: {what} {value!r} repeats line {first[value]}")
        first[value] = number


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


# --------------------------------------------------------------------------- decoding


@contextlib.contextmanager
def _strict_truncation() -> Iterator[None]:
    """Make PIL raise on truncated files while decoding, whatever another module has set."""
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = before


@functools.lru_cache(maxsize=8)
def _transform(resize: int, crop: int) -> Callable[[Image.Image], Image.Image]:
    from torchvision import transforms

    return transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(crop)])


def preprocess(image: Image.Image, resize: int, crop: int) -> np.ndarray:
    """RGB, torchvision `Resize(resize)` (shorter side, bilinear, antialiased) and `CenterCrop(crop)`.

    Returns uint8 3 x crop x crop, equal to `PILToTensor()` of the transformed image.
    """
    out = _transform(resize, crop)(image.convert("RGB"))
    return np.asarray(out, dtype=np.uint8).transpose(2, 0, 1)


def decode_image(path: str | Path, resize: int, crop: int) -> np.ndarray:
    """Decode and preprocess one file; a corrupt, truncated or non-image file raises ValueError."""
    try:
        with _strict_truncation(), Image.open(path) as image:
            return preprocess(image, resize, crop)
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - PIL raises many types for bad files; all mean "unusable"
        raise ValueError(f"cannot decode image {path}: {type(error).__name__}: {error}") from error


def _decode_chunk(target: str, start: int, paths: Sequence[str], resize: int, crop: int) -> int:
    """Decode `paths` into rows start.. of the raw uint8 file `target`; returns how many."""
    row = CHANNELS * crop * crop
    shape = (len(paths), CHANNELS, crop, crop)
    out = np.memmap(target, dtype=np.uint8, mode="r+", offset=start * row, shape=shape)
    try:
        for i, path in enumerate(paths):
            out[i] = decode_image(path, resize, crop)
        out.flush()
    finally:
        del out
    return len(paths)


def _relative_sources(paths: Sequence[Path]) -> tuple[Path, list[str]]:
    """The common folder of the files and each file relative to it (stable if the tree moves)."""
    absolute = [os.path.abspath(path) for path in paths]
    root = os.path.commonpath([os.path.dirname(path) for path in absolute])
    return Path(root), [os.path.relpath(path, root) for path in absolute]


def source_checksum(images: ImageList, resize: int, crop: int) -> str:
    """SHA-256 over the relative file list, sizes, mtimes, labels, class names, resize, crop, format."""
    _, relative = _relative_sources(images.paths)
    digest = hashlib.sha256()
    header = {"format_version": CACHE_FORMAT_VERSION, "resize": resize, "crop": crop}
    digest.update(json.dumps(header, sort_keys=True).encode())
    digest.update(json.dumps(list(images.class_names)).encode())
    for path, name, label in zip(images.paths, relative, images.labels.tolist(), strict=True):
        try:
            stat = os.stat(path)
        except OSError as error:
            raise ValueError(f"cannot read image {path}: {error}") from error
        digest.update(f"{name}\t{stat.st_size}\t{stat.st_mtime_ns}\t{label}\n".encode())
    return digest.hexdigest()


def read_cache_meta(output_dir: str | Path) -> dict:
    """The cache's meta.json, checked for the fields and format version this module writes."""
    path = Path(output_dir) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CorruptFileError(f"cannot read image cache metadata {path}: {error}") from error
    needed = ("format_version", "count", "shape", "resize", "crop", "class_names", "checksum")
    missing = [key for key in needed if not isinstance(meta, dict) or key not in meta]
    if missing:
        raise CorruptFileError(f"image cache metadata {path} lacks {', '.join(missing)}")
    if meta["format_version"] != CACHE_FORMAT_VERSION:
        raise CorruptFileError(
            f"image cache {path} has format version {meta['format_version']}, "
            f"this code reads {CACHE_FORMAT_VERSION}: decode the images again"
        )
    expected_shape = [meta["count"], CHANNELS, meta["crop"], meta["crop"]]
    if list(meta["shape"]) != expected_shape:
        raise CorruptFileError(f"image cache metadata {path}: shape {meta['shape']} != {expected_shape}")
    return meta


def decode_to_cache(
    images: ImageList,
    output_dir: str | Path,
    resize: int = 256,
    crop: int = 224,
    workers: int = 1,
    start_method: str | None = None,
) -> Path:
    """Decode every image once (RGB, Resize, CenterCrop) into a memory-mappable cache folder.

    The folder appears only when every image decoded: it is built in a temporary sibling and
    renamed into place. An existing cache with the same checksum is kept as it is; an
    out-of-date one is replaced; any other existing `output_dir` is an error. `workers > 1`
    decodes chunks of images in a process pool (`start_method`: multiprocessing's, default the
    platform's); each worker writes its rows straight into the memory-mapped file, so the
    output is byte-identical to `workers=1` and no image data passes through pipes.
    """
    output_dir = Path(output_dir)
    if len(images) == 0:
        raise ValueError(f"no images to decode into {output_dir}")
    if resize < 1 or crop < 1 or workers < 1:
        raise ValueError(f"resize ({resize}), crop ({crop}) and workers ({workers}) must be positive")
    if crop > resize:
        log.warning("crop %d > resize %d: CenterCrop pads the images with zeros", crop, resize)
    checksum = source_checksum(images, resize, crop)
    if output_dir.exists():
        try:
            meta = read_cache_meta(output_dir)
        except ValueError as error:
            raise ValueError(f"{output_dir} exists and is not a usable image cache: {error}") from error
        if meta["checksum"] == checksum:
            load_image_cache(output_dir)  # validates sizes
            log.info("image cache %s is up to date (checksum %s)", output_dir, checksum[:16])
            return output_dir
        log.info("image cache %s is out of date; decoding again", output_dir)

    root, relative = _relative_sources(images.paths)
    count = len(images)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", suffix=".tmp", dir=output_dir.parent))
    try:
        target = tmp / IMAGES_FILE
        _allocate(target, count * CHANNELS * crop * crop)
        chunk = max(1, min(CHUNK_SIZE, math.ceil(count / workers)))
        tasks = [
            (str(target), start, [str(path) for path in images.paths[start : start + chunk]], resize, crop)
            for start in range(0, count, chunk)
        ]
        log.info(
            "decoding %d images under %s (resize %d, crop %d, %d worker%s) into %s",
            count, root, resize, crop, workers, "s" if workers > 1 else "", output_dir,
        )  # fmt: skip
        progress = Progress(log, "decode", count, "images")
        if workers == 1 or len(tasks) == 1:
            for task in tasks:
                progress.update(_decode_chunk(*task))
        else:
            _decode_in_pool(tasks, workers, start_method, progress)
        np.save(tmp / LABELS_FILE, images.labels)
        (tmp / SOURCES_FILE).write_text("".join(f"{name}\n" for name in relative), encoding="utf-8")
        meta = {
            "format_version": CACHE_FORMAT_VERSION,
            "count": count,
            "shape": [count, CHANNELS, crop, crop],
            "dtype": "uint8",
            "resize": resize,
            "crop": crop,
            "interpolation": "bilinear",
            "class_names": list(images.class_names),
            "checksum": checksum,
            "source_root": str(root),
            "pillow_version": PIL.__version__,
            "torchvision_version": _torchvision_version(),
        }
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the cache normal permissions
        _replace_folder(tmp, output_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote image cache %s (%d images, checksum %s)", output_dir, count, checksum[:16])
    return output_dir


def _allocate(path: Path, size: int) -> None:
    """Create `path` with `size` bytes reserved on disk: a full disk fails here, not as SIGBUS later."""
    with open(path, "wb") as handle:
        if hasattr(os, "posix_fallocate"):
            try:
                os.posix_fallocate(handle.fileno(), 0, size)
                return
            except OSError as error:
                if error.errno == errno.ENOSPC:
                    raise OSError(error.errno, f"no space for the {size}-byte image cache {path}") from error
        handle.truncate(size)  # file systems without fallocate: a sparse file


def _decode_in_pool(
    tasks: Sequence[tuple[str, int, list[str], int, int]],
    workers: int,
    start_method: str | None,
    progress: Progress,
) -> None:
    """Run the decode tasks in worker processes; the first error cancels the rest and is raised.

    A worker that dies (killed for memory, say) raises BrokenProcessPool instead of hanging.
    """
    context = multiprocessing.get_context(start_method)
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=context) as pool:
        futures = [pool.submit(_decode_chunk, *task) for task in tasks]
        try:
            for future in as_completed(futures):
                progress.update(future.result())
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _torchvision_version() -> str:
    import torchvision

    return torchvision.__version__


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace_folder(new: Path, target: Path) -> None:
    """Rename `new` to `target`; an existing `target` is moved aside first and then deleted."""
    if not target.exists():
        os.replace(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.replace(target, old / "cache")
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old / "cache", target)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def load_image_cache(output_dir: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Memory-map a cache written by `decode_to_cache`: images (read-only), labels, class names."""
    output_dir = Path(output_dir)
    meta = read_cache_meta(output_dir)
    count, crop = int(meta["count"]), int(meta["crop"])
    names = tuple(str(name) for name in meta["class_names"])
    images_path, labels_path = output_dir / IMAGES_FILE, output_dir / LABELS_FILE
    expected = count * CHANNELS * crop * crop
    try:
        size = images_path.stat().st_size
    except OSError as error:
        raise CorruptFileError(f"image cache file {images_path} is missing: {error}") from error
    if size != expected:
        raise CorruptFileError(
            f"image cache file {images_path} holds {size} bytes, meta.json says {count} x {CHANNELS} x "
            f"{crop} x {crop} = {expected} (truncated or from another decode?)"
        )
    labels = load_npy(labels_path, "image cache labels")  # CorruptFileError naming the file
    if labels.shape != (count,) or labels.dtype != np.int64:
        raise CorruptFileError(
            f"image cache labels {labels_path}: {labels.dtype} {labels.shape}, not int64 ({count},): "
            "the labels do not match the images"
        )
    sources_path = output_dir / SOURCES_FILE
    if sources_path.is_file():
        with open(sources_path, encoding="utf-8") as handle:
            listed = sum(1 for line in handle if line.strip())
        if listed != count:
            raise CorruptFileError(
                f"image cache file {sources_path} lists {listed} images, meta.json says {count}"
                " (truncated or from another decode?)"
            )
    if count and (labels.min() < 0 or labels.max() >= len(names)):
        raise CorruptFileError(f"image cache labels {labels_path} lie outside 0..{len(names) - 1}")
    images = np.memmap(images_path, dtype=np.uint8, mode="r", shape=(count, CHANNELS, crop, crop))
    return images, labels, names


def image_dataset(splits: dict[str, str | Path]) -> Dataset:
    """A `Dataset` whose splits are memory-mapped image caches, e.g. {"test": a, "heldout": b}.

    All caches must share the class names. The checksum combines the caches' checksums.
    """
    if not splits:
        raise ValueError("image_dataset needs at least one split")
    images: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    names: tuple[str, ...] | None = None
    first = ""
    digest = hashlib.sha256()
    for split in sorted(splits):
        folder = Path(splits[split])
        images[split], labels[split], split_names = load_image_cache(folder)
        if names is None:
            names, first = split_names, f"{split} ({folder})"
        elif split_names != names:
            raise ValueError(
                f"split {split} ({folder}) has {len(split_names)} classes that differ from "
                f"split {first}'s {len(names)}: all splits must share the class names"
            )
        digest.update(f"{split}\t{read_cache_meta(folder)['checksum']}\n".encode())
    assert names is not None
    return Dataset(
        images={split: images[split] for split in splits},
        labels={split: labels[split] for split in splits},
        class_names=names,
        checksum=digest.hexdigest(),
    )


def read_image_set(image_set: dict[str, str]) -> ImageList:
    """The images of a config image set: {"folder": ...} (ImageFolder) or {"images", "labels",
    "class_names"} (a flat validation layout)."""
    if "folder" in image_set:
        return read_image_folder(image_set["folder"])
    return read_flat_layout(image_set["images"], image_set["labels"], image_set["class_names"])


def decode_image_set(
    image_set: dict[str, str], output_dir: str | Path, resize: int, crop: int, workers: int = 1
) -> Path:
    """Read a config image set and decode it into a cache folder (see `decode_to_cache`)."""
    return decode_to_cache(read_image_set(image_set), output_dir, resize=resize, crop=crop, workers=workers)


def write_dataset_index(splits: dict[str, str | Path], output: str | Path) -> None:
    """A JSON file naming each split's cache folder, relative to the file: what `load_dataset` reads."""
    output = Path(output)
    for folder in splits.values():
        load_image_cache(folder)  # a split that does not load fails here, not in every later job
    relative = {split: os.path.relpath(folder, output.parent) for split, folder in splits.items()}
    with atomic_path(output) as tmp:
        Path(tmp).write_text(json.dumps({"splits": relative}, indent=2, sort_keys=True) + "\n")


def load_dataset_index(path: str | Path) -> Dataset:
    """The data set a `write_dataset_index` file describes."""
    path = Path(path)
    try:
        splits = json.loads(path.read_text())["splits"]
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"cannot read the image data set index {path}: {error}") from error
    return image_dataset({split: path.parent / folder for split, folder in splits.items()})
