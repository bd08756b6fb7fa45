"""Decode an image set once, with the model's preprocessing (torchvision `Resize(resize)` then
`CenterCrop(crop)` on the RGB image), into the uint8 cache of `unit_ablation.data.image_cache`."""

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
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageFile

from unit_ablation.data.image_cache import (
    CACHE_FORMAT_VERSION,
    CHANNELS,
    IMAGES_FILE,
    LABELS_FILE,
    META_FILE,
    SOURCES_FILE,
    load_image_cache,
    read_cache_meta,
)
from unit_ablation.data.image_files import ImageList
from unit_ablation.runtime.progress import Progress

log = logging.getLogger(__name__)


CHUNK_SIZE = 32  # images per decode task


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
        publish_cache(tmp, output_dir, count, crop, resize, images.class_names, checksum, str(root))
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("wrote image cache %s (%d images, checksum %s)", output_dir, count, checksum[:16])
    return output_dir


def publish_cache(
    tmp: Path,
    output_dir: Path,
    count: int,
    crop: int,
    resize: int,
    class_names: Sequence[str],
    checksum: str,
    source: str,
) -> None:
    """Write the metadata of `count` images decoded into the folder `tmp`, then make it `output_dir`."""
    meta = {
        "format_version": CACHE_FORMAT_VERSION,
        "count": count,
        "shape": [count, CHANNELS, crop, crop],
        "dtype": "uint8",
        "resize": resize,
        "crop": crop,
        "interpolation": "bilinear",
        "class_names": list(class_names),
        "checksum": checksum,
        "source_root": source,
        "pillow_version": PIL.__version__,
        "torchvision_version": _torchvision_version(),
    }
    (tmp / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the cache normal permissions
    _replace_folder(tmp, output_dir)


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
