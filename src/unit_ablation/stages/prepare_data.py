"""Stage `prepare_data`: the Fashion-MNIST IDX files split and cached as one .npz."""

from __future__ import annotations

from pathlib import Path

from unit_ablation.data.fashion_mnist import prepare_fashion_mnist


def prepare_data_to_file(
    raw_dir: str | Path,
    output: str | Path,
    heldout_size: int,
    split_seed: int,
    train_size: int | None = None,
    test_size: int | None = None,
) -> str:
    """Split the IDX files in `raw_dir` (the held-out images, and any train or test subsample, drawn
    with `split_seed`, `data.split_seed`) and write the cache; returns the data checksum."""
    return prepare_fashion_mnist(
        raw_dir,
        output,
        heldout_size=heldout_size,
        seed=split_seed,
        train_size=train_size,
        test_size=test_size,
    )
