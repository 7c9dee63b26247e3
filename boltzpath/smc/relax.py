"""Final relaxation of annealed particles at the target temperature with MALA (SPEC §6).

The annealed particles are approximately distributed as the target; a short MCMC run on the true
energy removes the model's residual error (the paper reports energy-W1 86.3 → 1.53 on ALDP).
Kernel: ``boltzpath.mcmc.mala.mala_step`` with a step size adapted during the first ``adapt_steps``
steps, then frozen, so the remaining steps are a valid MCMC chain started from the annealed
particles. Adaptation is log ε ← log ε + η (a − a*) with a constant rate η (``adapt_rate``): the
driver's decaying Robbins–Monro rate (∝ (it+1)^-0.6) cannot move ε across several decades in a short
warm-up, and a relaxation whose step size stays tiny does nothing.

One ε for all chains (``adapt: shared``, a = the chains' mean acceptance), not one per chain: where
the acceptance depends on the state, a chain's own ε follows its state and the warm-up is no longer
a sequence of kernels that keep the target. Measured on exact samples (2026-12-07): LJ-13 at
T = 4 from the certified reference, 300 steps (100 adapting) moved the mean E/kT by −0.99 ± 0.14
per chain against −0.31 ± 0.14 shared and −0.04 ± 0.13 with a fixed ε (BENCHMARKS pita_rung_oracle); the
per-chain ε spread over 0.001–0.5. The frozen steps are exact either way but start from the
warm-up's biased positions, and a few hundred steps do not forget them. ``adapt: per_chain`` is kept
for runs made before (the peptide presets pin it). We report the
acceptance rate and the mean displacement (RMS over coordinates per particle), which shows
that the step size actually moves the particles.

Overlap repair (before MALA): a learned model can leave some particles on top of each other
(LJ: E/kT ~ 1e11). MALA cannot move such a configuration — its gradient is astronomically
large, so its adapted step shrinks to ~1e-7 and the sample keeps its absurd energy. Configurations
with E/kT above ``repair_above`` (SPEC §8's high-energy flag, 1000) or non-finite energy first get
steepest descent with an adaptive step, the scheme of MD packages' "steep" minimisers: move along
the force, scaled so the largest per-particle displacement is δ; on a lower energy accept and
δ ← 1.2δ, otherwise reject and δ ← 0.2δ; stop once E/kT ≤ ``repair_above`` (or after
``repair_steps``). Only flagged configurations are evaluated (the target's counter counts them).
This is an initialisation of the MALA chain, not part of its invariant kernel: the chain after it
is as valid as one started anywhere else. ``info`` reports how many configurations needed repair
and how many still exceed the threshold after it — a direct measure of the model's failures.

Underdamped phase (``baoab_steps`` > 0, between MALA's ``adapt_steps`` warm-up and its frozen
steps): BAOAB Langevin
(``boltzpath.mcmc.langevin.baoab_step``, unit mass, step ``baoab_step_size``, friction
``baoab_friction``) from fresh Maxwell–Boltzmann velocities. On stiff molecules MALA's step is set
by the bond stretches (h ≈ 1e-6 on the peptides, docs/molecules.md) and barely moves the soft
torsions in a few hundred steps, so samples keep the model's within-basin dihedral errors; BAOAB
moves ballistically along the soft modes (measured on ALDP at 300 K: 500 steps of h = 2e-3 took the
αR/C7eq torus W2 of a reweight-rung ladder's samples from 0.55 to 0.35, n = 200). BAOAB is
unadjusted (O(h²) bias, largest in the bond lengths), so the frozen MALA steps that follow are what
make the chain exact. It comes after the warm-up so that it starts from thermal bonds: model
samples start hot (ALDP at 848.5 K: median E/kT 44 against 5 for equilibrium data), and BAOAB's
friction needs ~1/γ = 500 steps of 2e-3 to carry that excess away (equilibrium frames with noised
bonds, median E/kT 58: still 20 after 300 BAOAB steps, 4.5–5 after MALA), while MALA's warm-up
relaxes bonds in a few steps. Measured on replica-exchange frames (aldp-fab, n = 500–1000): with
hot bonds at 848.5 K either order kept the basin fractions within 0.045 of the frames'; from
equilibrium at 356.8 K, 300 or 1000 BAOAB steps of h = 1e-3 or 2e-3 kept αR within 0.03. With
``adapt_steps`` ≥ ``n_steps`` the BAOAB phase comes last, uncorrected. A configuration whose
energy is not finite or above ``repair_above`` after the BAOAB phase is put back where the phase
found it (``baoab_reverted``). One counted evaluation per configuration per step.

Drift check (every call with ≥ 2 frozen steps): are the chains still relaxing when the run stops?
Per chain, the mean E/kT over the second half of the frozen steps minus the mean over the first
half; ``info["drift"]`` holds the ensemble mean of that change, its standard error across chains
(chains are independent, so this is valid whatever a chain's autocorrelation) and z = mean / s.e.
At stationarity the change is 0 in expectation; |z| > ``drift_z`` says the samples are not yet
from the target. Measured on the LJ-13 `cpu` ladder's stage samples (docs/pita.md, twenty-fifth
session): 500 more MALA steps took the T = 1 stage from energy W2 0.88 to the floor, 1,000–2,500
took the T = 1.75–1.2 stages there. With ``extend_max_steps`` > 0 the relaxation keeps going in
blocks of the frozen length (same step sizes) until a block passes the check or the cap is spent;
each block is checked on its own two halves. ``info["extended_steps"]`` counts the extra steps;
``record_energies`` keeps the first ``n_steps``' frozen steps only, so that every process of a
parallel run records the same number (``parallel.sharded_smc.sharded_relax``).

State/kernel/info: the state is a ``ChainState`` (position (n, dim), E/kT (n,), ∇E (n, dim)).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from boltzpath.errors import BadInput
from boltzpath.mcmc.base import ChainState, init_state
from boltzpath.mcmc.langevin import LangevinState, baoab_step
from boltzpath.mcmc.mala import mala_step

# "shared": one step size for all chains, adapted on their mean acceptance (the default; the state
# of any one chain moves it by 1/n); "per_chain": each chain adapts on its own acceptance, which
# biases the positions (module docstring) and is kept to reproduce the runs made before shared became
# the default (twenty-fifth session, 2026-12-07)
ADAPT_MODES = ("shared", "per_chain")


@dataclass
class RelaxConfig:
    """MALA relaxation: total steps, warm-up steps adapting ε (``adapt``: one ε for all chains or one
    per chain), initial ε, target acceptance; ``extend_max_steps`` frozen steps at most added, in
    blocks, while the drift check (module docstring) finds the chains' energies still moving by more
    than ``drift_z`` standard errors (0: never extend, the check is still reported);
    overlap repair threshold (E/kT; None: off), its step budget and initial displacement δ;
    BAOAB steps run between MALA's warm-up and its frozen steps (0: none), their step size and friction."""

    n_steps: int = 100
    adapt_steps: int = 50
    step_size: float = 1e-4
    target_accept: float = 0.574
    adapt_rate: float = 0.5
    repair_above: float | None = 1000.0
    repair_steps: int = 200
    repair_step: float = 0.01
    baoab_steps: int = 0
    baoab_step_size: float = 2e-3
    baoab_friction: float = 1.0
    adapt: str = "shared"
    extend_max_steps: int = 0
    drift_z: float = 3.0

    def validate(self) -> None:
        if self.extend_max_steps < 0:
            raise BadInput(f"relax.extend_max_steps must be >= 0, got {self.extend_max_steps}")
        if not (self.drift_z > 0 and math.isfinite(self.drift_z)):
            raise BadInput(f"relax.drift_z must be > 0, got {self.drift_z}")
        if self.adapt not in ADAPT_MODES:
            raise BadInput(f"relax.adapt must be one of {', '.join(ADAPT_MODES)}, got {self.adapt!r}")
        if self.n_steps < 0 or self.adapt_steps < 0:
            raise BadInput("relax.n_steps and relax.adapt_steps must be >= 0")
        if self.baoab_steps < 0:
            raise BadInput(f"relax.baoab_steps must be >= 0, got {self.baoab_steps}")
        if not (self.baoab_step_size > 0 and math.isfinite(self.baoab_step_size)):
            raise BadInput(f"relax.baoab_step_size must be > 0, got {self.baoab_step_size}")
        if not (self.baoab_friction > 0 and math.isfinite(self.baoab_friction)):
            raise BadInput(f"relax.baoab_friction must be > 0, got {self.baoab_friction}")
        if not self.step_size > 0:
            raise BadInput(f"relax.step_size must be > 0, got {self.step_size}")
        if not 0 < self.target_accept < 1:
            raise BadInput(f"relax.target_accept must be in (0, 1), got {self.target_accept}")
        if not self.adapt_rate > 0:
            raise BadInput(f"relax.adapt_rate must be > 0, got {self.adapt_rate}")
        if self.repair_steps < 0 or not self.repair_step > 0:
            raise BadInput("relax.repair_steps must be >= 0 and relax.repair_step > 0")
        if self.repair_above is not None and not math.isfinite(self.repair_above):
            raise BadInput(f"relax.repair_above must be a finite E/kT or null, got {self.repair_above}")


