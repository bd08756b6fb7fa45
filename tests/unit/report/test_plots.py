"""Figures: every plot stage writes valid PNG and PDF files atomically, from small synthetic tables;
the figure functions (`report/`) draw them from the tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from unit_ablation.analysis.agreement import layer_agreement
from unit_ablation.analysis.correlation import UNIT_ATTRIBUTES, UNIT_DAMAGE, layer_correlations
from unit_ablation.analysis.network_stats import NetworkOptions
from unit_ablation.files.formats import stamped
from unit_ablation.files.writing import write_tsv
from unit_ablation.report import layer_figures, study_figures, style
from unit_ablation.spec.fashion_mnist import FASHION_MNIST_CLASSES
from unit_ablation.stages import (
    plot_agreement,
    plot_comparison,
    plot_cumulative,
    plot_layer,
    plot_network_effects,
    plot_overview,
    plot_sorted_units,
)
from unit_ablation.stages.network_statistics import network_statistics_to_file

CLASSES = FASHION_MNIST_CLASSES
MODELS = ("fmnist-alexnet-baseline-s0", "fmnist-alexnet-bn-s0")
VARIANTS = {"fmnist-alexnet-baseline-s0": "baseline", "fmnist-alexnet-bn-s0": "bn"}
SPECS = ("conv5", "conv5@rot0")
UNITS = 12
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def synthetic_tables(seed: int, nan: bool = False) -> dict[str, pd.DataFrame]:
    """Unit and class damage, unit and class attributes of one (model, layer spec), in the real layouts."""
    rng = np.random.default_rng(seed)
    n = np.full(len(CLASSES), 100)
    broken = rng.integers(0, 20, size=(UNITS, len(CLASSES)))
    fixed = rng.integers(0, 5, size=(UNITS, len(CLASSES)))
    drop = 100.0 * (broken - fixed) / n
    sorted_drop = -np.sort(-drop, axis=1)
    hurt = drop >= 12
    units = pd.DataFrame(
        {
            "unit": np.arange(UNITS),
            "overall_drop": drop.mean(axis=1),
            "balanced_drop": drop.mean(axis=1),
            "max_class_drop": drop.max(axis=1),
            "max_drop_class": [CLASSES[k] for k in drop.argmax(axis=1)],
            "topk_mean_drop": sorted_drop[:, :5].mean(axis=1),
            "n_classes_drop_ge_2": (drop >= 2).sum(axis=1),
            "n_classes_drop_ge_5": (drop >= 5).sum(axis=1),
            "n_classes_drop_ge_10": (drop >= 10).sum(axis=1),
            "n_classes_significantly_hurt": hurt.sum(axis=1),
            "plan": "closed-form",
        }
    )
    classes = pd.DataFrame(
        {
            "unit": np.repeat(np.arange(UNITS), len(CLASSES)),
            "class": np.tile(CLASSES, UNITS),
            "n": np.tile(n, UNITS),
            "correct_intact": 90,
            "broken": broken.ravel(),
            "fixed": fixed.ravel(),
            "drop": drop.ravel(),
            "mcnemar_p": np.where(hurt, 0.001, 0.5).ravel(),
            "q_value": np.where(hurt, 0.01, 0.6).ravel(),
            "hurt": hurt.ravel(),
        }
    )
    means = rng.gamma(2.0, size=(UNITS, len(CLASSES)))
    attributes = pd.DataFrame({"unit": np.arange(UNITS), "dead": False})
    for name in UNIT_ATTRIBUTES:
        attributes[name] = rng.random(UNITS)
    attributes["class_selectivity"] = 0.3 * units.max_class_drop / 20 + 0.1 * rng.random(UNITS)
    class_attributes = pd.DataFrame(
        {
            "unit": np.repeat(np.arange(UNITS), len(CLASSES)),
            "class": np.tile(CLASSES, UNITS),
            "class_index": np.tile(np.arange(len(CLASSES)), UNITS),
            "class_mean": means.ravel(),
            "class_selectivity": rng.normal(size=UNITS * len(CLASSES)),
            "class_correlation": rng.normal(size=UNITS * len(CLASSES)),
        }
    )
    if nan:
        units.loc[[0, 3], ["overall_drop", "max_class_drop", "topk_mean_drop"]] = np.nan
        units.loc[3, "max_drop_class"] = np.nan
        classes["hurt"] = classes["hurt"].astype(object)
        classes.loc[[0, 5, 17], ["drop", "hurt"]] = np.nan
        attributes.loc[[1, 2], list(UNIT_ATTRIBUTES)] = np.nan
        attributes["activation_max"] = np.nan
    return {
        "units": units,
        "classes": classes,
        "attributes": attributes,
        "class_attributes": class_attributes,
    }


def cumulative_table(model: str, spec: str, seed: int, nan: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for index, name in enumerate(CLASSES[:3]):
        for order, draws in (("top", 1), ("random", 3)):
            for draw in range(draws):
                for k in (0, 1, 2, 4, 8, 12):
                    fall = (6.0 if order == "top" else 1.0) * k + rng.random()
                    rows.append(
                        {
                            "model": model,
                            "layer_spec": spec,
                            "class": name,
                            "class_index": index,
                            "order": order,
                            "draw": draw,
                            "k": k,
                            "class_accuracy": max(0.0, 90 - fall) if k else 90.0,
                            "overall_accuracy": 88 - fall / 5 if k else 88.0,
                            "class_drop": fall if k else 0.0,
                            "overall_drop": fall / 5 if k else 0.0,
                        }
                    )
    table = pd.DataFrame(rows)
    if nan:
        table.loc[table.k == 12, ["class_accuracy", "overall_accuracy"]] = np.nan
    return table


@pytest.fixture
def study(tmp_path: Path):
    """Per (model, layer spec) table paths, per model correlation, agreement and cumulative tables."""
    return write_study(tmp_path / "tables", nan=False)


@pytest.fixture
def nan_study(tmp_path: Path):
    return write_study(tmp_path / "tables", nan=True)


def write_study(folder: Path, nan: bool) -> dict:
    paths: dict = {"units": {}, "classes": {}, "attributes": {}, "correlation": {}, "agreement": {}}
    paths |= {"class_attributes": {}, "statistics": {}, "cumulative": []}
    for m, model in enumerate(MODELS):
        correlations, agreements = [], []
        metadata = folder / model / "model.json"
        metadata.parent.mkdir(parents=True, exist_ok=True)
        metadata.write_text(
            json.dumps(stamped("model metadata", {"model": model, "variant": VARIANTS[model], "seed": 0}))
        )
        for s, spec in enumerate(SPECS):
            tables = synthetic_tables(10 * m + s, nan=nan and s == 1)
            for kind in ("units", "classes", "attributes", "class_attributes"):
                path = folder / model / f"{spec}.{kind}.tsv"
                write_tsv(tables[kind], path)
                paths[kind][model, spec] = path
            correlation = layer_correlations(
                spec,
                tables["attributes"],
                tables["units"],
                tables["class_attributes"],
                tables["classes"].fillna({"drop": 0.0}),
                resamples=30,
            )
            if nan and s == 1:
                correlation[["spearman_rho", "spearman_ci_low", "spearman_ci_high"]] = np.nan
            correlations.append(correlation)
            agreement = layer_agreement(
                spec, tables["class_attributes"], tables["classes"].fillna({"drop": 0.0}), 20, 0
            )
            if nan and s == 1:
                agreement.update(top1_share=math.nan, top1_chance=math.nan, top5_p=math.nan)
            agreements.append(agreement)
            path = folder / model / f"{spec}.cumulative.tsv"
            write_tsv(cumulative_table(model, spec, 10 * m + s, nan=nan and s == 1), path)
            paths["cumulative"].append(path)
            paths["statistics"][model, spec] = folder / model / f"{spec}.statistics.tsv"
            network_statistics_to_file(
                metadata,
                *(
                    paths[kind][model, spec]
                    for kind in ("attributes", "class_attributes", "units", "classes")
                ),
                paths["statistics"][model, spec],
                spec,
                NetworkOptions(resamples=20, permutations=5, folds=2),
            )
        paths["correlation"][model] = folder / model / "correlation.tsv"
        write_tsv(pd.concat(correlations, ignore_index=True), paths["correlation"][model])
        paths["agreement"][model] = folder / model / "agreement.tsv"
        write_tsv(pd.DataFrame(agreements), paths["agreement"][model])
    return paths


def figure_outputs(folder: Path, stem: str) -> list[Path]:
    return [folder / f"{stem}.png", folder / f"{stem}.pdf"]


def assert_written(outputs: list[Path], alone: bool = True) -> None:
    """Valid PNG / PDF files, nonzero, and (alone) nothing else, no temporary file, in their folder."""
    for path in outputs:
        data = path.read_bytes()
        assert len(data) > 100
        if path.suffix == ".png":
            assert data.startswith(PNG_SIGNATURE), path
        else:
            assert data.startswith(b"%PDF"), path
            assert b"%%EOF" in data[-32:]
    if alone:
        assert sorted(p.name for p in outputs[0].parent.iterdir()) == sorted(p.name for p in outputs)


@pytest.fixture
def captured(monkeypatch) -> list:
    """Figures passed to save_figure (saved as usual), to inspect their axes."""
    figures = []
    real = style.save_figure

    def capture(figure, outputs, dpi=120):
        figures.append(figure)
        real(figure, outputs, dpi)

    for module in (
        plot_overview,
        plot_sorted_units,
        plot_layer,
        plot_comparison,
        plot_agreement,
        plot_cumulative,
        plot_network_effects,
    ):
        monkeypatch.setattr(module, "save_figure", capture)
    return figures


PER_LAYER = ("attributes", "heatmap")
MULTI_ENTRY = ("overview", "sorted", "comparison", "agreement", "cumulative", "network_effects")


def draw_figures(
    paths: dict, folder: Path, pairs: list[tuple[str, str]], per_layer: bool = True
) -> dict[str, list[Path]]:
    """Run the plot stages taking several entries on the given (model, layer spec) pairs and
    (per_layer) the per-layer figures of the first pair; return the outputs of each figure."""
    names = MULTI_ENTRY + (PER_LAYER if per_layer else ())
    outputs = {name: figure_outputs(folder / name, name) for name in names}
    model, spec = pairs[0]
    plot_overview.plot_overview_to_files(
        pairs, [paths["units"][p] for p in pairs], outputs["overview"], dpi=50
    )
    specs = [s for m, s in pairs if m == model]
    plot_sorted_units.plot_sorted_units_to_files(
        specs, [paths["units"][model, s] for s in specs], outputs["sorted"], title=model, dpi=50
    )
    plot_comparison.plot_comparison_to_files(
        [(m, VARIANTS[m], s) for m, s in pairs],
        [paths["units"][p] for p in pairs],
        [paths["attributes"][p] for p in pairs],
        [paths["correlation"][m] for m, _ in pairs],
        outputs["comparison"],
        dpi=50,
    )
    agreement = [paths["agreement"][m] for m, _ in pairs]
    plot_agreement.plot_agreement_to_files(pairs, agreement, outputs["agreement"], dpi=50)
    cumulative = [p for p in paths["cumulative"] if (p.parent.name, p.name.split(".cumulative")[0]) in pairs]
    plot_cumulative.plot_cumulative_to_files(cumulative, outputs["cumulative"], dpi=50)
    statistics = [paths["statistics"][p] for p in pairs]
    plot_network_effects.plot_network_effects_to_files(statistics, outputs["network_effects"], dpi=50)
    if per_layer:
        plot_layer.plot_layer_to_files(
            paths["attributes"][model, spec],
            paths["units"][model, spec],
            paths["classes"][model, spec],
            paths["correlation"][model],
            spec,
            outputs["attributes"],
            outputs["heatmap"],
            title=f"{model} {spec}",
            heatmap_units=5,
            dpi=50,
        )
    return outputs


def all_pairs() -> list[tuple[str, str]]:
    return [(model, spec) for model in MODELS for spec in SPECS]


def test_multi_entry_figures_are_written_as_png_and_pdf(study, tmp_path):
    # the per-layer figures are written from clean tables in the attribute and heatmap tests below
    outputs = draw_figures(study, tmp_path / "figures", all_pairs(), per_layer=False)
    assert set(outputs) == set(MULTI_ENTRY)
    for files in outputs.values():
        assert_written(files)


def test_nan_values_do_not_crash(nan_study, tmp_path):
    pairs = [(MODELS[0], SPECS[1]), (MODELS[1], SPECS[1])]  # both with NaN drops, attributes, rho, shares
    outputs = draw_figures(nan_study, tmp_path / "figures", pairs)
    assert set(outputs) == set(MULTI_ENTRY + PER_LAYER)
    for files in outputs.values():
        assert_written(files)


def test_single_entry_inputs(study, tmp_path):
    outputs = draw_figures(study, tmp_path / "figures", [(MODELS[1], SPECS[0])], per_layer=False)
    for files in outputs.values():
        assert_written(files)


def test_save_figure_writes_every_suffix_and_closes(tmp_path):
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    outputs = [tmp_path / "a.png", tmp_path / "a.pdf", tmp_path / "a.svg"]
    style.save_figure(figure, outputs, dpi=40)
    assert outputs[2].read_text().lstrip().startswith("<?xml")
    assert_written(outputs[:2], alone=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pdf", "a.png", "a.svg"]
    assert not plt.fignum_exists(figure.number)
    first = outputs[1].read_bytes()
    figure, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    style.save_figure(figure, outputs[1:2], dpi=40)
    assert outputs[1].read_bytes() == first  # no creation date: same figure, same bytes


def test_save_figure_lays_out_once_and_draws_each_later_format_once(tmp_path):
    import matplotlib.pyplot as plt

    def drawn(layout: str) -> tuple[int, list[bytes]]:  # draws while saving PNG, PDF and SVG
        figure, axes = plt.subplots(2, 2, layout=layout)
        for ax in axes.flat:
            ax.scatter([0, 1, 2], [2, 0, 1])
            ax.set_title("a title")
        draws = []
        real = figure.draw
        figure.draw = lambda renderer: (draws.append(1), real(renderer))[1]
        outputs = [tmp_path / f"{layout}.png", tmp_path / f"{layout}.pdf", tmp_path / f"{layout}.svg"]
        style.save_figure(figure, outputs, dpi=40)
        return len(draws), [path.read_bytes() for path in outputs[1:]]

    # constrained layout: the first format draws to lay out, then renders; each later one renders
    # once (a layout engine left on the figure, even matplotlib's "none", costs a draw per format)
    draws, vector = drawn("constrained")
    assert draws == 4
    assert all(vector)


def test_frozen_ticks_give_every_figure_the_bytes_it_had(nan_study, tmp_path, monkeypatch):
    # the formats after the first draw fixed ticks: each figure's PDF must be what it was without
    cases = (("nan", nan_study),)  # NaN cells, drops, attributes and rho beside finite ones
    pairs = [(MODELS[0], SPECS[1]), (MODELS[1], SPECS[1])]
    frozen = {name: draw_figures(data, tmp_path / "frozen" / name, pairs) for name, data in cases}
    monkeypatch.setattr(style, "freeze_ticks", lambda figure: None)
    for name, data in cases:
        plain = draw_figures(data, tmp_path / "plain" / name, pairs)
        for figure, (_png, pdf) in plain.items():
            assert frozen[name][figure][1].read_bytes() == pdf.read_bytes(), f"{name} {figure}"


def test_frozen_ticks_keep_offsets_log_ticks_and_colorbars(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    def figure() -> plt.Figure:
        fig, axes = plt.subplots(1, 3, figsize=(7, 2.5), layout="constrained")
        axes[0].plot([1e5, 1e5 + 3], [2e-4, 3e-4])  # offset and scientific labels
        axes[1].loglog([1, 1e4], [3, 5e3])  # log axes: minor ticks and their labels
        image = axes[2].imshow(np.arange(12.0).reshape(3, 4) * 1e3)
        fig.colorbar(image, ax=axes[2], label="drop")
        return fig

    def vector(stem: str) -> list[bytes]:
        outputs = [tmp_path / f"{stem}.png", tmp_path / f"{stem}.pdf", tmp_path / f"{stem}.svg"]
        with plt.rc_context({"svg.hashsalt": "fixed"}):
            style.save_figure(figure(), outputs, dpi=40)
        return [path.read_bytes() for path in outputs[1:]]

    frozen = vector("frozen")
    monkeypatch.setattr(style, "freeze_ticks", lambda figure: None)
    assert frozen == vector("plain")


def test_save_figure_rejects_unknown_formats_and_writes_nothing(tmp_path):
    import matplotlib.pyplot as plt

    figure = plt.figure()
    with pytest.raises(ValueError, match="unsupported"):
        style.save_figure(figure, [tmp_path / "a.png", tmp_path / "a.docx"], dpi=40)
    with pytest.raises(ValueError, match="no output"):
        style.save_figure(plt.figure(), [], dpi=40)
    assert list(tmp_path.iterdir()) == []
    assert not plt.fignum_exists(figure.number)


def test_format_rho():
    assert style.format_rho(0.3149, 0.1234, 0.4811) == "rho = 0.31 [0.12, 0.48]"
    assert style.format_rho(-0.5, math.nan, 0.2) == "rho = -0.50"
    assert style.format_rho(math.nan, 0.1, 0.2) == "rho undefined"


def test_attribute_panel_titles_show_rho_and_ci_from_the_table(study):
    model, spec = MODELS[0], SPECS[1]
    correlation = pd.read_csv(study["correlation"][model], sep="\t")
    pick = (correlation.layer_spec == spec) & (correlation.level == "unit")
    selectivity = (
        pick & (correlation.attribute == "class_selectivity") & (correlation.damage == "overall_drop")
    )
    correlation.loc[selectivity, ["spearman_rho", "spearman_ci_low", "spearman_ci_high"]] = [0.31, 0.12, 0.48]
    undefined = pick & (correlation.attribute == "l1_in") & (correlation.damage == "max_class_drop")
    correlation.loc[undefined, "spearman_rho"] = np.nan
    # the other layer spec's rows must not be used
    correlation.loc[correlation.layer_spec != spec, ["spearman_rho"]] = 0.99
    figure = layer_figures.attribute_figure(
        pd.read_csv(study["attributes"][model, spec], sep="\t"),
        pd.read_csv(study["units"][model, spec], sep="\t"),
        correlation,
        spec,
        title="t",
    )
    axes = np.array(figure.axes).reshape(len(UNIT_DAMAGE), len(UNIT_ATTRIBUTES))
    titles = {
        (attribute, target): axes[row][col].get_title()
        for row, target in enumerate(UNIT_DAMAGE)
        for col, attribute in enumerate(UNIT_ATTRIBUTES)
    }
    assert titles["class_selectivity", "overall_drop"] == "rho = 0.31 [0.12, 0.48]"
    assert titles["l1_in", "max_class_drop"] == "rho undefined"
    rows = correlation[pick].set_index(["attribute", "damage"])
    row = rows.loc[("l1_out", "topk_mean_drop")]
    assert titles["l1_out", "topk_mean_drop"] == (
        f"rho = {row.spearman_rho:.2f} [{row.spearman_ci_low:.2f}, {row.spearman_ci_high:.2f}]"
    )
    assert not any("0.99" in title for title in titles.values())
    # the columns share their x axis: one attribute label per column, on the bottom row
    assert [ax.get_xlabel() for ax in axes[-1]] == [style.ATTRIBUTE_LABELS[a] for a in UNIT_ATTRIBUTES]
    assert not any(ax.get_xlabel() for ax in axes[:-1].ravel())
    assert axes[0][0].get_shared_x_axes().joined(axes[0][0], axes[-1][0])
    style.plt.close(figure)


def test_missing_correlation_rows_are_recomputed_without_ci():
    data = pd.DataFrame({"class_selectivity": [1.0, 2, 3, 4], "overall_drop": [1.0, 3, 2, 5]})
    empty = pd.DataFrame(columns=["layer_spec", "level", "attribute", "damage", "spearman_rho"])
    titles = layer_figures.attribute_panel_titles(
        empty, "conv5", data, ["class_selectivity"], ["overall_drop"]
    )
    assert titles == {("class_selectivity", "overall_drop"): "rho = 0.80"}


def test_sort_units_is_descending_with_nan_last():
    table = pd.DataFrame({"unit": [0, 1, 2, 3, 4], "max_class_drop": [1.0, np.nan, 5.0, -2.0, 5.0]})
    ordered = style.sort_units(table)
    assert ordered.unit.tolist() == [2, 4, 0, 3, 1]
    assert ordered["rank"].tolist() == [1, 2, 3, 4, 5]
    assert table.unit.tolist() == [0, 1, 2, 3, 4]  # input untouched


def test_sorted_units_bars_follow_the_sorted_order(study, tmp_path, captured):
    model = MODELS[0]
    plot_sorted_units.plot_sorted_units_to_files(
        [SPECS[0]], [study["units"][model, SPECS[0]]], figure_outputs(tmp_path, "s"), title="t", dpi=40
    )
    heights = [patch.get_height() for patch in captured[0].axes[0].patches]
    expected = pd.read_csv(study["units"][model, SPECS[0]], sep="\t").max_class_drop
    assert heights == pytest.approx(sorted(expected, reverse=True))


def test_spec_grid_rows_are_layers_and_columns_bases():
    layers, bases, positions = style.spec_grid(["conv5@rot1", "conv4", "conv5", "conv4@rot0", "conv5@rot0"])
    assert layers == ["conv5", "conv4"]
    assert bases == ["canonical", "rot0", "rot1"]
    assert positions["conv4@rot0"] == (1, 1) and positions["conv5@rot1"] == (0, 2)


def test_overview_panels_form_the_grid(study, tmp_path, captured):
    pairs = [(MODELS[0], "conv5@rot0"), (MODELS[1], "conv5"), (MODELS[0], "conv5")]
    units = [study["units"][p] for p in pairs]
    plot_overview.plot_overview_to_files(pairs, units, figure_outputs(tmp_path, "o"), dpi=40)
    titles = [ax.get_title() for ax in captured[0].axes if ax.get_visible()]
    assert titles == ["conv5 (canonical)", "conv5 (rot0)"]
    canonical = captured[0].axes[0]
    assert len(canonical.collections) == 2  # one scatter per model


def test_heatmap_has_class_names_and_stars_on_hurt_cells(study):
    model, spec = MODELS[0], SPECS[0]
    classes, units = study["classes"][model, spec], study["units"][model, spec]
    figure = layer_figures.heatmap_figure(
        pd.read_csv(classes, sep="\t"), pd.read_csv(units, sep="\t"), "t", 4
    )
    ax = figure.axes[0]
    assert [label.get_text() for label in ax.get_xticklabels()] == list(CLASSES)
    classes = pd.read_csv(study["classes"][model, spec], sep="\t")
    top = style.sort_units(pd.read_csv(study["units"][model, spec], sep="\t")).unit[:4]
    expected = int(classes[classes.unit.isin(top)].hurt.sum())
    assert len(ax.collections[0].get_offsets()) == expected > 0
    style.plt.close(figure)


def test_comparison_groups_pool_seeds_and_rotations():
    entries = [
        ("fmnist-alexnet-bn-s0", "bn", "conv5@rot0"),
        ("fmnist-alexnet-baseline-s0", "baseline", "conv5"),
        ("fmnist-alexnet-baseline-s1", "baseline", "conv5@rot1"),
        ("fmnist-alexnet-baseline-s1", "baseline", "conv5"),
    ]
    keys, labels = study_figures.comparison_groups(entries)
    assert keys == [
        ("fmnist-alexnet-bn", "rotated"),
        ("fmnist-alexnet-baseline", "canonical"),
        ("fmnist-alexnet-baseline", "rotated"),
    ]
    assert labels[keys[1]] == "baseline\ncanonical"


def test_cumulative_curves_average_draws():
    table = cumulative_table("m", "conv5", 0)
    curves = study_figures.cumulative_curves(table[table["class"] == CLASSES[0]])
    random = table[(table["class"] == CLASSES[0]) & (table.order == "random") & (table.k == 4)]
    row = curves["random"].set_index("k").loc[4]
    assert row.class_accuracy_mean == pytest.approx(random.class_accuracy.mean())
    assert row.class_accuracy_min == pytest.approx(random.class_accuracy.min())
    assert curves["top"].k.tolist() == [0, 1, 2, 4, 8, 12]
