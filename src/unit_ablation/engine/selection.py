"""Which engine ablates a layer of a given model: the traced engine and its plans where torch.fx
splits the model and the split reproduces the model's logits, else the hook-based fallback."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from unit_ablation.engine.ablation_engine import AblationEngine
from unit_ablation.engine.graph_split import TraceFailed, resolve_layer, run_trunk
from unit_ablation.engine.hooked import HookedEngine
from unit_ablation.engine.layer_hooks import layer_output

# images on which the traced split must reproduce the model's logits: checking a whole batch
# would cost two full forward passes of it, as much as the closed-form plan's entire run
CHECK_IMAGES = 16


@dataclass
class EngineChoice:
    """The engine, a function giving the layer's activation for a batch, and why the fallback was
    taken ("" when it was not)."""

    engine: AblationEngine | HookedEngine
    activation: Callable[[torch.Tensor], torch.Tensor]
    fallback_reason: str = ""


def _split_reproduces_model(engine: AblationEngine, model: nn.Module, x: torch.Tensor) -> str:
    """ "" when the traced trunk and head give the model's own logits on `x`, else the difference."""
    activation, side = run_trunk(engine.split, x)
    traced = engine.split.head(activation.clone(), *[t.clone() for t in side])
    direct = model(x)
    if not isinstance(direct, torch.Tensor) or traced.shape != direct.shape:
        return "the traced graph's output differs in type or shape from the model's"
    if not torch.equal(traced, direct):
        return "the traced graph's logits differ from the model's on the first batch"
    return ""


@torch.no_grad()
def choose_engine(
    model: nn.Module,
    layer: str,
    rotation: torch.Tensor | None,
    example: torch.Tensor,
    plan: str = "auto",
    units_per_pass: int | None = None,
    memory_mb: float | None = None,
) -> EngineChoice:
    """The traced engine with its fastest exact plan (or `plan`), checked on the first images of
    `example`; the hook-based engine where torch.fx cannot trace or split the model (the reason is
    returned)."""
    try:
        engine = AblationEngine(model, layer, rotation, plan, units_per_pass, memory_mb)
        reason = _split_reproduces_model(engine, model, example[:CHECK_IMAGES])
    except TraceFailed as error:
        reason = str(error)
    if not reason:
        return EngineChoice(engine, lambda x: run_trunk(engine.split, x)[0])
    module = resolve_layer(model, layer)
    hooked = HookedEngine(model, module, layer, rotation, units_per_pass, memory_mb)
    return EngineChoice(hooked, lambda x: layer_output(model, module, x, layer), reason)