@dataclass(frozen=True)
class RelaxResult:
    """Relaxed positions (n, dim), their E/kT (n,) and ∇E (n, dim), and diagnostics; ``initial_energy``:
    E/kT of the starting positions (before any repair), which ``relax`` evaluates anyway."""

    x: torch.Tensor
    energy: torch.Tensor
    grad: torch.Tensor
    info: dict
    initial_energy: torch.Tensor | None = None
    frozen_energies: torch.Tensor | None = None  # (frozen steps, n) E/kT after each frozen MALA step


def _max_displacement(v: torch.Tensor, target) -> torch.Tensor:
    """Largest per-particle displacement norm of v (n, dim); per coordinate for non-particle targets."""
    n_part = getattr(target, "n_particles", None)
    if n_part:
        return v.reshape(v.shape[0], int(n_part), -1).norm(dim=-1).amax(dim=-1)
    return v.abs().amax(dim=-1)


def repair(target, state: ChainState, threshold: float, n_steps: int, step: float):
    """Steepest descent (module docstring) on configurations with E/kT > threshold or non-finite.

    Returns (ChainState, info); configurations at or below the threshold are returned unchanged.
    """
    x, energy, grad = state.position, state.energy, state.grad
    bad = ~torch.isfinite(energy) | (energy > threshold)
    info = {"repaired": int(bad.sum()), "repair_steps_taken": 0}
    idx = torch.nonzero(bad).flatten()
    if idx.numel():
        xs, es, gs = x[idx].clone(), energy[idx].clone(), grad[idx].clone()
        delta = torch.full((idx.numel(),), float(step), dtype=torch.float64, device=x.device)
        todo = torch.ones(idx.numel(), dtype=torch.bool, device=x.device)
        for it in range(n_steps):
            act = torch.nonzero(todo).flatten()
            if act.numel() == 0:
                break
            info["repair_steps_taken"] = it + 1
            force = -target.project(gs[act])
            force = torch.nan_to_num(force, nan=0.0, posinf=1e30, neginf=-1e30)
            scale = (delta[act] / _max_displacement(force, target).clamp_min(1e-300)).to(xs.dtype)
            x_try = xs[act] + scale[:, None] * force
            e_try, g_try = target.energy_and_grad(x_try)
            better = torch.isfinite(e_try) & ~(e_try >= es[act])  # es may be inf or nan
            acc = act[better]
            xs[acc], es[acc], gs[acc] = x_try[better], e_try[better], g_try[better]
            delta[act] = torch.where(better, delta[act] * 1.2, delta[act] * 0.2)
            todo[act] = ~(torch.isfinite(es[act]) & (es[act] <= threshold))
        x, energy, grad = x.clone(), energy.clone(), grad.clone()
        x[idx], energy[idx], grad[idx] = xs, es, gs
    still = ~torch.isfinite(energy) | (energy > threshold)
    info["still_above_threshold"] = int(still.sum())
    return ChainState(x, energy, grad), info


