"""One DiKL iteration (EM-style) and its resumable state (SPEC §7).

Per iteration (every random draw from one ``torch.Generator``, in a fixed order):

1. model score (M-step for φ): ``dsm_steps`` Adam steps of DSM on fresh generator samples
   x = f_θ(z) (no gradient into θ), ``ModelScore.dsm_loss``;
2. generator (θ): z ~ N(0, I), x = f_θ(z), level i ~ U{first_level..T−1} per row, ε ~ N(0, I),
   x_t = α_t x + σ_t ε. With Δ(x_t) = s_φ(x_t, t) − ∇log p_t(x_t) (the target's noised score by
   the score identity, ``posterior.estimate_target_score``, optionally norm-clipped per row by
   ``train.score_clip``; both held fixed), the surrogate

       L(θ) = (1/B) Σ_b w(t_b) ⟨sg[Δ(x_t,b)], x_t,b(θ)⟩

   has gradient (1/B) Σ_b w(t_b) (∂x_t,b/∂θ)ᵀ Δ(x_t,b) — one VJP through x_t = α_t f_θ(z) + σ_t ε —
   an unbiased estimate of (1/T')·∇_θ Σ_t w(t) KL[p_θ∗k_t ‖ p∗k_t] over the T' levels used
   (∇_θ KL_t = E_{p_θ,t}[(∇log p_θ,t − ∇log p_t)·∂x_t/∂θ], the seed talk's gradient).

MALA step sizes of the posterior sampler are kept per level (log, float64) across iterations.
``DiKLState.checkpoint()`` holds networks, optimisers, step sizes, iteration, RNG state, history,
evaluations and wall time: a resumed run reproduces the uninterrupted one bit-for-bit. Everything
lives on one device (``init_state(..., device)``: networks, step sizes and the RNG, so noise is
drawn where it is used); a checkpoint records the device kind and resumes only on the same kind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from boltzpath.diffusion.train import adam
from boltzpath.errors import BadInput
from boltzpath.io.atomic import atomic_torch_save
from boltzpath.methods.dikl.config import DiKLConfig
from boltzpath.methods.dikl.networks import Generator, ModelScore, build_networks
from boltzpath.methods.dikl.posterior import estimate_target_score, initial_log_step
from boltzpath.methods.dikl.schedule import VPSchedule

CHECKPOINT_FORMAT = "boltzpath-dikl-v1"


@dataclass
class DiKLState:
    generator: Generator
    score: ModelScore
    opt_generator: torch.optim.Optimizer
    opt_score: torch.optim.Optimizer
    log_steps: torch.Tensor  # (T,) float64 posterior MALA log step size per level
    rng: torch.Generator
    iteration: int = 0
    evaluations: int = 0  # target evaluations of previous invocations (resume)
    wall_time_s: float = 0.0
    history: list[dict] = field(default_factory=list)
    # generator selection (``selection.py``): one record per check, the best check's generator
    # weights (CPU) with its iteration and shift, and the evaluations the checks took
    selection: list[dict] = field(default_factory=list)
    best: dict | None = None
    selection_evaluations: int = 0

    def checkpoint(self, evaluations: int, wall_time_s: float) -> dict:
        return {"format": CHECKPOINT_FORMAT, "iteration": self.iteration,
                "generator": self.generator.state_dict(), "score": self.score.state_dict(),
                "opt_generator": self.opt_generator.state_dict(), "opt_score": self.opt_score.state_dict(),
                "log_steps": self.log_steps.clone(), "rng": self.rng.get_state(),
                "device": self.rng.device.type, "evaluations": int(evaluations),
                "wall_time_s": float(wall_time_s), "history": self.history,
                "selection": self.selection, "best": self.best,
                "selection_evaluations": int(self.selection_evaluations)}

    def save(self, path, evaluations: int, wall_time_s: float) -> None:
        atomic_torch_save(path, self.checkpoint(evaluations, wall_time_s))

    def load(self, path) -> None:
        ckpt = read_checkpoint(path)
        written, here = ckpt.get("device", "cpu"), self.rng.device.type
        if written != here:  # the random stream of one device kind cannot continue on another
            raise BadInput(f"{path} was written by a run on {written}; resume it with --device {written} "
                           f"(this run is on {here})")
        self.generator.load_state_dict(ckpt["generator"])
        self.score.load_state_dict(ckpt["score"])
        self.opt_generator.load_state_dict(ckpt["opt_generator"])
        self.opt_score.load_state_dict(ckpt["opt_score"])
        self.log_steps = ckpt["log_steps"].to(self.log_steps.device).clone()
        self.rng.set_state(ckpt["rng"])
        self.iteration, self.evaluations = int(ckpt["iteration"]), int(ckpt["evaluations"])
        self.wall_time_s, self.history = float(ckpt["wall_time_s"]), list(ckpt["history"])
        # checkpoints written before generator selection existed have none of it
        self.selection, self.best = list(ckpt.get("selection", [])), ckpt.get("best")
        self.selection_evaluations = int(ckpt.get("selection_evaluations", 0))


def read_checkpoint(path) -> dict:
    """A DiKL checkpoint (``torch.load(weights_only=True)``); unreadable or foreign → BadInput."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise BadInput(f"checkpoint not found: {path}") from exc
    except Exception as exc:  # truncated or foreign file: one clear line
        raise BadInput(f"not a readable DiKL checkpoint: {path} ({type(exc).__name__})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise BadInput(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint")
    return ckpt


