"""The names of the ablation plans (no torch import): the engine's exact plans in its order of
preference, and "naive", the per-unit reference. `ablation.plan` takes one of `PLAN_CHOICES`."""

from __future__ import annotations

ENGINE_PLANS: tuple[str, ...] = ("closed-form", "delta", "head-replay")
PLANS: tuple[str, ...] = (*ENGINE_PLANS, "naive")
PLAN_CHOICES: tuple[str, ...] = ("auto", *PLANS)
