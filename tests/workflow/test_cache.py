"""Between-workflow cache: train, extract and ablate outputs served by content, never mixed up."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from support.workflow_runs import TINY_CONFIG, snakemake

pytestmark = pytest.mark.integration
MODELS = ["fmnist-alexnet-baseline-s0", "fmnist-alexnet-bn-s0"]
# conv5 in the canonical and the tiny config's rotated basis: two layer specs, each extracted and
# ablated on its own (the rotated basis is the cheaper second spec: conv4 would replay conv5)
LAYER_UNITS = {"conv5": 32, "conv5@rot0": 32}  # at the tiny config's width 0.5
CHUNK_SIZE = 24


def targets(models: list[str] = MODELS, layers: tuple[str, ...] = tuple(LAYER_UNITS)) -> list[str]:
    """The extracted activations (cached) and the gathered ablation tables (computed from cached
    chunks) of each model and layer."""
    return [
        f"results/{model}/{kind}/{layer}.{suffix}"
        for model in models
        for layer in layers
        for kind, suffix in (("ablation", "units.tsv"), ("activations", "npz"))
    ]


def cached_outputs(
    workdir: Path, models: list[str] = MODELS, layers: tuple[str, ...] = tuple(LAYER_UNITS)
) -> list[Path]:
    """The outputs of train, extract and ablate behind `targets(models, layers)`."""
    paths = []
    for model in models:
        paths.append(workdir / f"results/models/{model}.pt")  # its .json is written from it, not cached
        for layer in layers:
            units = LAYER_UNITS[layer]
            paths.append(workdir / f"results/{model}/activations/{layer}.npz")
            paths += [
                workdir
                / f"results/{model}/ablation/chunks/{layer}/{start}-{min(start + CHUNK_SIZE, units) - 1}.npz"
                for start in range(0, units, CHUNK_SIZE)
            ]
    return paths


def tiny_config() -> dict:
    """The tiny config, cut to conv5 (in both bases)."""
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["analysis"]["layers"] = ["conv5"]
    return config


def run_cached(workdir: Path, cache: Path, *targets_: str, config: dict | None = None):
    if config is None:
        config = tiny_config()
    workdir.mkdir(exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    # targets first: `--cache` takes the words after it as rule names
    result = snakemake(workdir, *targets_, "--cache", env={"SNAKEMAKE_OUTPUT_CACHE": str(cache)})
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("cache")
    cache = root / "cache"
    cache.mkdir()
    output = run_cached(root / "first", cache, *targets())
    return root, cache, output


def test_first_run_computes_and_stores_every_cached_output(first_run):
    root, cache, output = first_run
    for path in cached_outputs(root / "first"):
        assert path.is_symlink() and Path(os.readlink(path)).parent == cache
        assert f"Moving output file {path.relative_to(root / 'first')} to cache." in output
    assert (root / "first/results/logs/train" / f"{MODELS[0]}.log").exists()


def test_second_directory_takes_them_from_the_cache(first_run):
    root, cache, _ = first_run
    output = run_cached(root / "second", cache, *targets())
    for first, second in zip(cached_outputs(root / "first"), cached_outputs(root / "second"), strict=True):
        assert os.readlink(second) == os.readlink(first)
        assert f"Symlinking output file {second.relative_to(root / 'second')} from cache." in output
    logs = root / "second/results/logs"
    logs = [path for rule in ("train", "extract", "ablate") for path in (logs / rule).rglob("*.log")]
    assert logs and all(path.stat().st_size == 0 for path in logs)  # created by Snakemake, no job wrote
    tables = [target for target in targets() if target.endswith(".tsv")]
    for target in tables:  # what was computed from the cached outputs is the same
        assert (root / "second" / target).read_bytes() == (root / "first" / target).read_bytes()


def test_layers_and_models_never_share_an_entry(first_run):
    root, _, _ = first_run
    outputs = cached_outputs(root / "first")
    entries = {os.readlink(path) for path in outputs}
    assert len(entries) == len(outputs)
    for model in MODELS:
        for layer, units in LAYER_UNITS.items():
            with np.load(root / f"first/results/{model}/activations/{layer}.npz") as activations:
                assert activations["attr_mean"].shape[-1] == units
            with np.load(root / f"first/results/{model}/ablation/chunks/{layer}/0-23.npz") as chunk:
                assert chunk["units"].tolist() == list(range(CHUNK_SIZE))
    weights = {(root / f"first/results/models/{model}.pt").read_bytes() for model in MODELS}
    assert len(weights) == 2


def test_flipping_a_setting_back_is_served_from_the_cache(first_run):
    root, cache, _ = first_run
    workdir = root / "flip"
    shutil.copytree(root / "first", workdir, symlinks=True)  # with .snakemake: the params it ran with
    config = tiny_config()
    model, layers = MODELS[0], ("conv5",)
    flipped = {**config, "train": {**config["train"], "epochs": 2}}
    output = run_cached(workdir, cache, *targets([model], layers), config=flipped)
    assert f"Moving output file results/models/{model}.pt to cache." in output  # trained anew
    assert os.readlink(workdir / f"results/models/{model}.pt") != os.readlink(
        root / f"first/results/models/{model}.pt"
    )
    output = run_cached(workdir, cache, *targets([model], layers), config=config)
    for first, back in zip(
        cached_outputs(root / "first", [model], layers), cached_outputs(workdir, [model], layers), strict=True
    ):
        assert os.readlink(back) == os.readlink(first)
        assert f"Symlinking output file {back.relative_to(workdir)} from cache." in output
    assert "Moving output file" not in output  # nothing was computed again


# Loaded by every Python process of the two runs below (PYTHONPATH). A `train` or `extract` job
# waits at its start until the same rule's job of the other run has started too (or 300 s have
# passed, recorded as a timeout): both then compute the job at once and store it in the one cache
# together, whatever the scheduling.
BARRIER = """
import os, sys, time, pathlib
barrier = os.environ.get("CACHE_BARRIER")
rule = next((r for r in ("train", "extract") if sys.argv[0].endswith(f".{r}.py")), None)
if barrier and rule:
    folder = pathlib.Path(barrier)
    (folder / f"{rule}.{pathlib.Path.cwd().name}").touch()
    deadline = time.monotonic() + 300
    while len(list(folder.glob(f"{rule}.*"))) < 2:
        if time.monotonic() > deadline:
            (folder / f"timeout.{rule}").touch()
            break
        time.sleep(0.05)
