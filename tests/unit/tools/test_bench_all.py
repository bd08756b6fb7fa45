"""`python -m unit_ablation.bench --all`: one row per case, each checked against the naive reference."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from unit_ablation.data.fashion_mnist import prepare_fashion_mnist
from unit_ablation.tools import bench_all
from unit_ablation.tools.bench import main

CASE_NAMES = ["conv3", "conv3@rot0", "conv4", "conv4@rot0", "conv5", "conv5@rot0", "layer4"]


def test_every_case_is_identical_and_changes_predictions(idx_folder: Path, tmp_path: Path, capsys) -> None:
    prepare_fashion_mnist(idx_folder, tmp_path / "d.npz", heldout_size=50, seed=0)
    out = tmp_path / "all.json"
    code = main([
        "--all", "--dataset", str(tmp_path / "d.npz"), "--checkpoint", str(tmp_path / "missing.pt"),
        "--images", "40", "--naive-units", "1", "--threads", "1", "--output", str(out),
    ])  # fmt: skip
    cases = json.loads(out.read_text())["cases"]
    assert [case["case"] for case in cases] == CASE_NAMES
    assert [case["basis"] for case in cases] == ["canonical", "rot0"] * 3 + ["canonical"]
    assert cases[-1]["plan"] == "closed-form" and cases[-1]["layer"] == "model.layer4"
    for case in cases:
        assert case["identical"] is True, case
        # the random-init models' last layers are standardised, so ablations change predictions
        assert case["changed_predictions"] > 0, case
        assert case["speedup"] > 0 and case["ceiling"] > 0 and case["trunk_s"] > 0
        # computed before speedup and ceiling were rounded to 0.1
        assert case["ceiling_share"] == pytest.approx(case["speedup"] / case["ceiling"], rel=0.05, abs=1e-3)
    assert code == 0
    table = capsys.readouterr().out.splitlines()
    header = table.index(next(line for line in table if line.split()[:2] == ["case", "plan"]))
    rows = table[header + 1 : header + 1 + len(CASE_NAMES)]
    assert [row.split()[0] for row in rows] == CASE_NAMES


def test_a_case_that_changes_no_prediction_fails_the_run() -> None:
    """Identical counts of all-zero ablation effects prove nothing."""

    def fake_benchmark(args: argparse.Namespace) -> dict:
        changed = 0 if (args.layer, args.rotation_seed) == ("conv4", 0) else 5
        return {"identical": True, "changed_predictions": changed}

    result = bench_all.run_all(argparse.Namespace(model="fmnist", layer="conv5"), fake_benchmark)
    assert len(result["cases"]) == len(CASE_NAMES) and result["identical"] is False
    everything_changes = bench_all.run_all(
        argparse.Namespace(), lambda args: {"identical": True, "changed_predictions": 1}
    )
    assert everything_changes["identical"] is True
