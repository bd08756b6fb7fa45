"""Stage `image_dataset`: the data set index naming the decoded test and held-out image caches."""

from __future__ import annotations

from pathlib import Path

from unit_ablation.data.image_cache import write_dataset_index


def image_dataset_to_file(test: str | Path, heldout: str | Path, output: str | Path) -> None:
    """Write the index (`data.image_cache.write_dataset_index`) of the evaluation (`test`) and
    attribute (`heldout`) cache folders, after checking that both load."""
    write_dataset_index({"test": test, "heldout": heldout}, output)
