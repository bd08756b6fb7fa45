"""Where the project's files are, for tests anywhere under tests/."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TINY_CONFIG = PROJECT_ROOT / "tests" / "tiny-config.yaml"
FAULTS = PROJECT_ROOT / "tests" / "robustness" / "FAULTS.md"
