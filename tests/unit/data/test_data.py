import gzip

import numpy as np
import pytest

from unit_ablation.data.fashion_mnist import make_splits, prepare_fashion_mnist, read_idx
from unit_ablation.data.loading import load_dataset
from unit_ablation.spec.fashion_mnist import FASHION_MNIST_CLASSES


def test_read_idx_round_trip(idx_folder):
    images = read_idx(idx_folder / "train-images-idx3-ubyte.gz")
    labels = read_idx(idx_folder / "train-labels-idx1-ubyte.gz")
    assert images.shape == (400, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (400,)


def test_truncated_idx_file_is_named(idx_folder, tmp_path):
    raw = gzip.open(idx_folder / "t10k-images-idx3-ubyte.gz").read()
    bad = tmp_path / "short.gz"
    with gzip.open(bad, "wb") as handle:
        handle.write(raw[:-100])
    with pytest.raises(ValueError, match="short.gz.*truncated"):
        read_idx(bad)


def test_splits_are_disjoint_seeded_and_sized():
    images = np.arange(100, dtype=np.uint8).reshape(100, 1, 1, 1)
    labels = np.arange(100) % 10
    test = (np.zeros((50, 1, 1, 1), np.uint8), np.arange(50) % 10)
    splits = make_splits(images, labels, *test, heldout_size=20, seed=0, train_size=30, test_size=25)
    train_ids = set(splits["train"][0].ravel())
    heldout_ids = set(splits["heldout"][0].ravel())
    assert len(train_ids) == 30 and len(heldout_ids) == 20 and not train_ids & heldout_ids
    assert len(splits["test"][1]) == 25
    again = make_splits(images, labels, *test, heldout_size=20, seed=0, train_size=30, test_size=25)
    assert np.array_equal(again["heldout"][0], splits["heldout"][0])
    other = make_splits(images, labels, *test, heldout_size=20, seed=1, train_size=30, test_size=25)
    assert not np.array_equal(other["heldout"][0], splits["heldout"][0])


def test_prepare_writes_uint8_splits_and_class_names(idx_folder, tmp_path):
    checksum = prepare_fashion_mnist(idx_folder, tmp_path / "d.npz", heldout_size=50, seed=0)
    dataset = load_dataset(tmp_path / "d.npz")
    assert dataset.checksum == checksum
    assert dataset.class_names == FASHION_MNIST_CLASSES
    assert {len(dataset.labels[s]) for s in ("train", "heldout", "test")} == {350, 50, 100}
    assert dataset.images["train"].dtype == np.uint8 and dataset.images["train"].shape[1:] == (1, 28, 28)
    # same inputs, same checksum; different split seed, different checksum
    assert prepare_fashion_mnist(idx_folder, tmp_path / "e.npz", heldout_size=50, seed=0) == checksum
    assert prepare_fashion_mnist(idx_folder, tmp_path / "f.npz", heldout_size=50, seed=1) != checksum


def test_missing_idx_file_is_named_and_nothing_written(idx_folder, tmp_path):
    (idx_folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz"):
        prepare_fashion_mnist(idx_folder, tmp_path / "out" / "d.npz", heldout_size=50, seed=0)
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir())


def test_class_names_are_read_without_the_images(tmp_path):
    from unit_ablation.data.loading import load_class_names

    path = tmp_path / "prepared.npz"
    np.savez(path, class_names=np.array(["a", "b"]))  # no image arrays: only the names are read
    assert load_class_names(path) == ("a", "b")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="broken.npz"):
        load_class_names(tmp_path / "broken.npz")
