"""A full disk or a used-up quota (ENOSPC, EDQUOT) while a stage writes its result.

A small tmpfs may be refused in a container and RLIMIT_FSIZE raises EFBIG, so the error is injected:
either while the stage writes its temporary (the first write call on it raises) or when the
complete temporary is renamed into place. Every stage's write must then fail with an error that
names the output, the errno and the free space; leave nothing under the output's name and no
temporary; and succeed when run again with space.
"""

from __future__ import annotations

import builtins
import errno
import os
import re
from pathlib import Path

import pytest

from unit_ablation.data.fashion_mnist import prepare_fashion_mnist
from unit_ablation.files import writing
from unit_ablation.files.writing import DiskFullError, write_yaml
from unit_ablation.report.style import save_figure
from unit_ablation.stages.ablate import ablate_chunk_to_file
from unit_ablation.stages.attributes import attributes_to_files
from unit_ablation.stages.extract import extract_to_file
from unit_ablation.stages.gather import gather_to_files
from unit_ablation.stages.train import train_to_checkpoint

TRAIN = dict(
    model_name="m", variant="baseline", train=dict(epochs=1, batch_size=50, lr=0.002, width=0.25, seed=0)
)


def stage_calls(inputs: dict[str, Path], out: Path) -> dict[str, tuple]:
    """Each stage: (its call writing under `out`, the outputs it writes)."""
    raw = inputs["dataset"].parent
    activations = out / "act.npz"
    return {
        "prepare_data": (
            lambda: prepare_fashion_mnist(raw, out / "d.npz", heldout_size=50, seed=0),
            [out / "d.npz"],
        ),
        "train": (
            lambda: train_to_checkpoint(inputs["dataset"], out / "m.pt", out / "m.json", **TRAIN),
            [out / "m.pt", out / "m.json"],
        ),
        "extract": (
            lambda: extract_to_file(inputs["model"], inputs["dataset"], activations, "conv5", "heldout"),
            [activations],
        ),
        "attributes": (
            lambda: attributes_to_files(
                _extracted(inputs, out), inputs["model"], out / "u.tsv", out / "c.tsv", "conv5"
            ),
            [out / "u.tsv", out / "c.tsv"],
        ),
        "ablate": (
            lambda: ablate_chunk_to_file(
                inputs["model"], inputs["dataset"], out / "0-3.npz", "conv5", [0, 1, 2, 3]
            ),
            [out / "0-3.npz"],
        ),
        "gather": (
            lambda: gather_to_files([inputs["chunk"]], inputs["dataset"], out / "cl.tsv", out / "un.tsv"),
            [out / "cl.tsv", out / "un.tsv"],
        ),
        "figures": (
            lambda: save_figure(_figure(), [out / "f.png", out / "f.pdf"], 30),
            [out / "f.png", out / "f.pdf"],
        ),
        "record_config": (lambda: write_yaml({"seeds": [0]}, out / "config.yaml"), [out / "config.yaml"]),
    }


def _extracted(inputs: dict[str, Path], out: Path) -> Path:
    """Activations written outside `out`, with injection off: an input of attributes."""
    path = out.parent / "inputs" / "act.npz"
    if not path.exists():
        extract_to_file(inputs["model"], inputs["dataset"], path, "conv5", "heldout")
    return path


def _figure():
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    return figure


STAGES = list(stage_calls({"dataset": Path("x/d"), "model": Path("m")}, Path("o")))


@pytest.fixture
def inject(monkeypatch, tmp_path):
    """inject(mode, code): make writes under tmp_path/out fail with `code` at `mode` ("write": the
    first write call on a temporary, "rename": when the temporary is renamed into place)."""
    out = tmp_path / "out"

    def arm(mode: str, code: int) -> None:
        def fail(target: object) -> None:
            raise OSError(code, os.strerror(code), str(target))

        if mode == "rename":
            real_replace = os.replace

            def replace(source, target, *args, **kwargs):
                if str(target).startswith(str(out)):
                    fail(target)
                return real_replace(source, target, *args, **kwargs)

            monkeypatch.setattr(writing.os, "replace", replace)
            return
        real_open = builtins.open

        def open_(file, mode="r", *args, **kwargs):
            handle = real_open(file, mode, *args, **kwargs)
            name = str(file)
            if name.startswith(str(out)) and name.endswith(".tmp") and any(c in mode for c in "wax"):
                return _FailingFile(handle, lambda: fail(name))
            return handle

        monkeypatch.setattr(builtins, "open", open_)
        monkeypatch.setattr(Path, "open", lambda self, *a, **k: open_(self, *a, **k))

    return arm


class _FailingFile:
    """A file whose writes raise (the disk filled up); everything else passes through."""

    def __init__(self, handle, fail) -> None:
        self._handle, self._fail = handle, fail

    def write(self, data):
        self._fail()

    writelines = write

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()

    def __getattr__(self, name):
        return getattr(self._handle, name)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT], ids=["ENOSPC", "EDQUOT"])
@pytest.mark.parametrize("mode", ["write", "rename"])
@pytest.mark.parametrize("stage", STAGES)
def test_a_full_disk_fails_the_write_cleanly_and_the_rerun_succeeds(
    inputs, tmp_path, monkeypatch, inject, stage, mode, code
):
    out = tmp_path / "out"
    (tmp_path / "inputs").mkdir()
    call, outputs = stage_calls(inputs, out)[stage]
    if stage == "attributes":
        _extracted(inputs, out)  # its input, written before the fault is armed
    inject(mode, code)
    with pytest.raises(OSError) as raised:
        call()
    error = raised.value
    message = str(error)
    assert isinstance(error, DiskFullError) and error.errno == code, repr(error)
    assert any(str(path) in message for path in outputs), message
    assert f"[Errno {code}] {errno.errorcode[code]}" in message
    assert re.search(r"[\d.]+ (B|KiB|MiB|GiB|TiB) free of [\d.]+ \w+ on the filesystem of ", message), message
    left = sorted(p.name for p in out.rglob("*")) if out.exists() else []
    assert not [name for name in left if name.endswith(".tmp")], f"temporaries left: {left}"
    assert not any(path.exists() for path in outputs), f"an output under its name: {left}"

    monkeypatch.undo()  # space again: the same call succeeds
    call()
    assert all(path.exists() for path in outputs)


@pytest.mark.parametrize("stage", ["train", "gather", "attributes"])
def test_a_disk_that_fills_at_the_second_output_leaves_neither(inputs, tmp_path, monkeypatch, stage):
    """The first output is complete and renamed; the second fails: the first is removed too."""
    out = tmp_path / "out"
    (tmp_path / "inputs").mkdir()
    call, outputs = stage_calls(inputs, out)[stage]
    if stage == "attributes":
        _extracted(inputs, out)
    real_replace = os.replace

    def replace(source, target, *args, **kwargs):
        if str(target) == str(outputs[1]):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(writing.os, "replace", replace)
    with pytest.raises(DiskFullError, match=re.escape(str(outputs[1]))):
        call()
    assert sorted(p.name for p in out.rglob("*")) == []