def _baoab_phase(target, state: ChainState, generator: torch.Generator, cfg: RelaxConfig, callback,
                 offset: int, total: int):
    """``cfg.baoab_steps`` BAOAB steps from ``state`` (module docstring); configurations that end
    non-finite or above ``cfg.repair_above`` are put back where they started."""
    v = target.project(torch.randn(state.position.shape, generator=generator, dtype=state.position.dtype,
                                   device=state.position.device))
    lstate = LangevinState(state.position, v, state.energy, state.grad)
    for it in range(cfg.baoab_steps):
        lstate, _ = baoab_step(target, lstate, generator, cfg.baoab_step_size, cfg.baoab_friction)
        if callback is not None:
            callback(offset + it + 1, total, {"phase": "baoab"})
    bad = ~torch.isfinite(lstate.energy)
    if cfg.repair_above is not None:
        bad |= lstate.energy > cfg.repair_above
    x, energy, grad = lstate.position.clone(), lstate.energy.clone(), lstate.grad.clone()
    x[bad], energy[bad], grad[bad] = state.position[bad], state.energy[bad], state.grad[bad]
    info = {"baoab_steps": cfg.baoab_steps, "baoab_reverted": int(bad.sum()),
            "baoab_mean_rms_displacement": float(((x - state.position) ** 2).mean(-1).sqrt().mean())}
    return ChainState(x, energy, grad), info


