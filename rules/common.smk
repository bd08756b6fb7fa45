# Helpers shared by the rules: model and layer lists, chunking, and each rule's config slice.
# Runs at parse time on the submit host and in every cluster job: keep it cheap (no torch).
import re
import shutil
import sys
from pathlib import Path

from snakemake.logging import logger

from unit_ablation.spec.architecture import ARCH_NAME, canonical_layer, layer_units
from unit_ablation.spec.model_classes import model_module
from unit_ablation.spec.model_names import trained_model_name
from unit_ablation.workflow.code_hash import module_closure, stage_code_hash
from unit_ablation.workflow.config_context import download_dirs, find_data_root
from unit_ablation.spec.cost import job_seconds, units_per_job
from unit_ablation.spec.fashion_mnist import IDX_NAMES, TEST_IMAGES
from unit_ablation.spec.layer_spec import (
    WILDCARD_PATTERN,
    parse_layer_spec,
    study_layer_specs,
)
from unit_ablation.spec.zoo_layers import TORCHVISION_ARCH
from unit_ablation.spec.zoo_layers import layer_units as zoo_layer_units

SOURCE = config["data"]["source"]
DATASET = (
    "results/data/fashion-mnist.npz"
    if SOURCE == "fashion-mnist"
    else "results/data/images.json"
)
PRETRAINED = config["pretrained"]
# Where `make data` downloads when Debian's package is not available (working dir or checkout).
DOWNLOAD_DIRS = download_dirs(CHECKOUT)


wildcard_constraints:
    model=r"[A-Za-z0-9-]+",
    layer=WILDCARD_PATTERN,
    chunk=r"[0-9]+-[0-9]+",


def data_root():
    """Folder with the IDX files: the configured one, or the first folder of the search path that has them."""
    root = find_data_root(config, DOWNLOAD_DIRS)
    if root is None:  # check_config in the Snakefile names this first
        raise WorkflowError(
            "data.root: 'auto' found Fashion-MNIST in none of "
            + ", ".join(dict.fromkeys(config["data"]["search_path"] + DOWNLOAD_DIRS))
        )
    return root


TRAINED = {
    trained_model_name(variant, seed): (variant, seed)
    for variant in config["variants"]
    for seed in config["seeds"]
}
# model name -> (variant, seed); a pretrained model is its own variant
MODELS = {**TRAINED, **{name: (name, 0) for name in PRETRAINED}}


def name_pattern(names):
    """A wildcard constraint matching exactly these names (nothing when there are none)."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


def model_layers(model):
    """The layers a model is analysed at, as the config names them."""
    if model in PRETRAINED:
        return PRETRAINED[model].get("layers") or config["analysis"]["layers"]
    return config["analysis"]["layers"]


def layer_specs(model):
    """A model's analysed layers: each in its own basis and in each rotated basis, then again
    with each of `analysis.compare_values` as the ablation value."""
    analysis = config["analysis"]
    return study_layer_specs(
        model_layers(model), analysis["rotation_seeds"], analysis["compare_values"]
    )


def spec_value(layer_spec):
    """The ablation value of a layer spec: its own (`conv5+mean`), else `ablation.value`."""
    return parse_layer_spec(layer_spec).value or config["ablation"]["value"]


def attributes_of(kind):
    """Input function: the attribute table of a spec's units (one per layer and basis, whatever
    the ablation value), `kind` "units" or "per_class"."""
    folder = "attributes" if kind == "units" else "attributes/per_class"

    def path(wildcards):
        spec = parse_layer_spec(wildcards.layer).attribute_spec
        return f"results/{wildcards.model}/{folder}/{spec}.tsv"

    return path


def unit_count(model, layer_spec):
    if model in PRETRAINED:
        arch, layer = PRETRAINED[model]["arch"], parse_layer_spec(layer_spec).layer
        if layer in PRETRAINED[model].get("units", {}):
            return int(PRETRAINED[model]["units"][layer])
        try:
            return zoo_layer_units(arch, layer)
        except (KeyError, ValueError) as error:
            raise WorkflowError(f"pretrained.{model}.layers: {error.args[0]}")
    try:
        layer = canonical_layer(parse_layer_spec(layer_spec).layer)
    except (KeyError, ValueError) as error:
        raise WorkflowError(f"analysis.layers: {error}")
    return layer_units(float(config["model"]["width"]))[layer]


def code(script):
    """Content hash of a rule's script and the package modules it imports (a library edit reruns
    exactly the stages that use the module; comments and layout do not count). A stage that loads
    checkpoints imports the model's class by name: its hash, per job, covers that model's module.
    """
    path, package = CHECKOUT / "scripts" / script, CHECKOUT / "src" / "unit_ablation"
    if package / "models" / "checkpoint.py" not in module_closure(path, package):
        return stage_code_hash(path, package)
    return lambda wildcards: stage_code_hash(
        path, package, [model_module(model_arch(wildcards.model))]
    )


def model_arch(model):
    """The architecture a model's checkpoint records (`spec.model_classes`)."""
    return TORCHVISION_ARCH if model in PRETRAINED else ARCH_NAME


