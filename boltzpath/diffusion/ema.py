"""Exponential moving average of a model's parameters: θ_ema ← d·θ_ema + (1 − d)·θ.

``Ema(model, decay)`` holds an independent copy (``ema.module``, eval-ready, no grad) that is
updated in place by ``ema.update(model, step)`` after each optimiser step. Buffers are copied as-is.

Warm-up: the decay used at update ``step`` (0-based, counted from the start of this training or
fine-tuning run) is min(decay, (1 + step)/(10 + step)). Without it a short run keeps mostly the
starting weights — after 300 steps at d = 0.999 the average still holds 0.999³⁰⁰ ≈ 74 % of them —
and a fine-tuning run of a few hundred steps would barely change the model used for sampling.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class Ema:
    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(model)
        self.module.requires_grad_(False)

    def decay_at(self, step: int) -> float:
        """The warmed-up decay min(d, (1 + step)/(10 + step)) for 0-based update ``step``."""
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """One EMA update at 0-based update ``step`` (warmed-up decay ``decay_at(step)``)."""
        d = self.decay_at(int(step))
        ema_p, model_p = list(self.module.parameters()), [p.detach() for p in model.parameters()]
        if len(ema_p) != len(model_p):
            raise ValueError("EMA update from a model with a different structure")
        torch._foreach_lerp_(ema_p, model_p, 1.0 - d)  # one multi-tensor kernel, not a Python loop
        for b_ema, b in zip(self.module.buffers(), model.buffers(), strict=True):
            b_ema.copy_(b)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
