"""`describe_layers`: every layer of a model that can be ablated, with its unit count, output
shape, the plan the engine would use and that plan's cost per unit and image."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from unit_ablation.api.inputs import evaluated, model_device
from unit_ablation.engine.graph_split import TraceFailed, module_path, run_trunk, split_model
from unit_ablation.engine.hooked import HOOKED_PLAN
from unit_ablation.engine.plan_base import forward_flops
from unit_ablation.engine.plans import choose_plan
from unit_ablation.spec.architecture import CONV_LAYERS
from unit_ablation.spec.zoo_layers import layer_aliases

COLUMNS = ("layer", "alias", "module", "units", "output_shape", "plan", "flops_per_unit_image", "note")


@dataclass
class _Output:
    shape: tuple[int, ...]
    calls: int


def _outputs(model: nn.Module, x: torch.Tensor) -> dict[str, _Output]:
    """Output shape (one image) and number of calls of every submodule whose output is a tensor."""
    seen: dict[str, _Output] = {}

    def record(name: str):
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            if isinstance(output, torch.Tensor):
                known = seen.get(name)
                seen[name] = _Output(tuple(output.shape[1:]), 1 if known is None else known.calls + 1)

        return hook

    handles = [module.register_forward_hook(record(name)) for name, module in model.named_modules() if name]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def _aliases(model: nn.Module) -> dict[str, str]:
    """Module path -> alias, for models that resolve aliases (`layer_module`): the built-in model's
    conv1 ... conv5 and the torchvision architectures' tables."""
    if not hasattr(model, "layer_module"):
        return {}
    config = getattr(model, "config", {})
    candidates = [*CONV_LAYERS, *layer_aliases(str(config.get("name", "")))]
    found = {}
    for alias in candidates:
        try:
            found.setdefault(module_path(model, alias), alias)
        except (KeyError, AttributeError):
            continue
    return found


def _plan_and_cost(model: nn.Module, path: str, x: torch.Tensor, full: float) -> tuple[str, float, str]:
    try:
        split = split_model(model, path)
    except TraceFailed as error:
        return HOOKED_PLAN, full, str(error)
    activation, side = run_trunk(split, x)
    plan = choose_plan(split, rotated=False)
    return plan.name, plan.flops(activation, side), ""


@torch.no_grad()
def describe_layers(model: nn.Module, example_input: torch.Tensor) -> pd.DataFrame:
    """One row per module whose output (a tensor with a channel dimension) can be ablated.

    Columns: `layer` (the module path), `alias` (where the model has one), `module` (its class),
    `units` (channels), `output_shape` (one image), `plan` (the engine's plan in the layer's own
    basis: closed-form, delta, head-replay, or hooks where torch.fx cannot split the model),
    `flops_per_unit_image` (Conv2d/Linear FLOPs per ablated unit and image: the plan's, or a full
    forward for hooks) and `note` (why a layer cannot be ablated, or why the fallback applies).
    `example_input` is a batch (one image is enough) as the model reads it.

    Example:
        >>> import torch, unit_ablation as ua
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
        >>> ua.describe_layers(model, torch.rand(1, 1, 8, 8))[["layer", "units", "plan"]]
          layer  units         plan
        0     0      4        delta
        1     1      4        delta
        2     2    144        delta
        3     3      3  head-replay
    """
    threads = torch.get_num_threads()
    # one image through small ops: more threads only add synchronisation (12x slower on 2 busy cores)
    torch.set_num_threads(1)
    try:
        return _describe(model, example_input)
    finally:
        torch.set_num_threads(threads)


def _describe(model: nn.Module, example_input: torch.Tensor) -> pd.DataFrame:
    with evaluated(model, model_device(model)):
        x = example_input[:1].to(model_device(model))
        outputs = _outputs(model, x)
        full = forward_flops(model, lambda: model(x))
        aliases = _aliases(model)
        modules = dict(model.named_modules())
        rows = []
        for path, output in outputs.items():
            try:  # a wrapper's own modules (its input normalisation) are not layers it resolves
                if len(output.shape) < 1 or module_path(model, path) != path:
                    continue
            except KeyError:
                continue
            row = {
                "layer": path,
                "alias": aliases.get(path, ""),
                "module": type(modules[path]).__name__,
                "units": output.shape[0],
                "output_shape": "x".join(str(size) for size in output.shape),
            }
            if output.calls > 1:
                row |= {"plan": "not ablatable", "flops_per_unit_image": float("nan")}
                row["note"] = f"called {output.calls} times per forward"
            else:
                try:
                    plan, cost, note = _plan_and_cost(model, path, x, full)
                except ValueError as error:  # e.g. the logits do not depend on the layer
                    plan, cost, note = "not ablatable", float("nan"), str(error)
                row |= {"plan": plan, "flops_per_unit_image": cost, "note": note}
            rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))