def chunk_size(model, layer_spec):
    """Units per ablate job: the configured number, or (auto) as many as the cost model fits in
    ablation.job_minutes on a device sustaining ablation.gflops."""
    ablation = config["ablation"]
    if ablation["chunk_size"] != "auto":
        return int(ablation["chunk_size"])
    if model in PRETRAINED:
        raise WorkflowError(
            f"ablation.chunk_size: auto sizes jobs of the built-in model only; give {model} a number"
            " of units per job (`python -m unit_ablation.plan_cost` prints the FLOPs per plan)"
        )
    try:
        return units_per_job(
            target_seconds=60.0 * float(ablation["job_minutes"]),
            images=evaluation_images(),
            layer_spec=layer_spec,
            width=float(config["model"]["width"]),
            gflops=float(ablation["gflops"]),
            unit_count=unit_count(model, layer_spec),
            plan=ablation["plan"],
        )
    except ValueError as error:
        raise WorkflowError(f"ablation.chunk_size: auto: {error}")


def evaluation_images():
    return config["data"]["test_size"] or TEST_IMAGES


def log_ablation_estimates():
    """At the start of a run: the cost model's estimate of every layer's ablate jobs, and a warning
    when cluster jobs would be shorter than 10 minutes (schedulers handle many tiny jobs badly).
    """
    gflops = float(config["ablation"]["gflops"])
    shortest = None
    for model, spec in model_and_layer_pairs():
        size = chunk_size(model, spec)
        try:
            minutes = job_minutes_estimate(size, spec)
        except ValueError:  # a model or plan the cost model does not know
            return
        shortest = minutes if shortest is None else min(shortest, minutes)
        logger.info(
            f"ablate {model} {spec}: {len(chunks(model, spec))} job(s) of up to {size} units,"
            f" about {minutes:.2g} min each at {gflops:g} GFLOP/s (cost model, ablation.gflops)"
        )
    if workflow.non_local_exec and shortest is not None and shortest < 10:
        logger.warning(
            f"ablate jobs of about {shortest:.2g} min: on a cluster, aim for 10 min or more per job"
            " (ablation.chunk_size: auto with ablation.job_minutes: 10, or a larger chunk_size)"
        )


def job_minutes_estimate(units, layer_spec):
    seconds = job_seconds(
        units=units,
        images=evaluation_images(),
        layer_spec=layer_spec,
        width=float(config["model"]["width"]),
        gflops=float(config["ablation"]["gflops"]),
        plan=config["ablation"]["plan"],
    )
    return seconds / 60.0


