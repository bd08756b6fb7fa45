"""Network Dissection concept IoU: Broden reader, thresholds, IoU by hand, end to end on a tiny Broden."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from unit_ablation.analysis.concepts import (
    IoUAccumulator,
    activation_thresholds,
    concept_iou,
    concept_tables,
    prepare_images,
)
from unit_ablation.data.broden import ImageConcepts, load_concepts, load_image, primary_category, read_broden
from unit_ablation.models.checkpoint import save_checkpoint
from unit_ablation.models.fashion_alexnet import build_model
from unit_ablation.stages.concept_iou import concept_iou_to_file

from support.broden_fixture import IMAGE_SIZE, LABELS, broden_label_maps, write_broden


@pytest.fixture
def broden(tmp_path: Path) -> Path:
    return write_broden(tmp_path / "broden")


# --- reader ----------------------------------------------------------------------------------


def test_reader_reads_rows_categories_and_labels(broden):
    index = read_broden(broden)
    assert index.categories == ("object", "scene")
    assert len(index.rows) == 6
    assert index.label_names == {number: name for number, (name, _) in LABELS.items()}
    primary = {1: "object", 2: "object", 300: "object", 4: "scene", 5: "scene", 6: "part"}
    assert index.label_categories == primary
    row0, row2, row3, row4 = (index.rows[i] for i in (0, 2, 3, 4))
    assert row0.image == "img0.png" and row0.split == "train" and row0.label_size == (8, 8)
    assert row0.pixel_labels == {"object": ("objects/0.png",)} and row0.image_labels == {"scene": (4,)}
    assert row2.annotated == {"scene"}  # empty object cell: not annotated
    assert row3.annotated == {"object"}
    assert row4.pixel_labels["object"] == ("objects/4.png", "objects/4b.png")
    assert row4.image_labels["scene"] == (5, 4)
    assert index.rows[5].split == "val"


def test_reader_decodes_label_images_as_r_plus_256_g(broden):
    index = read_broden(broden)
    maps = broden_label_maps()
    concepts = load_concepts(index, index.rows[4])
    assert concepts.size == (8, 8) and concepts.annotated == {"object", "scene"}
    decoded = concepts.pixel_labels["object"]
    assert [m.tolist() for m in decoded] == [maps["objects/4.png"].tolist(), maps["objects/4b.png"].tolist()]
    assert (decoded[0] == 300).sum() == 3 * (3 + 4 % 2)  # 300 survives the round trip through R and G
    # a pixel carrying two object labels is in both masks
    assert concepts.mask("object", 1)[0, 0] and concepts.mask("object", 2)[0, 0]
    assert concepts.mask("scene", 4).all() and not concepts.mask("scene", 1).any()
    assert load_concepts(index, index.rows[2]).pixel_labels == {}


def test_load_image_gives_uint8_rgb(broden):
    index = read_broden(broden)
    image = load_image(index, index.rows[1])
    assert image.dtype == np.uint8 and image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert np.array_equal(image, np.asarray(Image.open(broden / "images" / "img1.png")))


def test_primary_category_is_the_most_frequent():
    assert primary_category("object(12);part(3)") == "object"
    assert primary_category("part(4);object(1)") == "part"
    assert primary_category("scene") == "scene"
    assert primary_category("") == ""


def test_missing_files_are_named(broden, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_broden(tmp_path / "nowhere")
    (broden / "label.csv").unlink()
    with pytest.raises(FileNotFoundError, match="label.csv"):
        read_broden(broden)
    (broden / "index.csv").unlink()
    with pytest.raises(FileNotFoundError, match="index.csv"):
        read_broden(broden)


def test_missing_or_broken_image_is_named(broden):
    index = read_broden(broden)
    (broden / "images" / "img3.png").unlink()
    with pytest.raises(FileNotFoundError, match="img3.png"):
        load_image(index, index.rows[3])
    (broden / "images" / "img1.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="img1.png"):
        load_image(index, index.rows[1])
    (broden / "images" / "objects" / "5.png").unlink()
    with pytest.raises(FileNotFoundError, match="5.png"):
        load_concepts(index, index.rows[5])


def test_index_without_size_columns_is_rejected(broden):
    (broden / "index.csv").write_text("image,object\nimg0.png,objects/0.png\n")
    with pytest.raises(ValueError, match="index.csv.*missing columns"):
        read_broden(broden)


# --- model input -----------------------------------------------------------------------------


def test_prepare_images_resizes_and_takes_luma():
    red = np.zeros((40, 30, 3), dtype=np.uint8)
    red[..., 0] = 255
    gray = prepare_images([red, np.full((10, 10, 3), 255, dtype=np.uint8)], channels=1, size=28)
    assert gray.shape == (2, 1, 28, 28) and gray.dtype == torch.float32
    torch.testing.assert_close(gray[0], torch.full((1, 28, 28), 0.299))
    torch.testing.assert_close(gray[1], torch.ones(1, 28, 28))
    colour = prepare_images([red], channels=3, size=7)
    assert colour.shape == (1, 3, 7, 7)
    torch.testing.assert_close(colour[0, 0], torch.ones(7, 7))
    assert colour[0, 1:].abs().max() == 0
    # antialiased downsampling of a fine checkerboard averages it (away from the border)
    board = np.zeros((56, 56, 3), dtype=np.uint8)
    board[::2, ::2] = board[1::2, 1::2] = 255
    torch.testing.assert_close(prepare_images([board])[0, 0, 1:-1, 1:-1], torch.full((26, 26), 0.5))


# --- thresholds and IoU ----------------------------------------------------------------------


def test_threshold_leaves_the_top_quantile_above():
    generator = torch.Generator().manual_seed(0)
    activations = torch.randn(40, 3, 10, 10, generator=generator)  # 4000 values per unit
    activations[:, 2] = 0.0  # a dead unit
    thresholds = activation_thresholds(activations, 0.005)
    per_unit = activations.transpose(0, 1).reshape(3, -1)
    above = (per_unit > torch.from_numpy(thresholds)[:, None]).sum(1)
    # numpy's linear quantile at 0.995 of 4000 values lies between the 21st and 20th largest
    assert above.tolist() == [20, 20, 0]
    expected = np.quantile(per_unit[:2].double().numpy(), 0.995, axis=1)
    np.testing.assert_allclose(thresholds[:2], expected, rtol=1e-6)
    assert thresholds[2] == 0.0
    top = per_unit[0].sort().values
    assert top[-21] <= thresholds[0] < top[-20]
    assert (activation_thresholds(activations, 0.05) <= thresholds).all()


def hand_concepts() -> list[ImageConcepts]:
    """Three 4 x 4 images: A (object + scene 4), B (scene 5 only), C (object only)."""
    a_objects = np.zeros((4, 4), dtype=np.int64)
    a_objects[:2] = 1  # sky: top half, 8 pixels
    a_objects[2:, :2] = 300  # wall: 4 pixels
    c_objects = np.zeros((4, 4), dtype=np.int64)
    c_objects[:, 0] = 1  # sky: left column, 4 pixels
    return [
        ImageConcepts((4, 4), {"object": [a_objects]}, {"scene": (4,)}),
        ImageConcepts((4, 4), {}, {"scene": (5,)}),
        ImageConcepts((4, 4), {"object": [c_objects]}, {}),
    ]


HAND_LABELS = [1, 300, 4, 5]
HAND_CATEGORIES = ["object", "object", "scene", "scene"]


def hand_activations() -> torch.Tensor:
    """Activations at label resolution (3 images x 3 units x 4 x 4), 1 = firing."""
    act = torch.zeros(3, 3, 4, 4)
    act[0, 0, :2] = 1  # unit 0: exactly sky in A ...
    act[2, 0, :, 0] = 1  # ... and in C
    act[1, 0, 0, :3] = 1  # and 3 pixels in B, whose objects are not annotated
    act[0, 1, 0] = 1  # unit 1: the top row of A, half of its sky
    act[1, 2, 3, 3] = 1  # unit 2: one pixel of B only
    return act


def test_iou_matches_hand_worked_values():
    accumulator = IoUAccumulator(np.full(3, 0.5), HAND_LABELS, HAND_CATEGORIES)
    act, concepts = hand_activations(), hand_concepts()
    accumulator.update(act[:2], concepts[:2])  # in two batches: sums over the data set
    accumulator.update(act[2:], concepts[2:])
    iou = accumulator.result()
    expected = np.array(
        [
            # sky    wall     beach(4)  kitchen(5)
            [1.0, 0 / 16, 8 / 19, 3 / 24],  # B's 3 pixels count for scenes only
            [4 / 12, 0 / 8, 4 / 16, 0 / 20],
            [0.0, 0.0, 0 / 17, 1 / 16],  # no object pixels: object unions are the concepts alone
        ]
    )
    np.testing.assert_allclose(iou, expected)
    np.testing.assert_array_equal(accumulator.union.numpy()[0], [12, 16, 19, 24])
    np.testing.assert_array_equal(accumulator.intersection.numpy()[1], [4, 0, 4, 0])


def test_unit_tables_take_the_best_concept_and_flag_detectors():
    accumulator = IoUAccumulator(np.full(3, 0.5), HAND_LABELS, HAND_CATEGORIES)
    accumulator.update(hand_activations(), hand_concepts())
    names = ["sky", "wall", "beach", "kitchen"]
    units, pairs = concept_tables(accumulator.result(), accumulator.union.numpy(), names, HAND_CATEGORIES)
    assert list(units.columns) == ["unit", "concept", "category", "iou", "detector"]
    assert units["concept"].tolist() == ["sky", "sky", "kitchen"]
    assert units["category"].tolist() == ["object", "object", "scene"]
    np.testing.assert_allclose(units["iou"], [1.0, 1 / 3, 1 / 16])
    assert units["detector"].tolist() == [True, True, True]  # 1/16 = 0.0625 > 0.04
    strict, _ = concept_tables(accumulator.result(), accumulator.union.numpy(), names, HAND_CATEGORIES, 0.3)
    assert strict["detector"].tolist() == [True, True, False]
    assert list(pairs.columns) == ["unit", "concept", "category", "iou"]
    assert len(pairs) == 12  # every pair has a nonzero union here
    assert pairs.query("unit == 0 and concept == 'beach'")["iou"].item() == pytest.approx(8 / 19)


def test_detector_threshold_is_strict_and_empty_units_get_no_concept():
    iou = np.array([[0.04, 0.01], [0.0, 0.0], [0.3, 0.5]])
    union = np.array([[5, 5], [0, 0], [5, 0]])
    units, pairs = concept_tables(iou, union, ["a", "b"], ["object", "scene"])
    assert units["detector"].tolist() == [False, False, True]
    assert units["concept"].tolist() == ["a", "", "a"]  # unit 2: b has no union, so it does not compete
    assert units["iou"].tolist() == [0.04, 0.0, 0.3]
    assert pairs[["unit", "concept"]].values.tolist() == [[0, "a"], [0, "b"], [2, "a"]]


def test_low_resolution_activations_are_upsampled_bilinearly():
    labels = np.zeros((4, 4), dtype=np.int64)
    labels[:2, :2] = 1
    labels[0, 2] = 1  # sky: 5 pixels
    image = ImageConcepts((4, 4), {"object": [labels]}, {})
    act = torch.zeros(1, 2, 2, 2)
    act[0, 0, 0, 0] = 1.0  # upsampled: 1, .75 / .75, .5625 in the top-left 2 x 2, below .5 elsewhere
    act[0, 1] = torch.tensor([[0.2, 0.9], [0.4, 0.1]])
    accumulator = IoUAccumulator(np.array([0.5, 0.3]), [1], ["object"])
    accumulator.update(act, [image])
    iou = accumulator.result()
    assert iou[0, 0] == pytest.approx(4 / 5)  # hand-worked: the top-left 2 x 2 fires
    fired = F.interpolate(act, size=(4, 4), mode="bilinear", align_corners=False)[0, 1].double() > 0.3
    sky = torch.from_numpy(labels == 1)
    assert iou[1, 0] == pytest.approx(((fired & sky).sum() / (fired | sky).sum()).item())
    assert 0 < iou[1, 0] < 1


def test_unknown_labels_and_categories_are_ignored():
    labels = np.array([[1, 7], [2, 999]])  # 7 and 999 are not concepts; 2 is a part, not an object
    image = ImageConcepts((2, 2), {"object": [labels], "material": [labels]}, {"scene": (9,)})
    accumulator = IoUAccumulator(np.array([0.5]), [1, 2], ["object", "part"])
    accumulator.update(torch.ones(1, 1, 2, 2), [image])
    assert accumulator.intersection.tolist() == [[1, 0]]
    assert accumulator.union.tolist() == [[4, 0]]  # no part annotation: concept 2 never counts


# --- end to end ------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["conv5", "conv5@rot0"])
def test_concept_iou_end_to_end(broden, spec):
    torch.manual_seed(0)
    model = build_model(width=0.25).eval()
    units, pairs = concept_iou(model, spec, broden, batch_size=4, quantile=0.05)
    assert units["unit"].tolist() == list(range(model.unit_count("conv5")))
    assert units["iou"].between(0, 1).all() and (units["iou"] > 0).any()
    names = {name for name, _ in LABELS.values()}
    assert set(units["concept"]) <= names
    assert units["detector"].tolist() == (units["iou"] > 0.04).tolist()
    assert pairs["iou"].between(0, 1).all() and set(pairs["concept"]) <= names
    assert "leg" not in set(pairs["concept"])  # a part, and the data set has no part annotations
    best = pairs.groupby("unit")["iou"].max()
    np.testing.assert_allclose(units.set_index("unit")["iou"], best.reindex(units["unit"]).fillna(0.0))


def test_rotated_basis_changes_the_units(broden):
    torch.manual_seed(0)
    model = build_model(width=0.25).eval()
    canonical, _ = concept_iou(model, "conv5", broden, batch_size=6, quantile=0.05)
    rotated, _ = concept_iou(model, "conv5@rot0", broden, batch_size=6, quantile=0.05)
    assert len(canonical) == len(rotated)
    assert not np.allclose(canonical["iou"], rotated["iou"])


def test_rotated_concept_iou_follows_the_orientation_not_the_drawn_sign(broden, monkeypatch):
    from unit_ablation.analysis import concepts
    from unit_ablation.engine import basis

    torch.manual_seed(0)
    model = build_model(width=0.25).eval()
    units = model.unit_count("conv5")
    signs = np.where(np.arange(units) % 3 == 0, -1, 1)
    drawn, _ = concept_iou(model, "conv5@rot0", broden, batch_size=6, quantile=0.05)
    original = basis.basis_matrix

    def flipped(count, seed):
        matrix = original(count, seed)
        return None if matrix is None else matrix * signs[None, :]

    monkeypatch.setattr(concepts, "basis_matrix", flipped)
    # Q with flipped columns, oriented back by the same signs: the same detectors
    oriented, _ = concept_iou(model, "conv5@rot0", broden, batch_size=6, quantile=0.05, orientation=signs)
    pd.testing.assert_frame_equal(oriented, drawn)
    # the control: without the orientation the flipped directions find other concepts
    unoriented, _ = concept_iou(model, "conv5@rot0", broden, batch_size=6, quantile=0.05)
    assert not np.allclose(unoriented["iou"], drawn["iou"])


def test_concept_iou_to_file_writes_tsvs(broden, tmp_path):
    torch.manual_seed(1)
    model = build_model(width=0.25).eval()
    save_checkpoint(model, tmp_path / "model.pt", {})
    concept_iou_to_file(
        tmp_path / "model.pt", "conv4", broden, tmp_path / "out" / "units.tsv", tmp_path / "out" / "pairs.tsv"
    )
    units = pd.read_csv(tmp_path / "out" / "units.tsv", sep="\t", keep_default_na=False)
    pairs = pd.read_csv(tmp_path / "out" / "pairs.tsv", sep="\t", keep_default_na=False)
    assert list(units.columns) == ["unit", "concept", "category", "iou", "detector"]
    assert list(pairs.columns) == ["unit", "concept", "category", "iou"]
    assert len(units) == model.unit_count("conv4")
    expected, _ = concept_iou(model, "conv4", broden)
    np.testing.assert_allclose(units["iou"], expected["iou"], rtol=1e-5)


def test_a_unit_at_its_threshold_does_not_fire():
    accumulator = IoUAccumulator(np.array([1.0, 1.0, 0.0]), HAND_LABELS, HAND_CATEGORIES)
    accumulator.update(hand_activations(), hand_concepts())
    assert accumulator.intersection[:2].sum() == 0  # activations of exactly 1: not above 1
    assert accumulator.unit_area[:2].sum() == 0
    # unit 2 at threshold 0: its zeros do not fire, its single 1 (a kitchen pixel) does
    assert accumulator.intersection[2].tolist() == [0, 0, 0, 1]
    assert accumulator.union[2].tolist() == [12, 4, 17, 16]
