"""Inputs shared by the reliability tests: a small data set, a trained checkpoint, its tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from unit_ablation.data.fashion_mnist import prepare_fashion_mnist
from unit_ablation.models.checkpoint import save_checkpoint
from unit_ablation.stages.ablate import ablate_chunk_to_file
from unit_ablation.stages.gather import gather_to_files

from support.synthetic import synthetic_images, write_idx


@pytest.fixture(scope="session")
def inputs(tmp_path_factory, _trained_models) -> dict[str, Path]:
    """A data set (100 test images), a trained checkpoint, its conv5 ablation chunk and its gathered
    class and unit damage tables."""
    root = tmp_path_factory.mktemp("job_inputs")
    for name, (count, seed) in {"train": (400, 1), "t10k": (100, 2)}.items():
        images, labels = synthetic_images(count, seed=seed)
        write_idx(root / f"{name}-images-idx3-ubyte.gz", images[:, 0])
        write_idx(root / f"{name}-labels-idx1-ubyte.gz", labels)
    dataset, model = root / "data.npz", root / "model.pt"
    prepare_fashion_mnist(root, dataset, heldout_size=50, seed=0)
    save_checkpoint(_trained_models[False], model, {})
    chunk = root / "chunk.npz"
    ablate_chunk_to_file(
        model, dataset, chunk, "conv5", list(range(_trained_models[False].unit_count("conv5")))
    )
    classes = root / "classes.tsv"
    gather_to_files([chunk], dataset, classes, root / "units.tsv")
    return {
        "dataset": dataset,
        "model": model,
        "chunk": chunk,
        "classes": classes,
        "units": root / "units.tsv",
    }
