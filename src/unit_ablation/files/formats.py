"""Format versions of the files that later stages, and later runs, read back. A writer stamps its
output with the version; a reader refuses a file of another version, naming the file, the version
found and the one this code reads (an output of an older release is rebuilt, not misread).

Raise a version when the meaning or layout of a file changes. The decoded image caches carry
their own (`data.image_cache.CACHE_FORMAT_VERSION`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from unit_ablation.files.safe_load import CorruptFileError

FORMAT_KEY = "format_version"
FORMATS: dict[str, int] = {
    "ablation chunk": 1,  # results/{model}/ablation/chunks/{layer_spec}/{chunk}.npz, its metadata
    "model metadata": 1,  # results/models/{model}.json
    "study config": 2,  # results/config.yaml; 2: correlation.resamples (workflow.config_schema.RENAMED_KEYS)
}


def stamped(kind: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """`data` with the format version of `kind` first."""
    return {FORMAT_KEY: FORMATS[kind], **data}


def check_format(path: str | Path, data: Any, kind: str) -> None:
    """Raise CorruptFileError when `data` (a file's parsed content) is not of this code's `kind` version."""
    found = data.get(FORMAT_KEY) if isinstance(data, Mapping) else None
    if found != FORMATS[kind]:
        written = "no format version" if found is None else f"format version {found!r}"
        raise CorruptFileError(
            f"{path}: {kind} has {written}; this code reads version {FORMATS[kind]}"
            " (written by another release of unit-ablation: delete it and rerun to rebuild it)"
        )


def read_model_metadata(path: str | Path) -> dict[str, Any]:
    """A model's metadata JSON (`results/models/{model}.json`), checked for its format version."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CorruptFileError(f"{path}: cannot read the model metadata: {error}") from error
    check_format(path, data, "model metadata")
    return data
