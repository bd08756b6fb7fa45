"""Image lists, the one-time decode into a uint8 memory-mapped cache, and Datasets built from caches."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile
from torchvision import datasets, transforms

from unit_ablation.data.dataset import Dataset, to_float
from unit_ablation.data.image_cache import image_dataset, load_image_cache
from unit_ablation.data.image_decode import decode_to_cache
from unit_ablation.data.image_files import ImageList, read_flat_layout, read_image_folder


def make_image(
    path: Path, size: tuple[int, int], mode: str = "RGB", seed: int = 0, fmt: str | None = None
) -> Path:
    """A random image of `size` (width, height) in `mode`, saved by extension (or `fmt`)."""
    rng = np.random.default_rng(seed)
    width, height = size
    # smooth gradients plus noise, so that resizing has something to interpolate
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack([xs * 255 // max(width - 1, 1), ys * 255 // max(height - 1, 1), (xs + ys) % 256], axis=-1)
    rgb = np.clip(base + rng.integers(-40, 40, size=base.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(rgb, "RGB")
    if mode == "RGBA":
        image = image.convert("RGBA")
        image.putalpha(Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8), "L"))
    elif mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=17)
    elif mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)
    return path


def reference(path: Path, resize: int, crop: int) -> np.ndarray:
    """torchvision's own pipeline, as a model's eval transform would run it."""
    pipeline = transforms.Compose(
        [transforms.Resize(resize), transforms.CenterCrop(crop), transforms.PILToTensor()]
    )
    with Image.open(path) as image:
        return pipeline(image.convert("RGB")).numpy()


def assert_no_leftovers(output: Path) -> None:
    assert not output.exists()
    assert [p.name for p in output.parent.iterdir() if p.name.startswith(f".{output.name}")] == []


# --------------------------------------------------------------------------- ImageFolder


def test_image_folder_order_and_labels_match_torchvision(tmp_path):
    root = tmp_path / "train"
    files = ["b/2.png", "b/10.JPG", "a/z.jpeg", "a/sub/x.png", "C/only.bmp", "a/y.webp"]
    for i, name in enumerate(files):
        fmt = {".jpg": "JPEG", ".jpeg": "JPEG"}.get(Path(name).suffix.lower())
        make_image(root / name, (9, 7), seed=i, fmt=fmt)
    (root / "a" / "notes.txt").write_text("not an image")
    listing = read_image_folder(root)
    expected = datasets.ImageFolder(root)
    assert listing.class_names == ("C", "a", "b") == tuple(expected.classes)
    assert [(str(p), int(y)) for p, y in zip(listing.paths, listing.labels, strict=True)] == expected.samples
    assert listing.labels.dtype == np.int64 and len(listing) == 6
    # hidden files and folders are ignored (torchvision would take them)
    make_image(root / "a" / ".hidden.png", (5, 5))
    make_image(root / ".cache" / "x.png", (5, 5))
    make_image(root / "b" / ".ipynb_checkpoints" / "x.png", (5, 5))
    assert read_image_folder(root).paths == listing.paths


def test_image_folder_errors_are_named(tmp_path):
    with pytest.raises(ValueError, match="nowhere.*does not exist"):
        read_image_folder(tmp_path / "nowhere")
    (tmp_path / "flat").mkdir()
    make_image(tmp_path / "flat" / "x.png", (4, 4))
    with pytest.raises(ValueError, match="flat has no class sub-folders"):
        read_image_folder(tmp_path / "flat")
    make_image(tmp_path / "tree" / "cat" / "x.png", (4, 4))
    (tmp_path / "tree" / "dog").mkdir()
    (tmp_path / "tree" / "dog" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="tree: class folder 'dog' holds no images"):
        read_image_folder(tmp_path / "tree")


# --------------------------------------------------------------------------- flat validation layout


@pytest.fixture
def flat(tmp_path) -> Path:
    """A flat folder of four validation images."""
    for i in range(4):
        make_image(tmp_path / "val" / f"val_{i:04d}.JPEG", (6, 5), seed=i, fmt="JPEG")
    return tmp_path


def test_flat_layout_integer_labels_and_places365_categories(flat):
    (flat / "categories_places365.txt").write_text("/a/airfield 0\n/b/bus_station/indoor 2\n/a/alley 1\n")
    (flat / "val.txt").write_text("val_0003.JPEG 2\nval_0001.JPEG 0\n\nval_0000.JPEG 1\nval_0002.JPEG 1\n")
    listing = read_flat_layout(flat / "val", flat / "val.txt", flat / "categories_places365.txt")
    assert listing.class_names == ("/a/airfield", "/a/alley", "/b/bus_station/indoor")
    assert [p.name for p in listing.paths] == [
        "val_0003.JPEG",
        "val_0001.JPEG",
        "val_0000.JPEG",
        "val_0002.JPEG",
    ]
    assert listing.labels.tolist() == [2, 0, 1, 1]
    # Places365 names, with or without the /a/ prefix, work as labels too
    (flat / "named.txt").write_text(
        "val_0000.JPEG /a/alley\nval_0001.JPEG airfield\nval_0002.JPEG bus_station/indoor\nval_0003.JPEG 0\n"
    )
    named = read_flat_layout(flat / "val", flat / "named.txt", flat / "categories_places365.txt")
    assert named.labels.tolist() == [1, 0, 2, 0]


def test_flat_layout_class_name_labels_and_one_name_per_line(flat):
    (flat / "classes.txt").write_text("T-shirt/top\nAnkle boot\nBag\n\n")
    (flat / "labels.txt").write_text(
        "val_0000.JPEG Ankle boot\nval_0001.JPEG T-shirt/top\nval_0002.JPEG 2\nval_0003.JPEG Bag\n"
    )
    listing = read_flat_layout(flat / "val", flat / "labels.txt", flat / "classes.txt")
    assert listing.class_names == ("T-shirt/top", "Ankle boot", "Bag")
    assert listing.labels.tolist() == [1, 0, 2, 2]


def test_flat_layout_loc_synset_mapping(flat):
    (flat / "LOC_synset_mapping.txt").write_text(
        "n01440764 tench, Tinca tinca\n"
        "n02012849 crane\n"
        "n03126707 crane\n"
        "n01443537 goldfish, Carassius auratus\n"
    )
    (flat / "val.txt").write_text(
        "val_0000.JPEG n03126707\nval_0001.JPEG tench\n"
        "val_0002.JPEG goldfish, Carassius auratus\nval_0003.JPEG 1\n"
    )
    listing = read_flat_layout(flat / "val", flat / "val.txt", flat / "LOC_synset_mapping.txt")
    assert listing.class_names == ("tench", "crane (n02012849)", "crane (n03126707)", "goldfish")
    assert listing.labels.tolist() == [2, 0, 3, 1]
    # the ambiguous first synonym is not a usable label
    (flat / "bad.txt").write_text("val_0000.JPEG crane\n")
    with pytest.raises(ValueError, match=r"bad.txt:1: label 'crane' is neither"):
        read_flat_layout(flat / "val", flat / "bad.txt", flat / "LOC_synset_mapping.txt", allow_unlisted=True)


def test_flat_layout_imagenet_class_index_json(flat):
    index = {"0": ["n01440764", "tench"], "1": ["n01443537", "goldfish"]}
    (flat / "imagenet_class_index.json").write_text(json.dumps(index))
    (flat / "val.txt").write_text(
        "val_0000.JPEG n01443537\nval_0001.JPEG 0\nval_0002.JPEG goldfish\nval_0003.JPEG 1\n"
    )
    listing = read_flat_layout(flat / "val", flat / "val.txt", flat / "imagenet_class_index.json")
    assert listing.class_names == ("tench", "goldfish") and listing.labels.tolist() == [1, 0, 1, 1]


FULL = "val_0000.JPEG 0\nval_0001.JPEG 1\nval_0002.JPEG 2\nval_0003.JPEG 0\n"


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (FULL.replace("val_0002", "val_0009"), r"labels.txt:3: image .*val_0009.JPEG does not exist"),
        (FULL.replace("val_0001.JPEG 1", "val_0001.JPEG 3"), r"labels.txt:2: label 3 out of range 0..2"),
        (FULL.replace("val_0001.JPEG 1", "val_0001.JPEG -1"), r"labels.txt:2: label -1 out of range"),
        (FULL.replace("val_0003.JPEG 0", "val_0003.JPEG Horse"), r"labels.txt:4: label 'Horse' is neither"),
        (FULL.replace("val_0001.JPEG 1", "val_0001.JPEG"), r"labels.txt:2: malformed line 'val_0001.JPEG'"),
        (FULL + "val_0000.JPEG 1\n", r"labels.txt:5: image 'val_0000.JPEG' already listed on line 1"),
        ("\n\n", r"labels file .*labels.txt lists no images"),
        (
            "val_0000.JPEG 0\nval_0001.JPEG 1\n",
            r"holds 2 images that .*labels.txt does not list .*val_0002.JPEG",
        ),
    ],
    ids=[
        "missing-image",
        "out-of-range",
        "negative",
        "unknown-name",
        "malformed",
        "duplicate",
        "empty",
        "unlisted",
    ],
)
def test_flat_layout_errors_name_file_and_line(flat, labels, message):
    (flat / "classes.txt").write_text("Cat\nDog\nBird\n")
    (flat / "labels.txt").write_text(labels)
    with pytest.raises(ValueError, match=message):
        read_flat_layout(flat / "val", flat / "labels.txt", flat / "classes.txt")


def test_flat_layout_subset_allowed_on_request(flat):
    (flat / "classes.txt").write_text("Cat\nDog\n")
    (flat / "labels.txt").write_text("val_0002.JPEG Dog\n")
    listing = read_flat_layout(flat / "val", flat / "labels.txt", flat / "classes.txt", allow_unlisted=True)
    assert [p.name for p in listing.paths] == ["val_0002.JPEG"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("Cat\n\nDog\n", r"classes.txt:2: blank line"),
        ("Cat\nDog\nCat\n", r"classes.txt:3: class name 'Cat' repeats line 1"),
        ("/a/x 0\n/b/y 0\n", r"classes.txt:2: class index 0 given twice"),
        ("/a/x 0\n/b/y 5\n", r"classes.txt:2: class index 5 out of range"),
        ("", r"classes.txt is empty"),
    ],
)
def test_class_names_file_errors(flat, content, message):
    (flat / "classes.txt").write_text(content)
    (flat / "labels.txt").write_text(FULL)
    with pytest.raises(ValueError, match=message):
        read_flat_layout(flat / "val", flat / "labels.txt", flat / "classes.txt")


# --------------------------------------------------------------------------- decode_to_cache


@pytest.fixture
def varied(tmp_path) -> ImageList:
    """Images of odd sizes and modes, including ones smaller than the crop."""
    specs = [
        ("a.jpg", (53, 37), "L", "JPEG"),
        ("b.png", (29, 61), "RGBA", None),
        ("c.png", (45, 45), "P", None),
        ("d.jpg", (71, 50), "CMYK", "JPEG"),
        ("e.bmp", (33, 20), "RGB", None),
        ("f.png", (11, 13), "L", None),
        ("g.tif", (40, 31), "RGB", None),
        ("h.webp", (30, 41), "RGB", None),
        ("i.ppm", (26, 19), "RGB", None),
        ("j.jpg", (101, 75), "RGB", "JPEG"),
    ]
    paths = tuple(
        make_image(tmp_path / "src" / n, s, m, seed=i, fmt=f) for i, (n, s, m, f) in enumerate(specs)
    )
    with Image.open(paths[3]) as image:
        assert image.mode == "CMYK"
    return ImageList(paths, np.arange(len(paths)) % 3, ("x", "y", "z"))


def test_decode_matches_torchvision_pixel_for_pixel(varied, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="unit_ablation.data.image_decode")
    output = decode_to_cache(varied, tmp_path / "cache", resize=20, crop=16)
    assert output == tmp_path / "cache"
    images, labels, names = load_image_cache(output)
    assert isinstance(images, np.memmap) and images.dtype == np.uint8 and images.shape == (10, 3, 16, 16)
    assert not images.flags.writeable
    for row, path in zip(images, varied.paths, strict=True):
        np.testing.assert_array_equal(row, reference(path, 20, 16), err_msg=str(path))
    assert labels.dtype == np.int64 and labels.tolist() == varied.labels.tolist() and names == ("x", "y", "z")
    meta = json.loads((output / "meta.json").read_text())
    assert meta["count"] == 10 and meta["shape"] == [10, 3, 16, 16]
    assert (meta["resize"], meta["crop"], meta["class_names"], meta["format_version"]) == (
        20,
        16,
        ["x", "y", "z"],
        1,
    )
    assert len(meta["checksum"]) == 64
    assert (output / "sources.txt").read_text().split() == [p.name for p in varied.paths]
    assert (output / "images.u8").stat().st_size == 10 * 3 * 16 * 16
    assert sorted(p.name for p in output.iterdir()) == ["images.u8", "labels.npy", "meta.json", "sources.txt"]
    assert_no_leftovers(tmp_path / "other")  # nothing but the cache beside it
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("decode: ")]
    assert progress and progress[-1].startswith("decode: 10/10 images (")
    assert "eta" in progress[-1]


def test_decode_default_sizes(varied, tmp_path):
    images, _, _ = load_image_cache(decode_to_cache(varied, tmp_path / "cache"))
    assert images.shape == (10, 3, 224, 224)
    np.testing.assert_array_equal(images[9], reference(varied.paths[9], 256, 224))


@pytest.mark.parametrize("start_method", [None, "fork"])
def test_workers_give_byte_identical_output(varied, tmp_path, start_method):
    one = decode_to_cache(varied, tmp_path / "one", resize=20, crop=16)
    two = decode_to_cache(varied, tmp_path / "two", resize=20, crop=16, workers=2, start_method=start_method)
    assert (one / "images.u8").read_bytes() == (two / "images.u8").read_bytes()
    assert (one / "meta.json").read_text() == (two / "meta.json").read_text()


def test_existing_cache_is_reused_or_replaced(varied, tmp_path):
    output = decode_to_cache(varied, tmp_path / "cache", resize=20, crop=16)
    before = (output / "images.u8").stat().st_mtime_ns
    os.utime(output / "images.u8", ns=(before - 10**9, before - 10**9))
    decode_to_cache(varied, output, resize=20, crop=16)
    assert (output / "images.u8").stat().st_mtime_ns == before - 10**9  # up to date: not decoded again
    decode_to_cache(varied, output, resize=24, crop=16)  # other preprocessing: replaced
    assert json.loads((output / "meta.json").read_text())["resize"] == 24
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("keep me")
    with pytest.raises(ValueError, match="precious exists and is not a usable image cache"):
        decode_to_cache(varied, tmp_path / "precious", resize=20, crop=16)
    assert (tmp_path / "precious" / "thesis.tex").exists()


def truncated_jpeg(path: Path) -> Path:
    make_image(path, (64, 48), seed=5, fmt="JPEG")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) * 2 // 3])
    return path


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("damage", ["text", "truncated"])
def test_bad_image_is_named_and_nothing_is_written(varied, tmp_path, workers, damage):
    bad = tmp_path / "src" / "broken.jpg"
    if damage == "text":
        bad.write_text("this is not a JPEG at all\n")
        pil_error = "cannot identify image file"
    else:
        truncated_jpeg(bad)
        pil_error = "image file is truncated"
    paths = varied.paths[:6] + (bad,) + varied.paths[6:]
    listing = ImageList(paths, np.zeros(len(paths), dtype=np.int64), ("x",))
    with pytest.raises(ValueError, match=f"cannot decode image .*broken.jpg: .*{pil_error}"):
        decode_to_cache(listing, tmp_path / "out" / "cache", resize=20, crop=16, workers=workers)
    assert_no_leftovers(tmp_path / "out" / "cache")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_jpeg_is_reported_even_if_someone_allows_truncation(tmp_path, monkeypatch):
    bad = truncated_jpeg(tmp_path / "cut.jpg")
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with Image.open(bad) as image:
        image.load()  # PIL alone would pad it silently
    with pytest.raises(ValueError, match="cut.jpg: OSError: image file is truncated"):
        decode_to_cache(ImageList((bad,), np.zeros(1), ("x",)), tmp_path / "cache", resize=20, crop=16)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored
    assert_no_leftovers(tmp_path / "cache")


# --------------------------------------------------------------------------- loading


def test_load_rejects_truncated_or_missing_cache_files(varied, tmp_path):
    output = decode_to_cache(varied, tmp_path / "cache", resize=20, crop=16)
    raw = (output / "images.u8").read_bytes()
    (output / "images.u8").write_bytes(raw[:-100])
    with pytest.raises(
        ValueError, match=r"cache/images.u8 holds 7580 bytes, meta.json says 10 x 3 x 16 x 16"
    ):
        load_image_cache(output)
    (output / "images.u8").unlink()
    with pytest.raises(ValueError, match=r"cache/images.u8 is missing"):
        load_image_cache(output)
    (output / "meta.json").write_text("{")
    with pytest.raises(ValueError, match=r"cache/meta.json"):
        load_image_cache(output)
    with pytest.raises(ValueError, match=r"nowhere/meta.json"):
        load_image_cache(tmp_path / "nowhere")


def test_image_dataset_from_caches(varied, tmp_path):
    test = decode_to_cache(varied, tmp_path / "test", resize=20, crop=16)
    held = ImageList(varied.paths[:4], varied.labels[:4], varied.class_names)
    heldout = decode_to_cache(held, tmp_path / "heldout", resize=20, crop=16)
    dataset = image_dataset({"test": test, "heldout": str(heldout)})
    assert (
        isinstance(dataset, Dataset) and dataset.num_classes == 3 and dataset.class_names == ("x", "y", "z")
    )
    assert dataset.images["test"].shape == (10, 3, 16, 16) and dataset.images["heldout"].shape == (
        4,
        3,
        16,
        16,
    )
    assert dataset.labels["heldout"].tolist() == varied.labels[:4].tolist()
    x = to_float(dataset.images["test"][:3])
    assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    torch.nn.Conv2d(3, 2, 3)(torch.from_numpy(x))  # usable as a model input
    again = image_dataset({"heldout": heldout, "test": test})
    assert again.checksum == dataset.checksum and len(dataset.checksum) == 64
    assert image_dataset({"test": heldout, "heldout": test}).checksum != dataset.checksum
    other = decode_to_cache(ImageList(held.paths, held.labels, ("x", "y", "w")), tmp_path / "other", 20, 16)
    with pytest.raises(ValueError, match="must share the class names"):
        image_dataset({"test": test, "heldout": other})


def test_dead_worker_fails_the_decode_instead_of_hanging(varied, tmp_path, monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    import unit_ablation.data.image_decode as images_module

    real = images_module.decode_image

    def dies_on_e(path, resize, crop):
        if Path(path).name == "e.bmp":
            os._exit(9)  # as if killed for memory
        return real(path, resize, crop)

    monkeypatch.setattr(images_module, "decode_image", dies_on_e)  # inherited by forked workers
    with pytest.raises(BrokenProcessPool):
        decode_to_cache(varied, tmp_path / "cache", resize=20, crop=16, workers=2, start_method="fork")
    assert_no_leftovers(tmp_path / "cache")


def test_image_list_checks_its_labels(tmp_path):
    with pytest.raises(ValueError, match="2 paths but 1 labels"):
        ImageList((tmp_path / "a.png", tmp_path / "b.png"), np.array([0]), ("x",))
    with pytest.raises(ValueError, match="labels must lie in 0..0"):
        ImageList((tmp_path / "a.png",), np.array([1]), ("x",))
    with pytest.raises(ValueError, match="must be integers"):
        ImageList((tmp_path / "a.png",), np.array([0.5]), ("x", "y"))
    with pytest.raises(ValueError, match="unique"):
        ImageList((tmp_path / "a.png",), np.array([0]), ("x", "x"))