def chunks(model, layer_spec):
    """Chunk names 'first-last' covering the layer's units, chunk_size units each."""
    size = chunk_size(model, layer_spec)
    count = unit_count(model, layer_spec)
    return [
        f"{start}-{min(start + size, count) - 1}" for start in range(0, count, size)
    ]


def chunk_units(chunk):
    first, last = (int(part) for part in chunk.split("-"))
    return list(range(first, last + 1))


LAYER_SPECS = {model: layer_specs(model) for model in MODELS}
for _model, _specs in LAYER_SPECS.items():
    for _spec in _specs:
        unit_count(_model, _spec)  # rejects unknown layers before any job runs


def cumulative_layers(model):
    """A model's analysed layers (canonical basis) that get cumulative ablation curves."""
    if model in PRETRAINED:
        return [
            layer
            for layer in config["cumulative"]["layers"]
            if layer in model_layers(model)
        ]
    analysed = {canonical_layer(layer): layer for layer in model_layers(model)}
    layers = []
    for layer in config["cumulative"]["layers"]:
        try:
            name = canonical_layer(layer)
        except KeyError as error:
            raise WorkflowError(f"cumulative.layers: {error}")
        if name not in analysed:
            raise WorkflowError(
                f"cumulative.layers: {layer!r} is not in analysis.layers {model_layers(model)}"
                " (cumulative ablation ranks units by their single-unit class drops)"
            )
        # named as analysis.layers names it (alias or module path)
        layers.append(analysed[name])
    return layers


CUMULATIVE_LAYERS = {model: cumulative_layers(model) for model in MODELS}
for _layer in config["cumulative"]["layers"]:
    if (
        not any(_layer in layers for layers in CUMULATIVE_LAYERS.values())
        and not TRAINED
    ):
        raise WorkflowError(
            f"cumulative.layers: {_layer!r} is not a layer of any pretrained model"
            f" ({ {name: model_layers(name) for name in PRETRAINED} })"
        )


def cumulative_tables():
    return [
        f"results/{model}/cumulative/{layer}.tsv"
        for model, layers in CUMULATIVE_LAYERS.items()
        for layer in layers
    ]


def concept_index():
    """The Broden index.csv when concept IoU is on (an input: a new index reruns the jobs), else []."""
    root = config["concepts"]["root"]
    if root is None:
        return []
    index = Path(root) / "index.csv"
    if not index.exists():
        raise WorkflowError(
            f"concepts.root: {root!r} has no index.csv (expected Network Dissection's Broden layout:"
            " index.csv, label.csv, images/)"
        )
    return str(index)


def concept_table(model, layer):
    """A layer's concept IoU table when concept IoU is on, else []."""
    if config["concepts"]["root"] is None:
        return []
    return f"results/{model}/concepts/{parse_layer_spec(layer).attribute_spec}.tsv"


