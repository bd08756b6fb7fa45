"""Shared fixtures: small synthetic data and small models, no downloads."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch

from unit_ablation.models.training import TrainConfig, train_model

from support.synthetic import synthetic_images, write_idx


@pytest.fixture
def idx_folder(tmp_path: Path) -> Path:
    """A folder with Fashion-MNIST-layout IDX files of synthetic images (400 train, 100 test)."""
    train_x, train_y = synthetic_images(400, seed=1)
    test_x, test_y = synthetic_images(100, seed=2)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", train_x[:, 0])
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", train_y)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", test_x[:, 0])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", test_y)
    return tmp_path


@pytest.fixture(
    params=[
        "cpu",
        pytest.param(
            "cuda",
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
        ),
    ]
)
def compute_device(request: pytest.FixtureRequest) -> str:
    """Where the exactness tests run: the CPU always, and CUDA too where a GPU is present."""
    return request.param


@pytest.fixture(scope="session")
def _trained_models() -> dict[bool, torch.nn.Module]:
    """Small models (plain and BN) trained briefly on synthetic bars: accurate, but not perfect."""
    images, labels = synthetic_images(1024, seed=21)
    plain = TrainConfig(epochs=2, batch_size=32, lr=0.003, width=0.25, dropout=0.0)  # ~75% on held-out bars
    bn = TrainConfig(epochs=1, batch_size=32, lr=0.003, width=0.25, dropout=0.5, batchnorm=True)  # ~97%
    return {False: train_model(images, labels, 10, plain), True: train_model(images, labels, 10, bn)}


@pytest.fixture(params=[False, True], ids=["plain", "bn"])
def small_model(request: pytest.FixtureRequest, _trained_models) -> torch.nn.Module:
    """A fresh copy (tests may edit it) of a briefly trained small model, in eval mode."""
    return copy.deepcopy(_trained_models[request.param]).eval()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete run of the tiny config (conv5 only: `tiny_run_config`) and its report, in a
    temporary project folder that deploys the workflow as a Snakemake module (no schemas/, src/ or
    scripts/ of its own).

    One run serves every pytest-xdist worker; it starts in the background once the tests are
    collected (`support.tiny_run`). Tests only read it: they run the checkout's Snakefile on it (dry
    runs, which take no lock), or copy it. The files its jobs opened for writing are listed in
    `support.write_audit.writes_record(tiny_run)`.
    """
    from support.tiny_run import wait_or_build

    try:
        return wait_or_build(_shared_folder(tmp_path_factory))
    except RuntimeError as error:
        pytest.fail(str(error))


def _shared_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's temporary folder, above each pytest-xdist worker's own."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reports the collection and tests start
def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the tiny run as soon as a session's tests need it."""
    if any("tiny_run" in getattr(item, "fixturenames", ()) for item in session.items):
        from support.tiny_run import start_in_background

        start_in_background(_shared_folder(session.config._tmp_path_factory))


if os.environ.get("PYTEST_XDIST_WORKER"):
    # one thread per worker: with -n auto the workers already keep every core busy, and more
    # threads than cores make torch's thread pools spin against each other
    torch.set_num_threads(1)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With pytest-xdist (`make test` runs `--dist loadgroup`), the tests of a file that has
    module-, class- or session-scoped fixtures of its own (a workflow run, a cluster) stay on one
    worker, so that each fixture is made once. Every other test goes wherever there is room: the
    root conftest's session fixtures are cheap per worker, or shared between workers (`tiny_run`)."""
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        definitions = fixtures.name2fixturedefs.values() if fixtures else ()
        if any(d[-1].scope != "function" and d[-1].baseid not in ("", "tests") for d in definitions):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
