"""Diffusive Gibbs Sampling (DiGS; Chen et al., ICML 2024; SPEC §4), batched over chains.

Augment x with a noisy copy x̃ = αx + σε (α² + σ² = 1). One Gibbs sweep at noise level (α, σ):

1. noising        x̃ ~ N(αx, σ²I)
2. proposal       x' ~ N(x̃/α, (σ/α)²I)  (denoising-posterior initialisation), accepted with the
                  Metropolis-within-Gibbs probability min(1, p(x')/p(x)); the Gaussian factors
                  cancel because q(x') ∝ N(x̃ | αx', σ²I). ``mwg_correction=False`` always accepts
                  (biased on unbalanced modes: the seed talk's "no MH corrector" panel).
3. refinement     ``mala_steps`` MALA steps on p(x | x̃) ∝ p(x)·N(x̃ | αx, σ²I), i.e. on the
                  conditional energy E(x) + ‖x̃ − αx‖²/(2σ²) (``ConditionalPotential``).

Each step leaves p(x | x̃) invariant, so each sweep leaves p(x) invariant. The levels are
cycled from the largest to the smallest, σ_T → … → σ₁ → σ_T → … (seed talk). Particle systems:
the noise, x̃ and the proposal are projected onto the centre-of-mass-free subspace.

Cost per chain: 1 evaluation for the initial state, then 1 + ``mala_steps`` per sweep (the
proposal's energy-and-gradient serves both the MwG test and the first MALA step); every call
goes through the target, which counts it.

State per chain: position (chains, dim), E/kT (chains,), dE/dx (chains, dim) of the *target*.
Step sizes: one per (level, chain), adapted by Robbins–Monro towards ``target_accept`` during
the ``burn_in`` sweeps and frozen afterwards, so the collected chain is a valid MCMC chain.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from boltzpath.errors import BadInput
from boltzpath.io.samples import Samples
from boltzpath.mcmc.base import ChainState, init_state, metropolis, select
from boltzpath.mcmc.digs_schedule import NoiseConfig, alpha_of
from boltzpath.mcmc.driver import adapt_step_size, run_provenance
from boltzpath.mcmc.mala import mala_step


@dataclass
class DiGSConfig:
    """Chains, sweeps (``burn_in``/``thin`` count Gibbs sweeps), noise schedule, inner MALA."""

    chains: int = 128
    burn_in: int = 200
    thin: int = 8
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    mala_steps: int = 4
    step_size: float = 0.01
    target_accept: float = 0.574
    adapt: bool = True
    mwg_correction: bool = True
    dtype: str = "float32"

    def validate(self) -> None:
        if self.chains < 1 or self.burn_in < 0 or self.thin < 1:
            raise BadInput("digs: chains >= 1, burn_in >= 0 and thin >= 1 are required")
        if self.mala_steps < 0:
            raise BadInput(f"digs: mala_steps must be >= 0, got {self.mala_steps}")
        if not self.step_size > 0:
            raise BadInput(f"digs: step_size must be > 0, got {self.step_size}")
        if not 0 < self.target_accept < 1:
            raise BadInput(f"digs: target_accept must be in (0, 1), got {self.target_accept}")
        if self.dtype not in ("float32", "float64"):
            raise BadInput(f"digs: dtype must be float32 or float64, got {self.dtype!r}")
        if not isinstance(self.noise, NoiseConfig):
            raise BadInput("digs: noise must be a mapping with sigmas or sigma_min/sigma_max/count")
        self.noise.validate()

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == "float64" else torch.float32


class ConditionalPotential:
    """p(x | x̃) ∝ p(x)·N(x̃ | αx, σ²I): energy E(x) + ‖x̃ − αx‖²/(2σ²), gradient ∇E + α(αx − x̃)/σ².

    α and σ are floats (one level for every chain, DiGS) or (chains, 1) tensors (one level per
    chain, the DiKL posterior sampler).

    ``energy_and_grad`` evaluates the target (counted) and keeps the target part of its last
    result in ``last`` so the sampler can carry the target's own energy and gradient exactly.
    """

    def __init__(self, target, x_noisy: torch.Tensor, alpha: float, sigma: float):
        self.target = target
        self.x_noisy = x_noisy
        self.alpha = alpha
        self.sigma = sigma
        self.last: ChainState | None = None

    def _gaussian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.alpha * x - self.x_noisy
        if isinstance(self.sigma, torch.Tensor):  # one level per chain: α, σ columns (chains, 1)
            return (r * r / (2 * self.sigma**2)).sum(-1), self.alpha * r / self.sigma**2
        return (r * r).sum(-1) / (2 * self.sigma**2), self.alpha * r / self.sigma**2

    def energy_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e, g = self.target.energy_and_grad(x)
        self.last = ChainState(x, e, g)
        ge, gg = self._gaussian(x)
        return e + ge, self.project(g + gg)

    def project(self, v: torch.Tensor) -> torch.Tensor:
        return self.target.project(v)

    def lift(self, state: ChainState) -> ChainState:
        """A target state as a state of this conditional (no evaluation)."""
        ge, gg = self._gaussian(state.position)
        return ChainState(state.position, state.energy + ge, self.project(state.grad + gg))


def mwg_proposal(target, state, alpha, sigma, generator, correct=True):
    """Steps 1–2 of a sweep: noise, propose x' ~ N(x̃/α, (σ/α)²I), accept with min(1, p(x')/p(x)).

    Returns (x̃, new target state, acceptance probability (chains,)).
    """
    x = state.position

    def noise():
        return target.project(torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device))

    x_noisy = alpha * x + sigma * noise()
    x_prop = x_noisy / alpha + (sigma / alpha) * noise()
    e_prop, g_prop = target.energy_and_grad(x_prop)
    proposed = ChainState(x_prop, e_prop, g_prop)
    if not correct:
        return x_noisy, proposed, torch.ones_like(e_prop)
    accept_prob, accepted = metropolis(state.energy - e_prop, generator)
    return x_noisy, select(accepted, proposed, state), accept_prob


def digs_sweep(target, state, alpha, sigma, log_step, generator, cfg: DiGSConfig, adapt_from: int | None):
    """One Gibbs sweep at (α, σ) from target state ``state``. ``log_step`` (chains,) float64 are the
    level's log step sizes; when ``adapt_from`` (the level's adaptation counter) is not None they
    are adapted after every MALA step and the new values returned. Returns (state, log_step, info).
    """
    x_noisy, state, mwg_acc = mwg_proposal(target, state, alpha, sigma, generator, cfg.mwg_correction)
    cond = ConditionalPotential(target, x_noisy, alpha, sigma)
    adapt = None if adapt_from is None else (cfg.target_accept, adapt_from)
    state, log_step, mala_acc = refine_conditional(cond, state, generator, log_step, cfg.mala_steps, adapt)
    mala_mean = torch.stack(mala_acc).mean(0) if mala_acc else torch.full_like(mwg_acc, math.nan)
    return state, log_step, {"mwg_accept": mwg_acc, "mala_accept": mala_mean}


def refine_conditional(cond: ConditionalPotential, state: ChainState, generator, log_step, n_steps: int,
                       adapt: tuple[float, int] | None = None, on_step=None):
    """``n_steps`` MALA steps on p(x | x̃) (``cond``) from the *target* state ``state``.

    ``log_step`` (chains,) float64 are per-chain log step sizes; with ``adapt = (target_accept,
    counter)`` they follow Robbins–Monro after every step. ``on_step(k, state)`` sees the target
    state after step k (the DiKL score estimator averages over it). Returns (target state,
    log_step, [acceptance probability (chains,) per step]). Shared by DiGS and DiKL's posterior.
    """
    cstate = cond.lift(state)
    acc = []
    for k in range(n_steps):
        cstate, info = mala_step(cond, cstate, generator, log_step.exp().to(state.position.dtype))
        state = select(info.accepted, cond.last, state)
        acc.append(info.accept_prob)
        if adapt is not None:
            log_step = adapt_step_size(log_step, info.accept_prob, adapt[0], adapt[1] + k)
        if on_step is not None:
            on_step(k, state)
    return state, log_step, acc


def run_digs(target, n: int, generator: torch.Generator, cfg: DiGSConfig, callback=None, x0=None) -> Samples:
    """Run DiGS for ``n`` samples (chain-interleaved: sample i is chain i % chains at collected
    time i // chains). ``callback(sweep, total, info)`` is called after every sweep."""
    cfg.validate()
    if n < 1:
        raise BadInput(f"n must be >= 1, got {n}")
    sigmas = cfg.noise.resolve(target.name)
    alphas = [alpha_of(s) for s in sigmas]
    dtype = cfg.torch_dtype
    if x0 is None:
        x0 = target.prior_sample(cfg.chains, generator, dtype=dtype)
    x0 = target.check_input(x0.to(dtype))
    if x0.shape[0] != cfg.chains:
        raise BadInput(f"digs: x0 has {x0.shape[0]} rows but chains = {cfg.chains}")
    start_count, t0 = target.counter.count, time.perf_counter()
    levels = len(sigmas)
    # initial step sizes: the conditional's Gaussian curvature α²/σ² caps a stable MALA step
    first = [math.log(min(cfg.step_size, 0.5 * (s / a) ** 2)) for s, a in zip(sigmas, alphas, strict=True)]
    log_step = torch.tensor(first, dtype=torch.float64, device=x0.device)[:, None].repeat(1, cfg.chains)
    adapt_count = [0] * levels
    state = init_state(target, x0)
    per_chain = math.ceil(n / cfg.chains)
    total = cfg.burn_in + per_chain * cfg.thin
    xs, es = [], []
    acc = {k: torch.zeros(levels, dtype=torch.float64, device=x0.device) for k in ("mwg", "mala")}
    visits = torch.zeros(levels, dtype=torch.float64, device=x0.device)
    for sweep in range(total):
        lvl = levels - 1 - sweep % levels  # cycle from the largest σ down to the smallest
        warm = sweep < cfg.burn_in
        adapt_from = adapt_count[lvl] if (warm and cfg.adapt) else None
        state, log_step[lvl], info = digs_sweep(
            target, state, alphas[lvl], sigmas[lvl], log_step[lvl].clone(), generator, cfg, adapt_from
        )
        if warm:
            adapt_count[lvl] += cfg.mala_steps
        else:
            visits[lvl] += 1
            acc["mwg"][lvl] += float(info["mwg_accept"].mean())
            acc["mala"][lvl] += float(info["mala_accept"].mean())
            if (sweep - cfg.burn_in + 1) % cfg.thin == 0:
                xs.append(state.position.clone())
                es.append(state.energy.clone())
        if callback is not None:
            callback(sweep + 1, total, {"level": lvl, "sigma": sigmas[lvl],
                                        "mwg_accept": float(info["mwg_accept"].mean()),
                                        "mala_accept": float(info["mala_accept"].mean())})
    x = torch.stack(xs).reshape(-1, target.dim)[:n]
    e = torch.stack(es).reshape(-1)[:n]
    seen = visits.clamp(min=1)
    info = {
        **run_provenance("digs", target, cfg, start_count, t0),
        "sigmas": sigmas,
        "alphas": alphas,
        "proposal_scales": [s / a for s, a in zip(sigmas, alphas, strict=True)],
        "mwg_acceptance": (acc["mwg"] / seen).tolist(),
        "mala_acceptance": (acc["mala"] / seen).tolist(),
        "step_size_median": log_step.exp().median(dim=1).values.tolist(),
        "evaluations_per_sweep": 1 + cfg.mala_steps,
        "sweeps": total,
        "chains": cfg.chains,
        "burn_in_sweeps": cfg.burn_in,
        "thin_sweeps": cfg.thin,
        "layout": "sample i = chain i % chains at collected time i // chains",
        "x0_head": x0[: min(8, cfg.chains)].double().tolist(),
    }
    return Samples(x=x, energy=e, info=info)
