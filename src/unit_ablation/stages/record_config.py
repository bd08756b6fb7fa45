"""Stage `record_config`: the study's checked config (schema defaults filled in), as run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from unit_ablation.files.formats import stamped
from unit_ablation.files.writing import write_yaml


def record_config_to_file(config: dict[str, Any], path: str | Path) -> None:
    """Write `config`, stamped with its format version, to `path` (YAML, atomically)."""
    write_yaml(stamped("study config", config), path)
