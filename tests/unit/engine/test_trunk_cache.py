"""The run's trunk cache: jobs that load another job's trunk outputs get the counts they would
compute themselves, the key tells apart everything the trunk's bits depend on, and the folder
stays within its budget."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch

from unit_ablation.data.fashion_mnist import prepare_fashion_mnist
from unit_ablation.engine import trunk_cache as tc
from unit_ablation.engine.activations import layer_statistics
from unit_ablation.engine.basis import random_rotation
from unit_ablation.engine.counts import HALF_ARRAYS
from unit_ablation.engine.driver import ablate_units
from unit_ablation.engine.options import AblationOptions
from unit_ablation.engine.trunk_cache import TrunkCache, trunk_key
from unit_ablation.models.checkpoint import save_checkpoint
from unit_ablation.models.fashion_alexnet import FashionAlexNet
from unit_ablation.runtime.shared_folder import TRUNK_CACHE_VARIABLE
from unit_ablation.stages.extract import extract_to_file

from support.synthetic import synthetic_images

CPU = torch.device("cpu")
COUNTS = ("broken", "fixed", "correct", "n", *HALF_ARRAYS)


def assert_same_counts(a, b) -> None:
    for name in COUNTS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize(
    ("layer", "rotated", "value"),
    [("conv5", False, "zero"), ("conv5", True, "mean"), ("conv3", False, "mean"), ("conv3", True, "zero")],
)
def test_jobs_that_load_the_trunk_get_the_counts_they_compute_themselves(
    small_model, tmp_path, layer, rotated, value
):
    images, labels = synthetic_images(90, seed=41)
    mean_images, _ = synthetic_images(50, seed=42)
    units = list(range(small_model.unit_count(layer)))
    rotation = random_rotation(len(units), 3) if rotated else None
    options = AblationOptions(value=value, batch_size=40)  # 90 images: batches of 40, 40 and 10

    def run(cached_trunk=None):
        return ablate_units(
            small_model, layer, images, labels, units, 10, rotation, options, mean_images,
            cached_trunk=cached_trunk,
        )  # fmt: skip

    own = run()
    assert own.broken.sum() > 0  # the ablations change predictions: "the same" means something
    cache = TrunkCache(tmp_path, budget_bytes=1 << 30)
    source = cache.source(small_model, layer, options.batch_size, CPU, code="test")
    first = run(source)  # computes and stores (the mean images too, for mean ablation)
    stored = 2 if value == "mean" else 1
    assert (cache.hits, cache.misses) == (0, stored)
    second = run(source)  # another job of the run: loads
    assert (cache.hits, cache.misses) == (stored, stored)
    assert_same_counts(first, own)
    assert_same_counts(second, own)


def test_a_trunk_too_big_to_keep_leaves_the_job_its_own_trunk(small_model, tmp_path):
    images, labels = synthetic_images(60, seed=47)
    units = list(range(small_model.unit_count("conv5")))
    options = AblationOptions(value="mean", batch_size=20)
    own = ablate_units(small_model, "conv5", images, labels, units, 10, options=options)
    cache = TrunkCache(tmp_path, budget_bytes=1024)
    got = ablate_units(
        small_model, "conv5", images, labels, units, 10, options=options,
        cached_trunk=cache.source(small_model, "conv5", 20, CPU, "test"),
    )  # fmt: skip
    assert (cache.hits, cache.misses) == (0, 0)
    assert_same_counts(got, own)


def test_a_resumed_job_takes_the_trunk_of_the_images_it_has_left(small_model, tmp_path):
    from unit_ablation.engine.resume import PartialCounts

    images, labels = synthetic_images(90, seed=43)
    units = list(range(small_model.unit_count("conv5")))
    options = AblationOptions(batch_size=30)
    own = ablate_units(small_model, "conv5", images, labels, units, 10, options=options)
    head = ablate_units(small_model, "conv5", images[:30], labels[:30], units, 10, options=options)
    cache = TrunkCache(tmp_path, 1 << 30)
    resumed = ablate_units(
        small_model, "conv5", images, labels, units, 10, options=options,
        resume=PartialCounts.of(30, head), cached_trunk=cache.source(small_model, "conv5", 30, CPU, "test"),
    )  # fmt: skip
    assert cache.misses == 1
    assert_same_counts(resumed, own)


def test_the_key_follows_what_the_trunks_bits_depend_on():
    torch.manual_seed(0)
    model = FashionAlexNet(width=0.25).eval()
    images, _ = synthetic_images(8, seed=44)
    key = trunk_key(model, "conv5", images, 4, CPU, "code")
    assert trunk_key(copy.deepcopy(model), "conv5", images.copy(), 4, CPU, "code") == key  # content
    one_pixel_changed = images.copy()
    one_pixel_changed.flat[5] ^= 1
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.features.conv1.conv.weight[0, 0, 0, 0] += 1e-6
    changed = [
        trunk_key(other, "conv5", images, 4, CPU, "code"),
        trunk_key(model, "conv4", images, 4, CPU, "code"),
        trunk_key(model, "conv5", images[:7], 4, CPU, "code"),
        trunk_key(model, "conv5", one_pixel_changed, 4, CPU, "code"),
        trunk_key(model, "conv5", images, 8, CPU, "code"),
        trunk_key(model, "conv5", images, 4, torch.device("meta"), "code"),
        trunk_key(model, "conv5", images, 4, CPU, "other code"),
    ]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        changed.append(trunk_key(model, "conv5", images, 4, CPU, "code"))
    finally:
        torch.set_num_threads(threads)
    assert key not in changed and len(set(changed)) == len(changed)


def test_the_folder_keeps_within_its_budget_least_recently_used_first(tmp_path):
    torch.manual_seed(0)
    model = FashionAlexNet(width=0.25).eval()
    images = [synthetic_images(20, seed=50 + i)[0] for i in range(3)]
    one = 20 * 24 * 7 * 7 * 4  # conv3's outputs at width 0.25 for 20 images
    cache = TrunkCache(tmp_path, budget_bytes=2 * one + one // 2)  # room for two
    for batch in images:
        cache.trunk_batches(model, "conv3", batch, 10, CPU, "code")
    names = sorted(os.listdir(tmp_path))
    assert len(names) == 2  # the first was evicted for the third
    assert sum((tmp_path / name).stat().st_size for name in names) <= cache.budget_bytes + 2 * 4096
    cache.trunk_batches(model, "conv3", images[1], 10, CPU, "code")  # a load makes it recent
    assert cache.hits == 1
    cache.trunk_batches(model, "conv3", images[0], 10, CPU, "code")  # evicts images[2]'s
    cache.trunk_batches(model, "conv3", images[1], 10, CPU, "code")
    assert (cache.hits, cache.misses) == (2, 4)
    # a trunk too big for the budget is neither stored nor held whole: the job streams it
    small = TrunkCache(tmp_path / "small", budget_bytes=one // 2)
    assert small.trunk_batches(model, "conv3", images[0], 10, CPU, "code") is None
    assert not (tmp_path / "small").exists() or not os.listdir(tmp_path / "small")


def test_an_unreadable_entry_is_run_again(tmp_path):
    torch.manual_seed(0)
    model = FashionAlexNet(width=0.25).eval()
    images, _ = synthetic_images(10, seed=45)
    cache = TrunkCache(tmp_path, 1 << 30)
    expected = cache.trunk_batches(model, "conv4", images, 10, CPU, "code")
    (entry,) = tmp_path.iterdir()
    entry.write_bytes(b"not a torch file")
    again = cache.trunk_batches(model, "conv4", images, 10, CPU, "code")
    assert cache.misses == 2
    assert torch.equal(again[0][0], expected[0][0])


def test_a_failed_store_leaves_the_job_its_trunk_and_no_partial_file(tmp_path, monkeypatch, caplog):
    torch.manual_seed(0)
    model = FashionAlexNet(width=0.25).eval()
    images, _ = synthetic_images(10, seed=46)
    expected = TrunkCache(tmp_path / "good", 1 << 30).trunk_batches(model, "conv4", images, 5, CPU, "code")

    def full_disk(*args, **kwargs):
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(tc.torch, "save", full_disk)
    cache = TrunkCache(tmp_path / "full", 1 << 30)
    got = cache.trunk_batches(model, "conv4", images, 5, CPU, "code")
    assert [torch.equal(a[0], b[0]) for a, b in zip(got, expected, strict=True)] == [True, True]
    assert list((tmp_path / "full").iterdir()) == []
    assert "not stored" in caplog.text


def test_only_jobs_of_a_warm_started_run_have_a_cache(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv(TRUNK_CACHE_VARIABLE, raising=False)
    monkeypatch.delenv(tc.BUDGET_VARIABLE, raising=False)
    assert TrunkCache.for_this_job() is None
    monkeypatch.setenv(TRUNK_CACHE_VARIABLE, str(tmp_path))
    cache = TrunkCache.for_this_job()
    assert cache is not None and cache.folder == tmp_path
    assert cache.budget_bytes == int(tc.DEFAULT_BUDGET_GB * 2**30)
    monkeypatch.setenv(tc.BUDGET_VARIABLE, "0.5")
    assert TrunkCache.for_this_job().budget_bytes == 2**29
    monkeypatch.setenv(tc.BUDGET_VARIABLE, "0")
    assert TrunkCache.for_this_job() is None
    monkeypatch.setenv(tc.BUDGET_VARIABLE, "lots")
    assert TrunkCache.for_this_job() is None
    assert tc.BUDGET_VARIABLE in caplog.text


@pytest.mark.parametrize("layer", ["conv3", "conv5"])
def test_a_layers_bases_share_its_activations_and_logits(small_model, tmp_path, layer):
    images, _ = synthetic_images(70, seed=43)
    rotation = random_rotation(small_model.unit_count(layer), 5)
    cache = TrunkCache(tmp_path, budget_bytes=1 << 30)
    for q in (None, rotation):  # the canonical job computes and stores; the rotated one loads
        own = layer_statistics(small_model, layer, images, q, batch_size=30)
        shared = layer_statistics(small_model, layer, images, q, batch_size=30, cache=cache, code="test")
        assert own.keys() == shared.keys()
        for key in own:
            np.testing.assert_array_equal(shared[key], own[key], err_msg=key)
    assert (cache.hits, cache.misses) == (1, 1)
    # another batch size is another entry (the bits may differ), and so is the trunk of ablate jobs
    layer_statistics(small_model, layer, images, None, batch_size=35, cache=cache, code="test")
    assert (cache.hits, cache.misses) == (1, 2)
    cache.trunk_batches(small_model, layer, images, 30, CPU, "test")
    assert (cache.hits, cache.misses) == (1, 3)
    # too big to keep: computed once, no entry, the same statistics
    small = TrunkCache(tmp_path / "small", budget_bytes=1024)
    got = layer_statistics(small_model, layer, images, None, batch_size=30, cache=small, code="test")
    np.testing.assert_array_equal(got["max"], layer_statistics(small_model, layer, images, None, 30)["max"])
    assert (small.hits, small.misses) == (0, 0)


def test_extract_jobs_of_a_run_compute_a_layers_activations_once(
    idx_folder, small_model, tmp_path, monkeypatch, caplog
):
    dataset, model = tmp_path / "data.npz", tmp_path / "model.pt"
    prepare_fashion_mnist(idx_folder, dataset, heldout_size=100, seed=0)
    save_checkpoint(small_model, model, {"variant": "test"})
    specs = ["conv4", "conv4@rot0", "conv4@rot1"]
    monkeypatch.delenv(TRUNK_CACHE_VARIABLE, raising=False)
    for spec in specs:
        extract_to_file(model, dataset, tmp_path / f"own-{spec}.npz", spec, "heldout", batch_size=40)
    monkeypatch.setenv(TRUNK_CACHE_VARIABLE, str(tmp_path / "run"))
    with caplog.at_level("INFO", logger="unit_ablation"):
        for spec in specs:
            extract_to_file(model, dataset, tmp_path / f"run-{spec}.npz", spec, "heldout", batch_size=40)
    lines = [r.getMessage() for r in caplog.records if "activations and logits:" in r.getMessage()]
    assert lines == [
        "activations and logits: 0 loaded from the run's cache, 1 computed",
        "activations and logits: 1 loaded from the run's cache, 0 computed",
        "activations and logits: 1 loaded from the run's cache, 0 computed",
    ]
    for spec in specs:
        with np.load(tmp_path / f"own-{spec}.npz") as own, np.load(tmp_path / f"run-{spec}.npz") as run:
            assert own.files == run.files
            for key in own.files:
                np.testing.assert_array_equal(run[key], own[key], err_msg=f"{spec} {key}")
