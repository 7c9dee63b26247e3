"""Feynman–Kac annealing (``smc.annealing``) with its particle population split over ranks.

Choice: **global resampling with particle exchange** (not island SMC). Every rank holds n_r of the
N = Σ_r n_r particles and simulates and reweights only those (the expensive part: network and
divergence evaluations). The float64 log-weights and increments — 2N numbers — are all-gathered
after every step, so every rank computes the same global quantities as one process would:

    log Z increment  log Σ_i W_i exp(Δ_i)   (W: normalised weights of all N particles),
    ESS              1 / Σ_i W̃_i²            (W̃: the updated weights of all N particles).

Resampling (when the global ESS/N falls below the threshold) draws N ancestor indices from the
global weights with a generator that is identical on all ranks (``shared_generator``, seeded the
same everywhere and used for nothing else), so all ranks agree on the indices without sending
them; rank r keeps indices [offset_r, offset_r + n_r) and fetches those ancestors with one
all-gather of the positions (only at resampling events, which are rare). The particle system then
has exactly the law of one-process SMC with N particles — mutation noise is independent per
particle whichever rank draws it — so the log Z estimator exp(Σ log-increments) stays unbiased for
Z (and the weighted particles consistent for p^γ), with no between-island correction to choose.
Island SMC (R independent populations of N/R, combined by their Ẑ_r) would avoid the exchange but
resamples within islands only, which degenerates faster; the exchange costs one all-gather of
N·dim numbers per resampling event.

With one process and ``shared_generator is generator`` the random draws happen in the same order
as ``smc.annealing.anneal``, which this then reproduces bit-for-bit (tested).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from boltzpath.diffusion.schedule import KarrasSchedule
from boltzpath.errors import BadInput
from boltzpath.parallel.dist import DistContext, all_gather_cat, shard
from boltzpath.smc.annealing import AnnealConfig, AnnealInfo, AnnealResult, FKStepInfo, mutate, tail_increment
from boltzpath.smc.model import DiffusionModel
from boltzpath.smc.resample import RESAMPLERS
from boltzpath.smc.weights import effective_sample_size, log_weight_spread, normalised_weights

Project = Callable[[torch.Tensor], torch.Tensor]


def _sharded_step(model, x, log_w, log_z, t_now, t_next, schedule, cfg, generator, shared, project,
                  ctx, n_total, offset):
    """One FK step on this rank's particles (mutate → reweight → global ESS/log Z → resample)."""
    x_new, inc = mutate(model, x, t_now, t_next, schedule, cfg, generator, project)  # as fk_step
    both = all_gather_cat(torch.stack([log_w, inc], dim=1), ctx)  # (N, 2) float64, rank order
    log_w_all, inc_all = both[:, 0], tail_increment(both[:, 1], t_next, cfg)  # tail rule on all N
    inc = inc_all[offset: offset + x.shape[0]]
    finite = torch.isfinite(inc_all)
    max_abs = float(inc_all[finite].abs().max()) if finite.any() else math.nan
    log_z_inc = 0.0
    if cfg.use_weights:
        log_z_inc = float(torch.logsumexp(torch.log(normalised_weights(log_w_all)) + inc_all, dim=0))
        log_w_all = log_w_all + inc_all
        log_w = log_w + inc
        log_z = log_z + log_z_inc
    ess = effective_sample_size(log_w_all)
    spread = log_weight_spread(log_w_all)
    resampled = False
    if cfg.use_weights and t_next >= cfg.stop_resampling_t and ess < cfg.ess_threshold * n_total:
        idx = RESAMPLERS[cfg.resample](shared, log_w_all, n_total)[offset: offset + x.shape[0]]
        x_all = all_gather_cat(x_new, ctx)
        x_new = x_all[idx.to(x_all.device)]
        log_w, resampled = torch.zeros_like(log_w), True
    info = FKStepInfo(float(t_next), ess, resampled, spread, log_z_inc, max_abs)
    return x_new, log_w, log_z, info


