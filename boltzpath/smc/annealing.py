"""Feynman–Kac SMC for inference-time annealing of a diffusion model (SPEC §6, PITA Prop. 1).

The weighted particles follow q_t ∝ exp(−γ U_t): from the prior N(0, (σ_max²/γ) I) (CoM-projected
for particles) simulate, in reverse time t: 1 → 0 with ds > 0,

    x ← x + γ (g²/2)(s − ∇U) ds + g √ds ξ,
    log w += ds · [ γ ∂_tU + γ (g²/2) ∇·s − γ² (g²/2) ⟨∇U, s⟩ ].

Derivation check (also docs/pita.md): for q̃ = e^{−γU} and drift b = γ(g²/2)(s − ∇U) in reverse
time τ, the Fokker–Planck operator gives −∇·(b q̃) + (g²/2)Δq̃ = q̃ (g²/2)[γ²⟨s, ∇U⟩ − γ∇·s], and
∂_τ q̃ = γ ∂_tU q̃; the FK rate is the difference, the bracket above. With γ = 1 and exact
s = −∇U = ∇ log p_t the rate is ∂_tU + (g²/2)(‖∇U‖² − ΔU) = 0 by the heat equation
∂_t p = (g²/2)Δp, and the drift is the usual reverse SDE g²·s.

Discretisation: Euler–Maruyama in h = σ² rather than t (the same SDE after the time change
dh = g² dt): each step uses Δh = σ(t_k)² − σ(t_{k+1})² for g² ds, and ∂_tU ds → ∂_tU Δh / g²(t_k).
This matches the Karras spacing and the variance the forward process adds exactly. All terms are
evaluated at the step's left point (x_k, t_k).

One step is one Feynman–Kac step function ``fk_step`` (mutate → reweight → resample) returning
``(AnnealState, FKStepInfo)`` (blackjax smc style); ``anneal`` loops it and gathers ``AnnealInfo``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from boltzpath.diffusion.schedule import KarrasSchedule
from boltzpath.errors import BadInput
from boltzpath.smc.divergence import METHODS as DIV_METHODS
from boltzpath.smc.divergence import exact_at
from boltzpath.smc.model import DiffusionModel
from boltzpath.smc.resample import RESAMPLERS
from boltzpath.smc.weights import effective_sample_size, log_weight_spread, normalised_weights

Project = Callable[[torch.Tensor], torch.Tensor]
TAILS = ("fk", "true_energy", "released", "bridge")


@dataclass
class AnnealConfig:
    """Annealing SMC options. ``use_weights=False`` is the "score scaling" ablation (no FK weights).

    ``tail`` — what happens after ``stop_resampling_t`` (``smc.tail`` applies the final correction):
      ``fk``           increments accumulate to t = 0; the final weights are the FK weights (exact
                       for p_model^γ, i.e. exp(−γU_η(·, σ_min)));
      ``true_energy``  as ``fk``, then U_η(x₀, σ_min) is replaced by the true energy:
                       log w += −E(x₀)/kT_target + γU_η(x₀, σ_min) — exact for the *true* p^γ
                       whatever the error of U_η at σ_min (importance sampling at t = 0);
      ``released``     the released PITA code: increments stop at ``stop_resampling_t`` and the
                       final resampling uses −E(x₀)/kT_target + γU_η(x₀, σ(t_stop)) clamped at its
                       90 % quantile. An approximation, not exact (see ``smc.tail``).
      ``bridge``       as ``fk``, then the correction of ``true_energy`` spread over an adaptive
                       sequence exp(−[(1−β)γU_η + βE/kT]) with MALA moves (``smc.bridge``):
                       exact like ``true_energy``, with far less weight degeneracy when U_η is
                       poor; costs ``bridge_moves`` target evaluations per particle per level.
                       With ``bridge_from_stop`` the increments stop at ``stop_resampling_t`` as in
                       ``released`` and the bridge starts from those weights: below t_stop the
                       unweighted particles are taken for exp(−γU_η) — not exact; the bridge's
                       moves correct what they can. It trades that bias for the collapse of the
                       weights over the last steps (LJ-13 `cpu`: ESS 300–500 → 2–10 of 1000).
    ``clamp_quantile`` (e.g. 0.9): clamp each step's increments at that quantile (variance control,
    biased; off by default).
    ``divergence``: ``exact``, ``hutchinson`` (``n_probes`` Rademacher probes), or ``auto`` — resolved
    by the caller (PITA) with ``smc.divergence_choice`` from the measured probe variance and
    ``divergence_budget`` (nats² of log-weight noise over the weighted steps).
    ``exact_below_t``: steps that start at t ≤ this take the exact trace (d vector–Jacobian
    products) whatever ``divergence`` says. A single Hutchinson probe's variance grows like 1/σ⁴
    (LJ-13 stage 4 → 5: ~1e-4 per probe at t = 0.67, 1e3–5e4 at t = 0.155), so nearly all of the
    log-weight noise comes from the last steps; exact there and Hutchinson before costs d VJPs on
    those steps only. 0 (default): off.
    ``overshoot`` (used by PITA): the weighted SMC anneals to γ·overshoot, a temperature T_k/overshoot
    below the stage's, and the tail — which reweights on the true E/kT_k from the density it was
    handed, exp(−γ·overshoot·U_η) — brings the particles back to T_k (exactly for ``bridge`` and
    ``true_energy``). Ignored by the score-scaling ablation (no tail: it anneals to T_k). Motive: at
    LJ-13's melting rungs the annealed populations come out hot (liquid-like clusters that MALA
    cannot freeze), while a cold start warms up within a few relaxation steps.
    ``score_from`` (used by callers that hold both networks, e.g. PITA): ``net`` — the score network
    s_θ drives the drift and the divergence; ``energy`` — s = −∇U_η, so score and energy are
    consistent by construction (∇·s = −ΔU_η by double backprop) and the score network only teaches
    U_η through the distillation loss.
    """

    n_steps: int = 100
    gamma: float = 1.0
    ess_threshold: float = 0.5
    resample: str = "systematic"
    stop_resampling_t: float = 0.1
    divergence: str = "exact"
    n_probes: int = 1
    use_weights: bool = True
    tail: str = "released"
    clamp_quantile: float | None = None
    score_from: str = "net"
    divergence_budget: float = 0.1
    exact_below_t: float = 0.0  # steps starting at t <= this use the exact trace (0: none, 1: all)
    dtype: str = "float32"
    bridge_moves: int = 5
    bridge_max_levels: int = 50
    bridge_cess: float = 0.9
    bridge_step_size: float = 1e-4
    bridge_from_stop: bool = False  # bridge tail: increments stop at stop_resampling_t (not exact)
    overshoot: float = 1.0  # PITA: anneal to gamma * overshoot; the true-energy tail returns to T_k

    def validate(self) -> None:
        if self.n_steps < 1:
            raise BadInput(f"anneal.n_steps must be >= 1, got {self.n_steps}")
        if not self.gamma > 0:
            raise BadInput(f"anneal.gamma must be > 0, got {self.gamma}")
        if not 0 <= self.ess_threshold <= 1:
            raise BadInput(f"anneal.ess_threshold must be in [0, 1], got {self.ess_threshold}")
        if self.resample not in RESAMPLERS:
            raise BadInput(f"anneal.resample must be one of {', '.join(RESAMPLERS)}, got {self.resample!r}")
        if not 0 <= self.stop_resampling_t <= 1:
            raise BadInput(f"anneal.stop_resampling_t must be in [0, 1], got {self.stop_resampling_t}")
        if self.divergence not in (*DIV_METHODS, "auto"):
            known = ", ".join(DIV_METHODS)
            raise BadInput(f"anneal.divergence must be one of {known}, got {self.divergence!r}")
        if self.n_probes < 1:
            raise BadInput(f"anneal.n_probes must be >= 1, got {self.n_probes}")
        if not 0 <= self.exact_below_t <= 1:
            raise BadInput(f"anneal.exact_below_t must be in [0, 1], got {self.exact_below_t}")
        if self.dtype not in ("float32", "float64"):
            raise BadInput(f"anneal.dtype must be float32 or float64, got {self.dtype!r}")
        if self.tail not in TAILS:
            raise BadInput(f"anneal.tail must be one of {', '.join(TAILS)}, got {self.tail!r}")
        if self.score_from not in ("net", "energy"):
            raise BadInput(f"anneal.score_from must be 'net' or 'energy', got {self.score_from!r}")
        if self.bridge_moves < 0 or self.bridge_max_levels < 1 or not 0 < self.bridge_cess < 1:
            raise BadInput("anneal.bridge_moves must be >= 0, bridge_max_levels >= 1, bridge_cess in (0, 1)")
        if not self.bridge_step_size > 0:
            raise BadInput(f"anneal.bridge_step_size must be > 0, got {self.bridge_step_size}")
        if not self.overshoot > 0:
            raise BadInput(f"anneal.overshoot must be > 0, got {self.overshoot}")
        if self.overshoot != 1.0 and self.use_weights and not self.reweights_on_true_energy:
            raise BadInput("anneal.overshoot != 1 needs a tail that reweights on the true energy "
                           "(bridge, true_energy or released); with tail 'fk' the samples would stay "
                           "at the overshot temperature")
        if self.clamp_quantile is not None and not 0 < self.clamp_quantile <= 1:
            raise BadInput(f"anneal.clamp_quantile must be in (0, 1] or null, got {self.clamp_quantile}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == "float64" else torch.float32

    @property
    def weights_stop_t(self) -> float:
        """Steps ending below this time add no increment: ``stop_resampling_t`` for ``released`` and
        for ``bridge`` with ``bridge_from_stop``, else 0."""
        stops = self.tail == "released" or (self.tail == "bridge" and self.bridge_from_stop)
        return float(self.stop_resampling_t) if stops else 0.0

    @property
    def reweights_on_true_energy(self) -> bool:
        """Whether the final resampling needs the true energy of every particle (``smc.tail``)."""
        return self.use_weights and self.tail != "fk"


@dataclass(frozen=True)
class AnnealState:
    """Particles x (n, dim), log-weights (n,) float64, running log-normaliser estimate (float64)."""

    x: torch.Tensor
    log_w: torch.Tensor
    log_z: float = 0.0


@dataclass(frozen=True)
class FKStepInfo:
    """One step: time reached, ESS before resampling, whether it resampled, weight spread,
    log-normaliser increment log Σ_i W_i exp(Δ_i), and the largest |Δ_i| (float64)."""

    t: float
    ess: float
    resampled: bool
    log_weight_spread: float
    log_z_increment: float
    max_abs_increment: float


@dataclass
class AnnealInfo:
    """Per-step log of an annealing run (lists of length n_steps)."""

    t: list[float] = field(default_factory=list)
    ess: list[float] = field(default_factory=list)
    resampled: list[bool] = field(default_factory=list)
    log_weight_spread: list[float] = field(default_factory=list)
    log_z_increment: list[float] = field(default_factory=list)
    max_abs_increment: list[float] = field(default_factory=list)
    tail: dict | None = None  # the tail's own log (``bridge``: levels, β, ESS, acceptance)

    def append(self, step: FKStepInfo) -> None:
        for name in ("t", "ess", "resampled", "log_weight_spread", "log_z_increment", "max_abs_increment"):
            getattr(self, name).append(getattr(step, name))

    @property
    def n_resampling_events(self) -> int:
        return int(sum(self.resampled))

    def summary(self, n_particles: int) -> dict:
        return {
            "n_steps": len(self.t),
            "n_resampling_events": self.n_resampling_events,
            "min_ess_fraction": min(self.ess) / n_particles if self.ess else math.nan,
            "max_log_weight_spread": max(self.log_weight_spread) if self.log_weight_spread else math.nan,
        }


@dataclass
class AnnealResult:
    """Final particles (n, dim), their log-weights (float64), log Z estimate, ESS and the step log."""

    x: torch.Tensor
    log_weights: torch.Tensor
    log_z: float
    ess: float
    info: AnnealInfo


def fk_increment(terms, gamma: float, dh: float, g2: float) -> torch.Tensor:
    """Δ log w = γ ∂_tU ds + γ(g²ds/2)∇·s − γ²(g²ds/2)⟨∇U, s⟩ with g² ds = Δh, ds = Δh/g² (float64)."""
    du_dt = terms.du_dt.to(torch.float64)
    div = terms.div_score.to(torch.float64)
    inner = (terms.grad_energy.to(torch.float64) * terms.score.to(torch.float64)).sum(-1)
    return gamma * du_dt * (dh / g2) + gamma * 0.5 * dh * div - gamma**2 * 0.5 * dh * inner


def mutate(model: DiffusionModel, x: torch.Tensor, t_now: float, t_next: float, schedule: KarrasSchedule,
           cfg: AnnealConfig, generator: torch.Generator, project: Project):
    """The move and the raw FK increment of one step → (x_new, Δ log w (float64, from the ancestor x))."""
    gamma = cfg.gamma
    dh = float(schedule.sigma(t_now) ** 2 - schedule.sigma(t_next) ** 2)
    g2 = float(schedule.g2(t_now))
    method = "exact" if exact_at(t_now, cfg.exact_below_t) else cfg.divergence
    terms = model.terms(x, t_now, method, generator, cfg.n_probes)
    # mutate: x ← x + γ(Δh/2)(s − ∇U) + √Δh ξ
    drift = project((0.5 * gamma * dh) * (terms.score - terms.grad_energy).to(x.dtype))
    noise = project(torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device))
    return x + drift + math.sqrt(dh) * noise, fk_increment(terms, gamma, dh, g2)


def tail_increment(inc: torch.Tensor, t_next: float, cfg: AnnealConfig) -> torch.Tensor:
    """The increment actually added: zero once the ``released`` protocol has stopped the weights
    (steps ending below ``stop_resampling_t``), else clamped at ``clamp_quantile`` if set. ``inc``
    must hold every particle of the population (the quantile is over all of them)."""
    if t_next < cfg.weights_stop_t:
        return torch.zeros_like(inc)
    if cfg.clamp_quantile is not None and cfg.clamp_quantile < 1:
        return torch.minimum(inc, torch.quantile(inc, cfg.clamp_quantile))
    return inc


def non_finite_rows(x: torch.Tensor) -> int:
    """How many particles (rows of x) have a non-finite coordinate."""
    return int((~torch.isfinite(x).all(dim=-1)).sum())


def require_a_finite_weight(log_w: torch.Tensor, inc: torch.Tensor, t_now: float, t_next: float,
                            schedule: KarrasSchedule, positions: Callable[[], tuple[int, int]]) -> None:
    """Raise a RuntimeError saying where the annealing diverged when no particle keeps a finite weight
    after this step's increments ``inc`` (``positions()`` → (non-finite particles, all particles), called
    only then). Without it the failure surfaces inside the weights as a bare ValueError."""
    if (torch.isfinite(inc) & torch.isfinite(log_w)).any():
        return
    bad, total = positions()
    raise RuntimeError(
        f"annealing diverged at t = {t_now:.4g} → {t_next:.4g} (σ = {float(schedule.sigma(t_next)):.4g}): "
        f"no particle has a finite weight ({bad} of {total} positions non-finite); the model's drift is "
        "too stiff for this step — use more steps (anneal.n_steps) or train longer")


def fk_step(
    model: DiffusionModel,
    state: AnnealState,
    t_now: float,
    t_next: float,
    schedule: KarrasSchedule,
    cfg: AnnealConfig,
    generator: torch.Generator,
    project: Project,
) -> tuple[AnnealState, FKStepInfo]:
    """One Feynman–Kac step t_now → t_next < t_now: mutate → reweight → resample."""
    x = state.x
    x_new, inc = mutate(model, x, t_now, t_next, schedule, cfg, generator, project)
    inc = tail_increment(inc, t_next, cfg)
    finite = torch.isfinite(inc)
    max_abs = float(inc[finite].abs().max()) if finite.any() else math.nan
    if cfg.use_weights:
        require_a_finite_weight(state.log_w, inc, t_now, t_next, schedule,
                                lambda: (non_finite_rows(x_new), x_new.shape[0]))
    log_w, log_z = state.log_w, state.log_z
    log_z_inc = 0.0
    if cfg.use_weights:
        log_z_inc = float(torch.logsumexp(torch.log(normalised_weights(log_w)) + inc, dim=0))
        log_w = log_w + inc
        log_z = log_z + log_z_inc
    n = x.shape[0]
    ess = effective_sample_size(log_w)
    spread = log_weight_spread(log_w)
    # resample while t ≥ stop_resampling_t, when the ESS fraction drops below the threshold
    resampled = False
    if cfg.use_weights and t_next >= cfg.stop_resampling_t and ess < cfg.ess_threshold * n:
        idx = RESAMPLERS[cfg.resample](generator, log_w, n)
        x_new, log_w, resampled = x_new[idx], torch.zeros_like(log_w), True
    info = FKStepInfo(float(t_next), ess, resampled, spread, log_z_inc, max_abs)
    return AnnealState(x_new, log_w, log_z), info


def anneal(
    model: DiffusionModel,
    n_particles: int,
    schedule: KarrasSchedule,
    cfg: AnnealConfig,
    generator: torch.Generator,
    project: Project | None = None,
    callback: Callable[[int, int, dict], None] | None = None,
) -> AnnealResult:
    """Run the annealed reverse SDE with FK weights from t = 1 to t = 0 (module docstring).

    ``project`` (particle systems: CoM removal) is applied to the prior, drifts and noise.
    ``callback(step, n_steps, info_dict)`` is called after every step. Returns weighted particles;
    after ``stop_resampling_t`` the weights are not reset, so the caller decides how to use them.
    """
    cfg.validate()
    if cfg.divergence == "auto":
        raise BadInput("anneal.divergence 'auto' is resolved by the caller (boltzpath.smc.divergence_choice)")
    if int(n_particles) < 1:
        raise BadInput(f"n_particles must be >= 1, got {n_particles}")
    project = project or (lambda v: v)
    dtype = cfg.torch_dtype
    prior_std = schedule.sigma_max / math.sqrt(cfg.gamma)
    dev = generator.device  # device hook: particles live where the generator draws
    x = prior_std * project(torch.randn(int(n_particles), model.dim, generator=generator, dtype=dtype,
                                        device=dev))
    state = AnnealState(x, torch.zeros(int(n_particles), dtype=torch.float64, device=dev), 0.0)
    grid = schedule.time_grid(cfg.n_steps).tolist()
    info = AnnealInfo()
    for k in range(cfg.n_steps):
        state, step = fk_step(model, state, grid[k], grid[k + 1], schedule, cfg, generator, project)
        info.append(step)
        if callback is not None:
            callback(k + 1, cfg.n_steps, {"t": step.t, "ess": step.ess, "resampled": step.resampled})
    ess = effective_sample_size(state.log_w)
    return AnnealResult(state.x, state.log_w, state.log_z, ess, info)