def sorted_keys(value):
    """Plain data with every dict's keys sorted: the same config in another key order gives equal
    params (Snakemake compares params by repr, so order alone would rerun the job)."""
    if isinstance(value, dict):
        return {key: sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [sorted_keys(item) for item in value]
    return value


STAGE_ONE_CLAIM_KEYS = ("folds", "permutations")


def claim_criteria():
    """Config `claims` as plain floats: the criteria of the verdicts (stage two)."""
    return {
        key: float(value)
        for key, value in config["claims"].items()
        if key not in STAGE_ONE_CLAIM_KEYS
    }


def network_options():
    """What the per-network statistics (stage one) depend on, from `claims` and `correlation`."""
    claims = config["claims"]
    return {
        "sharp_class_drop": float(claims["sharp_class_drop"]),
        "alpha": float(claims["alpha"]),
        "min_active_fraction": float(config["correlation"]["min_active_fraction"]),
        "resamples": int(config["correlation"]["bootstrap"]),
        "permutations": int(claims["permutations"]),
        "folds": int(claims["folds"]),
        "seed": int(config["correlation"]["seed"]),
    }


def model_and_layer_pairs():
    return [(model, layer) for model, specs in LAYER_SPECS.items() for layer in specs]


def train_params(wildcards):
    """The training schedule of one model: global `train`, the variant's overrides, its seed."""
    variant, seed = MODELS[wildcards.model]
    variant_config = config["variants"][variant]
    schedule = {**config["train"], **variant_config.get("train", {})}
    return {
        "epochs": int(schedule["epochs"]),
        "batch_size": int(schedule["batch_size"]),
        "lr": float(schedule["lr"]),
        "weight_decay": float(schedule["weight_decay"]),
        "precision": str(schedule.get("precision", "fp32")),
        "warmup": float(schedule.get("warmup", 0.3)),
        "width": float(config["model"]["width"]),
        "dropout": float(variant_config["dropout"]),
        "batchnorm": bool(variant_config["batchnorm"]),
        "seed": int(seed),
    }


def mean_ablation_split(value=None):
    """The split whose unit means replace ablated units (mean ablation only; None for zero)."""
    if (value or config["ablation"]["value"]) == "mean":
        return config["analysis"]["attribute_split"]
    return None


def auto_or_number(value, kind):
    """None for "auto", else the number as a plain int or float (stable params)."""
    return None if value == "auto" else kind(value)


def optional_int(value):
    return None if value is None else int(value)


def study_figures():
    """Figures over the whole study (1, 5, 6, and 7 when cumulative ablation is on)."""
    names = [
        "network_effects",
        "overall_vs_max_class_drop",
        "variants_and_bases",
        "selective_vs_damaged_class",
    ]
    return names + (["cumulative_ablation"] if cumulative_tables() else [])


STUDY_FIGURES = study_figures()


def all_targets():
    targets = [
        "results/summary.tsv",
        "results/summary.md",
        "results/claims.tsv",
        "results/config.yaml",
    ]
    targets += expand(
        "results/figures/{name}.{suffix}", name=STUDY_FIGURES, suffix=["png", "pdf"]
    )
    for model in MODELS:
        targets += [
            f"results/{model}/correlation.tsv",
            f"results/{model}/agreement.tsv",
        ]
    targets += cumulative_tables()
    for model in MODELS:
        targets += expand(
            "results/figures/{model}.sorted_units.{suffix}",
            model=model,
            suffix=["png", "pdf"],
        )
    for model, layer in model_and_layer_pairs():
        targets += expand(
            "results/figures/{model}.{layer}.{figure}.{suffix}",
            model=model,
            layer=layer,
            figure=["attributes", "heatmap"],
            suffix=["png", "pdf"],
        )
    return targets


def ablation_gpus():
    """1 when ablation jobs will use a GPU (so a one-GPU box runs them one at a time), else 0."""
    device = config["ablation"]["device"]
    if device == "auto":
        return int(shutil.which("nvidia-smi") is not None)
    return int(device == "cuda")


def weights_file(model):
    """The local weights file of a pretrained model ([] for random init)."""
    weights = PRETRAINED[model]["weights"]
    if weights is None:
        return []
    if weights.startswith("torchvision:"):
        enum = weights.split(":", 1)[1]
        return f"resources/weights/{PRETRAINED[model]['arch']}.{enum}.pth"
    return weights


def image_set_inputs(split):
    """The labels and class-names files of a flat image set (files Snakemake can watch)."""
    image_set = image_sets()[split]
    return [image_set[key] for key in ("labels", "class_names") if key in image_set]


def image_sets():
    """Config image sets per split; the attribute split is the test set unless given."""
    images = config["data"]["images"]
    return {"test": images["test"], "heldout": images["heldout"] or images["test"]}


def image_cache(split):
    """The cache folder of a split: both splits share one when they are the same image set."""
    sets = image_sets()
    if split == "heldout" and sets["heldout"] == sets["test"]:
        split = "test"
    return f"results/data/images/{split}"
