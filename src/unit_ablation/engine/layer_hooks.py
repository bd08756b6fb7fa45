"""Hooks on one module of a model: its output for a batch (the forward stops there), its output
together with the logits, and the logits with its output edited. They work on any model, where
torch.fx cannot trace it too; `engine.hooked` ablates with them."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the layer's output is known."""


def tensor_output(output: object, layer: str) -> torch.Tensor:
    if not isinstance(output, torch.Tensor):
        raise TypeError(
            f"layer {layer!r} outputs {type(output).__name__}, not a tensor: choose a module whose output "
            "is one tensor (units are its channels, dim 1)"
        )
    return output


@torch.no_grad()
def layer_output(model: nn.Module, module: nn.Module, x: torch.Tensor, layer: str = "") -> torch.Tensor:
    """The module's output for a batch of images; the forward pass stops there."""
    captured: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: object, output: object) -> None:
        captured.append(tensor_output(output, layer))
        raise _Stop

    handle = module.register_forward_hook(hook)
    try:
        model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    if not captured:
        raise ValueError(f"layer {layer!r} is not called in the model's forward pass")
    return captured[0]


@torch.no_grad()
def output_and_logits(
    model: nn.Module, module: nn.Module, x: torch.Tensor, layer: str = ""
) -> tuple[torch.Tensor, torch.Tensor]:
    """The module's output (a copy: in-place ops after it would overwrite it) and the logits."""
    captured: list[torch.Tensor] = []
    handle = module.register_forward_hook(
        lambda _m, _i, out: captured.append(tensor_output(out, layer).clone())
    )
    try:
        logits = logits_of(model(x))
    finally:
        handle.remove()
    if len(captured) != 1:
        raise ValueError(f"layer {layer!r} is called {len(captured)} times in one forward pass, not once")
    return captured[0], logits


@torch.no_grad()
def edited_logits(
    model: nn.Module, module: nn.Module, x: torch.Tensor, edit: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """The logits with the module's output replaced by `edit(output)`."""
    handle = module.register_forward_hook(lambda _m, _i, out: edit(out))
    try:
        return logits_of(model(x))
    finally:
        handle.remove()


def logits_of(output: object) -> torch.Tensor:
    if not isinstance(output, torch.Tensor) or output.dim() != 2:
        raise TypeError(f"the model must return logits (images x classes), not {type(output).__name__}")
    return output


@torch.no_grad()
def output_channels(model: nn.Module, module: nn.Module, example: torch.Tensor, what: str) -> int:
    """Channels (dim 1) of the module's output when the model, in eval mode, reads `example`;
    `what` names the layer in the errors. The model's training flags are kept."""
    captured: list[object] = []
    handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out))
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()  # a forward in training mode would update BatchNorm statistics
        model(example)
    finally:
        handle.remove()
        for m, training in modes:
            m.training = training
    if len(captured) != 1:
        raise ValueError(f"{what} runs {len(captured)} times in forward, not once")
    if not isinstance(captured[0], torch.Tensor) or captured[0].dim() < 2:
        raise ValueError(f"{what} does not output an N x C x ... tensor")
    return int(captured[0].shape[1])