class _Halves:
    """Per-chain sums of E/kT over the first and the second half of ``length`` frozen steps (the
    middle step of an odd length is left out) → the drift check (module docstring)."""

    def __init__(self, length: int, n: int, device) -> None:
        self.h = length // 2
        self.length = length
        self.s1 = torch.zeros(n, dtype=torch.float64, device=device)
        self.s2 = torch.zeros(n, dtype=torch.float64, device=device)

    def add(self, j: int, energy: torch.Tensor) -> None:
        if j < self.h:
            self.s1 += energy.detach().double()
        elif j >= self.length - self.h:
            self.s2 += energy.detach().double()

    def drift(self) -> dict | None:
        if self.h < 1 or self.s1.numel() < 2:
            return None
        d = (self.s2 - self.s1) / self.h
        d = d[torch.isfinite(d)]
        if d.numel() < 2:
            return None
        mean, se = float(d.mean()), float(d.std() / math.sqrt(d.numel()))
        return {"mean_change": mean, "standard_error": se, "z": mean / se if se > 0 else 0.0,
                "window_steps": self.h, "chains": int(d.numel())}


def relax(
    target,
    x: torch.Tensor,
    generator: torch.Generator,
    cfg: RelaxConfig,
    callback: Callable[[int, int, dict], None] | None = None,
    record_energies: bool = False,
) -> RelaxResult:
    """Run ``cfg.n_steps`` MALA steps on ``target`` (E/kT at its temperature) from ``x``.

    ``record_energies``: keep E/kT of every chain after each frozen (non-adapting, hence exact) MALA
    step as ``RelaxResult.frozen_energies`` (steps, n) — time averages over a chain's path (the
    ``rung_basin_weights: path`` estimator of ``methods.pita``); None when off or no step is frozen.

    ``info``: acceptance (mean over the frozen-step phase, or over all steps if there is none),
    step-size median/min/max, mean RMS displacement per coordinate, and steps.
    """
    cfg.validate()
    state = init_state(target, x)
    initial_energy = state.energy
    repair_info: dict = {}
    if cfg.repair_above is not None:
        state, repair_info = repair(target, state, cfg.repair_above, cfg.repair_steps, cfg.repair_step)
    start = state.position.clone()
    n = x.shape[0]
    log_step = torch.full((n,), math.log(cfg.step_size), dtype=torch.float64, device=x.device)
    acc_all, acc_frozen, frozen = 0.0, 0.0, 0
    recorded: list[torch.Tensor] = []
    n_frozen = max(cfg.n_steps - cfg.adapt_steps, 0)
    halves = _Halves(n_frozen, n, x.device)
    baoab_at = min(cfg.adapt_steps, cfg.n_steps)  # after MALA's warm-up, before its frozen steps
    total = cfg.baoab_steps + cfg.n_steps
    for it in range(cfg.n_steps + 1):
        if it == baoab_at and cfg.baoab_steps:
            state, baoab_info = _baoab_phase(target, state, generator, cfg, callback, it, total)
            repair_info = {**repair_info, **baoab_info}
        if it == cfg.n_steps:
            break
        state, info = mala_step(target, state, generator, log_step.exp().to(x.dtype))
        a = float(info.accept_prob.mean())
        acc_all += a
        if it < cfg.adapt_steps:
            acc = info.accept_prob.to(torch.float64)
            acc = acc.mean() if cfg.adapt == "shared" else acc
            log_step = log_step + cfg.adapt_rate * (acc - cfg.target_accept)
        else:
            acc_frozen += a
            halves.add(frozen, state.energy)
            frozen += 1
            if record_energies:
                recorded.append(state.energy.detach().clone())
        if callback is not None:
            done = it + 1 + (cfg.baoab_steps if it >= baoab_at else 0)
            callback(done, total, {"accept": a})
    drift, extended = halves.drift(), 0
    while (cfg.extend_max_steps and drift is not None and abs(drift["z"]) > cfg.drift_z
           and extended < cfg.extend_max_steps):
        length = min(n_frozen, cfg.extend_max_steps - extended)
        if length < 2:
            break
        more = _Halves(length, n, x.device)
        for j in range(length):  # frozen steps with the same step sizes: a continuation of the chain
            state, info = mala_step(target, state, generator, log_step.exp().to(x.dtype))
            a = float(info.accept_prob.mean())
            acc_frozen += a
            frozen += 1
            more.add(j, state.energy)
        extended += length
        drift = more.drift()
    disp = ((state.position - start) ** 2).mean(-1).sqrt()
    steps = log_step.exp()
    info = {
        "steps": cfg.n_steps + extended,
        "extended_steps": extended,
        "drift": drift,
        "acceptance": acc_frozen / frozen if frozen else (acc_all / cfg.n_steps if cfg.n_steps else math.nan),
        "step_size_median": float(steps.median()),
        "step_size_min": float(steps.min()),
        "step_size_max": float(steps.max()),
        "mean_rms_displacement": float(disp.mean()),
        **repair_info,
    }
    return RelaxResult(state.position, state.energy, state.grad, info, initial_energy,
                       torch.stack(recorded) if recorded else None)
