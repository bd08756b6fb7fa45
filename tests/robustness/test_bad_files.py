"""Bad input files: each stage names the file and what is wrong with it, and writes nothing.

Every bad file is made from a good one that the project's own writers produced: cut in half,
emptied, a byte range overwritten, an array removed or reshaped, a checkpoint of another
architecture or class count, a labels file that does not match the images.
"""

from __future__ import annotations

import contextlib
import gzip
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unit_ablation.data.fashion_mnist import IDX_FILES, prepare_fashion_mnist
from unit_ablation.data.image_cache import write_dataset_index
from unit_ablation.data.image_decode import decode_to_cache
from unit_ablation.data.image_files import ImageList
from unit_ablation.data.loading import load_dataset
from unit_ablation.engine.options import AblationOptions
from unit_ablation.files.safe_load import CorruptFileError
from unit_ablation.models.checkpoint import load_model, save_checkpoint
from unit_ablation.models.fashion_alexnet import build_model
from unit_ablation.models.torchvision_classifier import TorchvisionClassifier
from unit_ablation.stages.ablate import ablate_chunk_to_file
from unit_ablation.stages.attributes import attributes_to_files
from unit_ablation.stages.cumulative import cumulative_to_file
from unit_ablation.stages.decode_images import decode_images_to_folder
from unit_ablation.stages.extract import extract_to_file
from unit_ablation.stages.gather import gather_to_files
from unit_ablation.stages.prepare_model import prepare_pretrained_to_file
from unit_ablation.stages.train import train_to_checkpoint

from support.synthetic import synthetic_images, write_idx

LAYER = "conv5"


def assert_nothing_written(*outputs: Path) -> None:
    """No output under its final name, and no temporary file of it left beside it."""
    for output in outputs:
        assert not output.exists(), f"{output} was written"
        if output.parent.exists():
            leftovers = [p.name for p in output.parent.iterdir() if p.name.startswith(f".{output.name}.")]
            assert leftovers == [], f"temporary files left beside {output}: {leftovers}"