def init_state(target, cfg: DiKLConfig, device: str | torch.device = "cpu") -> DiKLState:
    """Fresh networks (initialised on the CPU from a seed of their own, so every device starts from
    the same weights, then moved to ``device``), optimisers and the RNG (on ``device``)."""
    device = torch.device(device)
    schedule = VPSchedule(cfg.ddpm)
    with torch.random.fork_rng(devices=[]):  # network initialisation draws from the global RNG
        torch.manual_seed(int(cfg.seed) * 1_000_003 + 17)
        gen, score = build_networks(target, cfg.generator, cfg.score_net, schedule)
    gen, score = gen.to(device), score.to(device)
    log_steps = initial_log_step(cfg.posterior, schedule.alpha[:, None], schedule.sigma[:, None]).to(device)
    return DiKLState(gen, score, adam(gen.parameters(), cfg.train.lr_generator),
                     adam(score.parameters(), cfg.train.lr_score), log_steps,
                     torch.Generator(device=device).manual_seed(int(cfg.seed) * 1_000_003 + 2))


def _clipped_step(opt: torch.optim.Optimizer, params, clip: float) -> float:
    norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
    opt.step()
    opt.zero_grad(set_to_none=True)
    return norm


def dsm_phase(state: DiKLState, cfg: DiKLConfig) -> float:
    """``dsm_steps`` DSM steps of s_φ on fresh generator samples; returns the last loss."""
    tc, loss = cfg.train, float("nan")
    bsz = tc.score_batch_size or tc.batch_size
    for _ in range(tc.dsm_steps):
        with torch.no_grad():
            x0 = state.generator.sample(bsz, state.rng)
        value = state.score.dsm_loss(x0, state.rng)
        value.backward()
        _clipped_step(state.opt_score, state.score.parameters(), tc.grad_clip)
        loss = float(value.detach())
    return loss


def generator_phase(state: DiKLState, target, cfg: DiKLConfig) -> dict:
    """One generator step: ``generator_gradient``, gradient-norm clipping, Adam."""
    info = generator_gradient(state, target, cfg)
    info["grad_norm"] = _clipped_step(state.opt_generator, state.generator.parameters(), cfg.train.grad_clip)
    return info


def generator_gradient(state: DiKLState, target, cfg: DiKLConfig) -> dict:
    """Back-propagate the surrogate L(θ) of the module docstring into the generator's ``.grad``."""
    sched, tc, rng = state.score.schedule, cfg.train, state.rng
    z = state.generator.latent(tc.batch_size, rng)
    x = state.generator(z)
    idx = sched.draw_levels(tc.batch_size, rng)
    eps = state.generator.project(torch.randn(x.shape, generator=rng, dtype=x.dtype, device=x.device))
    alpha, sigma = sched.columns(idx, x.dtype)
    x_t = alpha * x + sigma * eps
    with torch.no_grad():
        s_model = state.score.score(x_t, idx)
    s_target, log_step, info = estimate_target_score(target, x_t.detach(), alpha, sigma, rng, cfg.posterior,
                                                     state.log_steps[idx].clone())
    _update_log_steps(state, idx, log_step)
    if tc.score_clip is not None:
        norm = s_target.norm(dim=-1, keepdim=True)
        s_target = s_target * torch.clamp(tc.score_clip / (norm + 1e-12), max=1.0)
    gap = (s_model - s_target).detach()
    # a row whose estimate is not finite (an overflowing LJ overlap: ∞·0 in the clip) would turn the
    # generator's weights and Adam state into NaN for good; it is dropped (contributes zero). The
    # released code skips the whole step when its loss is not finite.
    bad = ~torch.isfinite(gap).all(-1)
    gap = torch.where(bad[:, None], torch.zeros_like(gap), gap)
    w = sched.weights(tc.weighting).to(idx.device)[idx].to(x.dtype)
    surrogate = (w[:, None] * gap * x_t).sum(-1).mean()
    surrogate.backward()
    good = gap[~bad]
    return {"score_gap": float(good.norm(dim=-1).mean()) if good.shape[0] else float("nan"),
            "dropped_rows": int(bad.sum()), **info}


def _update_log_steps(state: DiKLState, idx: torch.Tensor, log_step: torch.Tensor) -> None:
    """Each visited level's step becomes the mean adapted log step of its rows."""
    ok = torch.isfinite(log_step)  # a NaN acceptance (non-finite energies) must not poison a level
    idx, log_step = idx[ok], log_step[ok]
    total = torch.zeros_like(state.log_steps).index_add_(0, idx, log_step)
    count = torch.zeros_like(state.log_steps).index_add_(0, idx, torch.ones_like(log_step))
    seen = count > 0
    state.log_steps[seen] = total[seen] / count[seen]


def iterate(state: DiKLState, target, cfg: DiKLConfig) -> dict:
    """One EM iteration (DSM phase, then generator phase); returns its log record."""
    t0 = time.perf_counter()
    dsm = dsm_phase(state, cfg)
    info = generator_phase(state, target, cfg)
    state.iteration += 1
    record = {"iteration": state.iteration, "dsm_loss": dsm, **info, "seconds": time.perf_counter() - t0}
    if state.iteration % cfg.train.log_every == 0:
        state.history.append(record)
    return record
