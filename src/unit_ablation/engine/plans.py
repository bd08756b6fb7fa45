"""Ablation plans: how the logits of K ablated copies are computed from one trunk pass.

Each plan is a class (`plan_base.Plan`): `applies` says where it is exact, `prepare` computes
what it needs once per image batch, `logits` gives the K ablated copies' logits, `flops` and
`bytes_per_copy` give its cost per copy and image.

- `closed-form` (`closed_form.ClosedForm`): ablation point -> (identity ops) -> global average
  pool -> flatten -> Linear logits (ResNet's last stage). The logit change of ablating unit u is
  -W[:, u] (g_u - v_u), for every unit in one operation; rotated directions work the same way
  with W Q and Q^T g.
- `delta` (`delta.Delta`): only channel-wise ops (ReLU, pooling, eval BatchNorm, dropout,
  flatten) lie between the ablation point and the first mixing layer (Linear or Conv2d), as for
  AlexNet conv5. The mixing layer's output changes by W applied to the ablated channel's own
  change, which is cheap; only the rest of the network is replayed. In a rotated basis the same
  holds with the columns W q_j and the coordinates q_j^T a, provided every op of the chain is
  linear and treats all channels alike (identity, dropout, average pooling, flatten), so that it
  commutes with Q: conv3 -> conv4 of the built-in CNN, not conv5 -> max-pool.
- `head-replay` (`head_replay.HeadReplay`): anything else. The rest of the network runs on K
  ablated copies at once.
"""

from __future__ import annotations

import torch

from unit_ablation.engine.closed_form import ClosedForm
from unit_ablation.engine.delta import Delta
from unit_ablation.engine.graph_split import SplitModel
from unit_ablation.engine.head_replay import HeadReplay
from unit_ablation.engine.plan_base import Plan, mixing_flops
from unit_ablation.spec.plans import ENGINE_PLANS

__all__ = ["PLAN_CLASSES", "Plan", "choose_plan", "mixing_flops", "possible_plans"]

_CLASSES: dict[str, type[Plan]] = {cls.name: cls for cls in (ClosedForm, Delta, HeadReplay)}
# the plan classes in the engine's order of preference (fastest first)
PLAN_CLASSES: dict[str, type[Plan]] = {name: _CLASSES[name] for name in ENGINE_PLANS}


def possible_plans(split: SplitModel, rotated: bool) -> list[str]:
    """Names of the plans that are exact for this split and basis, fastest first."""
    return [name for name, cls in PLAN_CLASSES.items() if cls.applies(split, rotated)]


def choose_plan(
    split: SplitModel, rotated: bool, requested: str = "auto", rotation: torch.Tensor | None = None
) -> Plan:
    """The fastest exact plan for this split (or the requested one, if it applies).

    `rotation` is the rotated basis Q that the plan ablates along; without it a plan for a
    rotated basis can be costed (`flops`, `bytes_per_copy`) but not run.
    """
    if requested not in ("auto", *ENGINE_PLANS):
        raise ValueError(f"ablation plan {requested!r} not in {('auto', *ENGINE_PLANS)}")
    if rotation is not None and not rotated:
        raise ValueError("a rotation was given for the canonical basis (rotated=False)")
    possible = possible_plans(split, rotated)
    if requested == "auto":
        requested = possible[0]
    elif requested not in possible:
        raise ValueError(f"plan {requested!r} does not apply here; possible: {sorted(possible)}")
    return PLAN_CLASSES[requested](split, rotation)
