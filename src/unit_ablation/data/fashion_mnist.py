"""Fashion-MNIST: read the IDX files, make the splits, cache them compactly."""

from __future__ import annotations

import gzip
import hashlib
import logging
import zlib
from pathlib import Path

import numpy as np

from unit_ablation.files.safe_load import CorruptFileError
from unit_ablation.files.writing import atomic_path
from unit_ablation.spec.fashion_mnist import FASHION_MNIST_CLASSES, IDX_NAMES

log = logging.getLogger(__name__)


IDX_KEYS: tuple[str, ...] = ("train_images", "train_labels", "test_images", "test_labels")


IDX_FILES: dict[str, str] = dict(zip(IDX_KEYS, IDX_NAMES, strict=True))


SPLITS: tuple[str, ...] = ("train", "heldout", "test")


_IDX_DTYPE_CODE_UINT8 = 0x08


def read_idx(path: str | Path) -> np.ndarray:
    """Read a (possibly gzipped) IDX file of unsigned bytes into an array.

    Raises CorruptFileError (a ValueError) naming the file when it is missing, not IDX, or
    truncated (a gzip stream that ends early, or fewer bytes than its header promises).
    """
    path = Path(path)
    if not path.is_file():
        raise CorruptFileError(f"{path}: IDX file does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as error:
        raise CorruptFileError(f"{path}: cannot read IDX file, truncated or corrupt ({error})") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_DTYPE_CODE_UINT8:
        raise CorruptFileError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise CorruptFileError(f"{path} is truncated: its header of {ndim} dimensions ends after the file")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) if shape else 0
    if len(raw) - header_end != expected:
        raise CorruptFileError(
            f"{path} is truncated or padded: header says shape {shape} ({expected} bytes), "
            f"file holds {len(raw) - header_end} bytes of data"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_end).reshape(shape)


def choose_subset(count: int, size: int | None, rng: np.random.Generator) -> np.ndarray:
    """Sorted random indices of `size` items out of `count` (all when size is None)."""
    if size is None or size >= count:
        return np.arange(count)
    return np.sort(rng.choice(count, size=size, replace=False))


def make_splits(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    heldout_size: int,
    seed: int,
    train_size: int | None = None,
    test_size: int | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Split train into train + held-out (seeded), optionally subsample train and test."""
    if not 0 < heldout_size < len(train_labels):
        raise ValueError(f"heldout_size={heldout_size} must be between 1 and {len(train_labels) - 1}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train_labels))
    heldout_idx = np.sort(order[:heldout_size])
    rest = np.sort(order[heldout_size:])
    rest = rest[choose_subset(len(rest), train_size, rng)]
    test_idx = choose_subset(len(test_labels), test_size, rng)
    return {
        "train": (train_images[rest], train_labels[rest]),
        "heldout": (train_images[heldout_idx], train_labels[heldout_idx]),
        "test": (test_images[test_idx], test_labels[test_idx]),
    }


def dataset_checksum(splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    """SHA-256 over every split's images and labels, in a fixed order."""
    digest = hashlib.sha256()
    for split in SPLITS:
        images, labels = splits[split]
        digest.update(split.encode())
        digest.update(np.ascontiguousarray(images).tobytes())
        digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()


def prepare_fashion_mnist(
    raw_dir: str | Path,
    output: str | Path,
    heldout_size: int,
    seed: int,
    train_size: int | None = None,
    test_size: int | None = None,
) -> str:
    """Turn the four Fashion-MNIST IDX files into one cached .npz; returns the data checksum."""
    raw_dir = Path(raw_dir)
    arrays = {key: read_idx(raw_dir / name) for key, name in IDX_FILES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        images_path, labels_path = (
            raw_dir / IDX_FILES[f"{split}_images"],
            raw_dir / IDX_FILES[f"{split}_labels"],
        )
        if images.ndim != 3 or labels.ndim != 1:
            raise CorruptFileError(
                f"{images_path} ({images.shape}) and {labels_path} ({labels.shape}) must hold "
                "N x H x W images and N labels (files swapped?)"
            )
        if len(images) != len(labels):
            raise CorruptFileError(
                f"{labels_path} has {len(labels)} labels but {images_path} has {len(images)} images"
                " (the labels file does not match the images)"
            )
        if len(labels) and labels.max() >= len(FASHION_MNIST_CLASSES):
            raise CorruptFileError(f"{labels_path} has label {labels.max()} >= {len(FASHION_MNIST_CLASSES)}")
    splits = make_splits(
        arrays["train_images"][:, None],
        arrays["train_labels"],
        arrays["test_images"][:, None],
        arrays["test_labels"],
        heldout_size=heldout_size,
        seed=seed,
        train_size=train_size,
        test_size=test_size,
    )
    checksum = dataset_checksum(splits)
    payload: dict[str, np.ndarray] = {"class_names": np.array(FASHION_MNIST_CLASSES)}
    for split, (images, labels) in splits.items():
        payload[f"{split}_images"] = images
        payload[f"{split}_labels"] = labels.astype(np.int64)
        log.info(
            "split %-7s: %6d images, class counts %s",
            split,
            len(labels),
            np.bincount(labels, minlength=10).tolist(),
        )
    payload["checksum"] = np.array(checksum)
    with atomic_path(output) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **payload)
    log.info("wrote %s (checksum %s)", output, checksum[:16])
    return checksum
