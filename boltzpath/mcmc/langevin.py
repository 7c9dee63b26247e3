"""Unadjusted Langevin dynamics: underdamped (BAOAB) and overdamped (ULA). No Metropolis step.

Underdamped, unit mass, energies in kT (so kT = 1): dx = v dt, dv = −∇E dt − γv dt + √(2γ) dW.
One BAOAB step of size h (Leimkuhler & Matthews 2013):

    B: v ← v − (h/2)∇E(x)      A: x ← x + (h/2)v
    O: v ← c v + √(1 − c²) ξ,  c = exp(−γh)
    A: x ← x + (h/2)v          B: v ← v − (h/2)∇E(x)

Overdamped (ULA): x ← x − h∇E(x) + √(2h) ξ.

Both are **biased**: their stationary law differs from p(x) ∝ exp(−E) by O(h) (ULA; for a
Gaussian with precision λ the variance is 1/(λ(1 − hλ/2))) or O(h²) in configurational averages
(BAOAB; exact in x for Gaussians). Use a small step, or MALA/HMC when exactness matters.
Noise is projected onto the target's subspace (centre-of-mass free for particles).

State: ``LangevinState`` (position, velocity (chains, dim), energy (chains,), grad). Kernel:
``baoab_step(potential, state, generator, step_size, friction) -> (LangevinState, StepInfo)``.
Cost: one counted energy+gradient evaluation per chain per step, plus one at initialisation.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from boltzpath.errors import BadInput
from boltzpath.io.samples import Samples
from boltzpath.mcmc.base import Potential, StepInfo, as_chain_column
from boltzpath.mcmc.driver import ChainConfig, run_provenance


@dataclass(frozen=True)
class LangevinState:
    """Positions and velocities (chains, dim), E/kT (chains,), dE/dx (chains, dim)."""

    position: torch.Tensor
    velocity: torch.Tensor
    energy: torch.Tensor
    grad: torch.Tensor


def init_langevin(potential: Potential, position: torch.Tensor, generator: torch.Generator) -> LangevinState:
    """Start from ``position`` with Maxwell–Boltzmann velocities v ~ N(0, I) (projected)."""
    position = potential.project(position)
    energy, grad = potential.energy_and_grad(position)
    v = potential.project(torch.randn(position.shape, generator=generator, dtype=position.dtype,
                                      device=position.device))
    return LangevinState(position, v, energy, grad)


def _always_accepted(like: torch.Tensor) -> StepInfo:
    return StepInfo(torch.ones_like(like), torch.ones(like.shape, dtype=torch.bool, device=like.device))


def baoab_step(
    potential: Potential,
    state: LangevinState,
    generator: torch.Generator,
    step_size: float | torch.Tensor,
    friction: float = 1.0,
) -> tuple[LangevinState, StepInfo]:
    """One BAOAB step (unadjusted: ``accept_prob`` is always 1)."""
    x, v = state.position, state.velocity
    h = as_chain_column(step_size, x)
    c = torch.exp(-friction * h)
    v = v - 0.5 * h * state.grad
    x = x + 0.5 * h * v
    noise = potential.project(torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device))
    v = potential.project(c * v + torch.sqrt(1 - c * c) * noise)
    x = x + 0.5 * h * v
    energy, grad = potential.energy_and_grad(x)
    v = potential.project(v - 0.5 * h * grad)
    return LangevinState(x, v, energy, grad), _always_accepted(energy)


def ula_step(
    potential: Potential,
    state: LangevinState,
    generator: torch.Generator,
    step_size: float | torch.Tensor,
    friction: float = 1.0,
) -> tuple[LangevinState, StepInfo]:
    """One overdamped (ULA) step x ← x − h∇E + √(2h)ξ; ``friction`` is unused, velocity kept 0."""
    x = state.position
    h = as_chain_column(step_size, x)
    noise = potential.project(torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device))
    x = x - h * state.grad + torch.sqrt(2 * h) * noise
    energy, grad = potential.energy_and_grad(x)
    return LangevinState(x, torch.zeros_like(x), energy, grad), _always_accepted(energy)


@dataclass
class LangevinConfig(ChainConfig):
    """Unadjusted Langevin: fixed step (no adaptation, ``adapt`` must stay False), friction γ."""

    scheme: str = "baoab"  # "baoab" (underdamped) or "ula" (overdamped)
    friction: float = 1.0
    step_size: float = 0.01
    adapt: bool = False

    def validate(self) -> None:
        super().validate()
        if self.scheme not in ("baoab", "ula"):
            raise BadInput(f"langevin scheme must be 'baoab' or 'ula', got {self.scheme!r}")
        if not self.friction > 0:
            raise BadInput(f"friction must be > 0, got {self.friction}")
        if self.adapt:
            raise BadInput("langevin has no acceptance rate to adapt to; set adapt=false")


def run_langevin(target, n, generator, cfg: LangevinConfig, callback=None, x0=None) -> Samples:
    """Run unadjusted Langevin chains: ``burn_in`` steps, then ``n`` samples every ``thin`` steps.

    Samples are interleaved by chain like the MCMC driver: sample i is chain i % chains.
    """
    cfg.validate()
    if n < 1:
        raise BadInput(f"n must be >= 1, got {n}")
    kernel = baoab_step if cfg.scheme == "baoab" else ula_step
    if x0 is None:
        x0 = target.prior_sample(cfg.chains, generator, dtype=cfg.torch_dtype)
    x0 = target.check_input(x0.to(cfg.torch_dtype))
    start_count, t0 = target.counter.count, time.perf_counter()
    state = init_langevin(target, x0, generator)
    if cfg.scheme == "ula":
        state = LangevinState(state.position, torch.zeros_like(state.position), state.energy, state.grad)
    per_chain = math.ceil(n / x0.shape[0])
    total = cfg.burn_in + per_chain * cfg.thin
    xs, es = [], []
    for it in range(total):
        state, _ = kernel(target, state, generator, cfg.step_size, cfg.friction)
        if it >= cfg.burn_in and (it - cfg.burn_in + 1) % cfg.thin == 0:
            xs.append(state.position.clone())
            es.append(state.energy.clone())
        if callback is not None:
            callback(it + 1, total, {})
    info = {
        **run_provenance("langevin", target, cfg, start_count, t0),
        "steps": total,
        "unadjusted": True,
        # ⟨v²⟩ per coordinate at the end (≈ 1 = kT for BAOAB; 0 for ULA, which has no velocity)
        "final_mean_v2": float((state.velocity**2).mean()),
    }
    x = torch.stack(xs).reshape(-1, x0.shape[1])[:n]
    e = torch.stack(es).reshape(-1)[:n]
    return Samples(x=x, energy=e, info=info)