def cut_in_half(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def overwrite_middle(path: Path) -> Path:
    """Overwrite 16 bytes in the middle of the file (inside the largest stored array)."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(255 - b for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))
    return path


def rewrite_npz(path: Path, change: Callable[[dict[str, np.ndarray]], None]) -> Path:
    """Load an .npz, let `change` edit its arrays, write it back (uncompressed, as the writers do)."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    change(arrays)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path


@contextlib.contextmanager
def raises_naming(path: Path, *fragments: str, error: type[Exception] = CorruptFileError) -> Iterator[None]:
    """Expect `error` with a message that names `path` and holds each fragment."""
    with pytest.raises(error) as info:
        yield
    message = str(info.value)
    assert str(path) in message, f"{path} not named in: {message}"
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"


# --------------------------------------------------------------------------- good files


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    """IDX files, a prepared data set, a checkpoint, its activations and one ablation chunk."""
    root = tmp_path_factory.mktemp("good")
    raw = root / "raw"
    raw.mkdir()
    train_x, train_y = synthetic_images(120, seed=1)
    test_x, test_y = synthetic_images(40, seed=2)
    write_idx(raw / IDX_FILES["train_images"], train_x[:, 0])
    write_idx(raw / IDX_FILES["train_labels"], train_y)
    write_idx(raw / IDX_FILES["test_images"], test_x[:, 0])
    write_idx(raw / IDX_FILES["test_labels"], test_y)
    dataset = root / "data.npz"
    prepare_fashion_mnist(raw, dataset, heldout_size=30, seed=0)
    torch.manual_seed(0)
    model = root / "model.pt"
    save_checkpoint(build_model(width=0.25, dropout=0.0).eval(), model, {"variant": "test"})
    activations = root / f"{LAYER}.npz"
    extract_to_file(model, dataset, activations, LAYER, attribute_split="heldout", batch_size=50)
    chunk = root / "0-3.npz"
    ablate_chunk_to_file(model, dataset, chunk, LAYER, [0, 1, 2, 3], AblationOptions(batch_size=50))
    return {"raw": raw, "dataset": dataset, "model": model, "activations": activations, "chunk": chunk}


@pytest.fixture
def files(good, tmp_path) -> dict[str, Path]:
    """A private copy of the good files, free to damage."""
    copies = {}
    for name, path in good.items():
        copies[name] = tmp_path / path.name
        (shutil.copytree if path.is_dir() else shutil.copy)(path, copies[name])
    return copies


def test_the_good_files_work(files, tmp_path):
    """The stages below succeed on the undamaged copies (so each failure is the damage's)."""
    out = tmp_path / "out"
    prepare_fashion_mnist(files["raw"], out / "data.npz", heldout_size=30, seed=0)
    extract_to_file(files["model"], files["dataset"], out / "act.npz", LAYER, "heldout", batch_size=50)
    attributes_to_files(files["activations"], files["model"], out / "u.tsv", out / "c.tsv", LAYER)
    gather_to_files([files["chunk"]], files["dataset"], out / "classes.tsv", out / "units.tsv")
    written = {p.name for p in out.iterdir()}
    assert written == {"data.npz", "act.npz", "u.tsv", "c.tsv", "classes.tsv", "units.tsv"}


# --------------------------------------------------------------------------- Fashion-MNIST IDX files


def _prepare(raw: Path, output: Path) -> None:
    prepare_fashion_mnist(raw, output, heldout_size=30, seed=0)


@pytest.mark.parametrize("name", sorted(IDX_FILES.values()))
def test_missing_idx_file(files, tmp_path, name):
    (files["raw"] / name).unlink()
    output = tmp_path / "out" / "data.npz"
    with raises_naming(files["raw"] / name, "does not exist"):
        _prepare(files["raw"], output)
    assert_nothing_written(output)


def test_truncated_gzip_idx_file(files, tmp_path):
    bad = cut_in_half(files["raw"] / IDX_FILES["train_images"])
    output = tmp_path / "out" / "data.npz"
    with raises_naming(bad, "truncated or corrupt"):
        _prepare(files["raw"], output)
    assert_nothing_written(output)


def test_idx_header_promises_more_bytes_than_present(files, tmp_path):
    bad = files["raw"] / IDX_FILES["test_images"]
    raw = gzip.decompress(bad.read_bytes())
    bad.write_bytes(gzip.compress(raw[: len(raw) - 28 * 28 - 5]))  # a complete gzip of a short IDX
    output = tmp_path / "out" / "data.npz"
    with raises_naming(bad, "truncated or padded", "(40, 28, 28)"):
        _prepare(files["raw"], output)
    assert_nothing_written(output)


def test_idx_header_cut_inside_the_dimensions(files, tmp_path):
    bad = files["raw"] / IDX_FILES["test_labels"]
    bad.write_bytes(gzip.compress(gzip.decompress(bad.read_bytes())[:6]))
    output = tmp_path / "out" / "data.npz"
    with raises_naming(bad, "truncated"):
        _prepare(files["raw"], output)
    assert_nothing_written(output)


def test_labels_idx_that_does_not_match_the_images(files, tmp_path):
    labels = files["raw"] / IDX_FILES["train_labels"]
    write_idx(labels, synthetic_images(119, seed=1)[1])  # one label short
    output = tmp_path / "out" / "data.npz"
    with raises_naming(labels, "119 labels", "120 images", "does not match"):
        _prepare(files["raw"], output)
    assert_nothing_written(output)


# --------------------------------------------------------------------------- prepared data set


def _drop_key(key: str) -> Callable[[dict[str, np.ndarray]], None]:
    return lambda arrays: arrays.pop(key)


def _short_labels(arrays: dict[str, np.ndarray]) -> None:
    arrays["test_labels"] = arrays["test_labels"][:-1]


def _float_images(arrays: dict[str, np.ndarray]) -> None:
    arrays["train_images"] = arrays["train_images"].astype(np.float32)


@pytest.mark.parametrize(
    "damage, fragments",
    [
        (cut_in_half, ["prepared dataset is truncated or corrupt"]),
        (empty, ["empty (0 bytes"]),
        (overwrite_middle, ["prepared dataset is truncated or corrupt", "CRC"]),
        (lambda p: rewrite_npz(p, _drop_key("heldout_labels")), ["lacks the array(s) heldout_labels"]),
        (lambda p: rewrite_npz(p, _short_labels), ["'test_labels' has shape (39,)", "test = 40"]),
        (lambda p: rewrite_npz(p, _float_images), ["float32 images"]),
    ],
    ids=["half", "zero_bytes", "overwritten", "missing_key", "labels_short", "wrong_dtype"],
)
def test_bad_prepared_dataset_stops_training_and_extraction(files, tmp_path, damage, fragments):
    bad = damage(files["dataset"])
    out = tmp_path / "out"
    with raises_naming(bad, *fragments):
        train_to_checkpoint(bad, out / "m.pt", out / "m.json", "m", "v", {"epochs": 1, "width": 0.25})
    with raises_naming(bad, *fragments):
        extract_to_file(files["model"], bad, out / "act.npz", LAYER, "heldout")
    assert_nothing_written(out / "m.pt", out / "m.json", out / "act.npz")


def test_missing_prepared_dataset(files, tmp_path):
    files["dataset"].unlink()
    output = tmp_path / "out" / "act.npz"
    with raises_naming(files["dataset"], "does not exist"):
        extract_to_file(files["model"], files["dataset"], output, LAYER, "heldout")
    assert_nothing_written(output)


def test_bad_class_names_source_stops_gather(files, tmp_path):
    bad = cut_in_half(files["dataset"])
    out = tmp_path / "out"
    with raises_naming(bad, "truncated or corrupt"):
        gather_to_files([files["chunk"]], bad, out / "classes.tsv", out / "units.tsv")
    assert_nothing_written(out / "classes.tsv", out / "units.tsv")


# --------------------------------------------------------------------------- image caches and image sets


def _write_images(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for name in names:
        Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(folder / name)
        paths.append(folder / name)
    return paths


@pytest.fixture
def cache(tmp_path) -> Path:
    paths = _write_images(tmp_path / "src", [f"{i}.png" for i in range(6)])
    images = ImageList(tuple(paths), np.arange(6) % 2, ("a", "b"))
    return decode_to_cache(images, tmp_path / "cache", resize=8, crop=8)


@pytest.mark.parametrize(
    "damage, bad_file, fragments",
    [
        (lambda c: cut_in_half(c / "images.u8"), "images.u8", ["holds 576 bytes", "6 x 3 x 8 x 8"]),
        (
            lambda c: np.save(c / "labels.npy", np.zeros(5, np.int64)),
            "labels.npy",
            ["(5,)", "not int64 (6,)"],
        ),
        (lambda c: cut_in_half(c / "labels.npy"), "labels.npy", ["truncated or corrupt"]),
        (lambda c: empty(c / "labels.npy"), "labels.npy", ["empty (0 bytes"]),
        (lambda c: (c / "labels.npy").unlink(), "labels.npy", ["does not exist"]),
        (lambda c: (c / "sources.txt").write_text("0.png\n"), "sources.txt", ["lists 1 images", "says 6"]),
        (lambda c: cut_in_half(c / "meta.json"), "meta.json", ["cannot read image cache metadata"]),
    ],
    ids=["images_half", "labels_short", "labels_half", "labels_zero", "labels_missing", "sources", "meta"],
)
def test_bad_image_cache_stops_the_dataset_index(cache, tmp_path, damage, bad_file, fragments):
    damage(cache)
    output = tmp_path / "out" / "images.json"
    with raises_naming(cache / bad_file, *fragments, error=ValueError):
        write_dataset_index({"test": cache, "heldout": cache}, output)
    assert_nothing_written(output)


def test_damaged_cache_behind_a_good_index_stops_extraction(cache, files, tmp_path):
    index = tmp_path / "images.json"
    write_dataset_index({"test": cache, "heldout": cache}, index)
    cut_in_half(cache / "images.u8")
    output = tmp_path / "out" / "act.npz"
    with raises_naming(cache / "images.u8", "truncated", error=ValueError):
        extract_to_file(files["model"], index, output, LAYER, "heldout")
    assert_nothing_written(output)


@pytest.mark.parametrize("mismatch", ["lists_a_missing_image", "leaves_images_out"])
def test_labels_file_that_does_not_match_the_images(tmp_path, mismatch):
    _write_images(tmp_path / "val", [f"v{i}.png" for i in range(4)])
    (tmp_path / "classes.txt").write_text("a\nb\n")
    listed = [f"v{i}.png" for i in range(4)]
    listed = listed + ["v9.png"] if mismatch == "lists_a_missing_image" else listed[:3]
    labels = tmp_path / "val.txt"
    labels.write_text("".join(f"{name} {i % 2}\n" for i, name in enumerate(listed)))
    image_set = {
        "images": str(tmp_path / "val"),
        "labels": str(labels),
        "class_names": str(tmp_path / "classes.txt"),
    }
    output = tmp_path / "out" / "cache"
    expected = "v9.png does not exist" if mismatch == "lists_a_missing_image" else "does not list"
    with raises_naming(labels, expected, error=ValueError):
        decode_images_to_folder(image_set, output, resize=8, crop=8)
    assert not output.exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


# --------------------------------------------------------------------------- model checkpoints


def _other_config(path: Path, **changes) -> Path:
    """Rewrite a checkpoint with its model_config edited (the weights stay)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload["model_config"] = {**payload["model_config"], **changes}
    torch.save(payload, path)
    return path


def _five_class_weights(path: Path) -> Path:
    """A 5-class model's weights under the original (10-class) model_config."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload["state_dict"] = build_model(num_classes=5, width=0.25).state_dict()
    torch.save(payload, path)
    return path


def _other_width_weights(path: Path) -> Path:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload["state_dict"] = build_model(width=0.5).state_dict()
    torch.save(payload, path)
    return path


@pytest.mark.parametrize(
    "damage, fragments",
    [
        (cut_in_half, ["checkpoint is truncated or corrupt"]),
        (empty, ["checkpoint is empty (0 bytes"]),
        (overwrite_middle, ["checkpoint is corrupt (bad CRC-32"]),
        (lambda p: _other_config(p, arch="caffenet"), ["architecture 'caffenet'"]),
        (_five_class_weights, ["weights do not fit", "num_classes 10", "fc8.weight"]),
        (_other_width_weights, ["weights do not fit", "width 0.25", "size mismatch"]),
        (lambda p: _other_config(p, width="wide"), ["does not describe a fmnist_alexnet model"]),
        (
            lambda p: torch.save(build_model(width=0.25).state_dict(), p) or p,
            ["lacks model_config, state_dict"],
        ),
        (lambda p: torch.save([torch.zeros(3)], p) or p, ["holds a list, not a dict"]),
        (lambda p: (p.unlink(), p)[1], ["does not exist"]),
    ],
    ids=[
        "half",
        "zero_bytes",
        "overwritten",
        "wrong_arch",
        "wrong_class_count",
        "wrong_width",
        "bad_config",
        "plain_state_dict",
        "not_a_dict",
        "missing",
    ],  # fmt: skip
)
def test_bad_checkpoint_stops_every_stage_that_reads_it(files, tmp_path, damage, fragments):
    bad = damage(files["model"])
    out = tmp_path / "out"
    with raises_naming(bad, *fragments):
        load_model(bad)
    with raises_naming(bad, *fragments):
        extract_to_file(bad, files["dataset"], out / "act.npz", LAYER, "heldout")
    with raises_naming(bad, *fragments):
        attributes_to_files(files["activations"], bad, out / "u.tsv", out / "c.tsv", LAYER)
    with raises_naming(bad, *fragments):
        ablate_chunk_to_file(bad, files["dataset"], out / "0-3.npz", LAYER, [0, 1, 2, 3])
    assert_nothing_written(out / "act.npz", out / "u.tsv", out / "c.tsv", out / "0-3.npz")


def test_checkpoint_of_another_class_count_than_the_data(files, tmp_path):
    """A consistent 5-class checkpoint is refused by extraction, attributes, ablation and cumulative
    ablation on a 10-class data set."""
    model = tmp_path / "five.pt"
    save_checkpoint(build_model(num_classes=5, width=0.25), model, {})
    output = tmp_path / "out" / "act.npz"
    with raises_naming(model, "predicts 5 classes", str(files["dataset"]), "has 10", error=ValueError):
        extract_to_file(model, files["dataset"], output, LAYER, "heldout")
    units, classes = tmp_path / "out" / "u.tsv", tmp_path / "out" / "c.tsv"
    with raises_naming(model, "predicts 5 classes", str(files["activations"]), error=ValueError):
        attributes_to_files(files["activations"], model, units, classes, LAYER)
    chunk, curves = tmp_path / "out" / "0-3.npz", tmp_path / "out" / "cumulative.tsv"
    with raises_naming(model, "predicts 5 classes", str(files["dataset"]), "has 10", error=ValueError):
        ablate_chunk_to_file(model, files["dataset"], chunk, LAYER, [0, 1, 2, 3])
    with raises_naming(model, "predicts 5 classes", str(files["dataset"]), "has 10", error=ValueError):
        cumulative_to_file(
            model, files["dataset"], tmp_path / "classes.tsv", curves, "five", LAYER, device="cpu"
        )
    assert_nothing_written(output, units, classes, chunk, curves)


# --------------------------------------------------------------------------- pretrained weights files


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A small torchvision model's plain state_dict, 10 classes."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "squeezenet1_1.pth"
    torch.save(TorchvisionClassifier("squeezenet1_1", 10).net.state_dict(), path)
    return path


@pytest.mark.parametrize(
    "damage, arch, fragments",
    [
        (cut_in_half, "squeezenet1_1", ["weights file is truncated or corrupt"]),
        (empty, "squeezenet1_1", ["weights file is empty"]),
        (overwrite_middle, "squeezenet1_1", ["bad CRC-32"]),
        (lambda p: p, "squeezenet1_0", ["does not fit torchvision squeezenet1_0"]),
        (
            lambda p: torch.save(TorchvisionClassifier("squeezenet1_1", 365).net.state_dict(), p) or p,
            "squeezenet1_1",
            ["365 classes, the model has 10"],
        ),
        (lambda p: torch.save({"epoch": 3}, p) or p, "squeezenet1_1", ["holds no state_dict"]),
    ],
    ids=["half", "zero_bytes", "overwritten", "wrong_arch", "wrong_class_count", "not_a_state_dict"],
)
def test_bad_weights_file_stops_prepare_model(weights, files, tmp_path, damage, arch, fragments):
    bad = damage(Path(shutil.copy(weights, tmp_path / weights.name)))
    checkpoint, metadata = tmp_path / "out" / "m.pt", tmp_path / "out" / "m.json"
    with raises_naming(bad, *fragments):
        prepare_pretrained_to_file(
            "m", arch, 10, bad, "test", files["dataset"], checkpoint, metadata, device="cpu"
        )
    assert_nothing_written(checkpoint, metadata)


# --------------------------------------------------------------------------- activations


def _units_mismatch(arrays: dict[str, np.ndarray]) -> None:
    """One unit fewer in every per-unit statistic (images x units), the logits left alone."""
    units = arrays["attr_mean"].shape[1]
    for key, value in list(arrays.items()):
        if value.ndim == 2 and value.shape[1] == units and not key.endswith("_logits"):
            arrays[key] = value[:, :-1]


def _logits_wrong_width(arrays: dict[str, np.ndarray]) -> None:
    arrays["attr_logits"] = arrays["attr_logits"][:, :-1]


def _labels_out_of_range(arrays: dict[str, np.ndarray]) -> None:
    arrays["attr_labels"] = arrays["attr_labels"] + 10


@pytest.mark.parametrize(
    "damage, fragments",
    [
        (cut_in_half, ["activations file is truncated or corrupt"]),
        (empty, ["activations file is empty (0 bytes"]),
        (overwrite_middle, ["activations file is truncated or corrupt", "CRC"]),
        (lambda p: rewrite_npz(p, _drop_key("attr_logits")), ["lacks the array(s) attr_logits"]),
        (lambda p: rewrite_npz(p, _logits_wrong_width), ["'attr_logits' has shape (30, 9)", "classes = 10"]),
        (lambda p: rewrite_npz(p, _units_mismatch), ["activations have 15 units", "has 16"]),
        (lambda p: rewrite_npz(p, _labels_out_of_range), ["'attr_labels'", "class indices 0..9"]),
        (lambda p: (p.unlink(), p)[1], ["does not exist"]),
    ],
    ids=[
        "half",
        "zero_bytes",
        "overwritten",
        "missing_key",
        "wrong_shape",
        "unit_count",
        "labels",
        "missing",
    ],
)
def test_bad_activations_stop_attributes(files, tmp_path, damage, fragments):
    bad = damage(files["activations"])
    units, classes = tmp_path / "out" / "units.tsv", tmp_path / "out" / "classes.tsv"
    with raises_naming(bad, *fragments):
        attributes_to_files(bad, files["model"], units, classes, LAYER)
    assert_nothing_written(units, classes)


# --------------------------------------------------------------------------- ablation chunks


def _chunk_wrong_shape(arrays: dict[str, np.ndarray]) -> None:
    arrays["broken"] = arrays["broken"][:, :-1]


def _chunk_float_counts(arrays: dict[str, np.ndarray]) -> None:
    arrays["fixed"] = arrays["fixed"].astype(np.float64)


def _chunk_bad_metadata(arrays: dict[str, np.ndarray]) -> None:
    arrays["metadata"] = np.array("{not json")


def _chunk_other_class_count(arrays: dict[str, np.ndarray]) -> None:
    for key in ("broken", "fixed"):
        arrays[key] = arrays[key][:, :5]
    for key in ("n", "correct"):
        arrays[key] = arrays[key][:5]
    for key in ("broken_half", "fixed_half", "newly", "no_longer"):
        arrays[key] = arrays[key][:, :, :5]
    for key in ("n_half", "correct_half", "predicted_half"):
        arrays[key] = arrays[key][:, :5]
    # counts that add up, as a 5-class chunk's would: every image predicted once, every change counted twice
    arrays["newly"] = arrays["no_longer"].copy()
    arrays["predicted_half"] = arrays["n_half"].copy()


def _chunk_one_half(arrays: dict[str, np.ndarray]) -> None:
    arrays["broken_half"] = arrays["broken_half"][:1]


def _chunk_halves_off_the_total(arrays: dict[str, np.ndarray]) -> None:
    arrays["fixed_half"][1, 0, 0] += 1


def _chunk_changes_disagree(arrays: dict[str, np.ndarray]) -> None:
    arrays["newly"][1, 2, 3] += 1  # an image that enters a class without leaving one


def _chunk_negative_count(arrays: dict[str, np.ndarray]) -> None:
    arrays["no_longer"][0, 1, 2] = -1


@pytest.mark.parametrize(
    "damage, fragments, error",
    [
        (cut_in_half, ["ablation chunk is truncated or corrupt"], CorruptFileError),
        (empty, ["ablation chunk is empty (0 bytes"], CorruptFileError),
        (lambda p: rewrite_npz(p, _drop_key("fixed")), ["lacks the array(s) fixed"], CorruptFileError),
        (lambda p: rewrite_npz(p, _drop_key("metadata")), ["lacks the array(s) metadata"], CorruptFileError),
        (lambda p: rewrite_npz(p, _drop_key("newly")), ["lacks the array(s) newly"], CorruptFileError),
        (
            lambda p: rewrite_npz(p, _drop_key("predicted_half")),
            ["lacks the array(s) predicted_half"],
            CorruptFileError,
        ),
        (
            lambda p: rewrite_npz(p, _chunk_one_half),
            ["'broken_half' has shape (1, 4, 10), expected 2 x units x classes"],
            CorruptFileError,
        ),
        (
            lambda p: rewrite_npz(p, _chunk_halves_off_the_total),
            ["'fixed_half' does not sum over the halves to 'fixed'"],
            CorruptFileError,
        ),
        (
            lambda p: rewrite_npz(p, _chunk_changes_disagree),
            ["arrays 'newly' and 'no_longer' count different changes"],
            CorruptFileError,
        ),
        (
            lambda p: rewrite_npz(p, _chunk_negative_count),
            ["'no_longer' holds negative counts"],
            CorruptFileError,
        ),
        (
            lambda p: rewrite_npz(p, _chunk_wrong_shape),
            ["'fixed' has shape (4, 10)", "classes = 9 as in 'broken'"],
            CorruptFileError,
        ),
        (lambda p: rewrite_npz(p, _chunk_float_counts), ["'fixed' is float64"], CorruptFileError),
        (lambda p: rewrite_npz(p, _chunk_bad_metadata), ["'metadata' is not valid JSON"], CorruptFileError),
        (lambda p: rewrite_npz(p, _chunk_other_class_count), ["count 5 classes", "has 10"], ValueError),
        (lambda p: (p.unlink(), p)[1], ["does not exist"], CorruptFileError),
    ],
    ids=[
        "half",
        "zero_bytes",
        "missing_key",
        "missing_metadata",
        "missing_half_counts",
        "missing_predicted",
        "one_half",
        "halves_off_total",
        "changes_disagree",
        "negative_count",
        "wrong_shape",
        "float_counts",
        "bad_metadata",
        "class_count",
        "missing",
    ],  # fmt: skip
)
def test_bad_chunk_stops_gather(files, tmp_path, damage, fragments, error):
    bad = damage(files["chunk"])
    classes, units = tmp_path / "out" / "classes.tsv", tmp_path / "out" / "units.tsv"
    with raises_naming(bad, *fragments, error=error):
        gather_to_files([bad], files["dataset"], classes, units)
    assert_nothing_written(classes, units)


def test_a_good_chunk_with_a_bad_one_stops_gather(files, tmp_path):
    second = tmp_path / "4-7.npz"
    ablate_chunk_to_file(files["model"], files["dataset"], second, LAYER, [4, 5, 6, 7])
    cut_in_half(second)
    classes, units = tmp_path / "out" / "classes.tsv", tmp_path / "out" / "units.tsv"
    with raises_naming(second, "truncated or corrupt"):
        gather_to_files([files["chunk"], second], files["dataset"], classes, units)
    assert_nothing_written(classes, units)


def test_loaders_accept_what_the_writers_wrote(files):
    """The checks are not so strict that they reject good files of other shapes (BN, 3 splits)."""
    dataset = load_dataset(files["dataset"])
    assert {len(dataset.labels[s]) for s in ("train", "heldout", "test")} == {90, 30, 40}
    assert dataset.images["test"].shape == (40, 1, 28, 28)
    assert load_model(files["model"]).config["num_classes"] == 10


def test_bad_checkpoint_stops_concept_dissection(files, tmp_path):
    from unit_ablation.stages.concept_iou import concept_iou_to_file

    from support.broden_fixture import write_broden

    broden = write_broden(tmp_path / "broden")
    bad = cut_in_half(files["model"])
    units, pairs = tmp_path / "out" / "units.tsv", tmp_path / "out" / "pairs.tsv"
    with raises_naming(bad, "checkpoint is truncated or corrupt"):
        concept_iou_to_file(bad, "conv4", broden, units, pairs)
    assert_nothing_written(units, pairs)
