"""Obtain Fashion-MNIST for the default study: Debian's package when apt works, else torchvision.

Usage: python -m unit_ablation.fetch_data [--dest data/fashion-mnist]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from unit_ablation.spec.fashion_mnist import DEBIAN_DIR, DEFAULT_DEST, IDX_NAMES

DEBIAN_PACKAGE = "dataset-fashion-mnist"


class DataUnavailable(RuntimeError):
    """Neither the Debian package nor the torchvision download could provide the data."""


def has_idx_files(folder: Path) -> bool:
    return all((folder / name).is_file() for name in IDX_NAMES)


def install_debian_package() -> str | None:
    """Install the Debian package with apt-get; returns why it failed, or None on success."""
    if shutil.which("apt-get") is None:
        return "apt-get not found"
    if os.geteuid() != 0:
        return "apt-get needs root (try: sudo apt-get install dataset-fashion-mnist)"
    command = ["apt-get", "install", "-y", "-q", DEBIAN_PACKAGE]
    if subprocess.run(command, capture_output=True).returncode == 0:
        return None
    subprocess.run(["apt-get", "update", "-q"], capture_output=True)
    result = subprocess.run(command, capture_output=True, text=True)
    return None if result.returncode == 0 else f"apt-get failed: {result.stderr.strip()[-300:]}"


def download_with_torchvision(dest: Path) -> str | None:
    """Download with torchvision into `dest`; returns why it failed, or None on success."""
    try:
        from torchvision.datasets import FashionMNIST
    except ImportError as error:
        return f"torchvision not importable: {error}"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            FashionMNIST(root=tmp, train=True, download=True)
            FashionMNIST(root=tmp, train=False, download=True)
        except Exception as error:  # noqa: BLE001 - network errors come in many types
            return f"torchvision download failed: {error}"
        raw = Path(tmp) / "FashionMNIST" / "raw"
        dest.mkdir(parents=True, exist_ok=True)
        for name in IDX_NAMES:
            shutil.copy2(raw / name, dest / name)
    return None


def fetch_fashion_mnist(
    dest: Path = DEFAULT_DEST,
    debian_dir: Path = DEBIAN_DIR,
    installers: Sequence[tuple[str, Callable[[], str | None]]] | None = None,
) -> Path:
    """Folder holding the four IDX files, obtaining them if needed; raises DataUnavailable."""
    for folder in (debian_dir, dest):
        if has_idx_files(folder):
            return folder
    if installers is None:
        installers = [
            (f"Debian package {DEBIAN_PACKAGE}", install_debian_package),
            (f"torchvision download into {dest}", lambda: download_with_torchvision(dest)),
        ]
    failures = []
    for name, install in installers:
        reason = install()
        for folder in (debian_dir, dest):
            if reason is None and has_idx_files(folder):
                return folder
        failures.append(f"  - {name}: {reason or 'finished but the files are missing'}")
    raise DataUnavailable(
        "Fashion-MNIST is not available. Tried:\n" + "\n".join(failures) + "\n"
        f"Either install Debian's package (apt-get install {DEBIAN_PACKAGE}, files in {debian_dir}),\n"
        f"or put {', '.join(IDX_NAMES)} into {dest} (torchvision.datasets.FashionMNIST downloads them),\n"
        "or set data.root in config.yaml to a folder holding them."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="download folder (fallback)")
    args = parser.parse_args(argv)
    try:
        folder = fetch_fashion_mnist(args.dest)
    except DataUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Fashion-MNIST: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
