"""Hamiltonian Monte Carlo (HMC) kernel: leapfrog with unit mass, Metropolis on the Hamiltonian.

With E the energy in units of kT and momenta p ~ N(0, I) (projected onto the target's subspace,
i.e. centre-of-mass free for particle systems), H(x, p) = E(x) + ½‖p‖². One step integrates L
leapfrog steps of size ε

    p ← p − (ε/2)∇E(x);  x ← x + ε p;  p ← p − (ε/2)∇E(x)       (repeated L times)

and accepts with min(1, exp(H(x, p) − H(x', p'))). Leapfrog is volume preserving and reversible,
so this is exact (unbiased) for any ε > 0 and L ≥ 1; ε only changes the acceptance rate.

Cost: L counted energy+gradient evaluations per chain per step (the initial gradient is carried
in the state).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from boltzpath.errors import BadInput
from boltzpath.mcmc.base import ChainState, Potential, StepInfo, as_chain_column, metropolis, select
from boltzpath.mcmc.driver import ChainConfig, run_kernel_sampler


def leapfrog(
    potential: Potential,
    x: torch.Tensor,
    p: torch.Tensor,
    grad: torch.Tensor,
    eps: torch.Tensor,
    n_steps: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n_steps`` leapfrog steps of size ``eps`` (chains, 1). Returns (x, p, E, ∇E) at the end."""
    energy = None
    for _ in range(n_steps):
        p = potential.project(p - 0.5 * eps * grad)
        x = x + eps * p
        energy, grad = potential.energy_and_grad(x)
        p = potential.project(p - 0.5 * eps * grad)
    return x, p, energy, grad


def hmc_step(
    potential: Potential,
    state: ChainState,
    generator: torch.Generator,
    step_size: float | torch.Tensor,
    n_leapfrog: int = 10,
) -> tuple[ChainState, StepInfo]:
    """One HMC step for every chain; ``step_size`` is a scalar or one value per chain."""
    x = state.position
    eps = as_chain_column(step_size, x).expand(x.shape[0], 1)
    p0 = potential.project(torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device))
    x_new, p_new, e_new, g_new = leapfrog(potential, x, p0, state.grad, eps, n_leapfrog)
    h_old = state.energy + 0.5 * (p0**2).sum(-1)
    h_new = e_new + 0.5 * (p_new**2).sum(-1)
    accept_prob, accepted = metropolis(h_old - h_new, generator)
    new_state = select(accepted, ChainState(x_new, e_new, g_new), state)
    return new_state, StepInfo(accept_prob, accepted)


@dataclass
class HMCConfig(ChainConfig):
    """HMC: ``n_leapfrog`` steps per proposal, step size adapted to 65 % acceptance in warm-up."""

    n_leapfrog: int = 10
    target_accept: float = 0.65

    def validate(self) -> None:
        super().validate()
        if self.n_leapfrog < 1:
            raise BadInput(f"n_leapfrog must be >= 1, got {self.n_leapfrog}")


def run_hmc(target, n, generator, cfg: HMCConfig, callback=None, x0=None):
    """Run HMC chains on ``target`` and return ``n`` samples (see ``run_kernel_sampler``)."""
    cfg.validate()
    kernel = functools.partial(hmc_step, n_leapfrog=cfg.n_leapfrog)
    return run_kernel_sampler("hmc", kernel, target, n, generator, cfg, callback, x0)
