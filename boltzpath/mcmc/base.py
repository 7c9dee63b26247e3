"""State, kernel, info (blackjax style) shared by every MCMC kernel.

A *potential* is anything with ``energy_and_grad(x) -> (E, dE/dx)`` (E in units of kT, batched
over chains, detached) and ``project(v)`` (the subspace the chain lives in). Every ``Target`` is
one; DiGS builds conditional potentials p(x | x̃) the same way.

A kernel is ``step(potential, state, generator, step_size) -> (ChainState, StepInfo)``; the step
size is passed at call time (scalar or one per chain) so adaptation and tempering can change it.
A NaN or infinite acceptance ratio is a rejection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


class Potential(Protocol):
    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def project(self, v: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class ChainState:
    """Exactly what the next step needs: positions (chains, dim), E/kT (chains,), dE/dx."""

    position: torch.Tensor
    energy: torch.Tensor
    grad: torch.Tensor


@dataclass(frozen=True)
class StepInfo:
    """Diagnostics of one step: acceptance probability and decision per chain."""

    accept_prob: torch.Tensor
    accepted: torch.Tensor


def init_state(potential: Potential, position: torch.Tensor) -> ChainState:
    position = potential.project(position)
    energy, grad = potential.energy_and_grad(position)
    return ChainState(position, energy, grad)


def as_chain_column(step_size: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A step size broadcastable against positions (chains, dim)."""
    s = torch.as_tensor(step_size, dtype=like.dtype, device=like.device)
    return s.reshape(-1, 1) if s.ndim == 1 else s


def metropolis(log_ratio: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Accept with probability min(1, exp(log_ratio)); non-finite ratios are rejections."""
    log_ratio = torch.where(torch.isnan(log_ratio), torch.full_like(log_ratio, -torch.inf), log_ratio)
    accept_prob = torch.exp(torch.clamp(log_ratio, max=0.0))
    u = torch.rand(log_ratio.shape, generator=generator, dtype=log_ratio.dtype, device=log_ratio.device)
    return accept_prob, u < accept_prob


def select(accepted: torch.Tensor, new: ChainState, old: ChainState) -> ChainState:
    """Per-chain choice between a proposed and the current state."""
    a = accepted.reshape(-1, 1)
    return ChainState(
        torch.where(a, new.position, old.position),
        torch.where(accepted, new.energy, old.energy),
        torch.where(a, new.grad, old.grad),
    )
