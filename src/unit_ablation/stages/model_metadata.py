"""Stage `model_metadata`: a trained model's metadata JSON, read back from its checkpoint.

`train` writes only the checkpoint (which holds the metadata), so that its entry in the output cache
between workflow directories is one file: Snakemake stores a multi-file entry file by file, and an
entry half stored (a job killed between its files) breaks the next run that finds it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from unit_ablation.files.formats import check_format
from unit_ablation.files.writing import atomic_path
from unit_ablation.models.checkpoint import load_checkpoint


def model_metadata_to_file(checkpoint_path: str | Path, output: str | Path) -> dict[str, Any]:
    """Write the metadata a checkpoint holds as `results/models/{model}.json` (as `train` wrote it)."""
    _, metadata = load_checkpoint(checkpoint_path)
    check_format(checkpoint_path, metadata, "model metadata")
    with atomic_path(output) as tmp, open(tmp, "w") as handle:
        json.dump(metadata, handle, indent=2, sort_keys=True)
    return metadata
