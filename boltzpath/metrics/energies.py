"""Energies for evaluation only: a target's E/kT on a copy with its own counter (not the run's cost)."""

from __future__ import annotations

import copy

import torch

from boltzpath.targets.base import EvaluationCounter


def uncounted_energy(target, x: torch.Tensor, block: int = 8192) -> torch.Tensor:
    """E/kT of ``x`` on a copy of ``target`` with a private evaluation counter, float64, (n,)."""
    t = copy.copy(target)
    t.counter = EvaluationCounter()
    with torch.no_grad():
        parts = [t.energy(x[s:s + block]).detach().double() for s in range(0, x.shape[0], block)]
    return torch.cat(parts)
