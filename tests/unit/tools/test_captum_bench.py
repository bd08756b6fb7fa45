"""`python -m unit_ablation.bench --vs captum` on a tiny case: identical counts, a ratio, exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from unit_ablation.data.fashion_mnist import prepare_fashion_mnist
from unit_ablation.tools import captum_bench
from unit_ablation.tools.bench import main


@pytest.fixture
def tiny_args(idx_folder: Path, tmp_path: Path) -> list[str]:
    prepare_fashion_mnist(idx_folder, tmp_path / "d.npz", heldout_size=50, seed=0)
    return [
        "--vs", "captum", "--model", "resnet18", "--size", "28", "--dataset", str(tmp_path / "d.npz"),
        "--images", "60", "--units", "12", "--captum-units", "6", "--perturbations", "1,4",
        "--threads", "1", "--output", str(tmp_path / "captum.json"),
    ]  # fmt: skip


def test_captum_benchmark_reports_identical_counts_and_a_ratio(tiny_args, tmp_path, capsys) -> None:
    code = main(tiny_args)
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "captum.json").read_text())
    assert code == 0 and result["identical"] is True
    assert "broken and fixed counts: identical on the 6 units compared" in out
    ratio = re.search(r"ratio Captum / ua\.ablate = ([0-9.]+)x", out)
    assert ratio and float(ratio.group(1)) == result["ratio"] > 0
    assert "timed on 6 of 12 units and scaled by image-forwards" in out
    assert result["plan"] == "closed-form" and result["units"] == 12 and result["images"] == 60
    assert set(result["captum_runs"]) == {"perturbations_per_eval=1", "perturbations_per_eval=4"}
    assert result["changed_predictions"] > 0  # the counts compared are not all zero


def test_captum_benchmark_exits_1_when_the_counts_differ(tiny_args, capsys, monkeypatch) -> None:
    counts = captum_bench.captum_counts

    def off_by_one(*args, **kwargs):
        broken, fixed = counts(*args, **kwargs)
        broken[0, 0] += 1
        return broken, fixed

    monkeypatch.setattr(captum_bench, "captum_counts", off_by_one)
    assert main(tiny_args) == 1
    assert "broken and fixed counts: DIFFER" in capsys.readouterr().out