def sharded_anneal(
    model: DiffusionModel,
    n_particles: int,
    schedule: KarrasSchedule,
    cfg: AnnealConfig,
    generator: torch.Generator,
    shared_generator: torch.Generator,
    ctx: DistContext,
    project: Project | None = None,
    callback: Callable[[int, int, dict], None] | None = None,
) -> AnnealResult:
    """``smc.annealing.anneal`` for N = ``n_particles`` particles over ``ctx.world_size`` ranks.

    ``generator``: this rank's own stream (prior, mutation noise, Hutchinson probes) — different on
    every rank; ``shared_generator``: the same seed on every rank (resampling only). Returns this
    rank's particles and log-weights with the *global* log Z, ESS and step log (identical on all
    ranks); ``gather_result`` assembles all N particles.
    """
    cfg.validate()
    n_total = int(n_particles)
    if n_total < ctx.world_size:
        raise BadInput(f"n_particles ({n_total}) must be >= the number of processes ({ctx.world_size})")
    offset, n_local = shard(n_total, ctx)
    project = project or (lambda v: v)
    dtype = cfg.torch_dtype
    dev = torch.device(generator.device)
    prior_std = schedule.sigma_max / math.sqrt(cfg.gamma)
    x = prior_std * project(torch.randn(n_local, model.dim, generator=generator, dtype=dtype, device=dev))
    log_w, log_z = torch.zeros(n_local, dtype=torch.float64, device=dev), 0.0
    grid = schedule.time_grid(cfg.n_steps).tolist()
    info = AnnealInfo()
    for k in range(cfg.n_steps):
        x, log_w, log_z, step = _sharded_step(model, x, log_w, log_z, grid[k], grid[k + 1], schedule, cfg,
                                              generator, shared_generator, project, ctx, n_total, offset)
        info.append(step)
        if callback is not None:
            callback(k + 1, cfg.n_steps, {"t": step.t, "ess": step.ess, "resampled": step.resampled})
    ess = effective_sample_size(all_gather_cat(log_w, ctx))
    return AnnealResult(x, log_w, log_z, ess, info)


def gather_result(res: AnnealResult, ctx: DistContext) -> AnnealResult:
    """All N particles and log-weights (rank order) on every rank; log Z, ESS, info unchanged."""
    return AnnealResult(all_gather_cat(res.x, ctx), all_gather_cat(res.log_weights, ctx), res.log_z,
                        res.ess, res.info)


def sharded_relax(target, x: torch.Tensor, generator: torch.Generator, cfg, ctx: DistContext,
                  callback: Callable[[int, int, dict], None] | None = None):
    """``smc.relax.relax`` of this rank's particles (each chain is independent, with its own step
    size, so splitting particles over ranks changes nothing but the random streams).

    Returns this rank's ``RelaxResult`` with ``info`` combined over ranks: counts summed, acceptance
    and mean displacement weighted by particle counts, step-size min/max over all particles, the
    ranks' medians listed (``step_size_median`` is rank 0's).
    """
    from boltzpath.parallel.dist import all_gather_json
    from boltzpath.smc.relax import RelaxResult, relax

    res = relax(target, x, generator, cfg, callback=callback if ctx.is_main else None)
    if not ctx.distributed:
        return res
    parts = all_gather_json({**res.info, "n": int(x.shape[0])}, ctx)
    n = sum(p["n"] for p in parts)
    info = dict(res.info)
    for key in ("acceptance", "mean_rms_displacement"):
        info[key] = sum(p[key] * p["n"] for p in parts) / n
    info["step_size_min"] = min(p["step_size_min"] for p in parts)
    info["step_size_max"] = max(p["step_size_max"] for p in parts)
    info["step_size_median_per_rank"] = [p["step_size_median"] for p in parts]
    for key in ("repaired", "still_above_threshold"):
        if key in info:
            info[key] = sum(p[key] for p in parts)
    if "repair_steps_taken" in info:
        info["repair_steps_taken"] = max(p["repair_steps_taken"] for p in parts)
    return RelaxResult(res.x, res.energy, res.grad, info)
