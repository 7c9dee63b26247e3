"""Metropolis-adjusted Langevin (MALA) kernel.

Proposal x' = x − ε∇E(x) + √(2ε)ξ (ξ projected onto the target's subspace); accept with
min(1, exp(−E(x') + E(x) + log q(x|x') − log q(x'|x))), log q(x'|x) = −‖x' − x + ε∇E(x)‖²/(4ε).
The Gaussian normalisers cancel because ε is the same in both directions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from boltzpath.mcmc.base import ChainState, Potential, StepInfo, as_chain_column, metropolis, select
from boltzpath.mcmc.driver import ChainConfig, run_kernel_sampler


def _log_q(x_to: torch.Tensor, x_from: torch.Tensor, grad_from: torch.Tensor, eps: torch.Tensor):
    return -((x_to - x_from + eps * grad_from) ** 2).sum(-1) / (4 * eps.reshape(-1))


def mala_step(
    potential: Potential,
    state: ChainState,
    generator: torch.Generator,
    step_size: float | torch.Tensor,
) -> tuple[ChainState, StepInfo]:
    x, e, g = state.position, state.energy, state.grad
    eps = as_chain_column(step_size, x).expand(x.shape[0], 1)
    noise = potential.project(torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device))
    x_new = x - eps * g + torch.sqrt(2 * eps) * noise
    e_new, g_new = potential.energy_and_grad(x_new)
    log_ratio = (e - e_new) + _log_q(x, x_new, g_new, eps) - _log_q(x_new, x, g, eps)
    accept_prob, accepted = metropolis(log_ratio, generator)
    new_state = select(accepted, ChainState(x_new, e_new, g_new), state)
    return new_state, StepInfo(accept_prob, accepted)


@dataclass
class MALAConfig(ChainConfig):
    """MALA with per-chain step sizes adapted to 57.4 % acceptance during warm-up."""

    target_accept: float = 0.574


def run_mala(target, n, generator, cfg: MALAConfig, callback=None, x0=None):
    return run_kernel_sampler("mala", mala_step, target, n, generator, cfg, callback, x0)
