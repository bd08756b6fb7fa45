"""The study a (checked) config describes, as the rules need it at parse time: the models, their
layer specs, unit counts and ablate chunks, the targets of `rule all`, and each rule's config slice.

`rules/common.smk` builds one `Study` after `config_check.check_config` has validated the config;
nothing here validates again: a config that passed the checks plans without errors. Imports no
torch and no Snakemake, reads no data: it runs on the submit host and in every cluster job.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from unit_ablation.spec.arch_spec import PYTHON, parse_arch, parse_python_ref
from unit_ablation.spec.architecture import ARCH_NAME, canonical_layer, layer_units
from unit_ablation.spec.cost import job_seconds, units_per_job
from unit_ablation.spec.fashion_mnist import IDX_NAMES, TEST_IMAGES
from unit_ablation.spec.layer_spec import parse_layer_spec, study_layer_specs
from unit_ablation.spec.model_classes import model_module
from unit_ablation.spec.model_names import trained_model_name
from unit_ablation.spec.zoo_layers import layer_units as zoo_layer_units
from unit_ablation.workflow.code_hash import module_closure, stage_code_hash
from unit_ablation.workflow.config_context import download_dirs, find_data_root

# `claims` keys that stage one (network statistics) reads; the rest are the verdicts' criteria
STAGE_ONE_CLAIM_KEYS = ("folds", "permutations")
# figures over the whole study (1, 5 and 6; 7 with cumulative ablation)
STUDY_FIGURES = (
    "network_effects",
    "overall_vs_max_class_drop",
    "variants_and_bases",
    "selective_vs_damaged_class",
)
SUFFIXES = ("png", "pdf")  # every figure: a PNG for the report, a PDF for papers
SHORT_JOB_MINUTES = 10  # schedulers handle many shorter jobs badly


class Study:
    """The models, layers, chunks and targets of the study `config` describes (`checkout`: the
    workflow's own folder, whose scripts/ and src/ the code hashes cover)."""

    def __init__(self, config: dict, checkout: str | Path):
        self.config = config
        self.checkout = Path(checkout)
        self.source: str = config["data"]["source"]
        self.dataset = (
            "results/data/fashion-mnist.npz" if self.source == "fashion-mnist" else "results/data/images.json"
        )
        self.pretrained: dict[str, dict] = config["pretrained"]
        # model name -> (variant, seed); a pretrained model is its own variant
        self.trained: dict[str, tuple[str, int]] = {
            trained_model_name(variant, seed): (variant, seed)
            for variant in config["variants"]
            for seed in config["seeds"]
        }
        self.models: dict[str, tuple[str, int]] = {
            **self.trained,
            **{name: (name, 0) for name in self.pretrained},
        }
        # Where `make data` downloads when Debian's package is not available (working dir or checkout)
        self.download_dirs = download_dirs(self.checkout)
        self.layer_specs: dict[str, list[str]] = {model: self._layer_specs(model) for model in self.models}
        self.cumulative_layers: dict[str, list[str]] = {
            model: self._cumulative_layers(model) for model in self.models
        }

    # ------------------------------------------------------------------ models and layers

    def model_layers(self, model: str) -> list[str]:
        """The layers a model is analysed at, as the config names them."""
        if model in self.pretrained:
            return self.pretrained[model].get("layers") or self.config["analysis"]["layers"]
        return self.config["analysis"]["layers"]

    def _layer_specs(self, model: str) -> list[str]:
        """A model's analysed layers: each in its own basis and in each rotated basis, then again
        with each of `analysis.compare_values` as the ablation value."""
        analysis = self.config["analysis"]
        return study_layer_specs(
            self.model_layers(model), analysis["rotation_seeds"], analysis["compare_values"]
        )

    def model_and_layer_spec_pairs(self) -> list[tuple[str, str]]:
        """(model, layer spec) of every analysed layer spec, models in config order."""
        return [(model, layer_spec) for model, specs in self.layer_specs.items() for layer_spec in specs]

    def model_arch(self, model: str) -> str:
        """The architecture a model's checkpoint records (`spec.model_classes`): the built-in model's,
        or the kind of a pretrained model's arch string (torchvision, timm or python)."""
        return parse_arch(self.pretrained[model]["arch"]).kind if model in self.pretrained else ARCH_NAME

    def model_files(self, model: str) -> list[str]:
        """The user's file a `python:` model is built from (its code hash covers it), else []."""
        if model not in self.pretrained:
            return []
        spec = parse_arch(self.pretrained[model]["arch"])
        return [spec.path] if spec.kind == PYTHON else []

    def layer_unit_counts(self, model: str) -> dict[str, int]:
        """The unit count every analysed layer of a pretrained model was planned with (checked
        against the built model by `prepare_model`)."""
        return {layer: self.unit_count(model, layer) for layer in self.model_layers(model)}

    def spec_value(self, layer_spec: str) -> str:
        """The ablation value of a layer spec: its own (`conv5+mean`), else `ablation.value`."""
        return parse_layer_spec(layer_spec).value or self.config["ablation"]["value"]

    def unit_count(self, model: str, layer_spec: str) -> int:
        """Units of the layer a spec names: `pretrained.<model>.units`, the torchvision layer
        table, or the built-in model at `model.width`."""
        layer = parse_layer_spec(layer_spec).layer
        if model in self.pretrained:
            settings = self.pretrained[model]
            if layer in (settings.get("units") or {}):
                return int(settings["units"][layer])
            return zoo_layer_units(parse_arch(settings["arch"]).name, layer)
        return layer_units(float(self.config["model"]["width"]))[canonical_layer(layer)]

    def _cumulative_layers(self, model: str) -> list[str]:
        """A model's analysed layers (canonical basis) that get cumulative ablation curves, named
        as its analysed layers name them (alias or module path)."""
        layers = self.config["cumulative"]["layers"]
        if model in self.pretrained:
            return [layer for layer in layers if layer in self.model_layers(model)]
        analysed = {canonical_layer(layer): layer for layer in self.model_layers(model)}
        return [analysed[canonical_layer(layer)] for layer in layers]

    def cumulative_tables(self) -> list[str]:
        """The cumulative ablation table of every model and cumulative layer."""
        return [
            f"results/{model}/cumulative/{layer}.tsv"
            for model, layers in self.cumulative_layers.items()
            for layer in layers
        ]

    def reference_variant(self) -> str:
        """The variant of the first model: the reference of the variant comparisons."""
        return next(iter(self.models.values()))[0]

    # ------------------------------------------------------------------ ablate chunks and cost

    def evaluation_images(self) -> int:
        """Images an ablate job evaluates (the cost model's count)."""
        return self.config["data"].get("test_size") or TEST_IMAGES

    def chunk_size(self, model: str, layer_spec: str) -> int:
        """Units per ablate job: the configured number, or (auto) as many as the cost model fits in
        ablation.job_minutes on a device sustaining ablation.gflops."""
        ablation = self.config["ablation"]
        if ablation["chunk_size"] != "auto":
            return int(ablation["chunk_size"])
        return units_per_job(
            target_seconds=60.0 * float(ablation["job_minutes"]),
            images=self.evaluation_images(),
            layer_spec=layer_spec,
            width=float(self.config["model"]["width"]),
            gflops=float(ablation["gflops"]),
            unit_count=self.unit_count(model, layer_spec),
            plan=ablation["plan"],
        )

    def chunks(self, model: str, layer_spec: str) -> list[str]:
        """Chunk names 'first-last' covering the layer's units, chunk_size units each."""
        size = self.chunk_size(model, layer_spec)
        count = self.unit_count(model, layer_spec)
        return [f"{start}-{min(start + size, count) - 1}" for start in range(0, count, size)]

    def job_minutes_estimate(self, units: int, layer_spec: str) -> float:
        """The cost model's minutes of an ablate job of `units` units (ValueError for a model or
        plan it does not know)."""
        seconds = job_seconds(
            units=units,
            images=self.evaluation_images(),
            layer_spec=layer_spec,
            width=float(self.config["model"]["width"]),
            gflops=float(self.config["ablation"]["gflops"]),
            plan=self.config["ablation"]["plan"],
        )
        return seconds / 60.0

    def ablation_estimates(self) -> tuple[list[str], str | None]:
        """The start-of-run log: a line per layer with the cost model's estimate of its ablate jobs,
        and a warning for cluster runs when jobs would be shorter than 10 minutes (else None).
        The cost model knows the built-in model only: nothing for pretrained models, and nothing
        more, without a warning, from the first plan it does not know."""
        gflops = float(self.config["ablation"]["gflops"])
        lines: list[str] = []
        shortest = None
        for model, layer_spec in self.model_and_layer_spec_pairs():
            if model not in self.trained:
                continue
            size = self.chunk_size(model, layer_spec)
            try:
                minutes = self.job_minutes_estimate(size, layer_spec)
            except ValueError:
                return lines, None
            shortest = minutes if shortest is None else min(shortest, minutes)
            lines.append(
                f"ablate {model} {layer_spec}: {len(self.chunks(model, layer_spec))} job(s) of up to"
                f" {size} units,"
                f" about {minutes:.2g} min each at {gflops:g} GFLOP/s (cost model, ablation.gflops)"
            )
        if shortest is None or shortest >= SHORT_JOB_MINUTES:
            return lines, None
        return lines, (
            f"ablate jobs of about {shortest:.2g} min: on a cluster, aim for 10 min or more per job"
            " (ablation.chunk_size: auto with ablation.job_minutes: 10, or a larger chunk_size)"
        )

    def ablation_gpus(self) -> int:
        """1 when ablation jobs will use a GPU (so a one-GPU box runs them one at a time), else 0."""
        device = self.config["ablation"]["device"]
        if device == "auto":
            return int(shutil.which("nvidia-smi") is not None)
        return int(device == "cuda")

    # ------------------------------------------------------------------ code hashes

    def code(self, script: str) -> str | Callable[[Any], str]:
        """Content hash of a rule's script and the package modules it imports (a library edit reruns
        exactly the stages that use the module; comments and layout do not count). A stage that
        loads checkpoints imports the model's class by name: its hash, per job (a function of the
        wildcards), covers that model's module."""
        path, package = self.checkout / "scripts" / script, self.checkout / "src" / "unit_ablation"
        if package / "models" / "checkpoint.py" not in module_closure(path, package):
            return stage_code_hash(path, package)

        # one hash per architecture (and python: file), not per job: a dry run of thousands of jobs
        # parses each module once
        def key(model: str) -> tuple[str, ...]:
            return (self.model_arch(model), *self.model_files(model))

        hashes = {
            code_key: stage_code_hash(path, package, [model_module(code_key[0])], code_key[1:])
            for code_key in {key(model) for model in self.models}
        }

        def per_model(wildcards: Any) -> str:
            return hashes[key(wildcards.model)]

        return per_model

    def decode_code(self) -> str | Callable[[Any], str]:
        """Code hash of `decode_images`: per split, with the file of a `python:` image set."""
        path, package = (
            self.checkout / "scripts" / "decode_images.py",
            self.checkout / "src" / "unit_ablation",
        )
        files = {split: self.image_set_files(split) for split in ("test", "heldout")}
        if not any(files.values()):
            return stage_code_hash(path, package)
        hashes = {
            split: stage_code_hash(path, package, (), split_files) for split, split_files in files.items()
        }

        def per_split(wildcards: Any) -> str:
            return hashes[wildcards.split]

        return per_split

    # ------------------------------------------------------------------ data, weights, concepts

    def idx_files(self) -> list[str]:
        """The Fashion-MNIST IDX files: in data.root, or in the first folder of the search path
        (then the download folders) that has them."""
        root = find_data_root(self.config, self.download_dirs)
        return [f"{root}/{name}" for name in IDX_NAMES]

    def image_sets(self) -> dict[str, dict]:
        """Config image sets per split; the attribute split is the test set unless given."""
        images = self.config["data"]["images"]
        return {"test": images["test"], "heldout": images["heldout"] or images["test"]}

    def image_set_files(self, split: str) -> list[str]:
        """The user's file of a `python:` image set (its decode job's code hash covers it), else []."""
        image_set = self.image_sets()[split]
        return [parse_python_ref(image_set["python"])[0]] if "python" in image_set else []

    def image_set_inputs(self, split: str) -> list[str]:
        """The labels and class-names files of a flat image set (files Snakemake can watch)."""
        image_set = self.image_sets()[split]
        return [image_set[key] for key in ("labels", "class_names") if key in image_set]

    def image_cache(self, split: str) -> str:
        """The cache folder of a split: both splits share one when they are the same image set."""
        sets = self.image_sets()
        if split == "heldout" and sets["heldout"] == sets["test"]:
            split = "test"
        return f"results/data/images/{split}"

    def weights_file(self, model: str) -> str | list:
        """The local weights file of a pretrained model ([] for random init)."""
        weights = self.pretrained[model]["weights"]
        if weights is None:
            return []
        if weights.startswith("torchvision:"):
            enum = weights.split(":", 1)[1]
            return f"resources/weights/{parse_arch(self.pretrained[model]['arch']).name}.{enum}.pth"
        return weights

    def concept_index(self) -> str | list:
        """The Broden index.csv when concept IoU is on (an input: a new index reruns the jobs), else []."""
        root = self.config["concepts"]["root"]
        return [] if root is None else str(Path(root) / "index.csv")

    def concept_table(self, model: str, layer_spec: str) -> str | list:
        """A layer's concept IoU table when concept IoU is on, else []."""
        if self.config["concepts"]["root"] is None:
            return []
        return f"results/{model}/concepts/{parse_layer_spec(layer_spec).attribute_spec}.tsv"

    # ------------------------------------------------------------------ rules' config slices

    def train_params(self, model: str) -> dict[str, Any]:
        """The training schedule of a trained model: global `train`, the variant's overrides, its seed."""
        variant, seed = self.models[model]
        variant_config = self.config["variants"][variant]
        schedule = {**self.config["train"], **variant_config.get("train", {})}
        return {
            "epochs": int(schedule["epochs"]),
            "batch_size": int(schedule["batch_size"]),
            "lr": float(schedule["lr"]),
            "weight_decay": float(schedule["weight_decay"]),
            "precision": str(schedule.get("precision", "fp32")),
            "warmup": float(schedule.get("warmup", 0.3)),
            "width": float(self.config["model"]["width"]),
            "dropout": float(variant_config["dropout"]),
            "batchnorm": bool(variant_config["batchnorm"]),
            "seed": int(seed),
        }

    def mean_ablation_split(self, value: str | None = None) -> str | None:
        """The split whose unit means replace ablated units when the ablation value (`value`, else
        `ablation.value`) is mean; None for zero."""
        if (value or self.config["ablation"]["value"]) == "mean":
            return self.config["analysis"]["attribute_split"]
        return None

    def claim_criteria(self) -> dict[str, float]:
        """Config `claims` as plain floats: the criteria of the verdicts (stage two)."""
        return {
            key: float(value)
            for key, value in self.config["claims"].items()
            if key not in STAGE_ONE_CLAIM_KEYS
        }

    def network_options(self) -> dict[str, Any]:
        """What the per-network statistics (stage one) depend on, from `claims` and `correlation`."""
        claims, correlation = self.config["claims"], self.config["correlation"]
        return {
            "sharp_class_drop": float(claims["sharp_class_drop"]),
            "alpha": float(claims["alpha"]),
            "min_active_fraction": float(correlation["min_active_fraction"]),
            "resamples": int(correlation["resamples"]),
            "permutations": int(claims["permutations"]),
            "folds": int(claims["folds"]),
            "seed": int(correlation["seed"]),
        }

    # ------------------------------------------------------------------ targets

    def figures(self) -> list[str]:
        """Figures over the whole study (1, 5, 6, and 7 when cumulative ablation is on)."""
        return [*STUDY_FIGURES, *(["cumulative_ablation"] if self.cumulative_tables() else [])]

    def all_targets(self) -> list[str]:
        """Every final file of the study: summaries, claims, the recorded config, the figures and
        each model's correlation, agreement and cumulative tables."""
        targets = ["results/summary.tsv", "results/summary.md", "results/claims.tsv", "results/config.yaml"]
        targets += figure_files("results/figures/{}", self.figures())
        for model in self.models:
            targets += [f"results/{model}/correlation.tsv", f"results/{model}/agreement.tsv"]
        targets += self.cumulative_tables()
        for model in self.models:
            targets += figure_files(f"results/figures/{model}.{{}}", ["sorted_units"])
        for model, layer_spec in self.model_and_layer_spec_pairs():
            targets += figure_files(f"results/figures/{model}.{layer_spec}.{{}}", ["attributes", "heatmap"])
        return targets


def figure_files(pattern: str, names: Iterable[str]) -> list[str]:
    """The PNG and PDF file of each figure name (`pattern` has one `{}` for the name)."""
    return [f"{pattern.format(name)}.{suffix}" for name in names for suffix in SUFFIXES]


def attributes_of(kind: str) -> Callable[[Any], str]:
    """Input function: the attribute table of a spec's units (one per layer and basis, whatever
    the ablation value), `kind` "units" or "per_class"."""
    folder = "attributes" if kind == "units" else "attributes/per_class"

    def path(wildcards: Any) -> str:
        attribute_spec = parse_layer_spec(wildcards.layer_spec).attribute_spec
        return f"results/{wildcards.model}/{folder}/{attribute_spec}.tsv"

    return path


def name_pattern(names: Iterable[str]) -> str:
    """A wildcard constraint matching exactly these names (nothing when there are none)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


def chunk_units(chunk: str) -> list[int]:
    """The units of a chunk name 'first-last'."""
    first, last = (int(part) for part in chunk.split("-"))
    return list(range(first, last + 1))


def sorted_keys(value: Any) -> Any:
    """Plain data with every dict's keys sorted: the same config in another key order gives equal
    params (Snakemake compares params by repr, so order alone would rerun the job)."""
    if isinstance(value, dict):
        return {key: sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [sorted_keys(item) for item in value]
    return value


def auto_or_number(value: Any, kind: type) -> int | float | None:
    """None for "auto", else the number as a plain int or float (stable params)."""
    return None if value == "auto" else kind(value)


def optional_int(value: Any) -> int | None:
    """None stays None, else an int."""
    return None if value is None else int(value)