"""


def test_two_directories_computing_the_same_jobs_at_once_share_one_complete_cache(tmp_path):
    """Two people's workflow directories, one cache, same config, the cached jobs forced to overlap:
    both runs complete, every entry is whole, and their tables are identical."""
    from concurrent.futures import ThreadPoolExecutor

    from unit_ablation.files.torch_files import load_torch_file

    cache, barrier, hooks = tmp_path / "cache", tmp_path / "barrier", tmp_path / "hooks"
    for folder in (cache, barrier, hooks):
        folder.mkdir()
    (hooks / "sitecustomize.py").write_text(BARRIER)
    env = {
        "SNAKEMAKE_OUTPUT_CACHE": str(cache),
        "CACHE_BARRIER": str(barrier),
        "PYTHONPATH": os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")]),
    }
    model, layers = MODELS[0], ("conv5",)
    wanted = [*targets([model], layers), f"results/models/{model}.json"]
    workdirs = [tmp_path / "alice", tmp_path / "bob"]
    for workdir in workdirs:
        workdir.mkdir()
        (workdir / "config.yaml").write_text(yaml.safe_dump(tiny_config()))
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda w: snakemake(w, *wanted, "--cache", env=env), workdirs))
    for result in results:
        assert result.returncode == 0, result.stderr[-4000:]
    assert sorted(p.name for p in barrier.iterdir()) == [
        "extract.alice", "extract.bob", "train.alice", "train.bob",
    ], "both runs computed train and extract at the same time"  # fmt: skip
    # every entry is one whole file, no temporary left; both directories point at the same entries
    entries = sorted(cache.iterdir())
    assert all(entry.is_file() and not entry.is_symlink() for entry in entries), entries
    for alice, bob in zip(*(cached_outputs(w, [model], layers) for w in workdirs), strict=True):
        assert os.readlink(alice) == os.readlink(bob) and Path(os.readlink(alice)) in entries
    for entry in entries:
        if entry.suffix == ".pt":
            assert set(load_torch_file(entry)) >= {"state_dict", "metadata_json"}
        else:
            with np.load(entry, allow_pickle=False) as arrays:
                assert all(arrays[key] is not None for key in arrays.files)  # reads every array (CRCs)
    for target in targets([model], layers):
        assert (workdirs[0] / target).read_bytes() == (workdirs[1] / target).read_bytes(), target
    # the model metadata too, but for the training time each run measured: the later store's
    # checkpoint wins the entry (docs/clusters.md), with the same weights
    metadata = [json.loads((w / wanted[-1]).read_text()) for w in workdirs]
    assert [{k: v for k, v in m.items() if k != "train_seconds"} for m in metadata] == [
        {k: v for k, v in metadata[0].items() if k != "train_seconds"}
    ] * 2


def test_every_cached_rule_has_one_output():
    """Snakemake stores a cached job's outputs file by file: a rule with several outputs could leave a
    half-stored entry that breaks the next run that finds it (docs/clusters.md)."""
    import re

    from support.workflow_runs import PROJECT_ROOT

    cached = 0
    for path in sorted((PROJECT_ROOT / "rules").glob("*.smk")):
        for rule in re.split(r"\n(?=rule )", path.read_text()):
            if "\n    cache: True" not in rule:
                continue
            cached += 1
            output = re.search(r"\n    output:\n((?:        .*\n|\s*\n)+?)    \w", rule).group(1)
            lines = [
                line for line in output.splitlines() if line.strip() and not line.strip().startswith("#")
            ]
            assert len(lines) == 1, f"{path.name}: {rule.splitlines()[0]} caches {len(lines)} outputs"
    assert cached == 3  # train, extract, ablate
