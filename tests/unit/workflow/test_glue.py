"""The glue every job script calls: the job's log file, its thread count, logged failures."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from unit_ablation.workflow.glue import run_stage


def job(tmp_path: Path, threads: int) -> SimpleNamespace:
    """What run_stage reads of Snakemake's `snakemake` object."""
    return SimpleNamespace(
        log=[str(tmp_path / "job.log")], rule="ablate", wildcards={"model": "m"}, threads=threads
    )


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [1, 2])
def test_torch_uses_the_rules_thread_count(tmp_path, restore_threads, threads):
    torch.set_num_threads(3)
    assert run_stage(job(tmp_path, threads), torch.get_num_threads) == threads
    assert "rule ablate: model='m'" in (tmp_path / "job.log").read_text()


def test_a_failure_is_logged_then_raised(tmp_path, restore_threads):
    def fail() -> None:
        raise ValueError("bad input named here")

    with pytest.raises(ValueError, match="bad input named here"):
        run_stage(job(tmp_path, 1), fail)
    assert "bad input named here" in (tmp_path / "job.log").read_text()
