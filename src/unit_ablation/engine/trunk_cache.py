"""Trunk outputs shared by the jobs of one local run.

Every ablate job of a (model, layer) runs the same trunk on the same images: `configs/full.yaml`
has 8 such jobs per layer (4 bases, zero and mean ablation), and the 4 mean jobs also run it on
the mean images. The first job to need a trunk stores its outputs, batch by batch as the engine
computes them, in the run's folder (the warm-start server's, removed when the run ends); the
others load them. A job's counts are those it would compute itself: the key covers everything the
trunk's bits depend on on one machine (the model's weights and code, the layer, the images, the
batch size, the thread count, the device and the torch build). The extract jobs of a layer's
bases share its activations and logits the same way, under their own `kind` of key
(`activations.layer_statistics`).

Only local CPU jobs forked by the warm-start server have a folder (`TrunkCache.for_this_job`);
cluster jobs, GPU jobs and notebook calls run their trunk themselves. The folder holds at most
`UNIT_ABLATION_TRUNK_CACHE_GB` (default 8; 0 turns the cache off), and never more than half the
free space of its file system; the least recently used trunks go first.

Example:
    >>> import numpy as np, tempfile, torch
    >>> from unit_ablation.models.fashion_alexnet import FashionAlexNet
    >>> cache = TrunkCache(Path(tempfile.mkdtemp()), budget_bytes=1 << 30)
    >>> model, images = FashionAlexNet().eval(), np.zeros((3, 1, 28, 28), np.uint8)
    >>> first = cache.trunk_batches(model, "conv5", images, 2, torch.device("cpu"), code="v1")
    >>> again = cache.trunk_batches(model, "conv5", images, 2, torch.device("cpu"), code="v1")
    >>> cache.hits, cache.misses, [len(activation) for activation, _ in again]
    (1, 1, [2, 1])
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from unit_ablation.engine.graph_split import run_trunk, split_model
from unit_ablation.runtime.device import image_batches
from unit_ablation.runtime.shared_folder import (
    BUDGET_VARIABLE,
    DEFAULT_BUDGET_GB,  # noqa: F401 (named here for the tests and docs)
    TRUNK_CACHE_VARIABLE,
    budget_gb,
)

log = logging.getLogger(__name__)

TrunkBatch = tuple[torch.Tensor, list[torch.Tensor]]  # one batch's activation and side values
# images -> their trunk outputs in the engine's batches (`TrunkCache.source`)
TrunkSource = Callable[[np.ndarray], list[TrunkBatch] | None]


class TrunkCache:
    """A folder of trunk outputs, at most `budget_bytes` of them; `hits` and `misses` count the
    lookups of this process."""

    def __init__(self, folder: Path, budget_bytes: int) -> None:
        self.folder = folder
        self.budget_bytes = budget_bytes
        self.hits = 0
        self.misses = 0

    @classmethod
    def for_this_job(cls) -> TrunkCache | None:
        """The run's cache, in a job process the warm-start server forked; None elsewhere or when
        `UNIT_ABLATION_TRUNK_CACHE_GB` is 0."""
        folder = os.environ.get(TRUNK_CACHE_VARIABLE)
        if not folder:
            return None
        try:
            budget = budget_gb()
        except ValueError:
            value = os.environ[BUDGET_VARIABLE]
            log.warning("%s=%r is not a number: the trunk cache is off", BUDGET_VARIABLE, value)
            return None
        if budget <= 0:
            return None
        return cls(Path(folder), int(budget * 2**30))

    def trunk_batches(
        self,
        model: nn.Module,
        layer: str,
        images: np.ndarray,
        batch_size: int,
        device: torch.device,
        code: str,
    ) -> list[TrunkBatch] | None:
        """The trunk's outputs for `images` in batches of `batch_size`, as `run_trunk` gives them:
        loaded when a job of the run stored them, else computed and stored. `code` identifies the
        code that runs the trunk (the stage's code hash). None when they would not fit the budget
        (paper-scale layers): the caller then runs the trunk batch by batch, holding one at a time."""
        key = trunk_key(model, layer, images, batch_size, device, code)

        def compute() -> Iterator[TrunkBatch]:
            split = split_model(model, layer)  # only on a miss: tracing costs time too
            for x, _ in image_batches(images, None, batch_size, device):
                yield run_trunk(split, x)

        return self.batches(key, compute, -(-len(images) // batch_size))

    def batches(
        self, key: str, compute: Callable[[], Iterable[TrunkBatch]], count: int
    ) -> list[TrunkBatch] | None:
        """The `count` batches stored under `key` by a job of the run, else those `compute()`
        yields, stored. None when they would not fit the budget (judged from the first batch)."""
        found = self._load(key)
        if found is not None:
            self.hits += 1
            return found
        batches: list[TrunkBatch] = []
        with torch.no_grad():
            for batch in compute():
                batches.append(batch)
                if len(batches) == 1 and _bytes(batches) * count > self._budget():
                    return None
        self.misses += 1
        self._store(key, batches)
        return batches

    def source(
        self, model: nn.Module, layer: str, batch_size: int, device: torch.device, code: str
    ) -> TrunkSource:
        """`trunk_batches` for any images, the rest fixed: what `ablate_units` takes."""
        return lambda images: self.trunk_batches(model, layer, images, batch_size, device, code)

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.pt"

    def _load(self, key: str) -> list[TrunkBatch] | None:
        path = self._path(key)
        try:
            saved = torch.load(path, mmap=True, weights_only=True)
            _touch(path)
        except (OSError, RuntimeError, EOFError, ValueError) as error:
            if path.exists():
                log.warning("trunk cache: %s unreadable (%s): running the trunk", path.name, error)
            return None
        return [(batch[0], list(batch[1:])) for batch in saved]

    def _budget(self) -> int:
        """The bytes the folder may hold now: the budget, at most half the free space."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            return min(self.budget_bytes, shutil.disk_usage(self.folder).free // 2)
        except OSError:
            return 0

    def _store(self, key: str, batches: list[TrunkBatch]) -> None:
        size = _bytes(batches)
        try:
            budget = self._budget()
            if size > budget:
                return
            self._evict(budget - size)
            # not files.writing.atomic_path: two jobs may store the same trunk at once, and it
            # removes other writers' temporaries as stale
            fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".part")
            os.close(fd)
            try:
                torch.save([[activation, *side] for activation, side in batches], tmp)
                os.replace(tmp, self._path(key))
            finally:
                Path(tmp).unlink(missing_ok=True)
            _touch(self._path(key))
        except (OSError, RuntimeError) as error:  # torch.save on a full disk: RuntimeError
            log.warning("trunk cache: not stored (%s); the other jobs run the trunk themselves", error)

    def _evict(self, keep_bytes: int) -> None:
        """Remove the least recently used trunks until at most `keep_bytes` remain."""
        entries = []
        for entry in os.scandir(self.folder):
            if entry.name.endswith(".pt"):
                try:
                    stat = entry.stat()
                except FileNotFoundError:  # another job evicted it
                    continue
                entries.append((stat.st_mtime_ns, stat.st_size, entry.path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= keep_bytes:
                break
            Path(path).unlink(missing_ok=True)
            total -= size


def _bytes(batches: list[TrunkBatch]) -> int:
    return sum(t.numel() * t.element_size() for activation, side in batches for t in (activation, *side))


def _touch(path: Path) -> None:
    """Mark a trunk as just used. An explicit time: the file system's own clock ticks coarsely
    (milliseconds), so a store and a load in the same tick would tie."""
    now = time.time_ns()
    os.utime(path, ns=(now, now))


def trunk_key(
    model: nn.Module,
    layer: str,
    images: np.ndarray,
    batch_size: int,
    device: torch.device,
    code: str,
    kind: str = "trunk",
) -> str:
    """A digest of everything a trunk's bits depend on, on one machine and torch build; `kind`
    names what is stored (the trunk's outputs, or another stage's values from the same inputs)."""
    digest = hashlib.sha256()
    fields = [
        kind,
        type(model).__module__,
        type(model).__qualname__,
        layer,
        str(images.shape),
        str(images.dtype),
        str(batch_size),
        device.type,
        str(torch.get_num_threads()),
        torch.__version__,
        code,
    ]
    digest.update("\0".join(fields).encode())
    _update(digest, np.ascontiguousarray(images).data)
    for name, tensor in {**dict(model.named_parameters()), **dict(model.named_buffers())}.items():
        digest.update(name.encode())
        _update(digest, tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()[:32]


def _update(digest: hashlib._Hash, data: memoryview) -> None:
    digest.update(str(data.nbytes).encode())
    digest.update(data)
