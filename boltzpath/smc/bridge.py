"""A tempered SMC bridge from the model's tempered density to the true target (``anneal.tail = "bridge"``).

The ``true_energy`` tail corrects the annealed particles from the model's density
π₀(x) ∝ exp(−γU_η(x, σ_min)) to the target π₁(x) ∝ exp(−E(x)/kT) in one importance step. When the
model is poor that step is ruinous: on LJ-13 ``quick`` (stage 3, T = 2 → 1.5) 50–60 % of the raw
annealed configurations overlap (E/kT > 1000) and the one-step weights keep an ESS of 2–4 %, so
the next buffer descends from a handful of particles. The bridge spreads the same correction over
intermediate densities (a standard SMC sampler, Del Moral, Doucet & Jasra 2006):

    π_β(x) ∝ exp(−[(1 − β)γU_η(x, σ_min) + βE(x)/kT]) · 1[E(x)/kT ≤ E_max],   β: 0 → 1,

* reweight: log w += −(β' − β)(E/kT − γU_η) — the exact incremental weight π_β'/π_β;
* β' is the largest value whose *conditional* ESS (the ESS of the increment alone under the current
  weights) stays ≥ ``bridge_cess`` (bisection) — the adaptive tempering rule;
* resample (systematic) when the ESS falls below ``ess_threshold``;
* move: ``bridge_moves`` MALA steps that leave π_β' invariant (per-particle step sizes adapted
  towards 57.4 % acceptance between levels, inherited through resampling).

The indicator 1[E/kT ≤ E_max] (SPEC §8's high-energy flag, 1000) keeps overlapping configurations
out of every π_β: they start with weight zero and MALA rejects proposals into them. (When fewer
than ``min_survivors`` of the particles are below the flag — a poor model, e.g. LJ-13 `quick` seed 1
at stage 1: all 256 above 2.9e5 — they are first repaired by steepest descent as in
``smc.relax``; that fallback is approximate and reported as ``repaired_before_bridge``.) At β = 1 it
removes at most exp(−E_max) of the target's mass, so the bridge ends on the target. Every
intermediate density is proper and every move π_β-invariant, so the weighted particles are
properly weighted for π₁ whatever the error of U_η (tests/test_smc_bridge.py: a deliberately wrong
model recovers the true tempered mixture). The target is evaluated once per particle up front and
once per particle per MALA step; each level also evaluates the network's U_η and ∇U_η.

Every statistic of the whole population (the weights' normaliser, the ESS, the conditional ESS
inside the bisection for β', the survivor count, the final ESS) and every resampling goes through a
``Population``: this process holding all particles by default, or
``parallel.sharded_smc.ShardedPopulation`` under torchrun (all-reduces, global resampling with
particle exchange; every rank then takes the same β' at every level, which ``check_beta`` verifies
exactly after each level's bisection — two all-reduces of a scalar, only with several processes).
Moves and step sizes are per particle and stay on the rank that holds the particle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from boltzpath.mcmc.base import ChainState
from boltzpath.mcmc.mala import mala_step
from boltzpath.smc.relax import repair
from boltzpath.smc.resample import systematic
from boltzpath.smc.weights import effective_sample_size, normalised_weights


@dataclass
class BridgeSettings:
    """β schedule and moves of the bridge (``AnnealConfig.bridge_*``)."""

    moves: int = 5
    max_levels: int = 50
    cess: float = 0.9
    ess_threshold: float = 0.5
    step_size: float = 1e-4
    target_accept: float = 0.574
    adapt_rate: float = 0.5
    high_energy: float = 1000.0
    min_survivors: float = 0.1  # below this fraction under the flag, repair the overlaps first
    repair_steps: int = 200
    repair_step: float = 0.01


def bridge_settings(acfg) -> BridgeSettings:
    """The bridge settings of an ``AnnealConfig`` (its ``bridge_*`` fields and ESS threshold)."""
    return BridgeSettings(moves=acfg.bridge_moves, max_levels=acfg.bridge_max_levels, cess=acfg.bridge_cess,
                          ess_threshold=acfg.ess_threshold, step_size=acfg.bridge_step_size)


class Population:
    """The bridge's population-wide operations when this process holds every particle.

    ``bridge`` computes every population statistic and every resampling through these methods, so
    a sharded population only overrides them (``parallel.sharded_smc.ShardedPopulation``: sums and
    maxima all-reduced, resampling global). ``generator`` draws the resampling uniforms.
    """

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def size(self, n_local: int) -> int:
        """The number of particles in the whole population (called once, first)."""
        return n_local

    def count(self, k: int) -> int:
        """Σ over the population of a per-shard integer count."""
        return k

    def max(self, t: torch.Tensor) -> torch.Tensor:
        """The population-wide maximum of a scalar (or elementwise, of a vector)."""
        return t

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """The population-wide sum of a scalar (or elementwise, of a vector)."""
        return t

    def mean(self, t: torch.Tensor) -> float:
        """The mean of a per-particle value over the whole population."""
        return float(t.mean())

    def weights(self, log_w: torch.Tensor) -> torch.Tensor:
        """This shard's normalised weights W_i = w_i / Σ_all w_j."""
        return normalised_weights(log_w)

    def ess(self, log_w: torch.Tensor) -> float:
        """The Kish ESS of the whole population."""
        return effective_sample_size(log_w)

    def resample(self, log_w: torch.Tensor, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Systematic resampling by the population's weights; this shard's rows of ``tensors`` after it."""
        idx = systematic(self.generator, log_w, log_w.shape[0])
        return [t[idx] for t in tensors]

    def finish(self, log_w: torch.Tensor, x: torch.Tensor):
        """The final resampling → (equal-weight x, log-weights, ancestor indices) of the whole population."""
        idx = systematic(self.generator, log_w, x.shape[0])
        return x[idx], log_w, idx

    def check_beta(self, level: int, beta: float) -> None:
        """Raise if the processes chose different β' at ``level``; one process has nothing to compare."""


class _Tempered:
    """The potential −log π_β (+∞ outside E/kT ≤ E_max) with its gradient, for ``mala_step``."""

    def __init__(self, model, target, gamma: float, beta: float, high: float) -> None:
        self.model, self.target, self.gamma, self.beta, self.high = model, target, gamma, beta, high
        self.project = target.project

    def model_parts(self, x: torch.Tensor):
        """(U_η(x, σ_min) in float64, ∇ₓU_η) — the network only, no target evaluation."""
        return self.model.energy(x, 0.0).detach().to(torch.float64), self.model.grad_energy(x, 0.0).detach()

    def parts(self, x: torch.Tensor):
        e, ge = self.target.energy_and_grad(x)
        return (e.detach().to(torch.float64), ge.detach(), *self.model_parts(x))

    def combine(self, e, ge, u, gu):
        ok = _below_flag(e, self.high)
        b, g = self.beta, self.gamma
        mix = (1.0 - b) * g * u + b * torch.where(ok, e, torch.zeros_like(e))
        grad = (1.0 - b) * g * gu.to(ge.dtype) + b * torch.where(ok[:, None], ge, torch.zeros_like(ge))
        return torch.where(ok, mix, torch.full_like(mix, math.inf)), grad

    def energy_and_grad(self, x: torch.Tensor):
        self.last = self.parts(x)  # the proposal's parts, kept for the caller (no second evaluation)
        mix, grad = self.combine(*self.last)
        return mix, grad.to(x.dtype)


def _below_flag(e: torch.Tensor, high: float) -> torch.Tensor:
    """Finite E/kT at or below the high-energy flag (the support of every π_β)."""
    return torch.isfinite(e) & (e <= high)


def check_same_beta(level: int, beta: float, reduce_max, reduce_min) -> None:
    """Raise RuntimeError unless every process chose the same β' at ``level`` (compared exactly).

    ``reduce_max`` / ``reduce_min`` reduce a float64 scalar tensor over the processes. Every rank must
    take the same β' (it decides the number of levels, hence of collective calls): were they ever to
    disagree, the ranks' collectives would go out of step and the job would hang rather than fail.
    The reduced max and min are the same on every rank, so every rank raises together.
    """
    t = torch.tensor(float(beta), dtype=torch.float64)
    hi, lo = float(reduce_max(t)), float(reduce_min(t))
    if not hi == lo:  # also catches a NaN β'
        raise RuntimeError(f"bridge level {level}: the processes chose different inverse temperatures "
                           f"β' (min {lo!r}, max {hi!r}); their collective calls would go out of step")


def _conditional_ess(w: torch.Tensor, inc: torch.Tensor, pop: Population) -> float:
    """(Σ W r)² / Σ W r² for normalised weights W and increments log r (a fraction in (0, 1]).

    The sums (and the largest finite log r, subtracted for range) run over the whole population,
    so every shard gets the same value and takes the same branch of the bisection.
    """
    finite = torch.isfinite(inc)
    top = pop.max(torch.where(finite, inc, torch.full_like(inc, -math.inf)).max())
    lr = inc - top if torch.isfinite(top) else inc
    r = torch.exp(lr)
    sums = pop.sum(torch.stack([(w * r).sum(), (w * r * r).sum()]))
    num = sums[0] ** 2
    den = sums[1]
    return float(num / den) if den > 0 else 0.0


def _next_beta(log_w, delta_e, beta: float, cess: float, pop: Population) -> float:
    """The largest β' ∈ (β, 1] with conditional ESS ≥ ``cess`` (bisection, 40 halvings)."""
    w = pop.weights(log_w)
    if _conditional_ess(w, -(1.0 - beta) * delta_e, pop) >= cess:
        return 1.0
    lo, hi = beta, 1.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if _conditional_ess(w, -(mid - beta) * delta_e, pop) >= cess:
            lo = mid
        else:
            hi = mid
    return max(lo, beta + 1e-12 * (1.0 - beta)) if lo > beta else hi


def bridge(model, x: torch.Tensor, log_w: torch.Tensor, target, gamma: float, settings: BridgeSettings,
           generator: torch.Generator, population: Population | None = None):
    """Carry weighted particles (x, log_w) targeting exp(−γU_η(·, σ_min)) to ``target`` (E/kT).

    Returns (x_eq, final log-weights before the last resampling, indices of that resampling, info):
    x_eq has equal weights. ``target`` counts its evaluations as usual. ``generator`` draws the MALA
    noise (and, without ``population``, the resampling uniforms). With a sharded ``population``
    (x, log_w) are this rank's particles and the three results are the whole population's, the
    same on every rank; ``info`` holds population-wide values.
    """
    pop = population if population is not None else Population(generator)
    x = x.detach()
    pot = _Tempered(model, target, gamma, 0.0, settings.high_energy)
    e, ge, u, gu = pot.parts(x)
    ok = _below_flag(e, settings.high_energy) & torch.isfinite(u)
    n = x.shape[0]
    n_all = pop.size(n)
    info = {"excluded_high_energy": pop.count(int((~ok).sum())), "betas": [], "ess": [], "resampled": [],
            "acceptance": [], "repaired_before_bridge": 0}
    if pop.count(int(ok.sum())) < settings.min_survivors * n_all:
        # nearly every annealed particle overlaps: move them below the flag by steepest descent
        # (``smc.relax.repair``, counted) and start the bridge from there with their FK weights. The
        # repair is not part of any proposal density, so this fallback is approximate; it is reported.
        fixed, rinfo = repair(target, ChainState(x, e.to(x.dtype), ge), settings.high_energy,
                              settings.repair_steps, settings.repair_step)
        x, e, ge = fixed.position.detach(), fixed.energy.detach().to(torch.float64), fixed.grad.detach()
        u, gu = pot.model_parts(x)  # the repair already evaluated the target at the new x
        info["repaired_before_bridge"] = pop.count(rinfo["repaired"])
        ok = _below_flag(e, settings.high_energy) & torch.isfinite(u)
    log_w = torch.where(ok, log_w.to(torch.float64), torch.full_like(e, -math.inf))
    if pop.count(int(torch.isfinite(log_w).sum())) == 0:
        raise RuntimeError("bridge: every annealed particle is above the high-energy flag")
    step = torch.full((n,), float(settings.step_size), dtype=torch.float64, device=x.device)
    beta = 0.0
    for level in range(settings.max_levels):
        delta = torch.where(ok, e - gamma * u, torch.zeros_like(e))
        new_beta = _next_beta(log_w, delta, beta, settings.cess, pop)
        pop.check_beta(level, new_beta)
        log_w = log_w - (new_beta - beta) * delta
        beta = new_beta
        ess = pop.ess(log_w)
        resampled = ess < settings.ess_threshold * n_all
        if resampled:
            x, e, ge, u, gu, step = pop.resample(log_w, [x, e, ge, u, gu, step])
            log_w = torch.zeros_like(log_w)
        pot.beta = beta
        mix, grad = pot.combine(e, ge, u, gu)
        state = ChainState(x, mix, grad.to(x.dtype))
        acc_sum = torch.zeros(n, dtype=torch.float64, device=x.device)
        for _ in range(settings.moves):
            state, st = mala_step(pot, state, generator, step.to(x.dtype))
            a, a2 = st.accepted, st.accepted[:, None]
            e2, ge2, u2, gu2 = pot.last
            e, u = torch.where(a, e2, e), torch.where(a, u2, u)
            ge, gu = torch.where(a2, ge2, ge), torch.where(a2, gu2.to(gu.dtype), gu)
            acc_sum += st.accept_prob.to(torch.float64)
        x = state.position.detach()
        ok = _below_flag(e, settings.high_energy)
        mean_acc = acc_sum / max(settings.moves, 1)
        step = step * torch.exp(settings.adapt_rate * (mean_acc - settings.target_accept))
        info["betas"].append(beta)
        info["ess"].append(ess / n_all)
        info["resampled"].append(bool(resampled))
        info["acceptance"].append(pop.mean(mean_acc))
        if beta >= 1.0:
            break
    if beta < 1.0:  # level cap reached: the rest of the way in one importance step (still exact)
        log_w = log_w - (1.0 - beta) * torch.where(ok, e - gamma * u, torch.zeros_like(e))
        log_w = torch.where(ok, log_w, torch.full_like(log_w, -math.inf))
    info["levels"] = len(info["betas"])
    info["reached_by_moves"] = beta >= 1.0
    info["final_ess_fraction"] = pop.ess(log_w) / n_all
    x_eq, log_w, idx = pop.finish(log_w, x)
    return x_eq, log_w, idx, info
