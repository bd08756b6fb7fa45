"""Facts about Fashion-MNIST, the default study's data (no torch or numpy import)."""

from __future__ import annotations

from pathlib import Path

FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
TEST_IMAGES = 10_000  # the evaluation split: the whole test set unless data.test_size says less
IDX_NAMES: tuple[str, ...] = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
DEFAULT_DEST = Path("data/fashion-mnist")  # where `make data` downloads otherwise
