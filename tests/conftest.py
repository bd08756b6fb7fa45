"""Shared fixtures: small synthetic data and small models, no downloads."""

from __future__ import annotations

import copy
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from unit_ablation.models.training import TrainConfig, train_model

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def synthetic_images(count: int, seed: int, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """uint8 28x28 images whose class shows as a bright bar at a class-specific row, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, size=count)
    images = rng.integers(0, 60, size=(count, 1, 28, 28)).astype(np.uint8)
    for i, label in enumerate(labels):
        row = 2 + 2 * int(label)
        images[i, 0, row : row + 2, 4:24] = 230
    return images, labels.astype(np.int64)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzipped IDX file."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


@pytest.fixture
def idx_folder(tmp_path: Path) -> Path:
    """A folder with Fashion-MNIST-layout IDX files of synthetic images (400 train, 100 test)."""
    train_x, train_y = synthetic_images(400, seed=1)
    test_x, test_y = synthetic_images(100, seed=2)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", train_x[:, 0])
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", train_y)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", test_x[:, 0])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", test_y)
    return tmp_path


@pytest.fixture(
    params=[
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
        ),
    ]
)
def compute_device(request: pytest.FixtureRequest) -> str:
    """Where the exactness tests run: the CPU always, and CUDA too where a GPU is present."""
    return request.param


@pytest.fixture(scope="session")
def _trained_models() -> dict[bool, torch.nn.Module]:
    """Small models (plain and BN) trained briefly on synthetic bars: accurate, but not perfect."""
    images, labels = synthetic_images(1024, seed=21)
    plain = TrainConfig(epochs=2, batch_size=32, lr=0.003, width=0.25, dropout=0.0)  # ~75% on held-out bars
    bn = TrainConfig(epochs=1, batch_size=32, lr=0.003, width=0.25, dropout=0.5, batchnorm=True)  # ~97%
    return {False: train_model(images, labels, 10, plain), True: train_model(images, labels, 10, bn)}


@pytest.fixture(params=[False, True], ids=["plain", "bn"])
def small_model(request: pytest.FixtureRequest, _trained_models) -> torch.nn.Module:
    """A fresh copy (tests may edit it) of a briefly trained small model, in eval mode."""
    return copy.deepcopy(_trained_models[request.param]).eval()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A complete run of the tiny config (and its report) in a temporary directory."""
    from workflow_runs import TINY_CONFIG, snakemake

    workdir = tmp_path_factory.mktemp("tiny")
    shutil.copy(TINY_CONFIG, workdir / "config.yaml")
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-5000:]
    report = snakemake(workdir, "--report", "results/report.html")
    assert report.returncode == 0, report.stderr[-3000:]
    return workdir
